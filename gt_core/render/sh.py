"""Real spherical harmonics up to degree 3, with graphdeco's constants, sign convention and coefficient order.

A Gaussian's colour seen along unit direction ``d`` (camera centre → Gaussian mean) is
``max(Σ_k C_k·Y_k(d)·sh[k] + 0.5, 0)`` (:func:`sh_to_rgb_view`), exactly as graphdeco's ``computeColorFromSH``.
Coefficients are laid out ``[N, K, 3]`` with ``K = (degree + 1)²`` (band-major: k = 0 is DC, 1..3 degree 1, ...).
"""
from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
         1.445305721320277, -0.5900435899266435)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of coefficients K of an SH expansion of ``degree`` (0..3): ``(degree + 1)²``."""
    assert 0 <= degree <= MAX_SH_DEGREE, f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}"
    return (degree + 1) ** 2


def eval_sh(degree: int, sh: Tensor, dirs: Tensor) -> Tensor:
    """Evaluate SH coefficients along directions (no +0.5 offset, no clamp).

    Args:
        degree: 0..3; only the first ``(degree + 1)²`` coefficients are used (the rest may be present, as during
            progressive SH training).
        sh: [..., K, C] coefficients, ``K >= (degree + 1)²``.
        dirs: [..., 3] unit view directions.
    Returns: [..., C].
    """
    k = num_sh_bases(degree)
    assert sh.shape[-2] >= k, f"degree {degree} needs {k} SH coefficients, got {sh.shape[-2]}"
    assert dirs.shape[-1] == 3 and dirs.shape[:-1] == sh.shape[:-2], (tuple(dirs.shape), tuple(sh.shape))
    result = SH_C0 * sh[..., 0, :]
    if degree > 0:
        x, y, z = (dirs[..., i:i + 1] for i in range(3))
        result = result - SH_C1 * y * sh[..., 1, :] + SH_C1 * z * sh[..., 2, :] - SH_C1 * x * sh[..., 3, :]
        if degree > 1:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            result = (result
                      + SH_C2[0] * xy * sh[..., 4, :]
                      + SH_C2[1] * yz * sh[..., 5, :]
                      + SH_C2[2] * (2.0 * zz - xx - yy) * sh[..., 6, :]
                      + SH_C2[3] * xz * sh[..., 7, :]
                      + SH_C2[4] * (xx - yy) * sh[..., 8, :])
            if degree > 2:
                result = (result
                          + SH_C3[0] * y * (3.0 * xx - yy) * sh[..., 9, :]
                          + SH_C3[1] * xy * z * sh[..., 10, :]
                          + SH_C3[2] * y * (4.0 * zz - xx - yy) * sh[..., 11, :]
                          + SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh[..., 12, :]
                          + SH_C3[4] * x * (4.0 * zz - xx - yy) * sh[..., 13, :]
                          + SH_C3[5] * z * (xx - yy) * sh[..., 14, :]
                          + SH_C3[6] * x * (xx - 3.0 * yy) * sh[..., 15, :])
    return result


def sh_to_rgb_view(degree: int, sh: Tensor, means: Tensor, campos: Tensor) -> Tensor:
    """View-dependent RGB of Gaussians, graphdeco semantics: ``max(eval_sh(dir) + 0.5, 0)``.

    Args:
        sh: [N, K, 3] coefficients; means: [N, 3] world positions; campos: [3] camera centre (world).
    Returns: [N, 3] colours (gradients flow to ``sh`` and, through the direction, to ``means``).
    """
    assert sh.ndim == 3 and sh.shape[-1] == 3 and means.shape == (sh.shape[0], 3), (tuple(sh.shape), tuple(means.shape))
    assert campos.shape == (3,), tuple(campos.shape)
    dirs = means - campos.to(means)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # a mean at the camera centre is culled anyway
    return torch.clamp_min(eval_sh(degree, sh, dirs) + 0.5, 0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """DC coefficient giving colour ``rgb`` (inverse of the degree-0 evaluation): ``(rgb - 0.5) / C0``."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Colour of a DC coefficient: ``sh0·C0 + 0.5`` (before the clamp)."""
    return sh0 * SH_C0 + 0.5
