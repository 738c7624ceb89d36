"""ER-NeRF torso model: dimensions, output ranges, the clamped warp, the adaptive pose encoding against the
original's formula in its NGP world, codes, param groups, the anchor loss, the 2-D occupancy grid, and a small fit."""
from __future__ import annotations

import math

import pytest
import torch

from gt_core.methods.ernerf.torso import (ANCHORS_NGP_INIT, TorsoField, TorsoFieldConfig, TorsoOccupancy,
                                          anchor_loss, render_torso, torso_pixel_coords)

SMALL = dict(n_codes=6)


def rotation(yaw: float, pitch: float, roll: float) -> torch.Tensor:
    cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, pitch, roll) for f in (math.cos, math.sin))
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = torch.tensor([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = torch.tensor([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def camera(yaw=0.0, pitch=0.0, roll=0.0, dist=0.8, shift=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """OpenGL camera-to-head [4, 4]: a camera ``dist`` m in front of the face (on +z), looking at the head."""
    r = rotation(yaw, pitch, roll)
    c2w = torch.eye(4)
    c2w[:3, :3] = r
    c2w[:3, 3] = r @ torch.tensor([0.0, 0.0, dist]) + torch.tensor(shift)
    return c2w


def field(seed: int = 0, **kwargs) -> TorsoField:
    torch.manual_seed(seed)
    return TorsoField(TorsoFieldConfig(**{**SMALL, **kwargs}), generator=torch.Generator().manual_seed(seed))


def grid_coords(n: int = 16) -> torch.Tensor:
    return torso_pixel_coords(n, n)


def test_dimensions_and_init():
    cfg = TorsoFieldConfig()
    assert (cfg.shrink, cfg.anchor_scale, cfg.code_dim, cfg.n_codes) == (0.8, 0.25, 8, 10000)
    assert (cfg.pose_dim, cfg.coord_dim, cfg.deform_in_dim, cfg.net_in_dim) == (42, 34, 84, 116)
    f = TorsoField(cfg)
    shapes = lambda seq: [tuple(m.weight.shape) for m in seq if isinstance(m, torch.nn.Linear)]
    assert shapes(f.deform_net) == [(32, 84), (32, 32), (2, 32)]
    assert shapes(f.net) == [(32, 116), (32, 32), (4, 32)]
    assert all(m.bias is None for m in [*f.deform_net, *f.net] if isinstance(m, torch.nn.Linear))
    assert f.grid.out_dim == 32 and f.grid.cfg.grid_type == "tiled" and tuple(f.grid.table.shape) == (555520, 2)
    assert torch.equal(f.anchors.detach(), torch.tensor(ANCHORS_NGP_INIT))
    assert abs(float(f.codes.std()) - 0.1) < 0.003 and tuple(f.codes.shape) == (10000, 8)
    # head-frame anchors: (z, x, y)_ngp / 4, w unchanged
    torch.testing.assert_close(f.anchors_head().detach(), torch.tensor(
        [[0.025, 0.0025, 0.0025, 1.0], [0.025, -0.025, -0.025, 1.0], [0.025, 0.025, -0.025, 1.0]]))


@pytest.mark.parametrize("name, kwargs", [
    ("shrink", dict(shrink=0.0)), ("anchor_scale", dict(anchor_scale=-1.0)), ("pose_multires", dict(pose_multires=-1)),
    ("code_dim", dict(code_dim=1.5)), ("n_codes", dict(n_codes=0)), ("net_layers", dict(net_layers=0)),
    ("code_init_std", dict(code_init_std=-0.1)), ("grid", dict(grid=None)),
])
def test_config_rejects_bad_values(name, kwargs):
    with pytest.raises(ValueError, match=rf"TorsoFieldConfig\.{name}"):
        TorsoFieldConfig(**kwargs)


def test_pixel_coords_follow_get_bg_coords():
    c = torso_pixel_coords(3, 5)  # [row, col], row-major, ends at ±1
    assert c.shape == (15, 2)
    assert c[0].tolist() == [-1.0, -1.0] and c[4].tolist() == [-1.0, 1.0] and c[5].tolist() == [0.0, -1.0]
    assert c[-1].tolist() == [1.0, 1.0] and c[1].tolist() == [-1.0, -0.5]


def test_output_shapes_and_ranges():
    f = field()
    coords = torch.cat([grid_coords(), torch.rand(50, 2) * 2 - 1])
    out = f(coords, camera(0.1, -0.05, 0.02), 3)
    n = coords.shape[0]
    assert out.rgb.shape == (n, 3) and out.alpha.shape == (n,) and out.deform.shape == (n, 2)
    for v in (out.rgb, out.alpha):
        assert bool(((v > -0.001) & (v < 1.001)).all())
    with torch.no_grad():  # saturate both ways: the affine map keeps values within the closed bounds
        f.net[-1].weight.copy_(torch.randn(f.net[-1].weight.shape, generator=torch.Generator().manual_seed(4)) * 1e4)
    out = f(coords, camera(), 0)
    v = torch.cat([out.rgb.reshape(-1), out.alpha])
    assert bool(((v >= -0.001) & (v <= 1.001)).all()) and float(v.min()) < 0.0 and float(v.max()) > 1.0


def test_warp_is_clamped_to_the_unit_square():
    f = field()
    with torch.no_grad():
        f.deform_net[-1].weight.mul_(300.0)  # offsets of several units
    coords = grid_coords()
    out = f(coords, camera(), 1)
    assert float(out.deform.abs().max()) > 2.0
    assert bool((out.warped.abs() <= 1.0).all()) and bool((out.warped.abs() == 1.0).any())
    torch.testing.assert_close(out.warped, (0.8 * coords + out.deform).clamp(-1, 1))


def ngp_pose(c2w_gl: torch.Tensor, scale: float = 4.0) -> torch.Tensor:
    """provider.py:19-26 ``nerf_matrix_to_ngp`` (offset 0), on a transforms.json (OpenGL, metres) pose."""
    p = c2w_gl
    return torch.tensor([
        [p[1, 0], -p[1, 1], -p[1, 2], p[1, 3] * scale],
        [p[2, 0], -p[2, 1], -p[2, 2], p[2, 3] * scale],
        [p[0, 0], -p[0, 1], -p[0, 2], p[0, 3] * scale],
        [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)


def original_projection(anchors_ngp: torch.Tensor, pose_ngp: torch.Tensor) -> torch.Tensor:
    """network.py:175-176 in its own world: anchors @ poses^T.inverse(), then (xy / w) / z, flattened."""
    wrapped = anchors_ngp[None] @ pose_ngp[None].permute(0, 2, 1).inverse()
    return (wrapped[:, :, :2] / wrapped[:, :, 3, None] / wrapped[:, :, 2, None]).view(-1)


def test_anchor_projection_equals_the_original_in_its_ngp_world():
    f = field().double()
    gen = torch.Generator().manual_seed(1)
    for trial in range(4):
        if trial >= 2:  # learned anchors: moved and with w != 1
            with torch.no_grad():
                f.anchors.add_(torch.randn(3, 4, generator=gen, dtype=torch.float64) * 0.05)
        angles = (torch.rand(3, generator=gen) - 0.5) * 0.6
        c2w = camera(*angles.tolist(), dist=0.6 + trial * 0.4, shift=(0.01, -0.02, 0.005)).double()
        ours = f.anchor_projection(c2w).detach()
        torch.testing.assert_close(ours, original_projection(f.anchors.detach(), ngp_pose(c2w)), atol=1e-12, rtol=1e-9)
    assert float(ours.abs().max()) < 0.2  # small numbers: anchors 4 cm from the head centre, camera ≥ 0.6 m


def test_pose_changes_encoding_and_anchors_learn_from_rgb():
    f = field()
    coords = grid_coords()
    a, b = camera(0.0, 0.0, 0.0), camera(0.08, 0.0, 0.0)
    assert float((f.pose_encoding(a) - f.pose_encoding(b)).abs().max()) > 1e-3
    assert float((f(coords, a, 0).rgb - f(coords, b, 0).rgb).abs().max()) > 0
    out = f(coords, camera(0.1, -0.05, 0.03), 2)
    ((out.rgb - torch.tensor([0.9, 0.2, 0.1])) ** 2).mean().backward()
    assert f.anchors.grad is not None and bool((f.anchors.grad != 0).all())  # xyz and w of every anchor
    assert float(f.deform_net[0].weight.grad.abs().max()) > 0  # through the grid's x-derivative
    assert float(f.codes.grad[2].abs().max()) > 0 and float(f.codes.grad[0].abs().max()) == 0


def test_code_index_none_uses_code_0():
    f = field()
    coords, c2w = grid_coords(8), camera()
    torch.testing.assert_close(f(coords, c2w, None).rgb, f(coords, c2w, 0).rgb, atol=0, rtol=0)
    assert float((f(coords, c2w, 1).rgb - f(coords, c2w, 0).rgb).abs().max()) > 0
    with pytest.raises(IndexError):
        f(coords, c2w, 6)


def test_param_groups_reproduce_the_original():
    f = field()
    groups = f.param_groups(1e-2, 1e-3)
    assert [g["name"] for g in groups] == ["torso_grid", "torso_net", "torso_deform_net", "anchors", "torso_codes"]
    assert [g["lr"] for g in groups] == [1e-2, 1e-3, 1e-3, 1e-3, 1e-3]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0, 0.0, 0.0, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in f.parameters()) and len(set(ids)) == len(ids)
    assert [g["name"] for g in field(code_dim=0).param_groups()][-1] == "anchors"
    torch.optim.AdamW(groups, betas=(0.0, 0.99), eps=1e-8)  # accepted as is


def test_anchor_loss():
    f = field()
    assert float(anchor_loss(f)) == 0.0  # w = 1 at init: the value it pulls towards
    with torch.no_grad():
        f.anchors[:, 3] = torch.tensor([1.0, 0.8, 1.3])
        f.anchors[:, :3] += 5.0  # xyz are not penalised
    loss = anchor_loss(f)
    assert loss.shape == () and abs(float(loss) - (0.04 + 0.09) / 3) < 1e-6
    loss.backward()
    assert bool((f.anchors.grad[:, :3] == 0).all()) and f.anchors.grad[1, 3] < 0 < f.anchors.grad[2, 3]


H = 2.0 / 127.0  # one cell of the 128² grid (align_corners=True)
CENTRE = torch.tensor([64 * H - 1.0, 64 * H - 1.0])  # exactly on cell (64, 64)
RADIUS = 20 * H


def disc(radius: float = RADIUS):
    return lambda xy: ((xy - CENTRE).norm(dim=-1) < radius).float()


def test_occupancy_schedule():
    occ = TorsoOccupancy()
    calls = []
    fn = lambda xy: calls.append(xy.shape) or torch.zeros(xy.shape[0])
    assert [occ.update(fn, s) for s in (0, 5, 15, 16, 33, 48)] == [True, False, False, True, False, True]
    assert occ.update(fn, 7, force=True) and calls == [(128 * 128, 2)] * 4
    assert not bool(occ.mask(grid_coords()).any())  # empty grid: nothing is queried


def test_occupancy_disc_dilation_and_far_outside():
    occ = TorsoOccupancy()
    assert occ.update(disc(), 0, generator=torch.Generator().manual_seed(0))
    assert 0.01 < float(occ.grid.mean()) < 0.2  # threshold = 0.01
    gen = torch.Generator().manual_seed(1)
    ang = torch.rand(400, generator=gen) * 2 * math.pi
    unit = torch.stack([ang.cos(), ang.sin()], dim=-1)
    inside = CENTRE + unit * (torch.rand(400, 1, generator=gen) * 17.5 * H)
    far = CENTRE + unit * (26 * H + torch.rand(400, 1, generator=gen) * 0.5)
    far = far[(far.abs() <= 1).all(dim=1)]
    assert bool(occ.mask(inside).all())
    assert not bool(occ.mask(far).any()) and len(far) > 100
    assert not bool(occ.mask(torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])).any())
    # one cell outside the disc's last cells: covered only by the 5×5 dilation (jitter moves samples < 0.6 cells)
    margin = CENTRE + 21 * H * torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert bool(occ.mask(margin).all())


def test_occupancy_orientation_first_coordinate_is_the_row():
    occ = TorsoOccupancy()
    occ.update(lambda xy: (xy[:, 0] > 0.5).float(), 0)  # bottom rows of the image only
    # stored as grid[j_1, j_0]: the first coordinate runs along the tensor's columns (grid_sample's x)
    assert int(occ.grid[:, :90].sum()) == 0 and bool((occ.grid[:, 100:] == 1).all())
    assert bool(occ.mask(torch.tensor([[0.8, -0.7], [0.9, 0.9]])).all())
    assert not bool(occ.mask(torch.tensor([[-0.7, 0.8], [0.1, 0.9]])).any())


def test_occupancy_threshold_is_min_of_0_01_and_mean():
    occ = TorsoOccupancy()  # mean ≈ 0.27 > 0.01: the threshold is 0.01, so a faint 0.03 region counts
    occ.update(lambda xy: torch.where(xy[:, 0] > 0.5, 1.0, torch.where(xy[:, 0] < -0.5, 0.03, 0.0)), 0)
    assert float(occ.grid.mean()) > 0.2
    assert bool(occ.mask(torch.tensor([[-0.8, 0.3], [-0.7, -0.9]])).all())
    assert not bool(occ.mask(torch.tensor([[0.0, 0.3], [-0.2, -0.9]])).any())
    occ = TorsoOccupancy()  # mean ≈ 0.001 < 0.01: the threshold is the mean, so 0.004 counts
    occ.update(lambda xy: torch.where(xy[:, 0] < -0.5, 0.004, 0.0), 0)
    assert float(occ.grid.mean()) < 0.0015
    assert bool(occ.mask(torch.tensor([[-0.8, 0.3], [-0.7, -0.9]])).all())
    assert not bool(occ.mask(torch.tensor([[0.0, 0.3], [0.9, -0.9]])).any())


def test_occupancy_ema_max_and_decay():
    occ = TorsoOccupancy()
    occ.update(disc(), 0)
    first = occ.grid.clone()
    for k in range(1, 4):  # field switched off: pure decay by 0.95 per update
        occ.update(lambda xy: torch.zeros(xy.shape[0]), 16 * k)
        torch.testing.assert_close(occ.grid, first * 0.95**k, atol=1e-7, rtol=1e-6)
    occ.update(disc(30 * H), 64)  # max with a larger disc: fresh ones win over decayed values
    assert float(occ.grid[64, 64]) == 1.0 and float(occ.grid[64, 64 + 27]) == 1.0
    assert float(occ.grid.max()) == 1.0 and float(occ.grid[0, 0]) == 0.0


def test_render_torso_masks_and_composites():
    f, occ = field(), TorsoOccupancy()
    occ.update(lambda xy: (xy[:, 0] > 0.0).float(), 0)
    coords = grid_coords(20)
    bg = torch.rand(coords.shape[0], 3, generator=torch.Generator().manual_seed(2))
    rgb, alpha = render_torso(f, occ, coords, camera(), 0, bg)
    mask = occ.mask(coords)
    assert 0 < int(mask.sum()) < len(mask)
    torch.testing.assert_close(rgb[~mask], bg[~mask], atol=0, rtol=0)
    assert bool((alpha[~mask] == 0).all())
    out = f(coords[mask], camera(), 0)
    torch.testing.assert_close(rgb[mask], out.rgb * out.alpha[:, None] + bg[mask] * (1 - out.alpha[:, None]))


def test_fit_synthetic_torso_halves_the_mse():
    n = 32
    coords = torso_pixel_coords(n, n)
    row, col = coords[:, 0], coords[:, 1]
    inside = (((row - 0.7) / 0.6) ** 2 + (col / 0.75) ** 2 < 1).float()  # a shoulder-like ellipse at the bottom
    colour = torch.stack([0.85 - 0.3 * col.abs(), 0.35 + 0.2 * row, torch.full_like(row, 0.2)], dim=-1)
    bg = torch.tensor([0.1, 0.3, 0.7]).expand(n * n, 3)
    target = colour * inside[:, None] + bg * (1 - inside[:, None])
    f = field(seed=3)
    opt = torch.optim.AdamW(f.param_groups(), betas=(0.0, 0.99), eps=1e-8)  # the original's optimizer
    c2w, losses = camera(0.05, 0.02, 0.0), []
    for step in range(60):
        rgb, _ = render_torso(f, None, coords, c2w, 1, bg)
        mse = ((rgb - target) ** 2).mean()
        loss = mse + anchor_loss(f)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(mse))
    assert losses[-1] < 0.5 * losses[0], losses[::10]  # the brief's bar: fails when the net gets no gradient
    assert losses[-1] < 0.05 * losses[0], losses[::10]  # ~0.003-0.008 here; without the grid's features ~0.11-0.16
