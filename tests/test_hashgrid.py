"""Hash-grid encoder: equals a plain-Python reference (dense and hashed levels), interpolates exactly at vertices,
sends gradients to exactly the corner rows, and TriPlaneHash follows ER-NeRF's plane order / concatenation."""
from __future__ import annotations

import math

import pytest
import torch

from gt_core.encoders.hashgrid import HashGrid, HashGridConfig, TriPlaneHash, TriPlaneHashConfig

PRIMES = (1, 2654435761, 805459861)


def randomised(grid: HashGrid, seed: int = 0) -> HashGrid:
    """Double precision, table ~N(0, 1) so every row is distinguishable."""
    grid = grid.double()
    with torch.no_grad():
        grid.table.copy_(torch.randn(grid.table.shape, generator=torch.Generator().manual_seed(seed)))
    return grid


def reference_layout(cfg: HashGridConfig) -> list[dict]:
    """Per level, computed from first principles: position scale, resolution, rows, offset, dense or not."""
    b = 1.0 if cfg.n_levels == 1 else math.exp(
        (math.log(cfg.finest_resolution) - math.log(cfg.base_resolution)) / (cfg.n_levels - 1))
    levels, offset = [], 0
    for level in range(cfg.n_levels):
        scale = cfg.base_resolution * b**level
        res = math.ceil(round(scale, 6))
        vertices = (res + 1) ** cfg.n_dims
        rows = math.ceil(min(2**cfg.log2_hashmap_size, vertices) / 8) * 8
        levels.append(dict(scale=scale - 1.0, res=res, rows=rows, offset=offset, dense=vertices <= rows))
        offset += rows
    return levels


def reference_corners(cfg: HashGridConfig, point: list[float]) -> list[list[tuple[int, float]]]:
    """Per level, the (table row, weight) of each of the 2^d corners, by plain Python ints and floats."""
    out = []
    for lv in reference_layout(cfg):
        pos = [min(max(v, 0.0), 1.0) * lv["scale"] + 0.5 for v in point]
        cell = [math.floor(p) for p in pos]
        frac = [p - c for p, c in zip(pos, cell)]
        corners = []
        for k in range(2**cfg.n_dims):  # corner k takes +1 on axis d iff bit d of k is set (the kernel's order)
            bits = [(k >> axis) & 1 for axis in range(cfg.n_dims)]
            corner = [c + bit for c, bit in zip(cell, bits)]
            weight = math.prod(f if bit else 1.0 - f for f, bit in zip(frac, bits))
            if lv["dense"]:
                index = sum(c * (lv["res"] + 1) ** axis for axis, c in enumerate(corner))
            else:
                index = 0
                for c, prime in zip(corner, PRIMES):
                    index ^= (c * prime) % 2**32
            corners.append((lv["offset"] + index % lv["rows"], weight))
        out.append(corners)
    return out


def reference_forward(grid: HashGrid, x: torch.Tensor) -> torch.Tensor:
    table = grid.table.detach()
    rows = []
    for point in x.tolist():
        levels = [sum(w * table[row] for row, w in corners) for corners in reference_corners(grid.cfg, point)]
        rows.append(torch.cat(levels))  # level-major
    return torch.stack(rows)


DENSE_2D = HashGridConfig(n_dims=2, n_levels=3, features_per_level=2, log2_hashmap_size=12,
                          base_resolution=5, finest_resolution=9)  # resolutions 5, 7 (ceil of 6.7), 9
DENSE_3D = HashGridConfig(n_dims=3, n_levels=3, features_per_level=3, log2_hashmap_size=12,
                          base_resolution=3, finest_resolution=8)
HASHED_2D = HashGridConfig(n_dims=2, n_levels=3, features_per_level=2, log2_hashmap_size=6,
                           base_resolution=4, finest_resolution=40)
HASHED_3D = HashGridConfig(n_dims=3, n_levels=3, features_per_level=1, log2_hashmap_size=7,
                           base_resolution=3, finest_resolution=30)


def test_ernerf_default_layout():
    cfg = HashGridConfig()
    assert cfg.level_resolutions() == [64, 78, 94, 113, 137, 165, 199, 241, 291, 351, 424, 512]
    grid = HashGrid(cfg)
    assert grid.out_dim == 12 and tuple(grid.table.shape) == (163584, 1)  # the original's embeddings shape
    assert grid.level_is_dense.tolist() == [True] * 4 + [False] * 8
    assert grid.level_offsets[:5].tolist() == [0, 4232, 10480, 19512, 32512]
    assert 0 < float(grid.table.abs().max()) <= 1e-4
    assert DENSE_2D.level_resolutions() == [5, 7, 9]  # ceil, not floor (6.708 → 7)
    assert list(grid.state_dict()) == ["table"]


@pytest.mark.parametrize("cfg", [DENSE_2D, DENSE_3D], ids=["2d", "3d"])
def test_dense_levels_match_reference(cfg):
    grid = randomised(HashGrid(cfg))
    assert all(grid.level_is_dense.tolist())
    assert grid.level_offsets.tolist()[:-1] == [lv["offset"] for lv in reference_layout(cfg)]
    x = torch.rand(40, cfg.n_dims, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[:4] = torch.tensor([0.0, 1.0, 0.5, 0.999999], dtype=torch.float64)[:, None]  # edges of the domain
    out = grid(x)
    assert out.shape == (40, cfg.out_dim)
    torch.testing.assert_close(out, reference_forward(grid, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cfg", [HASHED_2D, HASHED_3D], ids=["2d", "3d"])
def test_hashed_levels_use_xor_primes_and_stay_in_range(cfg):
    grid = randomised(HashGrid(cfg))
    assert grid.level_is_dense.tolist() == [lv["dense"] for lv in reference_layout(cfg)]
    assert not all(grid.level_is_dense.tolist())
    x = torch.rand(30, cfg.n_dims, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rows, weights = grid.corner_rows_and_weights(x)  # [N, L, 2^d]
    expected = [reference_corners(cfg, p) for p in x.tolist()]
    assert rows.tolist() == [[[row for row, _ in corners] for corners in point] for point in expected]
    expected_weights = torch.tensor([[[w for _, w in corners] for corners in point] for point in expected],
                                    dtype=torch.float64)
    torch.testing.assert_close(weights, expected_weights, atol=1e-12, rtol=0)
    lo, hi = grid.level_offsets[:-1][None, :, None], grid.level_offsets[1:][None, :, None]
    assert bool(((rows >= lo) & (rows < hi)).all())
    torch.testing.assert_close(grid(x), reference_forward(grid, x), atol=1e-6, rtol=0)


def test_vertices_are_exact_and_edges_linear():
    grid = randomised(HashGrid(DENSE_2D))
    table, F = grid.table.detach(), DENSE_2D.features_per_level
    for level, lv in enumerate(reference_layout(DENSE_2D)):
        def row(i: int, j: int) -> torch.Tensor:
            return table[lv["offset"] + i + j * (lv["res"] + 1)]

        def level_out(x: list[list[float]]) -> torch.Tensor:
            return grid(torch.tensor(x, dtype=torch.float64))[:, level * F:(level + 1) * F]

        s = lv["scale"]
        for i, j in [(1, 1), (2, 3), (math.floor(s + 0.5) - 1, 1)]:  # vertex v at x = (v - 0.5) / scale
            torch.testing.assert_close(level_out([[(i - 0.5) / s, (j - 0.5) / s]])[0], row(i, j), atol=1e-9, rtol=0)
            for t in (0.1, 0.25, 0.5, 0.9):  # along the edge (i, j) → (i + 1, j)
                got = level_out([[(i - 0.5 + t) / s, (j - 0.5) / s]])[0]
                torch.testing.assert_close(got, (1 - t) * row(i, j) + t * row(i + 1, j), atol=1e-9, rtol=0)
        # x = 0 lies halfway between vertices 0 and 1 on each axis (the +0.5 offset)
        mean = (row(0, 0) + row(1, 0) + row(0, 1) + row(1, 1)) / 4
        torch.testing.assert_close(level_out([[0.0, 0.0]])[0], mean, atol=1e-9, rtol=0)


def test_gradient_reaches_exactly_the_corner_rows():
    cfg = HashGridConfig(n_dims=2, n_levels=3, features_per_level=2, log2_hashmap_size=7,
                         base_resolution=4, finest_resolution=20)  # levels dense, dense, hashed
    grid = randomised(HashGrid(cfg))
    x = torch.rand(12, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid(x).sum().backward()
    expected = torch.zeros(grid.table.shape[0], dtype=torch.float64)
    for point in x.tolist():
        for corners in reference_corners(cfg, point):
            for row, weight in corners:
                expected[row] += weight
    grad = grid.table.grad
    assert torch.equal(grad.ne(0).any(dim=1), expected.ne(0))  # touched rows = corner rows, nothing else
    torch.testing.assert_close(grad, expected[:, None].expand_as(grad), atol=1e-9, rtol=0)


def test_points_outside_unit_box_are_clamped():
    grid = randomised(HashGrid(HASHED_3D))
    x = torch.tensor([[-0.5, 0.3, 1.7], [2.0, -3.0, 0.5], [1.0, 0.0, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(grid(x), grid(x.clamp(0, 1)), atol=0, rtol=0)


def randomised_triplane(cfg: TriPlaneHashConfig | None = None) -> TriPlaneHash:
    tri = TriPlaneHash(cfg)
    for k, plane in enumerate(tri.planes.values()):
        randomised(plane, seed=10 + k)
    return tri


def test_triplane_defaults_are_ernerf():
    tri = TriPlaneHash()
    assert tri.out_dim == 36 and list(tri.planes) == ["xy", "yz", "xz"]
    assert tri.planes["xy"].cfg == HashGridConfig(2, 12, 1, 14, 64, 512.0, 1e-4)
    assert tri(torch.rand(5, 3) * 2 - 1).shape == (5, 36)
    assert TriPlaneHashConfig(bound=2.0).grid.finest_resolution == 1024.0  # desired_resolution = 512 · bound


def test_triplane_concatenates_xy_yz_xz_in_that_order():
    tri = randomised_triplane(TriPlaneHashConfig(bound=2.0))
    pts = (torch.rand(50, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2 - 1) * 2
    unit = (pts + 2.0) / 4.0
    out = tri(pts)
    for k, (name, axes) in enumerate([("xy", [0, 1]), ("yz", [1, 2]), ("xz", [0, 2])]):
        torch.testing.assert_close(out[:, 12 * k:12 * (k + 1)], tri.planes[name](unit[:, axes]), atol=1e-9, rtol=0)
    for k, name in enumerate(["xy", "yz", "xz"]):  # perturb one plane: only its slice moves
        with torch.no_grad():
            tri.planes[name].table.add_(1.0)
        changed = (tri(pts) - out).abs().amax(dim=0) > 1e-6  # [36]
        with torch.no_grad():
            tri.planes[name].table.sub_(1.0)
        assert changed.tolist() == [k == s for s in range(3) for _ in range(12)], name


def test_triplane_aabb_normalisation_and_clamping():
    aabb = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)  # ER-NeRF's rectangular box
    tri = randomised_triplane(TriPlaneHashConfig(aabb=aabb))
    lo, hi = torch.tensor(aabb[:3], dtype=torch.float64), torch.tensor(aabb[3:], dtype=torch.float64)
    torch.testing.assert_close(tri.normalise(torch.stack([lo, hi, (lo + hi) / 2])),
                               torch.tensor([[0.0] * 3, [1.0] * 3, [0.5] * 3], dtype=torch.float64))
    outside = torch.tensor([[3.0, 0.2, -0.3], [0.1, -2.0, 5.0], [-9.0, 9.0, -9.0]], dtype=torch.float64)
    clamped = torch.maximum(torch.minimum(outside, hi), lo)
    torch.testing.assert_close(tri(outside), tri(clamped), atol=0, rtol=0)
    assert not torch.allclose(tri(outside[:1]), tri(torch.zeros(1, 3, dtype=torch.float64)))


@pytest.mark.parametrize("field, kwargs", [
    ("n_dims", dict(n_dims=4)),
    ("n_levels", dict(n_levels=0)),
    ("features_per_level", dict(features_per_level=0)),
    ("log2_hashmap_size", dict(log2_hashmap_size=2)),
    ("base_resolution", dict(base_resolution=0)),
    ("finest_resolution", dict(base_resolution=64, finest_resolution=32)),
    ("finest_resolution", dict(n_levels=1, base_resolution=16, finest_resolution=32)),
    ("init_scale", dict(init_scale=-1.0)),
])
def test_hashgrid_config_rejects_bad_values(field, kwargs):
    with pytest.raises(ValueError, match=rf"HashGridConfig\.{field}"):
        HashGridConfig(**kwargs)


@pytest.mark.parametrize("field, kwargs", [
    ("bound", dict(bound=0.0)),
    ("aabb", dict(aabb=(0.0, 0.0, 0.0, 1.0, -1.0, 1.0))),
    ("aabb", dict(aabb=(0.0, 1.0))),
    ("grid.n_dims", dict(grid=HashGridConfig(n_dims=3))),
])
def test_triplane_config_rejects_bad_values(field, kwargs):
    with pytest.raises(ValueError, match=rf"TriPlaneHashConfig\.{field}"):
        TriPlaneHashConfig(**kwargs)


# ---------------------------------------------------------------------------------------------- tiled grid type
def reference_tiled_rows(cfg: HashGridConfig, point: list[float]) -> list[list[int]]:
    """Per level, the table row of each corner by the CUDA kernel's ``get_grid_index`` loop for ``tiled``:
    accumulate ``c_d · stride`` while ``stride <= rows``, no hash, modulo rows (uint32)."""
    out = []
    for lv in reference_layout(cfg):
        pos = [min(max(v, 0.0), 1.0) * lv["scale"] + 0.5 for v in point]
        cell = [math.floor(p) for p in pos]
        rows = []
        for k in range(2**cfg.n_dims):
            corner = [c + ((k >> axis) & 1) for axis, c in enumerate(cell)]
            index, stride = 0, 1
            for c in corner:
                if stride > lv["rows"]:
                    break
                index += c * stride
                stride *= lv["res"] + 1
            rows.append(lv["offset"] + (index % 2**32) % lv["rows"])
        out.append(rows)
    return out


TILED_2D = HashGridConfig(n_dims=2, n_levels=3, features_per_level=2, log2_hashmap_size=6,
                          base_resolution=4, finest_resolution=40, grid_type="tiled")  # rows 32, 64, 64
TILED_3D = HashGridConfig(n_dims=3, n_levels=3, features_per_level=1, log2_hashmap_size=7,
                          base_resolution=3, finest_resolution=30, grid_type="tiled")  # res 3, 10, 30


def test_tiled_default_is_hash_and_layout_matches_hash():
    assert HashGridConfig().grid_type == "hash"
    with pytest.raises(ValueError, match=r"HashGridConfig\.grid_type"):
        HashGridConfig(grid_type="dense")
    hashed = HashGrid(HashGridConfig(**{**TILED_2D.__dict__, "grid_type": "hash"}))
    tiled = HashGrid(TILED_2D)
    assert tiled.level_rows.tolist() == hashed.level_rows.tolist() == [32, 64, 64]  # same rows per level
    assert tiled.level_offsets.tolist() == hashed.level_offsets.tolist()
    assert tiled.level_is_dense.tolist() == [True, False, False]


def test_tiled_equals_dense_lookup_where_the_level_fits():
    cfg = HashGridConfig(**{**DENSE_2D.__dict__, "grid_type": "tiled"})
    tiled, dense = randomised(HashGrid(cfg)), randomised(HashGrid(DENSE_2D))
    assert all(tiled.level_is_dense.tolist())
    x = torch.rand(40, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(tiled(x), dense(x), atol=0, rtol=0)
    torch.testing.assert_close(tiled(x), reference_forward(dense, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cfg", [TILED_2D, TILED_3D], ids=["2d", "3d"])
def test_tiled_wraps_modulo_rows_without_hash(cfg):
    grid = randomised(HashGrid(cfg))
    x = torch.rand(60, cfg.n_dims, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x[:3] = torch.tensor([0.0, 1.0, 0.731], dtype=torch.float64)[:, None]
    rows, _ = grid.corner_rows_and_weights(x)
    assert rows.tolist() == [reference_tiled_rows(cfg, p) for p in x.tolist()]
    res, n_rows = cfg.level_resolutions()[-1], int(grid.level_rows[-1])
    if cfg.n_dims == 2:  # finest level: plain dense index c0 + c1·(res + 1), wrapped
        pos = x.clamp(0, 1) * grid.position_scales[-1] + 0.5
        c = torch.floor(pos).long()
        expected = (c[:, 0] + c[:, 1] * (res + 1)) % n_rows + int(grid.level_offsets[-2])
        assert rows[:, -1, 0].tolist() == expected.tolist()
    else:  # res 30: stride (31)^2 > 128 rows, so the z index is dropped on that level (the kernel's loop stops)
        assert (31**2 > n_rows) and grid.tiled_strides[-1].tolist() == [1, 31, 0]
        moved = x.clone()
        moved[:, 2] = torch.rand(60, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
        assert torch.equal(grid.corner_rows_and_weights(moved)[0][:, -1], rows[:, -1])
    # equals the plain-Python forward with those rows
    table, expected_out = grid.table.detach(), []
    hashed_cfg = HashGridConfig(**{**cfg.__dict__, "grid_type": "hash"})
    for point, level_rows in zip(x.tolist(), [reference_tiled_rows(cfg, p) for p in x.tolist()]):
        weights = [[w for _, w in corners] for corners in reference_corners(hashed_cfg, point)]
        expected_out.append(torch.cat([sum(w * table[r] for r, w in zip(rs, ws)) for rs, ws in zip(level_rows, weights)]))
    torch.testing.assert_close(grid(x), torch.stack(expected_out), atol=1e-9, rtol=0)


def test_tiled_torso_layout_and_x_gradient():
    """ER-NeRF's torso grid (network.py:162) and the x-derivative its deform net learns through (kernel dy_dx)."""
    cfg = HashGridConfig(n_dims=2, n_levels=16, features_per_level=2, log2_hashmap_size=16, base_resolution=16,
                         finest_resolution=2048.0, grid_type="tiled")
    assert cfg.level_resolutions() == [16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048]
    grid = HashGrid(cfg)
    assert grid.out_dim == 32 and tuple(grid.table.shape) == (555520, 2)
    assert grid.level_is_dense.tolist() == [True] * 9 + [False] * 7
    grid = randomised(grid)
    x = torch.rand(8, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 0.8 + 0.1
    x.requires_grad_(True)
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    (grid(x) * w).sum().backward()
    eps = 1e-7  # far below the finest cell (1/2047), so the finite difference stays inside one cell
    for axis in range(2):
        step = torch.zeros_like(x)
        step[:, axis] = eps
        fd = ((grid(x.detach() + step) - grid(x.detach() - step)) * w).sum(dim=1) / (2 * eps)
        torch.testing.assert_close(x.grad[:, axis], fd, atol=1e-4, rtol=1e-5)


def test_table_gradient_is_bit_identical_across_calls_with_two_threads():
    """The backward adds the corners' contributions in a fixed order (``index_add_``): autograd's accumulating
    ``index_put_`` did not on 2 threads, and two identical ER-NeRF trainings in one process ended apart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        grid = HashGrid(HashGridConfig())
        x, w = torch.rand(40000, 2), torch.randn(40000, 12)
        grads, junk = [], []
        for k in range(4):
            junk.append(torch.randn(1000 + 37 * k, 333))  # move the allocator between the calls
            grid.table.grad = None
            (grid(x) * w).sum().backward()
            grads.append(grid.table.grad.clone())
        assert all(torch.equal(grads[0], g) for g in grads[1:])
    finally:
        torch.set_num_threads(threads)
