"""Multi-resolution tri-plane encoder (the K-Planes 3D variant GaussianTalker uses for f(μ)).

A point ``x`` in the encoder's axis-aligned box (AABB) is normalised to ``[-1, 1]³`` and projected onto the three
coordinate planes ``xy``, ``xz`` and ``yz`` (in that order). Each plane at each scale is a learnable
``[1, C, R, R]`` feature image, read with bilinear ``grid_sample(align_corners=True, padding_mode="border")``.
Per scale, the three plane features are multiplied elementwise (Hadamard product); the per-scale products are
concatenated, scale by scale, into ``f(x)`` of ``C · len(multires)`` dims.

Defaults are the original's (``arguments/64_dim_1_transformer.py``, ``scene/hexplane.py``): base resolution 64,
multires ``[1, 2]`` (64² and 128²), 32 channels per plane (→ f of 64 dims), planes initialised ``U(0.1, 0.5)``.

Plane layout, matching ``grid_sample``'s convention: for the plane over axes ``(a, b)`` (a < b), the grid's
x coordinate (last tensor dim, width) is axis ``a`` and its y coordinate (height) is axis ``b``, so plane ``xy`` is
indexed ``plane[0, c, j_y, i_x]``. Points outside the box read the border (clamped), as in the original.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PLANES: tuple[tuple[int, int], ...] = tuple(combinations(range(3), 2))  # (0,1)=xy, (0,2)=xz, (1,2)=yz


@dataclass
class TriPlaneConfig:
    """Hyper-parameters of :class:`TriPlaneEncoder` (defaults = the released GaussianTalker config)."""

    base_resolution: int = 64  # plane side at multires 1
    multires: list[int] = field(default_factory=lambda: [1, 2])  # resolution multipliers, one plane set each
    channels: int = 32  # feature channels per plane
    init_low: float = 0.1  # planes are initialised U(init_low, init_high)
    init_high: float = 0.5

    @property
    def out_dim(self) -> int:
        return self.channels * len(self.multires)


def normalize_aabb(points: Tensor, aabb: Tensor) -> Tensor:
    """Map ``points`` [N, 3] from the box ``aabb`` [2, 3] (min row, max row) to ``[-1, 1]³`` (linear, unclamped)."""
    assert points.ndim == 2 and points.shape[1] == 3, tuple(points.shape)
    assert aabb.shape == (2, 3), tuple(aabb.shape)
    return (points - aabb[0]) * (2.0 / (aabb[1] - aabb[0])) - 1.0


def sample_plane(plane: Tensor, coords: Tensor) -> Tensor:
    """Bilinear features of one plane ``[1, C, H, W]`` at normalised 2D ``coords`` ``[N, 2]`` (x→W, y→H) → ``[N, C]``.

    ``align_corners=True``: -1 and +1 are the centres of the first and last texels; outside, the border texel.
    """
    assert plane.ndim == 4 and plane.shape[0] == 1, tuple(plane.shape)
    assert coords.ndim == 2 and coords.shape[1] == 2, tuple(coords.shape)
    grid = coords.to(plane.dtype).view(1, 1, -1, 2)  # [1, 1, N, 2]
    out = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=True)  # [1, C, 1, N]
    return out[0, :, 0].transpose(0, 1)  # [N, C]


class TriPlaneEncoder(nn.Module):
    """f(x) = concat_s( Π_{p ∈ {xy, xz, yz}} plane_{s,p}(x) ), see the module docstring.

    Args:
        aabb: [2, 3] the box mapped to [-1, 1]³ (GaussianTalker: the bounding box of the initial point cloud).
        cfg: plane resolution / channels / init.
        generator: optional ``torch.Generator`` for a reproducible initialisation.

    Parameters: ``planes[s * 3 + p]`` is the plane ``PLANES[p]`` at scale ``cfg.multires[s]``, shape ``[1, C, R, R]``.
    """

    def __init__(self, aabb: Tensor, cfg: TriPlaneConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TriPlaneConfig()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        assert aabb.shape == (2, 3) and bool((aabb[1] > aabb[0]).all()), f"aabb must be [2, 3] min < max, got {aabb}"
        self.register_buffer("aabb", aabb.clone())
        planes = []
        for mult in cfg.multires:
            res = int(cfg.base_resolution * mult)
            for _ in PLANES:
                p = torch.empty(1, cfg.channels, res, res)
                p.uniform_(cfg.init_low, cfg.init_high, generator=generator)
                planes.append(nn.Parameter(p))
        self.planes = nn.ParameterList(planes)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, points: Tensor) -> Tensor:
        """``points`` [N, 3] world coordinates → features [N, C · n_scales]."""
        assert points.ndim == 2 and points.shape[1] == 3, f"points must be [N, 3], got {tuple(points.shape)}"
        x = normalize_aabb(points, self.aabb.to(points))
        feats = []
        for s in range(len(self.cfg.multires)):
            prod = None
            for p, (a, b) in enumerate(PLANES):
                f = sample_plane(self.planes[s * len(PLANES) + p], x[:, [a, b]])  # [N, C]
                prod = f if prod is None else prod * f
            feats.append(prod)
        return torch.cat(feats, dim=-1)  # [N, C·S]
