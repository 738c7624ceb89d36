"""SyncTalk on the ER-NeRF stack: the expression values, the field's and the losses' SyncTalk switches, the lower-face
box, the portrait row and its registry/DAG rules. (Training, resume, determinism and leakage are the registry-driven
tests of test_smoke.py, test_resume.py and test_leakage.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gt_core.errors import InputError
from gt_core.methods import registry
from gt_core.methods.ernerf import losses as L
from gt_core.methods.ernerf.field import ERNeRFHead, HeadFieldConfig
from gt_core.methods.synctalk.portrait import compose_portrait, portrait_masks
from gt_core.preprocess import expression as X
from gt_core.preprocess.pose import NOSE_TIP

AABB = (-0.1, -0.1, -0.1, 0.1, 0.1, 0.1)


# ----------------------------------------------------------------------------------------------- expression values
def face_landmarks(n: int, brow_lift: np.ndarray, lid_gap: np.ndarray, roll_deg: np.ndarray) -> tuple:
    """``n`` frames of a synthetic face mesh (pixels) seen by a pinhole camera: brows lifted by ``brow_lift``
    (metres), lids ``lid_gap`` apart, the head tilted by ``roll_deg`` and turned by half of it; returns (landmarks, canonical, f, cx, cy)."""
    rng = np.random.default_rng(0)
    canonical = rng.normal(scale=0.05, size=(478, 3))
    canonical[:, 2] = 0.03 * np.cos(canonical[:, 0] / 0.05)
    f, cx, cy, depth = 300.0, 64.0, 64.0, 0.6
    out = []
    for i in range(n):
        pts = canonical.copy()
        pts[X.LEFT_BROW, 1] += brow_lift[i]
        pts[X.RIGHT_BROW, 1] += brow_lift[i]
        for (up, lo), (c0, c1) in (((386, 374), (362, 263)), ((159, 145), (33, 133))):
            mid = 0.5 * (pts[c0] + pts[c1])
            pts[up], pts[lo] = mid + [0, lid_gap[i] / 2, 0], mid - [0, lid_gap[i] / 2, 0]
        a, b = np.deg2rad(roll_deg[i]), np.deg2rad(roll_deg[i] / 2)
        roll = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        yaw = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
        rot = yaw @ roll
        cam = pts @ rot.T * [1, -1, -1] + [0, 0, depth]  # OpenCV camera: y down, z forward
        z = cam[:, 2]
        px = np.stack([f * cam[:, 0] / z + cx, f * cam[:, 1] / z + cy, f * (z - depth) / depth], 1)  # mediapipe z
        out.append(px)
    return np.asarray(out, np.float32), canonical, f, cx, cy


def test_raw_expression_follows_brows_and_lids_not_pose():
    n = 6
    lift = np.array([0, 0, 0.004, 0.008, 0, 0])
    gap = np.array([0.01, 0.01, 0.01, 0.01, 0.001, 0.01])
    roll = np.array([0, 20, 0, 0, 0, -20])
    lms, canonical, f, cx, cy = face_landmarks(n, lift, gap, roll)
    raw = X.raw_expression(lms, canonical, f, cx, cy)
    assert raw.shape == (n, 7)
    # pose invariance: frames 0, 1, 5 differ only in the head's rotation
    np.testing.assert_allclose(raw[1], raw[0], rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(raw[5], raw[0], rtol=1e-2, atol=1e-4)
    # brows up: browInnerUp / browOuterUp rise, browDown falls, monotonically in the lift
    for c in (2, 3, 4):
        assert raw[0, c] < raw[2, c] < raw[3, c]
    for c in (0, 1):
        assert raw[0, c] > raw[2, c] > raw[3, c]
    # eyes nearly closed on frame 4: openness drops
    assert raw[4, 5] < 0.3 * raw[0, 5] and raw[4, 6] < 0.3 * raw[0, 6]


def test_expression_normalisation_uses_training_frames_only():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(40, 7)) * 0.01 + np.array([-0.03, -0.03, 0.02, 0.02, 0.02, 0.3, 0.3])
    train = np.arange(25)
    values, stats = X.normalise_expression(raw, train)
    changed = raw.copy()
    changed[30:] = rng.normal(size=(10, 7))  # test frames replaced
    values2, stats2 = X.normalise_expression(changed, train)
    assert stats2 == stats
    np.testing.assert_array_equal(values2[:25], values[:25])  # the smoothing window (5) does not reach frame 30
    assert values.dtype == np.float32 and values.shape == (40, 7)
    # blinks (< 5 frames: no smoothing): 0 at the training median openness, 1 at 40 % of it
    few = np.tile(raw[:1], (4, 1))
    few[3, 5:] = 0.4 * few[0, 5:]
    v, _ = X.normalise_expression(few, np.arange(3))
    np.testing.assert_allclose(v[:3, 5:], 0.0)
    np.testing.assert_allclose(v[3, 5:], 1.0, atol=1e-6)


def test_lower_face_box_starts_at_the_nose_tip():
    from test_gaussiantalker import synthetic_cell

    fs = synthetic_cell().train
    boxes, face = fs.lower_face_boxes, fs.face_boxes
    np.testing.assert_array_equal(boxes[:, [0, 2, 3]], face[:, [0, 2, 3]])
    np.testing.assert_array_equal(boxes[:, 1], fs.landmarks[:, NOSE_TIP, 1])


# ------------------------------------------------------------------------------------------------- field / losses
def test_synctalk_field_has_seven_linear_expression_inputs_and_ave_audio():
    torch.manual_seed(0)
    head = ERNeRFHead(HeadFieldConfig(aabb=AABB, n_codes=2, audio_net="ave", eye_dim=7, eye_gate="linear",
                                      eye_att_hidden=64), audio_dim=512)
    assert head.sigma_net[0].in_features == 36 + 32 + 7
    assert head.eye_att_net[-1].out_features == 7 and head.eye_att_net[0].out_features == 64
    code = head.encode_audio(torch.rand(3, 8, 1, 512))
    assert code.shape == (3, 32)
    pts = torch.rand(50, 3) * 0.2 - 0.1
    dirs = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    eye = torch.rand(7)
    out = head(pts, dirs, code[0], eye, None)
    _, eye_att = head.region_attention(head.encode_points(pts))
    assert (eye_att < 0).any(), "SyncTalk's expression attention is linear (no sigmoid)"
    torch.testing.assert_close(out.ambient_eye, eye_att.norm(dim=-1))
    # per-point expression values give the same result as the shared vector
    out2 = head(pts, dirs, code[0], eye.expand(50, 7), None)
    torch.testing.assert_close(out2.sigma, out.sigma)
    with pytest.raises(AssertionError, match="eye must be"):
        head(pts, dirs, code[0], torch.rand(1), None)


def test_l1_criterion_and_synctalk_uncertainty_weights():
    torch.manual_seed(0)
    pred, target = torch.rand(64, 3), torch.rand(64, 3)
    unc = torch.rand(64, requires_grad=True)
    face = torch.rand(64) > 0.5
    torch.testing.assert_close(L.photometric(pred, target, "l1"), (pred - target).abs().mean(-1))
    er = L.uncertainty_photometric(pred, target, unc, face, 1.0)
    st = L.uncertainty_photometric(pred, target, unc, face, 1.0, "l1", 0.01, 0.01)
    w = (torch.softmax(unc, -1) * 64).detach()
    reweight = 0.2 + 0.8 * w.clamp(0, 10)
    beta = unc + 1
    beta_term = ((pred - target).norm(dim=-1) / (2 * beta ** 2) + torch.log(beta) ** 2 / 2) * face
    torch.testing.assert_close(st, (pred - target).abs().mean(-1) * reweight + 0.01 * beta_term + 0.01 * unc * ~face)
    torch.testing.assert_close(er, ((pred - target) ** 2).mean(-1) * reweight + beta_term + 1e-3 * unc * ~face)


def test_lower_face_penalties_mask_audio_outside_and_expression_inside():
    amb_aud, amb_eye = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])
    low = torch.tensor([True, True, False, False])
    aud, eye = L.lower_face_penalties(amb_aud, amb_eye, low, 0.5)
    lam = 0.5 * L.LAMBDA_AMB
    assert aud.item() == pytest.approx(lam * (3 + 4) / 4)
    assert eye.item() == pytest.approx(lam * (10 + 20) / 4)


def test_jitter_smoothness_uses_the_criterion():
    class Out:
        def __init__(self, v):
            self.uncertainty = self.ambient_aud = self.ambient_eye = v

    fn = lambda p: Out(p[:, 0] * 100)  # noqa: E731
    pts = torch.zeros(10, 3)
    g = torch.Generator().manual_seed(0)
    l1 = L.jitter_smoothness(fn, pts, generator=g, criterion="l1")
    g = torch.Generator().manual_seed(0)
    mse = L.jitter_smoothness(fn, pts, generator=g)
    g = torch.Generator().manual_seed(0)
    delta = (torch.rand(10, 3, generator=g) * 2 - 1) * L.JITTER_EPS
    torch.testing.assert_close(l1, 3 * (delta[:, 0] * 100).abs().mean())
    torch.testing.assert_close(mse, 3 * ((delta[:, 0] * 100) ** 2).mean())


def test_synctalk_presets_switch_the_shared_stack():
    cfg = registry.get_method("synctalk").resolve_config("paper")
    assert (cfg["iterations_head"], cfg["iterations_lips"], cfg["iterations_torso"]) == (60000, 40000, 150000)
    assert cfg["num_rays"] == 65536 and cfg["lr_grid"] == 1e-2 and cfg["lr_net"] == 1e-3
    for key, value in {"audio_source": "ave", "expression": "upper_face", "criterion": "l1", "unc_beta_weight": 0.01,
                       "unc_static_weight": 0.01, "ambient_masks": "lower_face", "patch_px512": 64, "eye_noise": 0.0,
                       "head_pose": "stabilised"}.items():
        assert cfg[key] == value, key
    er = registry.get_method("ernerf").resolve_config("paper")
    assert (er["audio_source"], er["expression"], er["criterion"], er["head_pose"]) == ("cell", "blink", "mse",
                                                                                          "tracker")
    assert registry.get_method("synctalk").cell_inputs(cfg) == ["ave/features.npy"]
    assert registry.get_method("ernerf").cell_inputs(er) == []


def test_missing_ave_features_is_a_one_line_error(tmp_path):
    from dataclasses import replace

    from test_gaussiantalker import synthetic_cell

    cell = synthetic_cell()
    cell = replace(cell, cell_dir=tmp_path / "cell", train=replace(cell.train, ave=None))
    method = registry.get_method("synctalk")
    with pytest.raises(InputError, match=r"ave/features.npy: AVE audio features missing .*rule ave"):
        method.train(cell, {**method.resolve_config("tiny"), "seed": 0}, tmp_path / "out", torch.device("cpu"))


# ------------------------------------------------------------------------------------------------------- portrait
def test_portrait_mask_covers_the_face_and_compose_copies_ground_truth_outside():
    from gt_core.preprocess.landmarks import FACE_OVAL

    t = np.linspace(-np.pi / 2, 1.5 * np.pi, len(FACE_OVAL), endpoint=False)  # the oval, from the forehead round
    lms = np.zeros((2, 478, 3), np.float32)
    for i, cx in enumerate((30.0, 34.0)):
        lms[i, FACE_OVAL, 0], lms[i, FACE_OVAL, 1] = cx + 14 * np.cos(t), 30 + 18 * np.sin(t)
    masks = portrait_masks(lms, 64, 64)
    assert masks.shape == (2, 64, 64) and masks.min() >= 0 and masks.max() <= 1
    assert masks[0, 30, 30] == pytest.approx(1.0) and masks[1, 30, 34] == pytest.approx(1.0)
    assert masks[:, 0, 0].max() == 0.0 and masks[:, 30, 55].max() == 0.0  # far outside the face
    assert masks[0, 49, 30] > 0.5 > masks[0, 49, 17]  # the chin pushed down in the middle of the width only
    rng = np.random.default_rng(0)
    render = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    gt = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = compose_portrait(render, gt, masks)
    outside, inside = masks == 0, masks == 1
    np.testing.assert_array_equal(out[outside], gt[outside])
    np.testing.assert_array_equal(out[inside], render[inside])


def test_portrait_row_is_derived_from_synctalk_and_needs_it():
    from gt_core.config import validate_config

    assert registry.derived_from("synctalk-portrait") == "synctalk"
    assert "synctalk-portrait" in registry.DERIVED_METHODS and "synctalk-portrait" not in registry.RENDERING_METHODS
    assert "synctalk-portrait" not in registry.LEARNED_METHODS
    with pytest.raises(InputError, match="composed from 'synctalk'"):
        registry.check_methods(["retrieval", "synctalk-portrait"])
    registry.check_methods(["synctalk", "synctalk-portrait"])
    assert validate_config  # the config validation calls check_methods (test_registry covers the wiring)


def test_derive_stage_writes_portrait_renders_and_record(tmp_path):
    """``gt-core derive``: the composed renders and a train.json that names its source."""
    import json

    from test_leakage import make_cell, write_subject

    from gt_core.methods.base import Renders
    from gt_core.methods.run import derive_stage

    data = tmp_path / "s" / "data"
    write_subject(data)
    cell_dir = make_cell(data, tmp_path / "s" / "1s" / "cell")
    from gt_core.data.cell import load_cell

    cell = load_cell(cell_dir)
    src = tmp_path / "s" / "1s" / "synctalk"
    src.mkdir(parents=True)
    head = np.full_like(cell.test.targets, 7)
    Renders(cell.test.frame_ids, head, None, 1.5).save(src / "renders.npz")
    (src / "train.json").write_text(json.dumps({"method": "synctalk", "checkpoint": "checkpoint.pt",
                                                "train_wall_time_s": 3.0, "hyperparameters": {}}))
    out = tmp_path / "s" / "1s" / "synctalk-portrait"
    renders = derive_stage(cell_dir, "synctalk-portrait", src / "train.json", src / "renders.npz", out)
    record = json.loads((out / "train.json").read_text())
    assert record["method"] == "synctalk-portrait" and record["derived_from"]["method"] == "synctalk"
    assert record["checkpoint"] == "../synctalk/checkpoint.pt" and record["train_wall_time_s"] == 3.0
    loaded = Renders.load(out / "renders.npz")
    np.testing.assert_array_equal(loaded.head, renders.head)
    assert (loaded.head == 7).any() and (loaded.head != 7).any()  # the render inside the face, ground truth outside
    with pytest.raises(InputError, match="is 'synctalk-portrait'"):
        derive_stage(cell_dir, "synctalk-portrait", out / "train.json", src / "renders.npz", tmp_path / "x")
