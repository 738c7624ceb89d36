"""Dense, obviously-correct reference of the Gaussian rasterizer, for tests and the benchmark.

Every Gaussian is evaluated at every pixel ([N, H, W] tensors — fine for tiny images only) and composited with a
loop-free formulation; autograd provides the gradients. It implements the same semantics as
``gt_core.render.torch_rasterizer`` (graphdeco's rasterizer) but is written independently from the formulas:

1. camera space ``p = R·mean + t``; culled when ``p.z <= 0.2``;
2. ``Σ3 = R_q diag(s²) R_qᵀ`` with ``R_q = (w² - |v|²) I + 2 v vᵀ + 2 w [v]×`` (q normalised);
3. ``Σ2 = J R Σ3 Rᵀ Jᵀ + 0.3 I`` with the Jacobian at ``p.x/p.z``, ``p.y/p.z`` clamped to
   ``[-cx/fx - 0.3·tanfovx, (W-cx)/fx + 0.3·tanfovx]`` (same for y); conic = ``inv(Σ2)``; culled if ``det <= 0``;
4. ``radius = ceil(3·sqrt(mid + sqrt(max(0.1, mid² - det))))``; the Gaussian may touch pixel ``(i, j)`` only if the
   16×16 tile of that pixel lies in graphdeco's ``getRect`` rectangle of ``(u - 0.5, v - 0.5)`` and ``radius``
   (an empty rectangle culls the Gaussian);
5. at pixel centre ``(i + 0.5, j + 0.5)``: ``d = (u, v) - centre``, ``power = -½ dᵀ Σ2⁻¹ d``,
   ``α = min(0.99, o·exp(power))``, zero if ``α < 1/255`` or ``power > 0`` or not allowed by step 4;
6. Gaussians sorted by ``p.z`` (stable); ``T_i = Π_{j<i}(1 - α_j)``; a Gaussian is composited only while
   ``T_i·(1 - α_i) >= 1e-4`` holds for it and every Gaussian before it; ``color = Σ c w + T_final·bg``,
   ``w = α T``, ``alpha = 1 - T_final``, ``depth = Σ z w``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from gt_core.render.sh import eval_sh


def _quat_rotation(q: Tensor) -> Tensor:
    """[N, 4] wxyz -> [N, 3, 3] via R = (w² - |v|²) I + 2 v vᵀ + 2 w [v]×."""
    q = q / torch.linalg.norm(q, dim=-1, keepdim=True)
    w, v = q[:, 0], q[:, 1:]
    eye = torch.eye(3, dtype=q.dtype, device=q.device).expand(q.shape[0], 3, 3)
    zero = torch.zeros_like(w)
    cross = torch.stack([
        torch.stack([zero, -v[:, 2], v[:, 1]], -1),
        torch.stack([v[:, 2], zero, -v[:, 0]], -1),
        torch.stack([-v[:, 1], v[:, 0], zero], -1)], -2)
    return ((w * w - (v * v).sum(-1))[:, None, None] * eye + 2 * v[:, :, None] * v[:, None, :]
            + 2 * w[:, None, None] * cross)


def render_dense(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor, viewmat: Tensor,
                 fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                 background: Tensor | None = None, sh_degree: int | None = None) -> dict[str, Tensor]:
    """Dense render. ``colors`` [N, 3] RGB or [N, K, 3] SH (then ``sh_degree``); ``background`` [3] / [3, H, W].

    Returns dict(color [3, H, W], alpha [1, H, W], depth [1, H, W], radii [N] int32, means2d [N, 2] (grad retained)).
    """
    dt, dev = means.dtype, means.device
    n = means.shape[0]
    Rw, tw = viewmat[:3, :3].to(dt), viewmat[:3, 3].to(dt)
    pc = torch.einsum("ij,nj->ni", Rw, means) + tw  # [N, 3]
    z = pc[:, 2]
    front = z > 0.2
    zz = torch.where(front, z, torch.ones_like(z))

    means2d = torch.stack([fx * pc[:, 0] / zz + cx, fy * pc[:, 1] / zz + cy], -1)
    if means2d.requires_grad:
        means2d.retain_grad()
    u, v = means2d.unbind(-1)  # everything screen-space goes through means2d, so its .grad is ∂L/∂means2d

    # covariance
    Rq = _quat_rotation(quats)
    cov3 = Rq @ torch.diag_embed(scales * scales) @ Rq.transpose(1, 2)
    limx = (cx / fx + 0.3 * width / (2 * fx), (width - cx) / fx + 0.3 * width / (2 * fx))
    limy = (cy / fy + 0.3 * height / (2 * fy), (height - cy) / fy + 0.3 * height / (2 * fy))
    xz = torch.clamp(pc[:, 0] / zz, -limx[0], limx[1])
    yz = torch.clamp(pc[:, 1] / zz, -limy[0], limy[1])
    J = torch.zeros(n, 2, 3, dtype=dt, device=dev)
    J[:, 0, 0] = fx / zz
    J[:, 0, 2] = -fx * xz / zz
    J[:, 1, 1] = fy / zz
    J[:, 1, 2] = -fy * yz / zz
    JW = J @ Rw
    cov2 = JW @ cov3 @ JW.transpose(1, 2) + 0.3 * torch.eye(2, dtype=dt, device=dev)
    det = torch.linalg.det(cov2)
    ok = front & (det > 0)
    cov2_safe = torch.where(ok[:, None, None], cov2, torch.eye(2, dtype=dt, device=dev).expand(n, 2, 2))
    conic = torch.linalg.inv(cov2_safe)  # [N, 2, 2]

    # radius and graphdeco's tile rectangle
    with torch.no_grad():
        a, b, c = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]
        d2 = a * c - b * b
        mid = 0.5 * (a + c)
        radius = torch.ceil(3 * torch.sqrt(mid + torch.sqrt(torch.clamp(mid * mid - d2, min=0.1))))
        gx, gy = math.ceil(width / 16), math.ceil(height / 16)

        def tile_range(p: Tensor, g: int) -> tuple[Tensor, Tensor]:
            p = p.double() - 0.5  # graphdeco pixel coordinates
            lo = torch.clamp(torch.floor(torch.clamp((p - radius.double()) / 16, -1, g + 1)), 0, g)
            hi = torch.clamp(torch.floor(torch.clamp((p + radius.double() + 15) / 16, -1, g + 1)), 0, g)
            return lo, hi

        tx0, tx1 = tile_range(u.detach(), gx)
        ty0, ty1 = tile_range(v.detach(), gy)
        ok = ok & (tx1 > tx0) & (ty1 > ty0)
        radii = torch.where(ok, radius, torch.zeros_like(radius)).int()
        tile_x = (torch.arange(width, device=dev) // 16).double()  # [W]
        tile_y = (torch.arange(height, device=dev) // 16).double()  # [H]
        allowed = ((tile_x[None, None, :] >= tx0[:, None, None]) & (tile_x[None, None, :] < tx1[:, None, None])
                   & (tile_y[None, :, None] >= ty0[:, None, None]) & (tile_y[None, :, None] < ty1[:, None, None])
                   & ok[:, None, None])  # [N, H, W]

    # every Gaussian at every pixel
    px = torch.arange(width, dtype=dt, device=dev) + 0.5
    py = torch.arange(height, dtype=dt, device=dev) + 0.5
    dx = u[:, None, None] - px[None, None, :]  # [N, 1, W]
    dy = v[:, None, None] - py[None, :, None]  # [N, H, 1]
    power = -0.5 * (conic[:, 0, 0, None, None] * dx * dx + conic[:, 1, 1, None, None] * dy * dy) \
        - conic[:, 0, 1, None, None] * dx * dy  # [N, H, W]
    alpha = torch.clamp(opacities[:, None, None] * torch.exp(power), max=0.99)
    use = allowed & (alpha >= 1 / 255) & (power <= 0)
    alpha = torch.where(use, alpha, torch.zeros_like(alpha))

    if sh_degree is not None:
        campos = -Rw.T @ tw
        dirs = means - campos
        dirs = dirs / torch.linalg.norm(dirs, dim=-1, keepdim=True)
        rgb = torch.clamp(eval_sh(sh_degree, colors, dirs) + 0.5, min=0.0)
    else:
        rgb = colors

    # front-to-back compositing (stable depth sort)
    order = torch.sort(z.detach(), stable=True).indices
    a_s = alpha[order]  # [N, H, W]
    T_incl = torch.cumprod(1 - a_s, 0)
    T_excl = torch.cat([torch.ones_like(T_incl[:1]), T_incl[:-1]], 0)
    alive = torch.cummin((T_incl >= 1e-4).to(torch.uint8), 0).values.bool()
    w = a_s * T_excl * alive
    T_final = torch.prod(1 - a_s * alive, 0)  # [H, W]
    if background is None:
        background = torch.zeros(3, dtype=dt, device=dev)
    bg = background[:, None, None].expand(3, height, width) if background.ndim == 1 else background
    color = torch.einsum("nhw,nc->chw", w, rgb[order]) + T_final[None] * bg
    depth = torch.einsum("nhw,n->hw", w, z[order])[None]
    return dict(color=color, alpha=(1 - T_final)[None], depth=depth, radii=radii, means2d=means2d)


def render_dense_camera(means, quats, scales, opacities, colors, camera, background=None, sh_degree=None):
    """:func:`render_dense` with a ``gt_core.render.cameras.Camera``."""
    return render_dense(means, quats, scales, opacities, colors, camera.viewmat, camera.fx, camera.fy, camera.cx,
                        camera.cy, camera.width, camera.height, background, sh_degree)
