"""GaussianTalker: module shapes, losses, densification, and the real training loop on a tiny synthetic cell
(loss goes down, resume is bit-identical, NaN stops training with a loadable checkpoint, render covers the test set)."""
from __future__ import annotations

import csv
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from gt_core.data.cell import LABEL_HEAD, LABEL_TORSO, CellData, FrameSet
from gt_core.errors import InputError
from gt_core.methods.gaussiantalker import train as T
from gt_core.encoders.audio import AudioAttNet, AudioEncoder, AudioNet
from gt_core.methods.gaussiantalker.method import GaussianTalkerMethod
from gt_core.nn.encodings import sinusoidal_encoding
from gt_core.methods.gaussiantalker.model import (
    ConditionTokens,
    GaussianTalkerModel,
    ModelConfig,
    OffsetHeads,
    SpatialAudioAttention,
    face_mesh_triangles,
)
from gt_core.nn.losses import l1_loss, lip_l1, load_vgg16_perceptual, ssim
from gt_core.methods.registry import get_method
from gt_core.preprocess.landmarks import LIPS
from gt_core.render.cameras import Camera
from gt_core.render.gaussians import rasterize_gaussians

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------- synthetic cell
def _c2w_looking_at_origin(pos: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world at ``pos`` looking at the origin, world +y up."""
    z = pos / np.linalg.norm(pos)  # OpenGL camera z points backward (away from the target)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, pos
    return m.astype(np.float32)


def synthetic_cell(n_train: int = 8, n_test: int = 3, size: int = 48, audio_dim: int = 32, seed: int = 0) -> CellData:
    """A small head of coloured Gaussians (skin, hair, eyes, a mouth opening with a fake audio amplitude) seen by
    slightly moving cameras, over a plate with a torso band; landmarks are the canonical shape projected."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    # canonical face shape: points on a front-facing cap, the 40 lip points on a small ellipse low on the face
    uv = rng.uniform(-1, 1, (478 * 3, 2))
    uv = uv[(uv ** 2).sum(1) < 1][:478]
    canonical = np.stack([0.07 * uv[:, 0], 0.09 * uv[:, 1], 0.04 * np.sqrt(1 - (uv ** 2).sum(1)) - 0.02], 1)
    t = np.linspace(0, 2 * np.pi, len(LIPS), endpoint=False)
    canonical[LIPS] = np.stack([0.02 * np.cos(t), -0.05 + 0.008 * np.sin(t), np.full_like(t, 0.015)], 1)
    canonical = canonical.astype(np.float32)

    amp = np.abs(np.sin(np.arange(n) * 0.9))  # the "speech" that opens the mouth
    pattern = rng.normal(size=(16, audio_dim)).astype(np.float32)
    audio = (amp[:, None, None] * pattern[None] + 0.05 * rng.normal(size=(n, 16, audio_dim))).astype(np.float32)
    eye = rng.uniform(0, 1, n).astype(np.float32)

    f = 2.0 * size
    cx = cy = size / 2
    plate = np.zeros((size, size, 3), np.uint8)
    plate[..., 0] = np.linspace(60, 160, size, dtype=np.uint8)[None, :]
    plate[..., 1], plate[..., 2] = 110, 150
    # scene Gaussians: skin, hair, two eyes, mouth
    means = torch.tensor([[0, 0, 0], [0, 0.06, -0.02], [-0.025, 0.02, 0.03], [0.025, 0.02, 0.03], [0, -0.05, 0.035]],
                         dtype=torch.float32)
    colors = torch.tensor([[0.9, 0.7, 0.6], [0.3, 0.2, 0.1], [0.1, 0.1, 0.2], [0.1, 0.1, 0.2], [0.5, 0.1, 0.1]])
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(5, 1)
    opac = torch.tensor([0.99, 0.95, 0.9, 0.9, 0.95])
    frames, labels, bgs, tgts, c2ws, lms = [], [], [], [], [], []
    for i in range(n):
        pos = np.array([0.03 * np.sin(i), 0.02 * np.cos(i), 0.6])
        c2w = _c2w_looking_at_origin(pos)
        cam = Camera.from_c2w_opengl(torch.from_numpy(c2w), f, f, cx, cy, size, size)
        scales = torch.tensor([[0.06, 0.08, 0.05], [0.07, 0.04, 0.05], [0.008, 0.004 + 0.004 * (1 - eye[i]), 0.004],
                               [0.008, 0.004 + 0.004 * (1 - eye[i]), 0.004], [0.015, 0.003 + 0.01 * amp[i], 0.004]])
        label = np.zeros((size, size), np.uint8)
        label[int(0.8 * size):, int(0.2 * size):int(0.8 * size)] = LABEL_TORSO
        bg = plate.copy()
        bg[label == LABEL_TORSO] = (40, 60, 200)
        with torch.no_grad():
            out = rasterize_gaussians(means, quats, scales.float(), opac, colors, cam,
                                      torch.from_numpy(bg).permute(2, 0, 1).float() / 255, backend="torch")
        tgt = (out.color.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        label[out.alpha[0].numpy() > 0.5] = LABEL_HEAD
        w2c = np.linalg.inv(c2w)
        cam_pts = canonical @ w2c[:3, :3].T + w2c[:3, 3]
        px = np.stack([f * cam_pts[:, 0] / -cam_pts[:, 2] + cx, -f * cam_pts[:, 1] / -cam_pts[:, 2] + cy,
                       np.zeros(478)], 1)
        frames.append(tgt), labels.append(label), bgs.append(bg), tgts.append(tgt), c2ws.append(c2w)
        lms.append(px.astype(np.float32))

    brows = np.sin(np.arange(n)[:, None] * 0.3 + np.arange(5)[None]).astype(np.float32)  # [n, 5]
    expression = np.concatenate([brows, eye[:, None], eye[:, None]], axis=1).astype(np.float32)  # [n, 7]
    # stand-in AVE features (SyncTalk's audio input): a fixed projection of each frame's audio window, ReLU'd
    proj = np.random.default_rng(7).normal(size=(16 * audio_dim, 512)) / np.sqrt(16 * audio_dim)
    ave = np.maximum(audio.reshape(n, -1) @ proj, 0.0).astype(np.float32)  # [n, 512]

    def frame_set(sl: slice) -> FrameSet:
        ids = np.arange(n)[sl].astype(np.int64)
        return FrameSet(ids, np.stack(frames)[sl], np.stack(labels)[sl], np.stack(bgs)[sl], np.stack(tgts)[sl],
                        np.stack(c2ws)[sl], eye[sl], audio[sl], np.stack(lms)[sl], expression[sl],
                        c2w_stabilised=np.stack(c2ws)[sl], ave=ave[sl])

    kwargs = dict(subject="synthetic", duration_s=n_train / 25, cell_dir=Path("."), data_dir=Path("."), width=size,
                  height=size, fx=f, fy=f, cx=cx, cy=cy, plate=plate, canonical=canonical, audio_feature="mel",
                  train=frame_set(slice(0, n_train)), test=frame_set(slice(n_train, n)), meta={})
    names = {fl.name for fl in fields(CellData)}
    return CellData(**{k: v for k, v in kwargs.items() if k in names})


@pytest.fixture(scope="module")
def cell() -> CellData:
    return synthetic_cell()


def tiny_cfg(**overrides) -> dict:
    cfg = dict(GaussianTalkerMethod.presets["tiny"])
    cfg.update(seed=3, **overrides)
    return cfg


@pytest.fixture(scope="module")
def trained(cell, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gt_tiny")
    return GaussianTalkerMethod().train(cell, tiny_cfg(), out, CPU)


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------------------------------- modules
@pytest.mark.parametrize("dim", [29, 32, 96])
def test_audio_encoder_shapes(dim):
    torch.manual_seed(0)
    assert AudioNet(dim)(torch.randn(5, 16, dim)).shape == (5, 32)
    out, w = AudioAttNet()(torch.randn(5, 8, 32), return_weights=True)
    assert out.shape == (5, 32) and w.shape == (5, 8) and torch.allclose(w.sum(-1), torch.ones(5))
    assert AudioEncoder(dim)(torch.randn(3, 8, 16, dim)).shape == (3, 32)
    tokens = ConditionTokens(dim, ModelConfig())(torch.randn(3, 8, 16, dim), torch.rand(3),
                                                 torch.eye(4).repeat(3, 1, 1))
    assert tokens.shape == (3, 4, 64)


def test_sinusoidal_eye_encoding():
    enc = sinusoidal_encoding(torch.tensor([0.0, 0.7]), 32)
    assert enc.shape == (2, 32)
    assert torch.allclose(enc[0, 0::2], torch.zeros(16)) and torch.allclose(enc[0, 1::2], torch.ones(16))
    assert math.isclose(float(enc[1, 0]), math.sin(0.7), rel_tol=1e-6)
    # the released eye_encoding multiplies the value by 10000^(2⌊i/2⌋/32) (named div_term, but a factor)
    assert math.isclose(float(enc[1, 3]), math.cos(0.7 * 10000 ** (2 / 32)), rel_tol=1e-5)
    assert math.isclose(float(enc[1, 30]), math.sin(0.7 * 10000 ** (30 / 32)), abs_tol=2e-3)
    assert math.isclose(float(enc[1, 31]), math.cos(0.7 * 10000 ** (30 / 32)), abs_tol=2e-3)


def test_attention_and_offset_shapes():
    torch.manual_seed(0)
    cfg = ModelConfig()
    att = SpatialAudioAttention(cfg)
    q, tokens = torch.randn(50, 64), torch.randn(3, 4, 64)
    out, w = att(q, tokens)
    assert out.shape == (3, 50, 64) and w.shape == (3, 50, 4)
    assert torch.allclose(w.sum(-1), torch.ones(3, 50), atol=1e-6)
    att.eval()
    assert torch.equal(att(q, tokens)[0], att(q, tokens)[0])  # no dropout in eval mode
    offsets = OffsetHeads()(out)
    assert {k: tuple(v.shape) for k, v in offsets.items()} == {
        "xyz": (3, 50, 3), "scale": (3, 50, 3), "rotation": (3, 50, 4), "opacity": (3, 50, 1), "shs": (3, 50, 48)}


def test_model_deform_and_bake_preserve_shapes_and_values():
    torch.manual_seed(0)
    pts = torch.rand(40, 3) * 0.1
    for attrs in (["opacity", "shs"], ["opacity", "shs", "scale", "rotation"]):
        model = GaussianTalkerModel(pts, None, 29, torch.tensor([[0.0] * 3, [0.1] * 3]),
                                    ModelConfig(triplane_attributes=attrs), 0.17)
        before = model.canonical()
        model.bake()
        after = model.canonical()
        for a, b in zip((before.log_scale, before.rotation, before.opacity_logit, before.shs),
                        (after.log_scale, after.rotation, after.opacity_logit, after.shs)):
            assert torch.allclose(a, b)
        state, w = model.deform(after, model.features(), torch.randn(2, 8, 16, 29), torch.rand(2),
                                torch.eye(4).repeat(2, 1, 1))
        assert state.xyz.shape == (2, 40, 3) and state.shs.shape == (2, 40, 16, 3) and w.shape == (2, 40, 4)
        assert state.quats.shape == (2, 40, 4) and state.opacities.shape == (2, 40)


def test_face_mesh_triangles():
    tris = face_mesh_triangles()
    assert tris.shape[1] == 3 and 800 < len(tris) < 1000 and tris.max() < 468


# ---------------------------------------------------------------------------------------------------- losses
def test_losses():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert math.isclose(float(ssim(x, x)), 1.0, rel_tol=1e-5)
    assert float(ssim(x, torch.rand(2, 3, 32, 32))) < 0.2
    y = x.clone()
    y[:, :, :4, :4] += 0.5
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 2.0, 2.0]])
    assert math.isclose(float(lip_l1(y, x, boxes)), 0.25, rel_tol=1e-5)  # only frame 1's box sees the change
    assert math.isclose(float(l1_loss(y, x)), 0.5 * 16 / 1024, rel_tol=1e-5)
    vgg, status = load_vgg16_perceptual(CPU)
    assert status.startswith("vgg:") and (vgg is not None or "unavailable" in status)


def test_densify_and_prune_keep_optimizer_in_sync():
    torch.manual_seed(0)
    cfg = T.TrainConfig(percent_dense=0.01, densify_grad_threshold=1e-3, max_gaussians=14, min_opacity=0.3)
    pts = torch.rand(10, 3) * 0.1
    model = GaussianTalkerModel(pts, None, 32, torch.tensor([[0.0] * 3, [0.1] * 3]), ModelConfig(), 1.0)
    with torch.no_grad():
        model.scaling[:5] = math.log(0.001)  # small: cloned
        model.scaling[5:] = math.log(0.05)  # large: split
    opt = T.build_optimizer(model, cfg)
    sum(getattr(model, a).sum() for a in T.POINT_GROUPS.values()).backward()
    opt.step()
    dens = T.Densifier(10, CPU)
    dens.grad_accum[:] = torch.tensor([1, 0, 0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.float32) * 0.01
    dens.denom[:] = 1
    parents = model.scaling[[5, 6]].detach().clone()
    added = dens.densify(model, opt, cfg, model.scaling.detach())
    # 1 clone (+1) and 2 splits (+2 children −1 parent each) = +3
    assert added == 3 and model.n_points == 13
    for g in opt.param_groups:
        if g["name"] in T.POINT_GROUPS:
            p = g["params"][0]
            assert p is getattr(model, T.POINT_GROUPS[g["name"]]) and p.shape[0] == 13
            assert opt.state[p]["exp_avg"].shape == p.shape
    assert torch.allclose(model.scaling[-4:], parents.repeat(2, 1) - math.log(1.6))
    model.bake()  # free parameters are the canonical attributes
    with torch.no_grad():
        model.opacity.fill_(0.0)
        model.opacity[:3] = -5.0  # sigmoid < 0.3: pruned
    removed = dens.prune(model, opt, cfg, model.canonical(), False, 64)
    assert removed == 3 and model.n_points == 10 and dens.grad_accum.shape == (10,)
    assert all(opt.state[g["params"][0]]["exp_avg"].shape[0] == 10 for g in opt.param_groups
               if g["name"] in T.POINT_GROUPS)


def test_network_init_and_biases_follow_the_released_code():
    """q/k/v/o and FFN with biases and a dropout inside the FFN; Xavier-uniform (gain 1) Linear weights; heads' last
    layers Xavier gain 0.1 with zero bias; the null token randn (std 1)."""
    torch.manual_seed(0)
    model = GaussianTalkerModel(torch.rand(30, 3) * 0.1, None, 29, torch.tensor([[0.0] * 3, [0.1] * 3]),
                                ModelConfig(), 0.1)
    layer = model.attention.layers[0]
    for lin in (layer.w_q, layer.w_k, layer.w_v, layer.w_o, layer.ffn[0], layer.ffn[-1]):
        assert lin.bias is not None
    assert any(isinstance(m, torch.nn.Dropout) for m in layer.ffn)
    # Xavier-uniform gain 1: |w| <= sqrt(6 / (fan_in + fan_out)), and the bound is nearly reached
    for lin in (layer.w_q, model.fcan.trunk[0], model.offsets.heads["xyz"][1], model.conditions.cam_mlp[0],
                model.conditions.audio.net.fc[0]):
        bound = math.sqrt(6.0 / (lin.in_features + lin.out_features))
        assert float(lin.weight.abs().max()) <= bound + 1e-6 and float(lin.weight.abs().max()) > 0.9 * bound
    for heads in (model.fcan.heads, model.offsets.heads):
        for h in heads.values():
            last = h[-1]
            bound = 0.1 * math.sqrt(6.0 / (last.in_features + last.out_features))
            assert float(last.weight.abs().max()) <= bound + 1e-7 and torch.count_nonzero(last.bias) == 0
    assert 0.6 < float(model.conditions.null.std()) < 1.5  # randn, not a small init


def test_densification_is_gated_by_the_cap_and_then_the_screen_radius_prunes():
    """Below the cap, densifying resets the screen radii just before pruning (the original's order), so only the
    opacity test prunes; at the cap densification stops and the accumulated radii prune big splats."""
    torch.manual_seed(0)
    cfg = T.TrainConfig(densify_from=0, densify_until=1000, densify_interval=10, prune_from=0, prune_interval=10,
                        prune_big_from=0, densify_grad_threshold=1e-3, max_gaussians=12, min_opacity=0.005,
                        max_screen_radius_px512=20.0)
    model = GaussianTalkerModel(torch.rand(10, 3) * 0.1, None, 32, torch.tensor([[0.0] * 3, [0.1] * 3]),
                                ModelConfig(), 1.0)
    model.bake()
    opt = T.build_optimizer(model, cfg)
    dens = T.Densifier(10, CPU)
    dens.max_radii[:2] = 100.0  # two huge splats on screen (> 20 px at 512)
    dens.grad_accum[:] = 1.0
    dens.denom[:] = 1
    T.densify_prune(model, opt, dens, cfg, 10, 512)  # 10 < 12: densify (all 10 have a big gradient) then prune
    assert model.n_points == 20  # cloned/split, radii reset: the screen prune saw zeros
    dens.max_radii[:3] = 100.0
    T.densify_prune(model, opt, dens, cfg, 20, 512)  # 20 >= 12: no densification, the screen radius prunes
    assert model.n_points == 17


def test_camera_extent_is_the_originals_radius():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, :3, 3] = [[0.0, 0, 0.7], [0.06, 0, 0.7], [0.0, 0.03, 0.7]]
    centres = c2w[:, :3, 3]
    expect = 1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max()
    assert math.isclose(T.camera_extent(c2w), expect, rel_tol=1e-12)


def test_audio_is_fed_raw_for_deepspeech_and_standardised_otherwise():
    tc = T.TrainConfig()
    assert not T.standardises_audio(tc, "deepspeech") and T.standardises_audio(tc, "mel")
    assert not T.standardises_audio(T.TrainConfig(audio_normalisation="none"), "mel")
    with pytest.raises(InputError, match="audio_normalisation"):
        T.standardises_audio(T.TrainConfig(audio_normalisation="zscore"), "mel")


def test_lip_box_is_the_originals_square():
    """Side max(w, h) of the outer lip contour around its centre (the original's lips_rect), not 1.6 × the width."""
    cell = synthetic_cell(n_train=2, n_test=1)
    boxes = cell.train.mouth_boxes
    from gt_core.preprocess.landmarks import LIPS_OUTER

    lips = cell.train.landmarks[:, LIPS_OUTER, :2]
    side = (lips.max(1) - lips.min(1)).max(1)
    assert np.allclose(boxes[:, 2] - boxes[:, 0], side, atol=1e-4)
    assert np.allclose(boxes[:, 3] - boxes[:, 1], side, atol=1e-4)


def test_vgg_weights_are_checked_by_digest(tmp_path):
    fake = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, fake)
    vgg, status = load_vgg16_perceptual(CPU, fake)
    assert vgg is None and "checksum" in status and "download_vgg16" in status
    vgg, status = load_vgg16_perceptual(CPU, tmp_path / "missing.pth")
    assert vgg is None and "unavailable" in status


# -------------------------------------------------------------------------------------------------- training
def test_registry_and_presets():
    method = get_method("gaussiantalker")
    assert isinstance(method, GaussianTalkerMethod) and not method.supports_full
    assert set(method.presets) == {"tiny", "small", "demo", "paper"}
    paper = method.presets["paper"]
    assert (paper["iterations_canonical"], paper["iterations_deform"], paper["batch_deform"]) == (7999, 10000, 32)
    assert (paper["densify_from"], paper["densify_until"], paper["densify_interval"]) == (1000, 7000, 100)
    assert paper["triplane_attributes"] == ["opacity", "shs"] and paper["max_gaussians"] == 50000
    assert method.resolve_config("paper", {"triplane_attributes": ["opacity", "shs", "scale", "rotation"]})


def test_training_lowers_the_loss(trained):
    rows = read_log(trained.parent / T.LOG_NAME)
    cfg = tiny_cfg()
    assert len(rows) == cfg["iterations_canonical"] + cfg["iterations_deform"]
    canonical = [float(r["loss"]) for r in rows if r["stage"] == "canonical"]
    assert np.mean(canonical[-4:]) < np.mean(canonical[:4])
    ckpt = torch.load(trained, map_location="cpu", weights_only=False)
    assert ckpt["stage"] == "done" and ckpt["vgg"].startswith("vgg:")
    assert ckpt["record"]["n_points"] == ckpt["model"]["xyz"].shape[0]


def test_render_covers_every_test_frame(trained, cell):
    renders = GaussianTalkerMethod().render(trained, cell, CPU)
    n = len(cell.test)
    assert renders.head.shape == (n, cell.height, cell.width, 3) and renders.head.dtype == np.uint8
    assert np.array_equal(renders.frame_ids, cell.test.frame_ids) and renders.full is None
    assert renders.seconds > 0 and np.isfinite(renders.fps)
    assert np.allclose(np.sum(renders.info["attention_mean"]), 1.0, atol=1e-5)


def test_train_info_says_whether_the_perceptual_term_was_active(trained):
    """train.json's provenance (and so every metrics.json) records the VGG term's state, the extent and the audio
    normalisation that training used."""
    info = GaussianTalkerMethod().train_info(trained)
    perceptual = info["perceptual_loss"]
    assert perceptual["weight"] == 0.01 and perceptual["status"].startswith("vgg:")
    assert perceptual["active"] == ("unavailable" not in perceptual["status"])
    assert info["extent_mode"] == "cloud" and info["scene_extent"] == info["cloud_diagonal"] > 0
    assert info["audio_standardised"] is True and info["n_gaussians"] > 0
    rows = read_log(trained.parent / T.LOG_NAME)
    assert all(r["vgg"] == "" for r in rows) or perceptual["active"]  # an empty column: the term was not in the loss


def test_zero_offset_gain_starts_the_deformation_at_the_canonical_gaussians():
    """``offset_head_gain = 0`` (demo): every offset is exactly 0 before training, so the deformation stage starts
    from the canonical reconstruction; the released gain 0.1 moves every Gaussian by ~1 cm (0.1 units × 0.1 m)."""
    torch.manual_seed(0)
    pts = torch.rand(300, 3) * 0.15
    aabb = torch.tensor([[0.0] * 3, [0.15] * 3])
    args = (torch.randn(3, 8, 16, 29), torch.rand(3), torch.eye(4).repeat(3, 1, 1))
    moved = {}
    for gain in (0.0, 0.1):
        model = GaussianTalkerModel(pts, None, 29, aabb, ModelConfig(offset_head_gain=gain), 0.17)
        model.bake()
        canon = model.canonical()
        state, _ = model.deform(canon, model.features(), *args)
        moved[gain] = float((state.xyz - canon.xyz[None]).norm(dim=-1).mean())
        if gain == 0.0:
            for a, b in ((state.log_scale, canon.log_scale), (state.rotation, canon.rotation),
                         (state.opacity_logit, canon.opacity_logit), (state.shs, canon.shs)):
                assert torch.equal(a, b.expand_as(a))
    assert moved[0.0] == 0.0 and moved[0.1] > 0.003, moved


def test_offset_ablation_renders_what_it_says(trained, cell):
    """The diagnosis' renders: all offsets = the method's render; no offsets = the canonical Gaussians (a model
    whose offset heads output 0 renders the same with and without them)."""
    from gt_core.methods.gaussiantalker import diagnose as D

    model, ckpt = T.load_checkpoint(trained)
    sh = T.sh_degree_at(T.TrainConfig.from_dict(ckpt["train_config"]), "deform", 1)
    data = T.FrameData(cell, "train", CPU, model.cfg.audio_context)
    full = D.render_with_offsets(model, data, set(D.OFFSETS), sh)
    with torch.no_grad():
        ref, _ = T.render_frames(model, data, sh, 8)
    np.testing.assert_array_equal(full, ref.numpy())
    none = D.render_with_offsets(model, data, set(), sh)
    assert np.abs(none.astype(int) - full.astype(int)).max() > 0, "the trained offsets change the render"
    for h in model.offsets.heads.values():
        torch.nn.init.zeros_(h[-1].weight)
        torch.nn.init.zeros_(h[-1].bias)
    np.testing.assert_array_equal(D.render_with_offsets(model, data, set(), sh),
                                  D.render_with_offsets(model, data, set(D.OFFSETS), sh))
    np.testing.assert_array_equal(D.render_with_offsets(model, data, set(), sh), none)
    still = D.offset_field(model, cell, CPU, every=1)  # zero heads: no offset at all
    assert still["constant_mm"] == 0.0 and still["varying_mm"] == 0.0 and still["lip_separation_std_mm"] == 0.0
    jitter = D.head_frame_jitter(cell)
    assert jitter["mouth_centre_jitter_px"] > 0 and jitter["lip_gap_std_px"] > 0  # the synthetic cameras move
