"""What the renderers return: one module, so backends and methods import the output types without the dispatcher.

* :class:`RasterOutput` — a Gaussian rasterizer's render of one camera (every backend of
  :mod:`gt_core.render.gaussians` returns it).
* :class:`VolumeOutput` — :func:`gt_core.render.volume.composite`'s per-ray colour, opacity and depth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


@dataclass
class RasterOutput:
    """What a render returns (single camera)."""

    color: Tensor  # [3, H, W] Σ cᵢαᵢTᵢ + T_final·background
    alpha: Tensor  # [1, H, W] 1 - T_final
    depth: Tensor  # [1, H, W] Σ zᵢαᵢTᵢ, view-space z, unnormalised (divide by alpha for the expected depth)
    radii: Tensor  # [N] int32 3σ screen radius in pixels, 0 = culled (behind the near plane / off screen)
    means2d: Tensor  # [N, 2] pixels; .grad holds ∂loss/∂means2d (pixels) after backward, see the module docstring


class VolumeOutput(NamedTuple):
    colour: Tensor  # [N, C]
    alpha: Tensor  # [N] opacity = sum of weights
    depth: Tensor  # [N] sum w·t (unnormalised)
