"""Pure-PyTorch differentiable 3D Gaussian rasterizer ("torch" backend; CPU and CUDA).

Semantics are those of graphdeco's reference CUDA rasterizer (``diff-gaussian-rasterization``, forward.cu):

* **Projection (EWA).** ``t = viewmat·mean``; culled when ``t.z <= 0.2``. ``Σ3 = R S Sᵀ Rᵀ`` from the normalised
  quaternion (wxyz) and the activated scales. ``Σ2 = J W Σ3 Wᵀ Jᵀ`` with the perspective Jacobian evaluated at the
  mean after clamping ``t.x/t.z`` (and ``t.y/t.z``) to the frustum widened by 30 % (``1.3·tan(fov/2)`` for a centred
  camera; gsplat's form ``[-cx/fx, (W-cx)/fx] ± 0.3·tan(fov/2)`` for an off-centre one). ``+0.3 px²`` is added to the
  diagonal (low-pass); ``det(Σ2) <= 0`` culls. The conic is ``Σ2⁻¹ = (a, b, c)`` (xx, xy, yy).
* **Radius and tiles.** ``radius = ceil(3·sqrt(λmax))`` with ``λmax = mid + sqrt(max(0.1, mid² - det))``. The
  Gaussian is binned into the 16×16 tiles of graphdeco's ``getRect`` (computed in graphdeco's pixel coordinates,
  i.e. ours minus 0.5): tiles ``[floor((p - r)/16), floor((p + r + 15)/16))`` clamped to the grid; an empty rectangle
  culls the Gaussian (``radii = 0``). Only pixels of those tiles ever see the Gaussian.
* **Compositing**, per pixel, front to back in view-z order: ``power = -½(a dx² + c dy²) - b dx dy`` with
  ``d = mean2d - pixel centre``; skipped if ``power > 0``; ``α = min(0.99, o·exp(power))``; skipped (no contribution,
  no gradient) if ``α < 1/255``; the pixel stops at the first Gaussian whose ``T·(1-α)`` would fall below ``1e-4``
  (that Gaussian is *not* composited, nor anything behind it). ``color = Σ cᵢαᵢTᵢ + T_final·background``,
  ``alpha = 1 - T_final``, ``depth = Σ zᵢαᵢTᵢ`` (unnormalised, as the GaussianTalker fork).

Pixel convention: pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)`` and a camera point lands at
``u = fx·x/z + cx`` (gsplat/OpenCV). graphdeco's screen coordinates are ours minus 0.5 (it samples at integer
centres), so both place a Gaussian at exactly the same pixels.

Implementation (memory stays bounded; no dense N×H×W tensor):

1. :func:`project_gaussians` — projection, conics, radii, tile rectangles (autograd through torch ops, O(N)).
2. Binning (no grad). Each Gaussian's candidate pixels are the pixels of its graphdeco tile rectangle that also lie in
   its *support box* — the bounding box of the ellipse where ``o·exp(power) >= 1/255``
   (``|dx| <= sqrt(2·ln(255·o)·Σ2_xx)``, ``|dy| <= sqrt(2·ln(255·o)·Σ2_yy)``, plus a safety margin). Outside it α
   is below 1/255 and the pixel is skipped anyway, so pruning changes nothing but the work. The candidate rectangle is
   cut into ``B×B`` pixel blocks (``B = 4`` by default, larger when the intersection list would get too long) and
   the (Gaussian, block) intersections are sorted once by a combined ``block·N + depth rank`` key.
3. :class:`_Composite` (a ``torch.autograd.Function`` whose forward and backward are plain torch ops, so it runs
   wherever torch does). The sorted intersection list is processed in chunks of at most ``chunk_entries``
   (pixel, Gaussian) entries, laid out ``[B², rows]`` (chunks are cut at block boundaries where possible): α for every
   entry; log-transmittance by a segmented inclusive scan of ``log(1-α)`` (one flat float64 cumsum minus the sum
   before each block's run); the early-stop rule as a mask (``log T_incl >= log 1e-4``, a prefix of each run); run
   sums (CSR matmuls) into per-pixel buffers. Transmittance and a "stopped" flag are carried per pixel from chunk to
   chunk, so a block's list may span chunks. Backward walks the chunks back to front like graphdeco's ``renderCUDA``
   backward: the per-pixel suffix sum of ``(gC·c + gD·z)·w`` (started at ``T_final·(gC·bg - gA)``) gives ``∂L/∂α``
   of every entry; per-entry gradients are reduced to per-Gaussian ones with small matmuls (the ``dx``, ``dy``
   moments of ``∂L/∂power`` over a block are a [6, B²] × [B², rows] product). When the render has at most
   ``CACHE_ENTRIES`` entries the forward keeps α, T and G of every entry for the backward; above that the backward
   recomputes them chunk by chunk and rebuilds T from ``T_final`` (division-free: in log space), so peak memory is
   O(N + #intersections + H·W + chunk_entries) either way.

The clamp ``α = min(0.99, ·)`` is differentiated exactly (zero gradient where it clamps); graphdeco's CUDA backward
passes the gradient through the clamp instead — the only place where gradients differ by design.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

NEAR_PLANE = 0.2  # view-space z at or below which a Gaussian is culled (graphdeco's in_frustum)
LOWPASS_PX2 = 0.3  # added to the 2D covariance diagonal (pixels²)
TILE = 16  # graphdeco's BLOCK_X = BLOCK_Y
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
LOG_T_MIN = math.log(T_MIN)
FRUSTUM_SLACK = 0.3  # the Jacobian is evaluated at t.x/t.z clamped to the frustum widened by 0.3·tan(fov/2)

DEFAULT_BLOCK = 4  # pixel block side used for the intersection list
DEFAULT_CHUNK_ENTRIES = 1 << 17  # (pixel, Gaussian) entries evaluated per chunk: bounds peak memory
MAX_INTERSECTIONS = 1 << 23  # past this many (Gaussian, block) intersections, use bigger blocks
CACHE_ENTRIES = 1 << 23  # forward keeps per-entry α, T, G for backward up to this many entries (~100 MB in float32)


# --------------------------------------------------------------------------------------------------- projection
def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] quaternions (w, x, y, z), not necessarily normalised -> [N, 3, 3] rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


@dataclass
class Projected:
    """Per-Gaussian screen-space quantities for one camera (all [N, ...], culled ones have ``radii == 0``)."""

    means2d: Tensor  # [N, 2] pixels (u, v); differentiable
    conics: Tensor  # [N, 3] (a, b, c) of Σ2⁻¹ = [[a, b], [b, c]]; differentiable
    cov2d: Tensor  # [N, 3] (xx, xy, yy) of Σ2 including the +0.3 low-pass; differentiable
    depths: Tensor  # [N] view-space z; differentiable
    radii: Tensor  # [N] int32 3σ radius in pixels, 0 = culled
    tile_rect: Tensor  # [N, 4] int64 tile rectangle (tx0, tx1, ty0, ty1), exclusive ends; all 0 when culled


def project_gaussians(means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, fx: float, fy: float,
                      cx: float, cy: float, width: int, height: int) -> Projected:
    """EWA-project 3D Gaussians to screen-space conics (graphdeco semantics, see module docstring).

    Args:
        means: [N, 3] world positions; quats: [N, 4] wxyz; scales: [N, 3] positive; viewmat: [4, 4] world->camera
        (OpenCV axes); intrinsics in pixels; image ``width × height``.
    """
    n = means.shape[0]
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    p = means @ R.T + t  # [N, 3] camera space
    x, y, z = p.unbind(-1)
    valid = z > NEAR_PLANE
    zs = torch.where(valid, z, torch.ones_like(z))  # keeps culled entries finite (their gradients are 0)

    # Jacobian at the clamped position (graphdeco computeCov2D / gsplat persp_proj)
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + FRUSTUM_SLACK * tan_fovx, cx / fx + FRUSTUM_SLACK * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + FRUSTUM_SLACK * tan_fovy, cy / fy + FRUSTUM_SLACK * tan_fovy
    tx = zs * torch.clamp(x / zs, -lim_x_neg, lim_x_pos)
    ty = zs * torch.clamp(y / zs, -lim_y_neg, lim_y_pos)
    zero = torch.zeros_like(zs)
    J = torch.stack([fx / zs, zero, -fx * tx / (zs * zs),
                     zero, fy / zs, -fy * ty / (zs * zs)], dim=-1).reshape(n, 2, 3)

    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3] = R·S, so Σ3 = M Mᵀ
    TM = (J @ R) @ M  # [N, 2, 3]
    cov = TM @ TM.transpose(1, 2)  # [N, 2, 2]
    a = cov[:, 0, 0] + LOWPASS_PX2
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + LOWPASS_PX2
    det = a * c - b * b
    valid = valid & (det > 0)
    det_s = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], dim=-1)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))
        radius = torch.ceil(3.0 * torch.sqrt(lam))
        radius = torch.where(valid, radius, torch.zeros_like(radius))
        grid = ((width + TILE - 1) // TILE, (height + TILE - 1) // TILE)
        rect = []
        for k, g in enumerate(grid):  # graphdeco getRect, in graphdeco pixel coordinates (ours - 0.5)
            pg = means2d[:, k].detach().to(torch.float64) - 0.5
            r = radius.to(torch.float64)
            lo = torch.floor(((pg - r) / TILE).clamp(-1.0, g + 1.0)).clamp(0, g)
            hi = torch.floor(((pg + r + TILE - 1) / TILE).clamp(-1.0, g + 1.0)).clamp(0, g)
            rect += [lo.long(), hi.long()]
        tile_rect = torch.stack(rect, dim=-1)  # [N, 4]
        valid = valid & (tile_rect[:, 1] > tile_rect[:, 0]) & (tile_rect[:, 3] > tile_rect[:, 2])
        tile_rect = torch.where(valid[:, None], tile_rect, torch.zeros_like(tile_rect))
        radii = torch.where(valid, radius, torch.zeros_like(radius)).to(torch.int32)
    cov2d = torch.stack([a, b, c], dim=-1)
    return Projected(means2d=means2d, conics=conics, cov2d=cov2d, depths=z, radii=radii, tile_rect=tile_rect)


# ------------------------------------------------------------------------------------------------------ binning
@dataclass
class RasterPlan:
    """The no-grad binning of one render: (Gaussian, block) intersections sorted by (block, depth), their runs
    (a run = the consecutive intersections of one block) and the chunks the compositor processes them in."""

    width: int
    height: int
    block: int  # B: pixel block side
    nbx: int  # blocks per row
    nby: int  # blocks per column
    isect_gid: Tensor  # [M] int64 Gaussian of each intersection, sorted by (block, depth)
    isect_blk: Tensor  # [M] int64 block id (by·nbx + bx)
    rect: Tensor  # [N, 4] int64 candidate pixel rectangle (x0, x1, y0, y1), exclusive ends; empty = culled
    run_first: Tensor  # [n_runs] first row of each run
    run_end: Tensor  # [n_runs] exclusive end row of each run
    row_run: Tensor  # [M] run of each row
    chunks: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row lo, row hi, run lo, run hi)

    @property
    def n_intersections(self) -> int:
        return int(self.isect_gid.shape[0])

    @property
    def max_chunk_entries(self) -> int:
        """Largest number of (pixel, Gaussian) entries evaluated at once (the dominant intermediate size)."""
        return max((c[1] - c[0] for c in self.chunks), default=0) * self.block * self.block


def _support_rect(proj: Projected, opacities: Tensor, width: int, height: int) -> Tensor:
    """[N, 4] int64 pixel rectangle (x0, x1, y0, y1) = graphdeco tile rectangle ∩ α>=1/255 support box ∩ image."""
    with torch.no_grad():
        m = proj.means2d.detach().to(torch.float64)
        cov = proj.cov2d.detach().to(torch.float64)
        o = opacities.detach().to(torch.float64)
        tau = torch.log(torch.clamp_min(255.0 * o, 1e-30))  # α >= 1/255  <=>  ½ dᵀΣ⁻¹d <= tau
        has = (tau > 0) & (proj.radii > 0)
        tau = torch.clamp_min(tau, 0.0)
        out = []
        for k, (var, size) in enumerate(((cov[:, 0], width), (cov[:, 2], height))):
            ext = torch.sqrt(2.0 * tau * torch.clamp_min(var, 0.0)) * (1 + 1e-6) + 1e-6
            # pixel i is inside iff |i + 0.5 - m| <= ext
            lo = torch.ceil((m[:, k] - 0.5 - ext).clamp(-1.0, size + 1.0))
            hi = torch.floor((m[:, k] - 0.5 + ext).clamp(-2.0, size + 1.0)) + 1
            t_lo = proj.tile_rect[:, 2 * k] * TILE
            t_hi = torch.clamp_max(proj.tile_rect[:, 2 * k + 1] * TILE, size)
            out += [torch.maximum(lo.long(), t_lo), torch.minimum(hi.long(), t_hi)]
        rect = torch.stack(out, dim=-1)
        nonempty = has & (rect[:, 1] > rect[:, 0]) & (rect[:, 3] > rect[:, 2])
        return torch.where(nonempty[:, None], rect, torch.zeros_like(rect))


def plan_raster(proj: Projected, opacities: Tensor, width: int, height: int, block: int | None = None,
                chunk_entries: int = DEFAULT_CHUNK_ENTRIES) -> RasterPlan:
    """Bin projected Gaussians into ``block × block`` pixel blocks, sorted by (block, view depth); cut into chunks."""
    device = proj.means2d.device
    with torch.no_grad():
        rect = _support_rect(proj, opacities, width, height)
        live = (rect[:, 1] > rect[:, 0]).nonzero().squeeze(1)  # [G]
        # front-to-back order of the live Gaussians (stable, so ties keep index order)
        order = live[torch.sort(proj.depths.detach()[live], stable=True).indices]
        r = rect[order]
        blocks = (block,) if block is not None else (DEFAULT_BLOCK, 8, 16, 32)
        for blk in blocks:
            bx0, by0 = r[:, 0] // blk, r[:, 2] // blk
            nbx_g = (r[:, 1] + blk - 1) // blk - bx0
            nby_g = (r[:, 3] + blk - 1) // blk - by0
            cnt = nbx_g * nby_g
            total = int(cnt.sum())
            if total <= MAX_INTERSECTIONS or blk == blocks[-1]:
                break
        nbx, nby = (width + blk - 1) // blk, (height + blk - 1) // blk
        g = order.shape[0]
        rank_of_row = torch.repeat_interleave(torch.arange(g, device=device), cnt, output_size=total)
        local = torch.arange(total, device=device) - (torch.cumsum(cnt, 0) - cnt)[rank_of_row]
        w_row = nbx_g[rank_of_row]
        qy = torch.div(local, w_row, rounding_mode="floor")
        bx = bx0[rank_of_row] + (local - qy * w_row)
        by = by0[rank_of_row] + qy
        key = (by * nbx + bx) * max(g, 1) + rank_of_row
        key = torch.sort(key).values
        isect_blk = torch.div(key, max(g, 1), rounding_mode="floor")
        isect_gid = order[key - isect_blk * max(g, 1)]
        # runs, and chunks of <= `rows` rows cut at run starts where possible (a longer run is split)
        is_start = torch.ones(total, dtype=torch.bool, device=device)
        is_start[1:] = isect_blk[1:] != isect_blk[:-1]
        run_first = is_start.nonzero().squeeze(1)
        run_end = torch.cat([run_first[1:], torch.tensor([total], device=device)])
        row_run = torch.cumsum(is_start, 0) - 1
        rows = max(1, chunk_entries // (blk * blk))
        chunks = []
        if total > 0:
            targets = torch.arange(rows, max(total, rows), rows, device=device)
            cuts = run_first[torch.searchsorted(run_first, targets, right=True) - 1]
            bounds = torch.unique(torch.cat([torch.tensor([0, total], device=device), cuts])).tolist()
            fine = []
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                fine += [(c, min(c + rows, hi)) for c in range(lo, hi, rows)]
            los = torch.tensor([lo for lo, _ in fine], device=device)
            his = torch.tensor([hi for _, hi in fine], device=device)
            k0s, k1s = row_run[los].tolist(), (row_run[his - 1] + 1).tolist()
            chunks = [(lo, hi, k0, k1) for (lo, hi), k0, k1 in zip(fine, k0s, k1s)]
    return RasterPlan(width=width, height=height, block=blk, nbx=nbx, nby=nby, isect_gid=isect_gid,
                      isect_blk=isect_blk, rect=rect, run_first=run_first, run_end=run_end, row_run=row_run,
                      chunks=chunks)


# -------------------------------------------------------------------------------------------------- compositing
def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A sparse CSR matrix (used for segment sums: ``csr @ dense``). Indices are built valid by construction."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


class _Rows:
    """Per-intersection ("row") quantities of one render, computed once per forward (O(M·B) memory).

    ``rowp`` [6, M]: (u, v, a, b, c, o) — the mean relative to the first pixel centre of the row's block, the conic
    and the opacity. ``qx``/``qy`` [B, M]: ``-½·a·dx²`` / ``-½·c·dy²`` for the block's pixel columns/rows (``-inf``
    outside the Gaussian's candidate rectangle), ``bdx`` [B, M] = ``-b·dx``, ``dy`` [B, M]; so that
    ``power[oy, ox] = qy[oy] + qx[ox] + bdx[ox]·dy[oy]``. ``feats`` [4, M]: colour and depth of the row's Gaussian.
    """

    def __init__(self, plan: RasterPlan, params: Tensor, feats: Tensor):
        B = plan.block
        dt, dev = params.dtype, params.device
        gid, blk = plan.isect_gid, plan.isect_blk
        p = params.index_select(0, gid).T  # [6, M]: u, v, a, b, c, o
        bx = (blk % plan.nbx) * B
        by = torch.div(blk, plan.nbx, rounding_mode="floor") * B
        self.rowp = torch.cat([p[:2] - (torch.stack([bx, by], 0).to(dt) + 0.5), p[2:]], 0)  # [6, M]
        u, v, a, b, c, _ = self.rowp.unbind(0)
        rect = plan.rect.index_select(0, gid).T  # [4, M]
        off = torch.arange(B, device=dev)[:, None]  # [B, 1]
        insx = (off >= (rect[0] - bx)[None]) & (off < (rect[1] - bx)[None])  # [B(ox), M]
        insy = (off >= (rect[2] - by)[None]) & (off < (rect[3] - by)[None])  # [B(oy), M]
        dx = u[None] - off.to(dt)  # [B(ox), M]
        self.dy = v[None] - off.to(dt)  # [B(oy), M]
        self.qx = torch.where(insx, (-0.5 * a)[None] * dx * dx, -math.inf)
        self.qy = torch.where(insy, (-0.5 * c)[None] * self.dy * self.dy, -math.inf)
        self.bdx = (-b)[None] * dx
        self.feats = feats.index_select(0, gid).T.contiguous()  # [4, M]


class _Runs:
    """One chunk: rows ``[lo, hi)`` of the intersection list and its runs; entries are laid out [P, R].

    Entry ``(p, r)`` is pixel ``p = oy·B + ox`` of row ``r``'s block. A block appears in at most one run per chunk.
    """

    def __init__(self, plan: RasterPlan, chunk: tuple[int, int, int, int], dtype: torch.dtype):
        lo, hi, k0, k1 = chunk
        dev = plan.isect_blk.device
        R = hi - lo
        self.lo, self.hi, self.R, self.P = lo, hi, R, plan.block ** 2
        self.gid = plan.isect_gid[lo:hi]  # [R]
        self.blk = plan.isect_blk[lo:hi]  # [R]
        self.first = plan.run_first[k0:k1].clamp_min(lo) - lo  # [n_runs] local first row of each run
        self.end = plan.run_end[k0:k1].clamp_max(hi) - lo  # [n_runs] local exclusive end
        self.run_id = plan.row_run[lo:hi] - k0  # [R]
        self.run_blk = self.blk[self.first]  # [n_runs]
        self._rid = self.run_id[None].expand(self.P, R)
        self.n_runs = k1 - k0
        self._crow = torch.cat([self.first, torch.tensor([R], device=dev)])
        self._col = torch.arange(R, device=dev)
        self.ind = _csr(self._crow, self._col, torch.ones(R, dtype=dtype, device=dev),
                        (self.n_runs, R))  # [n_runs, R] run-indicator matrix

    def expand(self, x: Tensor) -> Tensor:
        """[P, n_runs] per-run values -> [P, R] per entry."""
        return torch.gather(x, 1, self._rid)

    def scan(self, v: Tensor, offset: Tensor | None = None) -> Tensor:
        """float64 inclusive prefix sums of ``v`` [P, R] along each run's rows (per pixel), plus ``offset``
        [P, n_runs] (the value carried into the run). One flat float64 cumsum over all pixels and runs, minus the
        sum accumulated before each run."""
        cs = torch.cumsum(v.reshape(-1), 0, dtype=torch.float64).reshape(self.P, self.R)
        base = cs.index_select(1, self.first) - v.index_select(1, self.first).to(torch.float64)  # [P, n_runs]
        if offset is not None:
            base = base - offset
        return cs - self.expand(base)

    def sums(self, v: Tensor) -> Tensor:
        """[M, n_runs] sums of ``v`` [M, R] over each run's rows (in ``v``'s dtype: runs are short)."""
        return (self.ind @ v.T).T

    def weighted_sums(self, weights: Tensor, v: Tensor) -> Tensor:
        """[K, P, n_runs] ``Σ_{r in run} weights[k, r]·v[:, r]`` for weights [K, R], v [P, R] (one CSR matmul)."""
        K = weights.shape[0]
        crow = torch.cat([self._crow[:-1] + k * self.R for k in range(K)] + [self._crow[-1:] + (K - 1) * self.R])
        S = _csr(crow, self._col.repeat(K), weights.reshape(-1).to(v.dtype), (K * self.n_runs, self.R))
        return (S @ v.T).reshape(K, self.n_runs, self.P).transpose(1, 2)

    def block_dot(self, g_rows: Tensor, f: Tensor, nblk: int) -> Tensor:
        """[P, R]: ``Σ_k g[k, p, blk_r]·f[k, r]`` for per-pixel vectors ``g_rows`` [K·nblk, P] (row ``k·nblk + b``)
        and per-row ``f`` [K, R] — a CSR [R, K·nblk] (K nonzeros per row) times dense product, no [K, P, R] gather."""
        K = f.shape[0]
        cols = (torch.arange(K, device=f.device)[None] * nblk + self.blk[:, None]).reshape(-1)
        crow = torch.arange(0, K * self.R + 1, K, device=f.device)
        F = _csr(crow, cols, f.T.reshape(-1), (self.R, K * nblk))
        return (F @ g_rows).T.contiguous()

    def block_contract(self, g_rows: Tensor, w: Tensor, nblk: int) -> Tensor:
        """[K, R]: ``Σ_p g[k, p, blk_r]·w[p, r]`` — ``g_rows @ w`` sampled only where row ``k·nblk + b`` meets the
        columns of block b's run (sampled dense-dense matmul), no [K, P, R] gather."""
        K = g_rows.shape[0] // nblk
        counts = torch.zeros(K, nblk, dtype=torch.int64, device=w.device)
        counts[:, self.run_blk] = (self.end - self.first)[None]
        crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts.reshape(-1), 0)])
        pattern = _csr(crow, self._col.repeat(K), torch.zeros(K * self.R, dtype=w.dtype, device=w.device),
                       (K * nblk, self.R))
        return torch.sparse.sampled_addmm(pattern, g_rows, w, beta=0.0).values().reshape(K, self.R)

    def eval_alpha(self, rows: _Rows) -> tuple[Tensor, Tensor]:
        """α of every entry, graphdeco's rules. Returns ``alpha`` [P, R] (0 where skipped: outside the candidate
        rectangle, power > 0 or α < 1/255) and ``G_u`` [P, R] = exp(power) where α is used and not clamped at
        0.99, else 0 (= ∂α/∂o)."""
        sl = slice(self.lo, self.hi)
        power = torch.addcmul(rows.qy[:, None, sl] + rows.qx[None, :, sl], rows.bdx[None, :, sl],
                              rows.dy[:, None, sl]).reshape(self.P, self.R)  # [B(oy), B(ox), R] -> [P, R]
        # α >= 1/255 needs power >= -ln 255 > -6: clamping far below keeps exp() out of denormals (slow on CPUs)
        G = torch.exp(torch.clamp_min(power, -30.0))
        oG = rows.rowp[5, sl] * G
        used = (oG >= ALPHA_MIN) & (power <= 0)  # α >= 1/255 <=> o·G >= 1/255 (as 0.99 > 1/255)
        alpha = torch.clamp_max(oG, ALPHA_MAX) * used
        G_u = G * (used & (oG <= ALPHA_MAX))
        return alpha, G_u


def _blocks_to_image(buf: Tensor, plan: RasterPlan) -> Tensor:
    """[..., P, nblk] per-pixel block buffer -> [..., H, W]."""
    B = plan.block
    lead = buf.shape[:-2]
    k = len(lead)
    img = buf.reshape(*lead, B, B, plan.nby, plan.nbx).permute(*range(k), k + 2, k, k + 3, k + 1)
    return img.reshape(*lead, plan.nby * B, plan.nbx * B)[..., :plan.height, :plan.width]


def _image_to_blocks(img: Tensor, plan: RasterPlan) -> Tensor:
    """[..., H, W] image -> [..., P, nblk] block layout (zero padded at the right/bottom edges)."""
    B = plan.block
    lead = img.shape[:-2]
    k = len(lead)
    pad = torch.zeros(*lead, plan.nby * B, plan.nbx * B, dtype=img.dtype, device=img.device)
    pad[..., :plan.height, :plan.width] = img
    out = pad.reshape(*lead, plan.nby, B, plan.nbx, B).permute(*range(k), k + 1, k + 3, k, k + 2)
    return out.reshape(*lead, B * B, plan.nby * plan.nbx)


class _Composite(torch.autograd.Function):
    """Front-to-back alpha compositing of binned Gaussians; analytic backward (graphdeco's, chunk-vectorised).

    Per-pixel state lives in block layout ``[P, nblk]`` (pixel in block, block id). When the whole render has at
    most ``CACHE_ENTRIES`` entries, forward keeps each chunk's α / T / G for backward; otherwise backward
    recomputes them chunk by chunk (identical ops, identical decisions) so memory stays O(chunk).
    """

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, depths: Tensor,
                background: Tensor, plan: RasterPlan):
        dt, dev = means2d.dtype, means2d.device
        P, nblk = plan.block ** 2, plan.nbx * plan.nby
        params = torch.cat([means2d, conics, opacities[:, None]], dim=1).detach()  # [N, 6]
        feats = torch.cat([colors, depths[:, None]], dim=1).detach().to(dt)  # [N, 4]
        need_grad = any(ctx.needs_input_grad[:5])
        cache = [] if need_grad and plan.n_intersections * P <= CACHE_ENTRIES else None
        rows = _Rows(plan, params, feats)
        accum = torch.zeros(4, P, nblk, dtype=dt, device=dev)  # Σ w·(r, g, b, z)
        logT = torch.zeros(P, nblk, dtype=torch.float64, device=dev)  # log Π(1 - α) over composited entries
        done = torch.zeros(P, nblk, dtype=torch.bool, device=dev)  # the pixel has stopped (T would drop < 1e-4)
        last_row = torch.full((P, nblk), -1, dtype=torch.int64, device=dev) if need_grad and cache is None else None
        for chunk in plan.chunks:
            runs = _Runs(plan, chunk, dt)
            alpha, G_u = runs.eval_alpha(rows)
            l = torch.log(1.0 - alpha)  # [P, R]
            carry = logT.index_select(1, runs.run_blk)  # [P, n_runs]
            done_r = done.index_select(1, runs.run_blk)
            incl = runs.scan(l, torch.where(done_r, -math.inf, carry)).to(dt)  # log T after each entry; -inf: stopped
            keep = (incl >= LOG_T_MIN).to(dt)  # T·(1-α) >= 1e-4 and not stopped before: a prefix of the run
            Te = torch.exp(incl - l)  # T before each entry
            ak = alpha * keep
            w = ak * Te
            accum.index_add_(2, runs.run_blk, runs.weighted_sums(rows.feats[:, runs.lo:runs.hi], w))
            sums = runs.sums(torch.cat([l * keep, keep], 0))  # [2P, n_runs]
            logT.index_copy_(1, runs.run_blk, carry + sums[:P])
            n_alive = sums[P:]
            done.index_copy_(1, runs.run_blk, done_r | (n_alive < (runs.end - runs.first)[None]))
            if cache is not None:
                cache.append((runs, ak, Te, G_u * keep))
            elif last_row is not None:
                n_alive = n_alive.round().long()
                prev = last_row.index_select(1, runs.run_blk)
                last_row.index_copy_(1, runs.run_blk,
                                     torch.where(n_alive > 0, (runs.lo + runs.first)[None] + n_alive - 1, prev))
        T = torch.exp(logT)  # [P, nblk]
        bg_blocks = _image_to_blocks(background.detach().to(torch.float64), plan)  # [3, P, nblk]
        accum = accum.to(torch.float64)
        color = _blocks_to_image(accum[:3] + T * bg_blocks, plan).to(dt)
        alpha_img = _blocks_to_image(-torch.expm1(logT), plan)[None].to(dt)
        depth_img = _blocks_to_image(accum[3], plan)[None].to(dt)
        ctx.plan, ctx.cache, ctx.rows = plan, cache, rows
        ctx.save_for_backward(params, feats, logT, bg_blocks, last_row)
        return color, alpha_img, depth_img

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_color: Tensor, g_alpha: Tensor, g_depth: Tensor):
        plan: RasterPlan = ctx.plan
        cache = ctx.cache
        params, feats, logT_final, bg_blocks, last_row = ctx.saved_tensors
        dt, dev = params.dtype, params.device
        n = params.shape[0]
        B = plan.block
        P, nblk = B * B, plan.nbx * plan.nby
        g4 = _image_to_blocks(torch.cat([g_color, g_depth], 0).to(torch.float64), plan)  # [4, P, nblk]
        gA = _image_to_blocks(g_alpha[0].to(torch.float64), plan)  # [P, nblk]
        T_final = torch.exp(logT_final)
        # per-pixel suffix carry: Σ_{behind} (gC·c + gD·z)·w + T_final·(gC·bg - gA)
        suffix = T_final * ((g4[:3] * bg_blocks).sum(0) - gA)  # [P, nblk] float64
        logT_after = logT_final.clone() if cache is None else None
        grads = torch.zeros(n, 10, dtype=torch.float64, device=dev)  # u, v, a, b, c, o, r, g, b, z
        off = torch.arange(B, device=dev, dtype=dt)
        oy, ox = off.repeat_interleave(B), off.repeat(B)  # [P]
        basis = torch.stack([torch.ones_like(ox), ox, oy, ox * ox, ox * oy, oy * oy], dim=0)  # [6, P]
        g4_rows = g4.to(dt).permute(0, 2, 1).reshape(4 * nblk, P).contiguous()  # row k·nblk + b: g of block b
        rows: _Rows = ctx.rows
        chunks = list(enumerate(plan.chunks)) if any(ctx.needs_input_grad[:5]) else []  # else: background only
        for k, chunk in reversed(chunks):
            if cache is not None:
                runs, ak, Te, G_uk = cache[k]
            else:  # recompute: same α decisions; T rebuilt back to front from T_final
                runs = _Runs(plan, chunk, dt)
                alpha, G_u = runs.eval_alpha(rows)
                row_idx = torch.arange(runs.lo, runs.hi, device=dev)[None]
                keep = (row_idx <= last_row.index_select(1, runs.blk)).to(dt)
                ak, G_uk = alpha * keep, G_u * keep
                l = torch.log(1.0 - ak)
                logT_before = logT_after.index_select(1, runs.run_blk) - runs.sums(l)  # T at each run's start
                Te = torch.exp(runs.scan(l, logT_before).to(dt) - l)
                logT_after.index_copy_(1, runs.run_blk, logT_before)
            u, v, a, b, c, o = rows.rowp[:, runs.lo:runs.hi].to(torch.float64).unbind(0)
            w = ak * Te
            f = rows.feats[:, runs.lo:runs.hi]  # [4, R]
            s = runs.block_dot(g4_rows, f, nblk)  # [P, R]  gC·c + gD·z of each entry's pixel and Gaussian
            sw_incl = runs.scan(s * w)  # [P, R] float64
            run_sw = sw_incl.index_select(1, runs.end - 1)  # [P, n_runs] run totals
            behind = runs.expand(suffix.index_select(1, runs.run_blk) + run_sw) - sw_incl
            d_alpha = Te * s - behind.to(dt) / (1.0 - ak)  # dL/dα (only used through G_uk, 0 where unused)
            GdA = G_uk * d_alpha  # dL/do per entry; · o = dL/dpower
            d_o = GdA.sum(0).to(torch.float64)  # [R]
            S = (basis @ GdA).to(torch.float64) * o  # [6, R]: Σ_p dL/dpower·(1, ox, oy, ox², ox·oy, oy²)
            d_feat = runs.block_contract(g4_rows, w, nblk).to(torch.float64)  # [4, R]  Σ_p w·g
            s0, sx, sy, sxx, sxy, syy = S.unbind(0)
            s_dx = u * s0 - sx  # Σ dpow·dx with dx = u - ox
            s_dy = v * s0 - sy
            s_dxdx = u * u * s0 - 2 * u * sx + sxx
            s_dxdy = u * v * s0 - u * sy - v * sx + sxy
            s_dydy = v * v * s0 - 2 * v * sy + syy
            row_grads = torch.cat([torch.stack([
                -(a * s_dx + b * s_dy), -(b * s_dx + c * s_dy), -0.5 * s_dxdx, -s_dxdy, -0.5 * s_dydy, d_o], 0),
                d_feat], 0)  # [10, R]
            grads.index_add_(0, runs.gid, row_grads.T)
            suffix.index_add_(1, runs.run_blk, run_sw)
        g_bg = None
        if ctx.needs_input_grad[5]:
            g_bg = _blocks_to_image(T_final[None] * g4[:3], plan).to(dt)
        grads = grads.to(dt)
        return grads[:, 0:2], grads[:, 2:5], grads[:, 5], grads[:, 6:9], grads[:, 9], g_bg, None


def composite(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, depths: Tensor,
              background: Tensor, plan: RasterPlan) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable compositing of projected Gaussians over ``plan``'s binning.

    Args:
        means2d: [N, 2] pixels; conics: [N, 3]; opacities: [N]; colors: [N, 3]; depths: [N]; background: [3, H, W].
    Returns: color [3, H, W], alpha [1, H, W], depth [1, H, W].
    """
    return _Composite.apply(means2d, conics, opacities, colors, depths, background, plan)
