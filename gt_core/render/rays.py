"""Camera rays and ray/box intersection for the volume renderer (:mod:`gt_core.render.volume`).

Conventions (the same as :mod:`gt_core.render.cameras` and the Gaussian rasterizer, so a volume render lines up
pixel for pixel with a Gaussian render of the same camera):

* OpenCV camera axes (x right, y down, z forward); ``camera.viewmat`` is world -> camera.
* Pixel ``(i, j)`` = (column, row) has its centre at ``(u, v) = (i + 0.5, j + 0.5)``; the ray through it has the
  camera-space direction ``((u - cx) / fx, (v - cy) / fy, 1)``, normalised, so a point ``o + t·d`` on it projects back
  to exactly ``(u, v)``. ER-NeRF also shoots its rays through ``+0.5`` pixel centres.
* "All pixels" are enumerated row-major: ray ``k`` is pixel ``(k % W, k // W)``, i.e. ``image.reshape(H * W, C)``.
* Directions are unit vectors, so a ray parameter ``t`` is a Euclidean distance from the camera centre (not the
  view-space z; ``z = t · (d · forward)``).

Deviations from the original (ER-NeRF, ``raymarching/src/raymarching.cu`` ``kernel_near_far_from_aabb``):

* Rays missing the box get ``near = far = 0`` and ``hit = False`` instead of ``near = far = FLT_MAX`` (an explicit
  mask is harder to misuse than a sentinel). A box entirely behind ``min_near`` is a miss too.
* Direction components that are exactly zero are handled explicitly (inside/outside the slab) instead of relying on
  ``1/0 = inf`` arithmetic, which yields NaN when the origin lies on a slab plane.
* ``near`` / ``far`` are returned detached, as the original detaches them.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gt_core.render.cameras import Camera


def camera_rays(camera: Camera, pixels: Tensor | None = None,
                dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres.

    Args:
        camera: the pinhole camera (its device is used; dtype too unless ``dtype`` is given).
        pixels: optional ``[N, 2]`` integer tensor of ``(i, j)`` = (column, row) pixel indices; ``None`` = all
            ``H * W`` pixels, row-major.
        dtype: floating dtype of the result (default: the camera's).

    Returns:
        origins ``[N, 3]`` (the camera centre, repeated) and unit directions ``[N, 3]``, both in world coordinates.
    """
    dtype = camera.dtype if dtype is None else dtype
    dev = camera.device
    W, H = camera.width, camera.height
    if pixels is None:
        jj, ii = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
        i, j = ii.reshape(-1), jj.reshape(-1)  # [H*W] each, row-major
    else:
        assert isinstance(pixels, Tensor) and pixels.ndim == 2 and pixels.shape[1] == 2, \
            f"pixels must be [N, 2], got {tuple(pixels.shape) if isinstance(pixels, Tensor) else type(pixels)}"
        assert not pixels.is_floating_point() and pixels.dtype != torch.bool, \
            f"pixels must be integer (i=column, j=row), got {pixels.dtype}"
        pixels = pixels.to(dev)
        i, j = pixels[:, 0], pixels[:, 1]
        if pixels.numel():
            assert bool(((i >= 0) & (i < W) & (j >= 0) & (j < H)).all()), f"pixels outside the {W}x{H} image"
    # Work in float64 so the back-projection is exact to float32 precision, then cast.
    u = i.to(torch.float64) + 0.5  # [N] pixel-centre x
    v = j.to(torch.float64) + 0.5  # [N] pixel-centre y
    d_cam = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)], dim=-1)
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)  # [N, 3] unit, camera frame
    R = camera.viewmat[:3, :3].to(torch.float64)  # world -> camera rotation
    d_world = d_cam @ R  # [N, 3] == (Rᵀ d_camᵀ)ᵀ
    origin = camera.campos.to(torch.float64)  # [3]
    origins = origin.expand_as(d_world)
    return origins.to(dtype).contiguous(), d_world.to(dtype).contiguous()


def ray_aabb(origins: Tensor, dirs: Tensor, aabb: Tensor | list | tuple,
             min_near: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Slab-method intersection of rays with an axis-aligned box.

    Args:
        origins: ``[N, 3]`` ray origins; dirs: ``[N, 3]`` directions (any length; ``t`` is in units of ``|d|``).
        aabb: ``[6]`` box ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        min_near: ``near`` is clamped to at least this (ER-NeRF: ``--min_near`` 0.05 at its scene scale).

    Returns:
        near ``[N]``, far ``[N]`` (``0`` where missed) and hit ``[N]`` bool (``far > near``).
    """
    assert origins.ndim == 2 and origins.shape[1] == 3, f"origins must be [N, 3], got {tuple(origins.shape)}"
    assert dirs.shape == origins.shape, f"dirs must be {tuple(origins.shape)}, got {tuple(dirs.shape)}"
    aabb = torch.as_tensor(aabb, dtype=origins.dtype, device=origins.device).reshape(-1)
    assert aabb.shape == (6,), f"aabb must have 6 values, got {tuple(aabb.shape)}"
    lo, hi = aabb[:3], aabb[3:]
    assert bool((hi > lo).all()), f"aabb must have max > min, got {aabb.tolist()}"
    o, d = origins.detach(), dirs.detach()
    parallel = d == 0  # [N, 3]
    safe_d = torch.where(parallel, torch.ones_like(d), d)
    t1, t2 = (lo - o) / safe_d, (hi - o) / safe_d  # [N, 3] slab plane crossings
    inf = torch.full_like(d, float("inf"))
    inside = (o >= lo) & (o <= hi)  # [N, 3] only used for parallel axes
    t_enter = torch.where(parallel, torch.where(inside, -inf, inf), torch.minimum(t1, t2))
    t_exit = torch.where(parallel, torch.where(inside, inf, -inf), torch.maximum(t1, t2))
    near = t_enter.amax(dim=-1).clamp(min=min_near)  # [N]
    far = t_exit.amin(dim=-1)  # [N]
    hit = far > near
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit
