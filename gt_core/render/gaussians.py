"""Public entry point of the differentiable 3D Gaussian rasterizer, with backend dispatch.

One signature for every backend (:func:`rasterize_gaussians`):

* ``"torch"`` — :mod:`gt_core.render.torch_rasterizer`, pure PyTorch, CPU and CUDA, graphdeco semantics.
* ``"gsplat"`` / ``"diff-gaussian-rasterization"`` — adapters in :mod:`gt_core.render.cuda_backends` (CUDA only,
  imported lazily; neither library is a dependency).
* ``"auto"`` — gsplat if importable and the tensors are on CUDA, else diff-gaussian-rasterization if importable and
  on CUDA, else torch.

Screen-space gradients for densification: ``RasterOutput.means2d`` is the [N, 2] pixel position of every Gaussian
(``u = fx·x/z + cx``, pixel centres at ``i + 0.5``). It sits in the autograd graph between the 3D parameters and the
image with ``retain_grad()`` called on it, so after ``loss.backward()`` its ``.grad`` holds ``∂loss/∂means2d`` **in
pixels** (like gsplat with ``absgrad=False``). graphdeco's ``viewspace_point_tensor.grad`` is the same gradient in its
NDC convention: ``grad_ndc = grad_px · (0.5·W, 0.5·H)``; gsplat's default strategy normalises the same way
(``grad[..., 0] *= W / 2``, ``grad[..., 1] *= H / 2``) before thresholding at 2e-4.
"""
from __future__ import annotations

import importlib.util
from typing import Literal, Sequence

import torch
from torch import Tensor

from gt_core.render.cameras import Camera
from gt_core.render.sh import MAX_SH_DEGREE, num_sh_bases, sh_to_rgb_view
from gt_core.render import torch_rasterizer as tr
from gt_core.render.types import RasterOutput

Backend = Literal["auto", "torch", "gsplat", "diff-gaussian-rasterization"]
BACKENDS = ("auto", "torch", "gsplat", "diff-gaussian-rasterization")


def _backend_available(name: str) -> bool:
    module = {"gsplat": "gsplat", "diff-gaussian-rasterization": "diff_gaussian_rasterization"}[name]
    return importlib.util.find_spec(module) is not None


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """The concrete backend ``backend`` means for tensors on ``device`` (``"auto"`` resolved, see module docstring)."""
    assert backend in BACKENDS, f"unknown backend {backend!r}; choose one of {BACKENDS}"
    if backend != "auto":
        return backend
    if device.type == "cuda":
        for name in ("gsplat", "diff-gaussian-rasterization"):
            if _backend_available(name):
                return name
    return "torch"


def check_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, camera: Camera,
                 background: Tensor | None, sh_degree: int | None) -> int | None:
    """Assert the shapes/dtypes/devices of :func:`rasterize_gaussians`'s arguments; return the SH degree (or None)."""
    assert isinstance(camera, Camera), f"camera must be a gt_core.render.cameras.Camera, got {type(camera).__name__}"
    assert means.ndim == 2 and means.shape[1] == 3, f"means must be [N, 3], got {tuple(means.shape)}"
    n = means.shape[0]
    assert means.is_floating_point(), f"means must be floating point, got {means.dtype}"
    for name, t, shape in (("quats", quats, (n, 4)), ("scales", scales, (n, 3)), ("opacities", opacities, (n,))):
        assert tuple(t.shape) == shape, f"{name} must be {list(shape)} (N={n}), got {tuple(t.shape)}"
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors)):
        assert t.device == means.device, f"{name} is on {t.device}, means on {means.device}"
        assert t.dtype == means.dtype, f"{name} is {t.dtype}, means {means.dtype}"
    if colors.ndim == 2:
        assert tuple(colors.shape) == (n, 3), f"RGB colors must be [N, 3] (N={n}), got {tuple(colors.shape)}"
        assert sh_degree is None, "sh_degree must be None when colors are precomputed RGB [N, 3]"
    else:
        assert colors.ndim == 3 and colors.shape[0] == n and colors.shape[2] == 3, \
            f"SH colors must be [N, K, 3] (N={n}), got {tuple(colors.shape)}"
        k = colors.shape[1]
        if sh_degree is None:
            sh_degree = round(k ** 0.5) - 1
            assert (sh_degree + 1) ** 2 == k, f"cannot infer the SH degree from K={k}; pass sh_degree"
        assert 0 <= sh_degree <= MAX_SH_DEGREE, f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}"
        assert k >= num_sh_bases(sh_degree), f"sh_degree {sh_degree} needs K >= {num_sh_bases(sh_degree)}, got {k}"
    if background is not None:
        hw = (camera.height, camera.width)
        assert tuple(background.shape) in ((3,), (3, *hw)), \
            f"background must be [3] or [3, {hw[0]}, {hw[1]}], got {tuple(background.shape)}"
        assert background.device == means.device, f"background is on {background.device}, means on {means.device}"
    return sh_degree


def gaussian_colors(colors: Tensor, sh_degree: int | None, means: Tensor, camera: Camera) -> Tensor:
    """[N, 3] RGB per Gaussian: ``colors`` itself, or SH evaluated along camera centre → mean (+0.5, clamp >= 0)."""
    if sh_degree is None:
        return colors
    return sh_to_rgb_view(sh_degree, colors, means, camera.campos.to(means))


def background_image(background: Tensor | None, camera: Camera, like: Tensor) -> Tensor:
    """[3, H, W] background (an expanded view when given as [3]; zeros when None)."""
    h, w = camera.height, camera.width
    if background is None:
        return torch.zeros(3, h, w, dtype=like.dtype, device=like.device)
    background = background.to(like.dtype)
    return background[:, None, None].expand(3, h, w) if background.ndim == 1 else background


def rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, camera: Camera,
                    background: Tensor | None = None, sh_degree: int | None = None,
                    block: int | None = None, chunk_entries: int = tr.DEFAULT_CHUNK_ENTRIES,
                    return_plan: bool = False):
    """The "torch" backend (inputs already checked). ``block``/``chunk_entries`` tune the binning (tests use them);
    ``return_plan=True`` also returns the :class:`~gt_core.render.torch_rasterizer.RasterPlan`."""
    vm = camera.viewmat.to(device=means.device, dtype=means.dtype)
    proj = tr.project_gaussians(means, quats, scales, vm, camera.fx, camera.fy, camera.cx, camera.cy,
                                camera.width, camera.height)
    rgb = gaussian_colors(colors, sh_degree, means, camera)
    bg = background_image(background, camera, means)
    plan = tr.plan_raster(proj, opacities, camera.width, camera.height, block=block, chunk_entries=chunk_entries)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    color, alpha, depth = tr.composite(means2d, proj.conics, opacities, rgb, proj.depths, bg, plan)
    out = RasterOutput(color=color, alpha=alpha, depth=depth, radii=proj.radii, means2d=means2d)
    return (out, plan) if return_plan else out


def rasterize_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3] positive (activated)
    opacities: Tensor,  # [N] in (0, 1) (activated)
    colors: Tensor,  # [N, 3] RGB, or [N, K, 3] SH coefficients (K >= (sh_degree + 1)²)
    camera: Camera,
    background: Tensor | None = None,  # [3] or [3, H, W]; None = black
    sh_degree: int | None = None,  # None when colors is [N, 3] (inferred from K when colors is SH)
    backend: Backend = "auto",
) -> RasterOutput:
    """Render 3D Gaussians from ``camera`` (differentiable w.r.t. every tensor argument).

    Semantics (all backends): graphdeco's rasterizer — see :mod:`gt_core.render.torch_rasterizer` for the details
    (near plane 0.2, +0.3 px² low-pass, 3σ radius, 16×16 tiles, depth sort, α = min(0.99, o·G), α < 1/255 skipped,
    a pixel stops before T would drop below 1e-4). SH colours are evaluated along camera centre → mean, +0.5, clamped
    at 0; with ``K > (sh_degree+1)²`` coefficients only the first ``(sh_degree+1)²`` are used.

    Returns: :class:`RasterOutput` (colour, alpha, unnormalised depth, radii, means2d with screen-space gradients).
    """
    sh_degree = check_inputs(means, quats, scales, opacities, colors, camera, background, sh_degree)
    name = resolve_backend(backend, means.device)
    if name == "torch":
        return rasterize_torch(means, quats, scales, opacities, colors, camera, background, sh_degree)
    from gt_core.render import cuda_backends

    fn = cuda_backends.rasterize_gsplat if name == "gsplat" else cuda_backends.rasterize_graphdeco
    return fn(means, quats, scales, opacities, colors, camera, background, sh_degree)


def rasterize_batch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    cameras: Sequence[Camera], backgrounds: Sequence[Tensor | None] | Tensor | None = None,
                    sh_degree: int | None = None, backend: Backend = "auto") -> list[RasterOutput]:
    """Render the same Gaussians from several cameras (one :class:`RasterOutput` each).

    ``backgrounds``: None (black), one [3] / [3, H, W] tensor shared by all cameras, or one entry per camera.
    """
    cameras = list(cameras)
    if backgrounds is None or isinstance(backgrounds, Tensor):
        bgs = [backgrounds] * len(cameras)
    else:
        bgs = list(backgrounds)
        assert len(bgs) == len(cameras), f"{len(bgs)} backgrounds for {len(cameras)} cameras"
    return [rasterize_gaussians(means, quats, scales, opacities, colors, cam, bg, sh_degree, backend)
            for cam, bg in zip(cameras, bgs)]
