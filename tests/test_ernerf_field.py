"""ER-NeRF head field and head-stage losses: shapes, output ranges, the code / uncertainty / attention rules, gradient
routing, the optimizer groups, and the loss terms against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

from gt_core.methods.ernerf import losses as L
from gt_core.methods.ernerf.field import ERNeRFHead, FieldOutput, HeadFieldConfig, sh_basis
from gt_core.render.sh import eval_sh

AABB = (-0.15, -0.2, -0.1, 0.15, 0.1, 0.2)
C_AUD, P = 29, 64


def make_head(seed: int = 0, **kw) -> ERNeRFHead:
    torch.manual_seed(seed)
    head = ERNeRFHead(HeadFieldConfig(aabb=AABB, n_codes=16, **kw), audio_dim=C_AUD)
    with torch.no_grad():  # a "trained-like" table so the spatial feature is O(1), not U(±1e-4)
        for plane in head.encoder.planes.values():
            plane.table.uniform_(-1.0, 1.0)
    return head


def inputs(seed: int = 1, n: int = P):
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(AABB[:3]), torch.tensor(AABB[3:])
    pts = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    dirs = torch.randn(n, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    code = torch.randn(32, generator=g)
    return pts, dirs, code, torch.tensor(0.4)


def tables(head):
    return [plane.table for plane in head.encoder.planes.values()]


def test_config_validation():
    with pytest.raises(ValueError, match="aabb"):
        HeadFieldConfig(aabb=(0, 0, 0, 1, -1, 1))
    with pytest.raises(ValueError, match="code_dim"):
        HeadFieldConfig(aabb=AABB, code_dim=0)
    with pytest.raises(ValueError, match="sh_bands"):
        HeadFieldConfig(aabb=AABB, sh_bands=25)
    cfg = HeadFieldConfig(aabb=AABB)
    assert (cfg.n_levels, cfg.base_resolution, cfg.finest_resolution, cfg.log2_hashmap_size) == (12, 64, 512.0, 14)
    assert (cfg.n_codes, cfg.code_dim, cfg.dim_aud, cfg.audio_context, cfg.use_eye) == (10000, 4, 32, 8, True)


def test_shapes_and_ranges():
    head = make_head().train()
    pts, dirs, code, eye = inputs()
    out = head(pts, dirs, code, eye, code_index=3)
    assert isinstance(out, FieldOutput)
    assert out.sigma.shape == out.ambient_aud.shape == out.ambient_eye.shape == out.uncertainty.shape == (P,)
    assert out.rgb.shape == (P, 3)
    feat = head.encode_points(pts)
    assert feat.shape == (P, 36)
    att, eye_att = head.region_attention(feat)
    assert att.shape == (P, 32) and eye_att.shape == (P, 1)
    torch.testing.assert_close(out.ambient_aud, att.norm(dim=-1))
    torch.testing.assert_close(out.ambient_eye, eye_att[:, 0])
    assert (out.sigma > 0).all() and torch.isfinite(out.sigma).all()
    assert (out.rgb > -0.001).all() and (out.rgb < 1.001).all()
    assert (out.uncertainty > 0).all()
    torch.testing.assert_close(head.density(pts, code, eye), out.sigma)
    ctx = torch.randn(2, 8, 16, C_AUD)
    assert head.encode_audio(ctx).shape == (2, 32)
    per_point = head(pts, dirs, code.expand(P, 32).clone(), eye.expand(P).clone(), 3)
    torch.testing.assert_close(per_point.sigma, out.sigma)
    assert sum(p.numel() for p in head.sigma_net.parameters()) == 69 * 64 + 64 * 64 + 64 * 65
    assert sum(p.numel() for p in head.color_net.parameters()) == 84 * 64 + 64 * 3


def test_rgb_uses_the_full_scaled_range():
    """Saturated colour logits reach ±0.001 beyond [0, 1]: catches a missing ``· 1.002 − 0.001``."""
    head = make_head().eval()
    with torch.no_grad():
        last = head.color_net[-1].weight
        last.copy_(torch.sign(torch.randn_like(last)) * 1e3)
    pts, dirs, code, eye = inputs()
    rgb = head(pts, dirs, code, eye, None).rgb
    assert rgb.min() >= -0.001 - 1e-6 and rgb.max() <= 1.001 + 1e-6
    assert rgb.min() < -0.0009 and rgb.max() > 1.0009


def test_sh_basis_matches_render_sh():
    dirs = inputs()[1]
    ref = eval_sh(3, torch.eye(16).expand(P, 16, 16), dirs)  # coefficient k = e_k → basis value k
    torch.testing.assert_close(sh_basis(dirs), ref)
    torch.testing.assert_close(sh_basis(dirs, 4), ref[:, :4])


def test_code_index_none_uses_code_zero():
    head = make_head().eval()
    pts, dirs, code, eye = inputs()
    base = head(pts, dirs, code, eye, None).rgb
    torch.testing.assert_close(head(pts, dirs, code, eye, 0).rgb, base, rtol=0, atol=0)
    with torch.no_grad():
        head.individual_codes[5] += 1.0
    torch.testing.assert_close(head(pts, dirs, code, eye, None).rgb, base, rtol=0, atol=0)
    assert (head(pts, dirs, code, eye, 5).rgb - base).abs().max() > 1e-4
    with torch.no_grad():
        head.individual_codes[0] += 1.0
    assert (head(pts, dirs, code, eye, None).rgb - base).abs().max() > 1e-4
    with pytest.raises(IndexError):
        head(pts, dirs, code, eye, 16)


def test_uncertainty_off_is_log2():
    head = make_head()
    pts, dirs, code, eye = inputs()
    train_u = head.train()(pts, dirs, code, eye, 1).uncertainty
    assert (train_u - math.log(2)).abs().max() > 1e-4  # the head really runs in training
    assert torch.equal(head(pts, dirs, code, eye, 1, use_uncertainty=False).uncertainty, torch.full((P,), math.log(2)))
    assert torch.equal(head.eval()(pts, dirs, code, eye, 1).uncertainty, torch.full((P,), math.log(2)))


def test_uncertainty_head_does_not_train_the_tables():
    head = make_head().train()
    pts, dirs, code, eye = inputs()
    head(pts, dirs, code, eye, 1).uncertainty.sum().backward()
    assert all(t.grad is None or t.grad.abs().max() == 0 for t in tables(head))
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in head.unc_net.parameters())
    head.zero_grad(set_to_none=True)
    head(pts, dirs, code, eye, 1).rgb.sum().backward()
    assert all(t.grad is not None and t.grad.abs().max() > 0 for t in tables(head))


def test_gradients_reach_tables_audio_encoder_and_codes():
    head = make_head().train()
    pts, dirs, _, eye = inputs()
    audio_code = head.encode_audio(torch.randn(1, 8, 16, C_AUD, generator=torch.Generator().manual_seed(2)))[0]
    out = head(pts, dirs, audio_code, eye, 3)
    (out.rgb.sum() + out.sigma.sum()).backward()
    assert all(t.grad.abs().max() > 0 for t in tables(head))
    for module in (head.audio.net, head.audio.att, head.aud_ch_att_net, head.eye_att_net, head.sigma_net):
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in module.parameters())
    g = head.individual_codes.grad
    assert g[3].abs().max() > 0 and g[torch.arange(16) != 3].abs().max() == 0


def test_audio_code_modulates_sigma_through_attention():
    head = make_head().eval()
    pts, dirs, code, eye = inputs()
    other = torch.randn(32, generator=torch.Generator().manual_seed(9))
    s1, s2 = head.density(pts, code, eye), head.density(pts, other, eye)
    assert ((s1 - s2).abs() / s1).max() > 1e-3
    with torch.no_grad():
        head.aud_ch_att_net[-1].weight.zero_()  # attention ≡ 0
    o1, o2 = head(pts, dirs, code, eye, None), head(pts, dirs, other, eye, None)
    assert torch.equal(o1.sigma, o2.sigma) and torch.equal(o1.rgb, o2.rgb)
    assert torch.equal(o1.ambient_aud, torch.zeros(P))


def test_eye_branch():
    head = make_head().eval()
    pts, dirs, code, _ = inputs()
    a, b = head(pts, dirs, code, torch.tensor(0.0), None), head(pts, dirs, code, torch.tensor(1.0), None)
    assert (a.sigma - b.sigma).abs().max() > 0 and ((a.ambient_eye > 0) & (a.ambient_eye < 1)).all()
    with pytest.raises(ValueError, match="eye"):
        head(pts, dirs, code, None, None)
    no_eye = make_head(use_eye=False).eval()
    assert sum(p.numel() for p in no_eye.sigma_net[0].parameters()) == 68 * 64
    out = no_eye(pts, dirs, code, None, None)
    assert torch.equal(out.ambient_eye, torch.zeros(P))


def test_param_groups_cover_every_parameter_once():
    head = make_head()
    groups = head.param_groups(1e-2, 1e-3, 5e-3)
    names = [g["name"] for g in groups]
    assert names == ["audio_net", "encoder_xy", "encoder_yz", "encoder_xz", "sigma_net", "color_net",
                     "audio_att_net", "individual_codes", "aud_ch_att_net", "unc_net", "eye_att_net"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in head.parameters()}
    by = {g["name"]: g for g in groups}
    for name in ("encoder_xy", "encoder_yz", "encoder_xz"):
        assert (by[name]["lr"], by[name]["weight_decay"]) == (1e-2, 0.01)
    assert (by["audio_att_net"]["lr"], by["audio_att_net"]["weight_decay"]) == (5e-3, 1e-4)
    for name in set(names) - {"encoder_xy", "encoder_yz", "encoder_xz", "audio_att_net"}:
        assert (by[name]["lr"], by[name]["weight_decay"]) == (1e-3, 0.0), name
    assert head.param_groups(1e-2, 2e-3)[6]["lr"] == pytest.approx(1e-2)  # default lr_att = 5 · lr_net
    torch.optim.AdamW(groups, betas=(0.0, 0.99), eps=1e-8)  # the groups are valid optimizer input


# ---------------------------------------------------------------------------------------------------- losses
def rays(seed: int = 3, r: int = 6):
    g = torch.Generator().manual_seed(seed)
    pred, gt = torch.rand(r, 3, generator=g), torch.rand(r, 3, generator=g)
    face = torch.tensor([True, False] * (r // 2))
    return pred, gt, face


def test_uncertainty_photometric_uniform_u():
    pred, gt, face = rays()
    sf = 0.3
    loss = L.uncertainty_photometric(pred, gt, torch.zeros(6), face, sf)
    mse = ((pred - gt) ** 2).mean(-1)
    expected = mse * 1.0 + sf * (pred - gt).norm(dim=-1) / 2 * face  # w = 1 → factor 0.2 + 0.8 · 1; β = 1
    torch.testing.assert_close(loss, expected)


def test_uncertainty_photometric_closed_form_and_gradient():
    pred, gt, face = rays()
    u = torch.tensor([0.1, 2.0, 0.5, 0.0, 3.0, 1.0], requires_grad=True)
    sf = 0.7
    loss = L.uncertainty_photometric(pred, gt, u, face, sf)
    e = [math.exp(v) for v in u.tolist()]
    for i in range(6):
        d = [(pred[i, c] - gt[i, c]).item() for c in range(3)]
        mse, norm = sum(x * x for x in d) / 3, math.sqrt(sum(x * x for x in d))
        w = e[i] / sum(e) * 6
        beta = u[i].item() + 1
        val = mse * (0.2 + 0.8 * min(max((1 - sf) + sf * w, 0), 10))
        val += sf * (norm / (2 * beta**2) + math.log(beta) ** 2 / 2) if face[i] else 1e-3 * sf * u[i].item()
        assert loss[i].item() == pytest.approx(val, rel=1e-5)
    loss.sum().backward()  # the reweighting is detached: off the face only the static term has gradient
    torch.testing.assert_close(u.grad[~face], torch.full((3,), 1e-3 * sf))


def test_uncertainty_weight_clamped_at_ten():
    pred, gt, face = rays()
    u = torch.tensor([30.0, 0, 0, 0, 0, 0])  # w_0 = softmax(u)_0 · R ≈ R = 24 > 10: clamped
    pred, gt = pred.repeat(4, 1), gt.repeat(4, 1)
    u, face = torch.cat([u, torch.zeros(18)]), face.repeat(4)
    loss = L.uncertainty_photometric(pred, gt, u, face, 1.0)
    mse0 = ((pred[0] - gt[0]) ** 2).mean()
    beta = 31.0
    expected = mse0 * (0.2 + 0.8 * 10) + (pred[0] - gt[0]).norm() / (2 * beta**2) + math.log(beta) ** 2 / 2
    assert loss[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_alpha_entropy():
    assert L.alpha_entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(1.0, abs=1e-6)
    edge = L.alpha_entropy(torch.tensor([0.0, 1.0])).item()
    assert 0 < edge < 2e-4
    a = torch.tensor([0.2, 0.9])
    ref = sum(-x * math.log2(x) - (1 - x) * math.log2(1 - x) for x in (0.2, 0.9)) / 2
    assert L.alpha_entropy(a).item() == pytest.approx(ref, rel=1e-5)


def test_ambient_penalties():
    aud = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    eye = torch.tensor([16.0, 8.0, 4.0, 2.0], requires_grad=True)
    face = torch.tensor([True, False, True, False])
    a_term, e_term = L.ambient_penalties(aud, eye, face, 0.5)
    lam = 0.5 * 1e-4
    assert a_term.item() == pytest.approx(lam * (2 + 4) / 4)
    assert e_term.item() == pytest.approx(lam * (16 / 16 * 1 + 4 / 16 * 3) / 4)
    e_term.backward()
    assert aud.grad is None or aud.grad.abs().max() == 0  # amb_aud is detached in the eye term
    a_term2, _ = L.ambient_penalties(aud, eye, face, 1.0, max_steps=8, lambda_amb=1.0)
    assert a_term2.item() == pytest.approx(1.5)


def test_ray_sums_matches_loop():
    g = torch.Generator().manual_seed(4)
    vals = torch.rand(40, generator=g)
    ids = torch.randint(0, 7, (40,), generator=g)
    ids[ids == 5] = 6  # ray 5 has no samples
    out = L.ray_sums(vals, ids, 8)
    ref = [sum(v for v, i in zip(vals.tolist(), ids.tolist()) if i == r) for r in range(8)]
    torch.testing.assert_close(out, torch.tensor(ref))
    assert out[5] == 0 and out[7] == 0


class _Side:
    def __init__(self, u, a, e):
        self.uncertainty, self.ambient_aud, self.ambient_eye = u, a, e


def test_jitter_smoothness():
    pts = inputs()[0]
    const = lambda p: _Side(*(torch.ones(p.shape[0]) * c for c in (1.0, 2.0, 3.0)))  # noqa: E731
    assert L.jitter_smoothness(const, pts).item() == 0.0
    slope = lambda p: _Side(p[:, 0] * 100, p[:, 1] * 100, p[:, 2] * 0)  # noqa: E731
    val = L.jitter_smoothness(slope, pts, generator=torch.Generator().manual_seed(0)).item()
    assert 0 < val < 2 * (100 * 1e-3) ** 2  # |Δ| ≤ eps per axis → each MSE ≤ (100 eps)²

    head = make_head().train()
    _, dirs, code, eye = inputs()
    reg = L.jitter_smoothness(lambda p: head(p, dirs, code, eye, 1), pts, generator=torch.Generator().manual_seed(0))
    assert reg.item() > 0
    reg.backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in head.unc_net.parameters())
    assert (L.JITTER_EPS, L.JITTER_WEIGHT, L.JITTER_INTERVAL) == (1e-3, 1e-5, 16)


def test_rays_of_several_frames_in_one_pass_equal_one_pass_per_frame():
    """A multi-frame lip-square step renders every frame's rays in one call with per-ray codes, eye values and
    individual codes; that must equal rendering each frame on its own."""
    from gt_core.methods.ernerf.render import render_head_rays

    head = make_head().eval()
    g = torch.Generator().manual_seed(5)
    frames = []
    for k, n in enumerate((7, 5, 9)):
        origins = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3) + 0.02 * torch.randn(n, 3, generator=g)
        dirs = torch.tensor([0.0, 0.0, -1.0]) + 0.1 * torch.randn(n, 3, generator=g)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        frames.append((origins, dirs, torch.rand(n, 3, generator=g), torch.randn(32, generator=g),
                       torch.tensor(0.1 + 0.3 * k), 2 * k + 1))
    one = [render_head_rays(head, o, d, bg, c, e, ci, 24, None, False, use_uncertainty=False)
           for o, d, bg, c, e, ci in frames]
    counts = torch.tensor([f[0].shape[0] for f in frames])
    together = render_head_rays(
        head, torch.cat([f[0] for f in frames]), torch.cat([f[1] for f in frames]), torch.cat([f[2] for f in frames]),
        torch.stack([f[3] for f in frames]).repeat_interleave(counts, dim=0),
        torch.stack([f[4] for f in frames]).repeat_interleave(counts),
        torch.tensor([f[5] for f in frames]).repeat_interleave(counts), 24, None, False, use_uncertainty=False)
    for name in ("rgb", "alpha", "ambient_aud", "ambient_eye"):
        expected = torch.cat([getattr(o, name) for o in one])
        assert torch.allclose(getattr(together, name), expected, atol=1e-6), name
    # the frames differ, so a pass that gave every ray the first frame's values would fail the check above
    assert not torch.allclose(one[0].rgb.mean(0), one[1].rgb.mean(0), atol=1e-4)


def test_head_ray_ambient_sums_stop_at_the_termination():
    """The original's training kernel adds a sample's ambient outputs inside the compositing loop that breaks once
    T < T_thresh: a ray's ambient sums must cover its samples up to the termination, not every sample."""
    from gt_core.methods.ernerf.render import render_head_rays
    from gt_core.render.rays import ray_aabb
    from gt_core.render.volume import live_samples, sample_along_rays

    head = make_head(world_scale=200.0).train()  # a dense field at init, so most rays terminate inside the box
    g = torch.Generator().manual_seed(6)
    n = 40
    origins = torch.tensor([0.0, -0.05, 1.0]).expand(n, 3) + 0.05 * torch.randn(n, 3, generator=g)
    dirs = torch.tensor([0.0, 0.0, -1.0]) + 0.05 * torch.randn(n, 3, generator=g)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    bg, code, eye = torch.rand(n, 3, generator=g), torch.randn(32, generator=g), torch.tensor(0.3)
    out = render_head_rays(head, origins, dirs, bg, code, eye, 3, 32, None, False, 1e-4)
    # the reference from the same (unjittered) lattice: the field at every sample, summed over the live ones only
    near, far, _ = ray_aabb(origins, dirs, head.cfg.aabb)
    samples = sample_along_rays(near, far, 32, origins=origins, dirs=dirs)
    with torch.no_grad():
        per = head(samples.points, dirs[samples.ray_ids], code, eye, 3)
    live = live_samples(per.sigma, samples.deltas * head.cfg.world_scale, samples.ray_ids, n, 1e-4)
    assert 0 < int(live.sum()) < 0.7 * live.numel()  # most samples lie after their ray's termination
    expected = torch.zeros(n).index_add(0, samples.ray_ids, per.ambient_aud * live)
    everything = torch.zeros(n).index_add(0, samples.ray_ids, per.ambient_aud)
    assert torch.allclose(out.ambient_aud.detach(), expected, atol=1e-5)
    assert not torch.allclose(out.ambient_aud.detach(), everything, atol=1e-3)


@pytest.mark.parametrize("world_scale", [1.0, 4.0])
def test_head_rays_integrate_density_in_ngp_units(monkeypatch, world_scale):
    """σ is a density per NGP unit (the original's metres × --scale 4): a ray through a constant σ over the whole box
    has opacity 1 − exp(−σ · chord_in_metres · world_scale)."""
    from gt_core.methods.ernerf.render import render_head_rays

    head = make_head(world_scale=world_scale).eval()
    sigma = 3.0

    def constant(points, dirs, audio_code, eye, code_index, use_uncertainty=True):
        p = points.shape[0]
        return FieldOutput(torch.full((p,), sigma), torch.full((p, 3), 0.5), torch.zeros(p), torch.zeros(p),
                           torch.zeros(p))

    monkeypatch.setattr(head, "forward", constant)
    origins = torch.tensor([[0.0, -0.05, 1.0], [0.01, -0.02, 1.0]])
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    out = render_head_rays(head, origins, dirs, torch.zeros(2, 3), torch.zeros(32), torch.tensor(0.0), None, 32,
                           None, False, t_thresh=0.0, use_uncertainty=False)
    chord = AABB[5] - AABB[2]  # along z, metres
    expected = 1.0 - math.exp(-sigma * chord * world_scale)
    assert torch.allclose(out.alpha, torch.full((2,), expected), atol=1e-5), (out.alpha, expected)


def test_world_scale_is_validated():
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="world_scale"):
            HeadFieldConfig(aabb=AABB, world_scale=bad)
