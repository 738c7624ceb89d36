"""Multi-resolution hash-grid encoder (Instant-NGP style, or the un-hashed ``tiled`` type) in pure torch, and ER-NeRF's
tri-plane variant.

:class:`HashGrid` maps points ``x`` in ``[0, 1]^d`` (d = 2 or 3) to ``L · F`` features: for each of ``L`` levels it
interpolates the features stored at the ``2^d`` grid vertices around ``x`` and concatenates the levels, level 0 first.
All levels live in one table ``[total_rows, F]``; level ``l`` owns rows ``level_offsets[l] : level_offsets[l + 1]``.

Conventions (those of ER-NeRF's ``gridencoder``, ``align_corners=False``; refs into Fictionarry/ER-NeRF @0cf72d8):

- Growth factor ``b = 2 ** (log2(finest / base) / (L - 1))`` (= exp((ln finest − ln base)/(L − 1)); grid.py:96-97).
- Level resolution ``res_l = ceil(base · b^l)`` — ceil, not floor (grid.py:115; the kernel's ``ceil(scale) + 1``,
  gridencoder.cu:125-126, is the same number). Each axis has ``res_l + 1`` vertices, indices ``0 .. res_l``.
- Input mapping: ``pos = x · (base · b^l − 1) + 0.5`` (gridencoder.cu:125, 134); the cell is ``floor(pos)`` and the
  fractional part gives the bilinear / trilinear weights ``Π_d (frac_d or 1 − frac_d)`` (gridencoder.cu:144-166).
  Hence vertex ``v`` sits at ``x = (v − 0.5) / (base · b^l − 1)``; ``x = 0`` lies halfway between vertices 0 and 1.
- Rows per level: ``min(2^log2_hashmap_size, (res_l + 1)^d)`` rounded up to a multiple of 8 (grid.py:116-117), so the
  table has exactly the original's shape (ER-NeRF's default plane: 163 584 rows).
- Dense levels (``(res_l + 1)^d`` fits in the level's rows): row ``Σ_d c_d · (res_l + 1)^d`` — axis 0 varies fastest
  (gridencoder.cu:59-63). Larger levels: the spatial hash ``XOR_d (c_d · π_d mod 2^32)`` with
  ``π = (1, 2654435761, 805459861)``; either index is then taken modulo the level's row count (gridencoder.cu:36-71).
- ``grid_type="tiled"`` (the original's ``gridtype='tiled'``, encoding.py:27-29, used by ER-NeRF's torso): no hash on
  any level. The rows per level are computed exactly as for ``hash`` (grid.py:114-117), and every level uses the
  dense index modulo its rows — so a level that fits equals a dense lookup and a larger one wraps around. The
  kernel's dense loop stops at the first axis whose stride ``(res_l + 1)^axis`` exceeds the level's rows
  (gridencoder.cu:60, ``stride <= hashmap_size``), so such axes add nothing to the index (only possible for
  ``d = 3``; for ``d = 2`` it would need ``res_l + 1`` > rows). The sum wraps at 2^32 as the kernel's uint32 does.
- Corner ``k`` (0 .. 2^d − 1) takes ``c_d + 1`` on axis ``d`` iff bit ``d`` of ``k`` is set (gridencoder.cu:145-157).
- Table initialised ``U(−init_scale, init_scale)`` with ``init_scale = 1e-4`` (grid.py:132-134).

:class:`TriPlaneHash` is ER-NeRF's spatial encoder (nerf_triplane/network.py:125-131, 204-219): three 2D hash grids on
the planes ``xy = (x, y)``, ``yz = (y, z)``, ``xz = (x, z)`` of a point mapped from ``[−bound, bound]^3`` to ``[0, 1]^3``
(grid.py:143), their outputs CONCATENATED in that order (network.py:219): 12 levels × 1 feature, base 64,
finest 512·bound, table 2^14 → 3 × 12 = 36 dims.

Deviations from the original:

- Pure torch gather instead of the CUDA kernel: runs on any device (slower, more memory, [N, L, 2^d] index
  tensors); the gradient w.r.t. the table is the same scatter-add of weights the kernel's backward computes, written
  as a deterministic ``index_add_`` (:class:`InterpolateTable`; the kernel's atomics are not deterministic either).
  2-D grids take a per-corner int32 path (the same rows and weights, 2.3× faster fwd+bwd on the CPU than the
  generic one: 50k points × 12 levels, 295 → 126 ms at 1 thread).
- Inputs outside ``[0, 1]^d`` are clamped onto the boundary; the kernel returns zero features (and zero gradient)
  for them (gridencoder.cu:97-122). ER-NeRF's ray samples lie inside its AABB ⊂ [−bound, bound]^3, so this only
  matters for stray points (e.g. its ±1e-3 jitter regulariser at the box faces).
- Gradients w.r.t. ``x``: autograd gives the piecewise-linear derivative inside the box (zero where clamped), which
  is the kernel's ``dy_dx`` (gridencoder.cu:177-221; computed there only when the input requires grad). It is
  checked against finite differences for the ``tiled`` torso grid, whose deform net learns through it.
- Level scales come from double precision on the host, the original's from float32 ``exp2f``: positions differ by
  ~1e-7 relative. ``ceil`` treats values within 1e-9 of an integer as that integer, so the finest level is exactly
  ``finest_resolution`` whatever the rounding (numpy gives the same 64 … 512 for ER-NeRF's defaults).
- No fp16 path (the original casts the table to half under autocast when F is even); output dtype = table dtype,
  positions are computed in float32 (float64 if ``x`` is float64).
- :class:`TriPlaneHash` optionally takes an explicit (non-cubic) AABB; the original always normalises with the cube.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

HASH_PRIMES: tuple[int, ...] = (1, 2654435761, 805459861)
UINT32_MASK = 0xFFFFFFFF
GRID_TYPES: tuple[str, ...] = ("hash", "tiled")


@dataclass
class HashGridConfig:
    """Hyper-parameters of :class:`HashGrid`; defaults = one plane of ER-NeRF's tri-plane encoder."""

    n_dims: int = 2
    n_levels: int = 12
    features_per_level: int = 1
    log2_hashmap_size: int = 14
    base_resolution: int = 64
    finest_resolution: float = 512.0
    init_scale: float = 1e-4
    grid_type: str = "hash"  # "hash" (spatial hash where a level does not fit) or "tiled" (dense index mod rows)

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"HashGridConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.n_dims not in (2, 3) or not is_int(self.n_dims):
            fail("n_dims", "2 or 3")
        if not is_int(self.n_levels) or self.n_levels < 1:
            fail("n_levels", "an int >= 1")
        if not is_int(self.features_per_level) or self.features_per_level < 1:
            fail("features_per_level", "an int >= 1")
        if not is_int(self.log2_hashmap_size) or not 3 <= self.log2_hashmap_size <= 30:
            fail("log2_hashmap_size", "an int in [3, 30]")
        if not is_int(self.base_resolution) or self.base_resolution < 1:
            fail("base_resolution", "an int >= 1")
        finest = self.finest_resolution
        if not isinstance(finest, (int, float)) or not math.isfinite(finest) or finest < self.base_resolution:
            fail("finest_resolution", f"a finite number >= base_resolution ({self.base_resolution})")
        if self.n_levels == 1 and finest != self.base_resolution:
            fail("finest_resolution", "equal to base_resolution when n_levels == 1")
        if not isinstance(self.init_scale, (int, float)) or not 0 <= self.init_scale < math.inf:
            fail("init_scale", "a finite number >= 0")
        if self.grid_type not in GRID_TYPES:
            fail("grid_type", f"one of {GRID_TYPES}")

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.features_per_level

    @property
    def growth_factor(self) -> float:
        if self.n_levels == 1:
            return 1.0
        return 2.0 ** (math.log2(self.finest_resolution / self.base_resolution) / (self.n_levels - 1))

    def level_scales(self) -> list[float]:
        """``base · b^l`` per level (before the ``ceil`` / ``− 1``)."""
        return [self.base_resolution * self.growth_factor**level for level in range(self.n_levels)]

    def level_resolutions(self) -> list[int]:
        """``res_l = ceil(base · b^l)``: level ``l`` has ``res_l + 1`` vertices per axis."""
        return [math.ceil(s - 1e-9) for s in self.level_scales()]


class InterpolateTable(torch.autograd.Function):
    """``Σ_k table[rows[..., k]] · weights[..., k]`` → ``[N, L, F]`` with a deterministic backward: the table's
    gradient is an ``index_add_`` of the weighted output gradients (autograd's own backward of ``table[rows]``, an
    accumulating ``index_put_``, adds in a thread-dependent order on multi-threaded CPUs, so two identical runs
    differed in the last bits); the weights' gradient (the path to ``x``) is ``Σ_F grad · table[rows]``."""

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        corner_features = table[rows]  # [N, L, 2^d, F]
        ctx.save_for_backward(rows, weights, table)
        return (corner_features * weights[..., None]).sum(dim=2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        rows, weights, table = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contrib = (grad[:, :, None, :] * weights[..., None]).reshape(-1, table.shape[1])  # [N·L·2^d, F]
            grad_table = torch.zeros_like(table).index_add_(0, rows.reshape(-1), contrib)
        if ctx.needs_input_grad[2]:
            grad_weights = (grad[:, :, None, :] * table[rows]).sum(dim=-1)  # [N, L, 2^d]
        return grad_table, None, grad_weights


class HashGrid(nn.Module):
    """``x: [N, d]`` in ``[0, 1]^d`` → ``[N, n_levels · F]`` (see the module docstring for the conventions).

    Parameter ``table``: ``[total_rows, F]``. Buffers (not saved): ``level_offsets [L + 1]``, ``level_rows [L]``,
    ``level_strides [L, d]`` (dense strides ``(res + 1)^axis``), ``level_is_dense [L]`` (the level fits in its rows),
    ``tiled_strides [L, d]`` (the strides the ``tiled`` index uses: 0 for an axis whose stride exceeds the rows).
    """

    def __init__(self, cfg: HashGridConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg = cfg or HashGridConfig()
        d, max_rows = cfg.n_dims, 2**cfg.log2_hashmap_size
        resolutions = cfg.level_resolutions()
        self.position_scales = [s - 1.0 for s in cfg.level_scales()]  # pos = x · scale + 0.5
        rows = [-(-min(max_rows, (res + 1) ** d) // 8) * 8 for res in resolutions]  # multiple of 8
        offsets = [0]
        for n in rows:
            offsets.append(offsets[-1] + n)
        long = dict(dtype=torch.long)
        self.register_buffer("level_offsets", torch.tensor(offsets, **long), persistent=False)
        self.register_buffer("level_rows", torch.tensor(rows, **long), persistent=False)
        strides = [[(res + 1) ** axis for axis in range(d)] for res in resolutions]
        self.register_buffer("level_strides", torch.tensor(strides, **long), persistent=False)
        dense = [(res + 1) ** d <= n for res, n in zip(resolutions, rows)]
        self.register_buffer("level_is_dense", torch.tensor(dense), persistent=False)
        # tiled: an axis whose stride exceeds the level's rows adds nothing (the kernel's loop stops there)
        tiled = [[st if st <= n else 0 for st in level] for level, n in zip(strides, rows)]
        self.register_buffer("tiled_strides", torch.tensor(tiled, **long), persistent=False)  # [L, d]
        corner_bits = [[(k >> axis) & 1 for axis in range(d)] for k in range(2**d)]
        self.register_buffer("corner_bits", torch.tensor(corner_bits, **long), persistent=False)  # [2^d, d]
        self.register_buffer("primes", torch.tensor(HASH_PRIMES[:d], **long), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], cfg.features_per_level))
        with torch.no_grad():
            self.table.uniform_(-cfg.init_scale, cfg.init_scale, generator=generator)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def corner_rows_and_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Table rows ``[N, L, 2^d]`` (long) and interpolation weights ``[N, L, 2^d]`` of the corners around ``x``."""
        d = self.cfg.n_dims
        assert x.ndim == 2 and x.shape[1] == d, f"x must be [N, {d}], got {tuple(x.shape)}"
        pos_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        scales = torch.tensor(self.position_scales, dtype=pos_dtype, device=x.device)  # [L]
        pos = x.to(pos_dtype).clamp(0.0, 1.0)[:, None, :] * scales[None, :, None] + 0.5  # [N, L, d]
        cell = torch.floor(pos)
        frac = pos - cell  # [N, L, d]
        if d == 2:
            return self._planar_rows_and_weights(cell.long(), frac)
        corners = cell.long()[:, :, None, :] + self.corner_bits  # [N, L, 2^d, d]
        bits = self.corner_bits.bool()  # [2^d, d]
        weights = torch.where(bits, frac[:, :, None, :], 1.0 - frac[:, :, None, :]).prod(dim=-1)  # [N, L, 2^d]
        if self.cfg.grid_type == "tiled":  # every level: dense index (uint32 wrap), modulo rows below
            index = (corners * self.tiled_strides[None, :, None, :]).sum(dim=-1) & UINT32_MASK  # [N, L, 2^d]
        else:
            dense_index = (corners * self.level_strides[None, :, None, :]).sum(dim=-1)  # [N, L, 2^d]
            hashed = (corners * self.primes) & UINT32_MASK  # [N, L, 2^d, d]
            hash_index = hashed[..., 0]
            for axis in range(1, d):
                hash_index = torch.bitwise_xor(hash_index, hashed[..., axis])
            index = torch.where(self.level_is_dense[None, :, None], dense_index, hash_index)
        rows = index % self.level_rows[None, :, None] + self.level_offsets[:-1][None, :, None]
        return rows, weights

    def _planar_rows_and_weights(self, cell: Tensor, frac: Tensor) -> tuple[Tensor, Tensor]:
        """The 2-D case of :meth:`corner_rows_and_weights` written out per corner — the same rows and weights (the
        tri-plane and torso grids are 2-D and this is their hot path), computed in int32: products wrap modulo 2^32
        exactly as the uint32 kernel's do, and a level that does not fit has 2^log2 rows, so "modulo its rows" of
        the unsigned index is a bit mask, which int32 two's-complement arithmetic gives bit for bit."""
        cx, cy = cell[..., 0, None].int(), cell[..., 1, None].int()  # [N, L, 1]
        fx, fy = frac[..., 0, None], frac[..., 1, None]  # [N, L, 1]
        step = self.corner_bits.int()  # [4, 2] (k & 1, k >> 1 & 1)
        x = cx + step[:, 0]  # [N, L, 4]
        y = cy + step[:, 1]
        gx, gy = 1.0 - fx, 1.0 - fy
        weights = torch.cat([gx * gy, fx * gy, gx * fy, fx * fy], dim=-1)  # [N, L, 4] corner k order
        dense = self.level_is_dense[None, :, None]  # [1, L, 1]
        mask = (self.level_rows - 1).int()[None, :, None]  # rows of a level that does not fit: a power of two
        if self.cfg.grid_type == "tiled":
            st = self.tiled_strides.int()[None, :, None, :]  # [1, L, 1, 2]
            index = x * st[..., 0] + y * st[..., 1]
        else:
            dense_index = x + y * self.level_strides[:, 1].int()[None, :, None]  # stride of axis 0 is 1
            prime1 = int(self.primes[1]) - (1 << 32) if int(self.primes[1]) >= 1 << 31 else int(self.primes[1])
            hash_index = torch.bitwise_xor(x, y * prime1)  # prime 0 is 1; int32 wrap = uint32 bits
            index = torch.where(dense, dense_index, hash_index)
        index = torch.where(dense, index, index & mask)  # dense levels' indices are already < their rows
        rows = (index + self.level_offsets[:-1].int()[None, :, None]).long()
        return rows, weights

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, d]`` → ``[N, L · F]``, level-major (level 0's F features first)."""
        rows, weights = self.corner_rows_and_weights(x)  # [N, L, 2^d] each
        out = InterpolateTable.apply(self.table, rows, weights.to(self.table.dtype))  # [N, L, F]
        out = out.reshape(x.shape[0], self.out_dim)
        assert out.shape == (x.shape[0], self.out_dim)
        return out


PLANE_AXES: tuple[tuple[str, tuple[int, int]], ...] = (("xy", (0, 1)), ("yz", (1, 2)), ("xz", (0, 2)))


@dataclass
class TriPlaneHashConfig:
    """:class:`TriPlaneHash` settings. ``grid=None`` → ER-NeRF's plane grid with ``finest = 512 · bound``.

    ``aabb`` (xmin, ymin, zmin, xmax, ymax, zmax), if given, replaces the cube ``[−bound, bound]^3``.
    """

    bound: float = 1.0
    aabb: tuple[float, float, float, float, float, float] | None = None
    grid: HashGridConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bound, (int, float)) or not 0 < self.bound < math.inf:
            raise ValueError(f"TriPlaneHashConfig.bound must be a finite number > 0, got {self.bound!r}")
        if self.aabb is not None:
            box = tuple(float(v) for v in self.aabb)
            if len(box) != 6 or not all(math.isfinite(v) for v in box) or not all(
                    box[i] < box[i + 3] for i in range(3)):
                raise ValueError(f"TriPlaneHashConfig.aabb must be 6 finite numbers (min xyz, max xyz) with "
                                 f"min < max, got {self.aabb!r}")
            self.aabb = box  # type: ignore[assignment]
        if self.grid is None:
            self.grid = HashGridConfig(finest_resolution=512.0 * self.bound)
        elif self.grid.n_dims != 2:
            raise ValueError(f"TriPlaneHashConfig.grid.n_dims must be 2 (planes), got {self.grid.n_dims!r}")

    @property
    def out_dim(self) -> int:
        return 3 * self.grid.out_dim  # type: ignore[union-attr]


class TriPlaneHash(nn.Module):
    """``points: [N, 3]`` world coordinates → ``cat[xy(x, y), yz(y, z), xz(x, z)]``: ``[N, 3 · L · F]`` (36 by default).

    Points are mapped linearly from the box to ``[0, 1]^3``; points outside are clamped onto the box.
    """

    def __init__(self, cfg: TriPlaneHashConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TriPlaneHashConfig()
        b = float(cfg.bound)
        box = cfg.aabb if cfg.aabb is not None else (-b, -b, -b, b, b, b)
        self.register_buffer("aabb", torch.tensor(box, dtype=torch.float64).view(2, 3), persistent=False)
        self.planes = nn.ModuleDict({name: HashGrid(cfg.grid, generator) for name, _ in PLANE_AXES})

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def normalise(self, points: Tensor) -> Tensor:
        """``points: [N, 3]`` → ``[N, 3]`` in ``[0, 1]^3`` (clamped)."""
        assert points.ndim == 2 and points.shape[1] == 3, f"points must be [N, 3], got {tuple(points.shape)}"
        lo, hi = self.aabb.to(points)
        return ((points - lo) / (hi - lo)).clamp(0.0, 1.0)

    def forward(self, points: Tensor) -> Tensor:
        unit = self.normalise(points)  # [N, 3]
        feats = [self.planes[name](unit[:, list(axes)]) for name, axes in PLANE_AXES]  # 3 × [N, L·F]
        out = torch.cat(feats, dim=-1)
        assert out.shape == (points.shape[0], self.out_dim)
        return out
