"""Adapters from :func:`gt_core.render.gaussians.rasterize_gaussians` to the CUDA rasterizers (imported lazily).

Neither library is a dependency of the project; each adapter imports its library on first use and raises
:class:`ImportError` with the install hint when it is missing. Both take and return exactly what the "torch" backend
does (:class:`~gt_core.render.gaussians.RasterOutput`), converting our :class:`~gt_core.render.cameras.Camera`
(OpenCV world-to-camera ``viewmat``, pixel intrinsics, pixel centres at ``i + 0.5``) to each library's convention.

* **gsplat** (>= 1.0, ``gsplat.rasterization``): ``viewmats = viewmat[None]`` (gsplat uses the same OpenCV
  world-to-camera convention), ``Ks = K[None]``, ``near_plane = 0.2`` (graphdeco's culling depth), ``eps2d = 0.3``,
  ``render_mode = "RGB+D"`` (accumulated depth Σ z·w, like ours), ``packed = False``, ``rasterize_mode =
  "classic"``. gsplat takes only a per-camera background colour, so the background is composited here:
  ``color = render(bg = 0) + (1 - alpha)·bg``, which is exact for [3] and [3, H, W] backgrounds alike.
  ``meta["radii"]`` is [C, N] in gsplat < 1.5 and [C, N, 2] (per axis) after; the larger axis is returned.
  Screen-space gradients: gsplat's own ``meta["means2d"]`` ([C, N, 2], pixels, same convention as ours) gets a
  backward hook that copies its gradient into ``RasterOutput.means2d.grad`` (a leaf holding the same values).
* **diff-gaussian-rasterization** (graphdeco, and forks with the same interface such as GaussianTalker's):
  ``GaussianRasterizationSettings(image_height, image_width, tanfovx = W/(2fx), tanfovy = H/(2fy), bg, scale_modifier
  = 1, viewmatrix = viewmatᵀ, projmatrix = (P·viewmat)ᵀ, sh_degree, campos, prefiltered = False, debug = False
  [, antialiasing = False])`` — graphdeco stores matrices transposed (row-vector convention). ``P`` is graphdeco's
  ``getProjectionMatrix`` (znear 0.01, zfar 100) generalised to an off-centre principal point
  (``P[0, 2] = 2cx/W - 1``, ``P[1, 2] = 2cy/H - 1``), which puts a point at graphdeco pixel ``fx·x/z + cx - 0.5``,
  i.e. exactly our pixel. Quaternions are normalised here (graphdeco's kernel does not). Stock graphdeco returns no
  alpha and (depending on the version) no or inverse depth, and only a [3] background, so a second render with
  precomputed colours ``(1, z, 0)`` over a black background yields alpha (channel 0) and Σ z·w (channel 1); the
  background is then composited as above. Screen-space gradients: graphdeco's ``means2D`` argument receives
  ``∂L/∂ndc``; we pass ``(means2d - means2d.detach())·(2/W, 2/H)`` for it, so ``means2d.grad`` comes out in pixels.

Known differences from the "torch" backend (why agreement is approximate, see ``tests/test_rasterizer.py``):
graphdeco's backward passes gradients through the ``min(0.99, ·)`` clamp, and both libraries run in float32 with
their own tile rules (gsplat bins tiles from ``mean ± radius`` in its own coordinates and uses an opacity-aware radius
in recent versions).
"""
from __future__ import annotations

import importlib

import torch
from torch import Tensor

from gt_core.render.cameras import Camera
from gt_core.render.types import RasterOutput

GRAPHDECO_ZNEAR, GRAPHDECO_ZFAR = 0.01, 100.0
NEAR_PLANE = 0.2


def _import(module: str, pip_name: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - exercised only where the library is absent
        raise ImportError(f"backend {pip_name!r} needs the {pip_name} package (CUDA build): pip install {pip_name}"
                          f" — or use backend='torch'") from e


def _require_cuda(t: Tensor, name: str) -> None:
    if t.device.type != "cuda":
        raise ValueError(f"backend {name!r} runs on CUDA tensors only (got {t.device}); use backend='torch'")


def _composite_background(color: Tensor, alpha: Tensor, background: Tensor | None) -> Tensor:
    """``color`` [3, H, W] rendered over black, ``alpha`` [1, H, W] -> over ``background`` ([3] or [3, H, W])."""
    if background is None:
        return color
    bg = background.to(color.dtype)
    bg = bg[:, None, None] if bg.ndim == 1 else bg
    return color + (1.0 - alpha) * bg


def graphdeco_projection_matrix(camera: Camera, znear: float = GRAPHDECO_ZNEAR, zfar: float = GRAPHDECO_ZFAR
                                ) -> Tensor:
    """[4, 4] graphdeco ``getProjectionMatrix`` (column-vector form, z_sign = +1) with the camera's principal point."""
    W, H = camera.width, camera.height
    P = torch.zeros(4, 4, dtype=torch.float64)
    P[0, 0] = 2.0 * camera.fx / W
    P[1, 1] = 2.0 * camera.fy / H
    P[0, 2] = 2.0 * camera.cx / W - 1.0
    P[1, 2] = 2.0 * camera.cy / H - 1.0
    P[3, 2] = 1.0
    P[2, 2] = zfar / (zfar - znear)
    P[2, 3] = -(zfar * znear) / (zfar - znear)
    return P


def graphdeco_matrices(camera: Camera) -> tuple[Tensor, Tensor]:
    """(``world_view_transform``, ``full_proj_transform``) as graphdeco's ``Camera`` stores them (transposed)."""
    V = camera.viewmat.detach().to(torch.float64).cpu()
    wvt = V.T
    full = (graphdeco_projection_matrix(camera) @ V).T
    return wvt, full


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     camera: Camera, background: Tensor | None, sh_degree: int | None):
    """Render with ``gsplat.rasterization`` (see the module docstring for the conventions)."""

    _require_cuda(means, "gsplat")
    gsplat = _import("gsplat", "gsplat")
    dev, dt = means.device, means.dtype
    viewmats = camera.viewmat.to(device=dev, dtype=dt)[None]  # [1, 4, 4]
    Ks = camera.K.to(device=dev, dtype=dt)[None]  # [1, 3, 3]
    render, alphas, meta = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, camera.width, camera.height,
        near_plane=NEAR_PLANE, eps2d=0.3, sh_degree=sh_degree, packed=False, tile_size=16, backgrounds=None,
        render_mode="RGB+D", absgrad=False, rasterize_mode="classic")
    render = render[0].permute(2, 0, 1)  # [4, H, W]
    alpha = alphas[0].permute(2, 0, 1)  # [1, H, W]
    color = _composite_background(render[:3], alpha, background)
    radii = meta["radii"][0]
    if radii.ndim == 2:  # gsplat >= 1.5: per-axis radii
        radii = radii.max(dim=-1).values
    means2d = meta["means2d"]  # [1, N, 2] pixels
    means2d = _gsplat_means2d(means2d) if means2d.requires_grad else means2d[0].detach()
    return RasterOutput(color=color, alpha=alpha, depth=render[3:4], radii=radii.to(torch.int32), means2d=means2d)


def _gsplat_means2d(means2d: Tensor) -> Tensor:
    """[N, 2] leaf with the values of gsplat's [1, N, 2] ``meta["means2d"]``; a backward hook on the latter copies
    (accumulates) its gradient into the leaf's ``.grad``. (A view such as ``means2d[0]`` would not do: it is not on
    the path from the parameters to the image, so its ``.grad`` would stay None.)"""
    mirror = means2d[0].detach().clone().requires_grad_(True)

    def _hook(g: Tensor) -> None:
        mirror.grad = g[0].detach().clone() if mirror.grad is None else mirror.grad + g[0].detach()

    means2d.register_hook(_hook)
    return mirror


def rasterize_graphdeco(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                        camera: Camera, background: Tensor | None, sh_degree: int | None):
    """Render with graphdeco's ``diff_gaussian_rasterization`` (see the module docstring for the conventions)."""
    from gt_core.render.torch_rasterizer import project_gaussians

    _require_cuda(means, "diff-gaussian-rasterization")
    dgr = _import("diff_gaussian_rasterization", "diff-gaussian-rasterization")
    dev = means.device
    f32 = dict(device=dev, dtype=torch.float32)
    W, H = camera.width, camera.height
    wvt, full = graphdeco_matrices(camera)
    campos = camera.campos.detach().to(**f32)
    fields = dgr.GaussianRasterizationSettings._fields

    def settings(sh_deg: int) -> object:
        kw = dict(image_height=H, image_width=W, tanfovx=camera.tanfovx, tanfovy=camera.tanfovy,
                  bg=torch.zeros(3, **f32), scale_modifier=1.0, viewmatrix=wvt.to(**f32),
                  projmatrix=full.to(**f32), sh_degree=sh_deg, campos=campos, prefiltered=False, debug=False)
        if "antialiasing" in fields:
            kw["antialiasing"] = False
        return dgr.GaussianRasterizationSettings(**{k: v for k, v in kw.items() if k in fields})

    # screen-space positions in pixels (ours) and view depths, for means2d and the alpha/depth pass
    proj = project_gaussians(means, quats, scales, camera.viewmat.to(device=dev, dtype=means.dtype), camera.fx,
                             camera.fy, camera.cx, camera.cy, W, H)
    means2d = proj.means2d.detach().clone().requires_grad_(means.requires_grad)
    ndc_scale = torch.tensor([2.0 / W, 2.0 / H], **f32)

    def screenspace() -> Tensor:  # value 0 (graphdeco ignores it); its gradient is ∂L/∂ndc
        d = (means2d.to(torch.float32) - means2d.detach().to(torch.float32)) * ndc_scale
        return torch.cat([d, torch.zeros(d.shape[0], 1, **f32)], dim=1)

    q = torch.nn.functional.normalize(quats.to(torch.float32), dim=-1)
    common = dict(opacities=opacities.to(torch.float32)[:, None], scales=scales.to(torch.float32), rotations=q)
    m3 = means.to(torch.float32)
    if sh_degree is None:
        out = dgr.GaussianRasterizer(settings(0))(m3, screenspace(), colors_precomp=colors.to(torch.float32),
                                                   **common)
    else:
        out = dgr.GaussianRasterizer(settings(sh_degree))(m3, screenspace(), shs=colors.to(torch.float32), **common)
    color, radii = out[0], out[1]
    aux = torch.stack([torch.ones_like(proj.depths), proj.depths, torch.zeros_like(proj.depths)], 1)
    out2 = dgr.GaussianRasterizer(settings(0))(m3, screenspace(), colors_precomp=aux.to(torch.float32), **common)
    alpha, depth = out2[0][0:1], out2[0][1:2]
    color = _composite_background(color, alpha, background)
    dt = means.dtype
    return RasterOutput(color=color.to(dt), alpha=alpha.to(dt), depth=depth.to(dt), radii=radii.to(torch.int32),
                        means2d=means2d)
