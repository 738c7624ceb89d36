"""Tests for gt_core.render.rays and gt_core.render.volume (closed forms; small and CPU-only)."""
from __future__ import annotations

import math

import pytest
import torch

from gt_core.render.cameras import Camera
from gt_core.render.rays import camera_rays, ray_aabb
from gt_core.render.volume import OccupancyGrid, composite, live_samples, render_rays, sample_along_rays

BOX = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]


def _camera(W=65, H=49, f=50.0):
    return Camera.look_at(torch.tensor([0.3, -0.4, -3.0]), torch.tensor([0.05, 0.1, 0.2]),
                          torch.tensor([0.0, -1.0, 0.0]), f, f * 1.1, W, H)


def _project(cam: Camera, p: torch.Tensor) -> torch.Tensor:
    """[M, 3] world -> [M, 2] pixel coordinates."""
    pc = p.double() @ cam.viewmat[:3, :3].double().T + cam.viewmat[:3, 3].double()
    return torch.stack([cam.fx * pc[:, 0] / pc[:, 2] + cam.cx, cam.fy * pc[:, 1] / pc[:, 2] + cam.cy], -1)


# ------------------------------------------------------------------------------------------------------------ rays
def test_principal_pixel_ray_is_optical_axis():
    cam = _camera()  # W=65, H=49: centred principal point (32.5, 24.5) is the centre of pixel (32, 24)
    o, d = camera_rays(cam, torch.tensor([[32, 24]]))
    axis = cam.c2w[:3, 2]
    assert torch.allclose(d[0], axis, atol=1e-9)
    assert torch.allclose(o[0], cam.campos, atol=1e-9)
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, dtype=d.dtype))


def test_rays_pass_through_pixel_centres_row_major():
    cam = _camera()
    o, d = camera_rays(cam)
    assert o.shape == d.shape == (cam.width * cam.height, 3)
    assert torch.allclose(d.norm(dim=-1), torch.ones_like(d[:, 0]))
    uv = _project(cam, o[:1] + 2.7 * d[:1])  # ray 0 = pixel (0, 0)
    assert torch.allclose(uv, torch.tensor([[0.5, 0.5]], dtype=uv.dtype), atol=1e-9)
    # every ray projects to its own pixel centre, in row-major order
    k = torch.arange(cam.width * cam.height)
    uv = _project(cam, o + 1.9 * d)
    assert torch.allclose(uv, torch.stack([k % cam.width + 0.5, k // cam.width + 0.5], -1).double(), atol=1e-8)
    pix = torch.tensor([[3, 7], [64, 0], [0, 48]])
    o2, d2 = camera_rays(cam, pix, dtype=torch.float32)
    assert d2.dtype == torch.float32
    assert torch.allclose(d2, d[pix[:, 1] * cam.width + pix[:, 0]].float(), atol=1e-6)
    with pytest.raises(AssertionError):
        camera_rays(cam, torch.tensor([[65, 0]]))


def test_ray_aabb_closed_forms():
    o = torch.tensor([[-3.0, 0.2, 0.1], [0.0, 0.0, 5.0], [-3.0, -3.0, 0.0], [0.1, 0.2, 0.3], [-3.0, 1.5, 0.0],
                      [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0],
                      [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    d = d / d.norm(dim=-1, keepdim=True)
    near, far, hit = ray_aabb(o, d, BOX)
    s2 = math.sqrt(2.0)
    assert hit.tolist() == [True, True, True, True, False, False, True]
    exp_near = torch.tensor([2.0, 4.0, 2 * s2, 0.0, 0.0, 0.0, 0.0])
    exp_far = torch.tensor([4.0, 6.0, 4 * s2, 0.8, 0.0, 0.0, 1.0])
    assert torch.allclose(near, exp_near, atol=1e-5) and torch.allclose(far, exp_far, atol=1e-5)
    near, far, hit = ray_aabb(o, d, BOX, min_near=0.05)  # origin inside: near clamps to min_near
    assert near[3].item() == pytest.approx(0.05) and near[0].item() == pytest.approx(2.0)
    _, _, hit = ray_aabb(o[:1], -d[:1], BOX)  # box behind the ray
    assert not hit.any()


# ------------------------------------------------------------------------------------------------------- sampling
def test_sample_midpoints_and_misses():
    near, far = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([2.0, 0.0, 4.0])  # ray 1 missed
    s = sample_along_rays(near, far, 4)
    assert s.ray_ids.tolist() == [0] * 4 + [2] * 4
    assert torch.allclose(s.t, torch.tensor([1.125, 1.375, 1.625, 1.875, 2.25, 2.75, 3.25, 3.75]))
    assert torch.allclose(s.deltas, torch.tensor([0.25] * 4 + [0.5] * 4))
    g = torch.Generator().manual_seed(0)
    sj = sample_along_rays(near, far, 4, jitter=True, generator=g)
    lo = torch.tensor([1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5])
    assert bool(((sj.t >= lo) & (sj.t < lo + s.deltas)).all()) and not torch.allclose(sj.t, s.t)
    calls = []
    out = render_rays(lambda p, v: calls.append(p) or (p[:, 0], p), torch.tensor([[-3.0, 2.0, 0.0]]),
                      torch.tensor([[1.0, 0.0, 0.0]]), BOX, 8, torch.tensor([0.1, 0.2, 0.3]))  # misses the box
    assert not calls and torch.equal(out.colour, torch.tensor([[0.1, 0.2, 0.3]])) and out.alpha.item() == 0


# ---------------------------------------------------------------------------------------------------- compositing
def test_discrete_weights_exact():
    # two samples with alpha 0.5 each: w = (0.5, 0.25), transmittance excludes the current sample
    tau = math.log(2.0)
    sig, dl = torch.tensor([tau, tau, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    bg = torch.tensor([[0.0, 0.0, 1.0], [0.2, 0.2, 0.2]])
    out = composite(sig, rgb, dl, torch.tensor([0, 0, 1]), bg, ts=torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(out.alpha, torch.tensor([0.75, 0.0]))
    assert torch.allclose(out.colour, torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.2, 0.2]]))
    assert torch.allclose(out.depth, torch.tensor([0.5 + 0.5, 0.0]))


def _sphere_field(sigma, r, rgb=(0.2, 0.5, 0.9)):
    c = torch.tensor(rgb)

    def field(p, d):
        inside = (p.norm(dim=-1) < r).to(p.dtype)
        return sigma * inside, c.to(p.dtype).expand(p.shape[0], 3)
    return field


def test_constant_density_sphere_opacity_and_colour():
    r, sigma = 0.8, 2.0
    b = torch.tensor([0.0, 0.3, 0.6, 0.75, 0.9])  # impact parameters (the last one misses the sphere)
    o = torch.stack([torch.full_like(b, -3.0), b, torch.zeros_like(b)], -1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand(5, 3)
    bg = torch.rand(5, 3, generator=torch.Generator().manual_seed(1))
    out = render_rays(_sphere_field(sigma, r), o, d, BOX, 2048, bg)
    chord = 2 * (r * r - b * b).clamp(min=0).sqrt()
    expect = 1 - torch.exp(-sigma * chord)
    assert torch.allclose(out.alpha, expect, atol=1e-2)
    assert out.alpha[-1].item() == 0.0
    c = torch.tensor([0.2, 0.5, 0.9])
    w = out.alpha[:, None]
    assert torch.allclose(out.colour, w * c + (1 - w) * bg, atol=1e-5)


def test_dense_sphere_depth_is_near_surface():
    r = 0.8
    b = torch.tensor([0.0, 0.4, 0.7])
    o = torch.stack([torch.full_like(b, -3.0), b, torch.zeros_like(b)], -1)
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand(3, 3)
    out = render_rays(_sphere_field(1e3, r), o, d, BOX, 1024, torch.zeros(3))
    surface = 3.0 - (r * r - b * b).sqrt()
    assert torch.allclose(out.alpha, torch.ones(3), atol=1e-4)
    assert torch.allclose(out.depth, surface, atol=5e-3)


def test_early_termination_equals_truncated_render():
    # ray 0: the first sample takes T to 5e-5 < 1e-4, then a bright sample that must be ignored;
    # ray 1: stays above the threshold, so all its samples count.
    tau0 = -math.log(5e-5)
    sig = torch.tensor([tau0, 2.0, 0.5, 0.5], requires_grad=True)
    dl = torch.ones(4)
    rgb = torch.tensor([[0.3, 0.6, 0.9], [100.0, 100.0, 100.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                       requires_grad=True)
    ids, ts, bg = torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 2.0, 1.0, 2.0]), torch.full((2, 3), 0.5)
    full = composite(sig, rgb, dl, ids, bg, ts=ts)
    first = composite(sig[[0, 2, 3]], rgb[[0, 2, 3]], dl[[0, 2, 3]], ids[[0, 2, 3]], bg, ts=ts[[0, 2, 3]])
    for a, b in zip(full, first):
        assert torch.equal(a, b)
    assert full.alpha[0].item() == pytest.approx(1 - 5e-5, abs=1e-6)
    no_stop = composite(sig, rgb, dl, ids, bg, t_thresh=0.0, ts=ts)
    assert (no_stop.colour[0] - full.colour[0]).abs().min() > 1e-3  # the bright sample would have shown
    full.colour.sum().backward()
    assert sig.grad[1] == 0 and (rgb.grad[1] == 0).all() and rgb.grad[0].abs().sum() > 0


def test_live_samples_are_the_composited_prefix_and_pruning_keeps_render_and_gradients():
    g = torch.Generator().manual_seed(4)
    n_rays, per_ray, thresh = 6, 12, 1e-3
    ids = torch.arange(n_rays).repeat_interleave(per_ray)
    sig = (torch.rand(n_rays * per_ray, generator=g, dtype=torch.float64) * 3).requires_grad_()
    rgb = torch.rand(n_rays * per_ray, 3, generator=g, dtype=torch.float64).requires_grad_()
    dl = torch.rand(n_rays * per_ray, generator=g, dtype=torch.float64) + 0.2
    ts, bg = torch.cumsum(dl, 0), torch.rand(n_rays, 3, generator=g, dtype=torch.float64)
    live = live_samples(sig, dl, ids, n_rays, thresh)
    expected = []  # dense reference: walk each ray, keep a sample iff its incoming T >= thresh
    for r in range(n_rays):
        T = 1.0
        for k in range(r * per_ray, (r + 1) * per_ray):
            expected.append(T >= thresh)
            T *= math.exp(-float(sig[k] * dl[k]))
    assert live.tolist() == expected
    assert 0 < int(live.sum()) < live.numel()  # some rays terminate, so the check below is not vacuous
    full = composite(sig, rgb, dl, ids, bg, thresh, ts=ts)
    keep = live.nonzero().squeeze(-1)
    pruned = composite(sig[keep], rgb[keep], dl[keep], ids[keep], bg, thresh, ts=ts[keep])
    for a, b in zip(full, pruned):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    grads_full = torch.autograd.grad(full.colour.sum() + full.depth.sum(), (sig, rgb))
    grads_pruned = torch.autograd.grad(pruned.colour.sum() + pruned.depth.sum(), (sig, rgb))
    for a, b in zip(grads_full, grads_pruned):
        assert torch.allclose(a[keep], b[keep], rtol=0, atol=1e-12) and bool((a[~live] == 0).all())
        assert bool((b[~live] == 0).all())
    assert bool(live_samples(sig, dl, ids, n_rays, 0.0).all())  # no termination: every sample lives


def test_gradients_flow():
    g = torch.Generator().manual_seed(0)
    sig = (torch.rand(7, generator=g, dtype=torch.float64) * 2).requires_grad_()
    rgb = torch.rand(7, 3, generator=g, dtype=torch.float64).requires_grad_()
    dl = torch.rand(7, generator=g, dtype=torch.float64) * 0.5 + 0.1
    ids, ts = torch.tensor([0, 0, 0, 1, 2, 2, 2]), torch.arange(7, dtype=torch.float64)
    bg = torch.rand(4, 3, generator=g, dtype=torch.float64)
    out = composite(sig, rgb, dl, ids, bg, ts=ts)
    out.colour.sum().backward()
    for t in (sig.grad, rgb.grad):
        assert torch.isfinite(t).all() and t.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda s, c: composite(s, c, dl, ids, bg, ts=ts), (sig.detach().requires_grad_(), rgb.detach().requires_grad_()))
    # and through render_rays to a field parameter
    k = torch.tensor(3.0, requires_grad=True)
    o, d = torch.tensor([[-3.0, 0.1, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    out = render_rays(lambda p, v: (k * (p.norm(dim=-1) < 0.8).float(), p.abs() * k), o, d, BOX, 64, torch.zeros(3))
    out.colour.sum().backward()
    assert torch.isfinite(k.grad) and k.grad.abs() > 0


# ------------------------------------------------------------------------------------------------- occupancy grid
def _box_density(half, sigma=5.0):
    return lambda p: sigma * (p.abs() < half).all(dim=-1).float()


def test_grid_one_random_point_per_cell_and_interval():
    grid = OccupancyGrid(BOX, res=8)
    seen = []
    fn = lambda p: (seen.append(p.clone()), torch.zeros(p.shape[0]))[1]
    assert not grid.update(fn, step=5) and not seen  # only every 16 steps
    assert grid.update(fn, step=32, generator=torch.Generator().manual_seed(0))
    p = torch.cat(seen)
    assert p.shape == (8 ** 3, 3)
    flat, inside = grid.cell_index(p)
    assert inside.all() and torch.equal(flat.sort().values, torch.arange(8 ** 3))
    centres = grid.aabb[:3] + (torch.stack(torch.meshgrid(*[torch.arange(8)] * 3, indexing="ij"), -1).reshape(-1, 3)
                               + 0.5) * grid.cell_size()
    assert (p - centres).abs().max() > 0.01  # jittered, not cell centres
    assert not grid.occupied.any()  # all-zero scene: threshold min(0, 10) = 0 and nothing is > 0
    default = OccupancyGrid(BOX)
    assert default.density.shape == (128, 128, 128) and default.update_interval == 16 and default.occupied.all()


def test_grid_threshold_is_min_of_mean_and_10_and_ema():
    # 1/4 of the cells at 30, the rest at 12: mean 16.5 -> threshold 10, so the 12-cells stay occupied
    grid = OccupancyGrid(BOX, res=8, dilate=False)
    grid.update(lambda p: torch.where((p[:, 0] > 0) & (p[:, 1] > 0), 30.0, 12.0), step=0)
    assert grid.mean_density.item() == pytest.approx(16.5) and grid.occupied.all()
    # small box at sigma 5 (< 10): mean 5/64 is the threshold, so the box is occupied
    grid = OccupancyGrid(BOX, res=16, dilate=False)
    grid.update(_box_density(0.25), step=0)
    assert grid.occupied.sum().item() == 4 ** 3
    grid.update(lambda p: torch.zeros(p.shape[0]), step=16)  # EMA: max(0.95·old, new)
    assert grid.density.max().item() == pytest.approx(5 * 0.95)
    assert grid.occupied.sum().item() == 4 ** 3


def test_grid_render_matches_dense_with_fewer_samples():
    res, half = 32, 0.25  # box edges fall on cell boundaries
    grid = OccupancyGrid(BOX, res=res)
    grid.update(_box_density(half), step=0, generator=torch.Generator().manual_seed(0))
    ijk = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1)
    centre = -1 + (ijk + 0.5) * (2 / res)  # [r, r, r, 3]
    cell = 2 / res
    far_out = (centre.abs() > half + cell).any(-1)  # beyond the one-cell dilation ring
    inside = (centre.abs() < half).all(-1)
    assert not grid.occupied[far_out].any() and grid.occupied[inside].all()
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.2, -0.2, 0.1], [0.7, 0.0, 0.0], [0.0, 0.9, -0.9], [2.0, 0.0, 0.0]])
    assert grid.query(pts).tolist() == [True, True, False, False, False]

    cam = Camera.look_at(torch.tensor([0.4, 0.3, -3.0]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]),
                         30.0, 30.0, 24, 24)
    o, d = camera_rays(cam, dtype=torch.float32)
    counts = []
    dens = _box_density(half)

    def field(p, v):
        counts.append(p.shape[0])
        return dens(p), torch.sigmoid(torch.stack([p[:, 0], p[:, 1] * 2, v[:, 2]], -1))
    bg = torch.rand(o.shape[0], 3, generator=torch.Generator().manual_seed(2))
    dense = render_rays(field, o, d, BOX, 128, bg)
    culled = render_rays(field, o, d, BOX, 128, bg, grid=grid)
    assert dense.alpha.max() > 0.5
    for a, b in zip(dense, culled):
        assert torch.allclose(a, b, atol=1e-5)
    assert counts[1] < 0.2 * counts[0]
