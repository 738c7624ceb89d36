"""Tests of gt_core.metrics: PSNR/SSIM against hand computations, offline LPIPS, LMD on a real face, evaluate_cell."""
from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import uniform_filter

from gt_core.metrics import lpips_metric as lpm
from gt_core.metrics.evaluate import (FACE_CROP_SIZE, FRAME_COLUMNS, FULL_NOT_APPLICABLE, evaluate_cell,
                                      face_boxes_from_points, face_crop_box, write_cell_metrics)
from gt_core.metrics.image import PSNR_CAP_DB, cap_psnr, psnr, psnr_batch, ssim, ssim_batch
from gt_core.metrics.lmd import compute_lmd, lip_points, lmd_from_points, mouth_opening_from_lips, mouth_sync
from gt_core.preprocess.landmarks import LIPS, detect_landmarks


# --------------------------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def face512() -> np.ndarray:
    """skimage's astronaut, cropped around the face and upscaled to 512² (face ~185 px wide): ``[512, 512, 3]``."""
    from skimage.data import astronaut

    return cv2.resize(astronaut()[0:256, 97:353], (512, 512), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def face128(face512) -> np.ndarray:
    return cv2.resize(face512, (128, 128), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def fake_alexnet_file(tmp_path_factory):
    """A random torchvision AlexNet state dict saved where the hub cache expects the real one; removed afterwards."""
    import torchvision

    hub = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    (hub / "checkpoints").mkdir()
    path = hub / "checkpoints" / lpm.ALEXNET_FILENAME
    torch.save(state, path)
    features = {k: v.clone() for k, v in state.items() if k.startswith("features.")}
    yield hub, path, features
    path.unlink()  # 244 MB: do not leave it in pytest's kept temp dirs


class DownloadAttempted(AssertionError):
    pass


@pytest.fixture
def no_download(monkeypatch):
    """Make every download route raise, and record whether one was attempted."""
    import torchvision._internally_replaced_utils as tv_utils
    import torchvision.models._api as tv_api

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise DownloadAttempted(f"download attempted: {args[:1]}")

    for mod, name in [(torch.hub, "load_state_dict_from_url"), (torch.hub, "download_url_to_file"),
                      (tv_api, "load_state_dict_from_url"), (tv_utils, "load_state_dict_from_url"),
                      (urllib.request, "urlopen"), (urllib.request, "urlretrieve")]:
        monkeypatch.setattr(mod, name, refuse)
    return calls


def _set_hub_dir(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)  # restored at teardown
    torch.hub.set_dir(str(path))


@pytest.fixture
def lpips_with_weights(monkeypatch, fake_alexnet_file, no_download):
    hub, path, features = fake_alexnet_file
    _set_hub_dir(monkeypatch, hub)
    metric = lpm.LpipsMetric(device="cpu", batch_size=2)
    assert not no_download
    return metric, features


@pytest.fixture
def lpips_without_weights(monkeypatch, tmp_path, no_download):
    _set_hub_dir(monkeypatch, tmp_path / "empty_hub")
    return lpm.LpipsMetric(device="cpu")


def _warp_lower_lip(img: np.ndarray, k: float) -> np.ndarray:
    """Stretch the lower lip down by ~k px with a smooth Gaussian displacement field centred on it."""
    lm = detect_landmarks(img[None], video_mode=False)
    assert lm.found[0]
    p = lm.points[0]
    cx, cy = p[LIPS, 0].mean(), p[17, 1]  # lip centre x; lower-lip outer mid point y
    sx, sy = (p[291, 0] - p[61, 0]) * 0.6, (p[17, 1] - p[0, 1]) * 0.7
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = np.exp(-((xx - cx) ** 2 / (2 * sx ** 2) + (yy - cy) ** 2 / (2 * sy ** 2))).astype(np.float32)
    return cv2.remap(img, xx, yy - k * g, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# --------------------------------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------------------------------
def test_psnr_matches_formula():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 16, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    for x, y in zip(a, b):
        mse = np.mean((x / 255.0 - y / 255.0) ** 2)
        assert psnr(x, y) == pytest.approx(-10 * np.log10(mse), rel=1e-12)
    # float input in [0, 1] gives the same number as uint8
    assert psnr(a[0] / 255.0, b[0] / 255.0) == pytest.approx(psnr(a[0], b[0]), rel=1e-12)
    assert psnr_batch(a, b).shape == (2,)


def test_ssim_constant_images_closed_form():
    # Constant images: variances and covariance are 0, so SSIM = (2ab + C1) / (a² + b² + C1) with C1 = (0.01·1)².
    a, b = 0.3, 0.5
    x = np.full((16, 16, 3), a)
    y = np.full((16, 16, 3), b)
    c1 = 0.01 ** 2
    assert ssim(y, x) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def _ssim_reference(x: np.ndarray, y: np.ndarray, win: int = 7) -> float:
    """Independent SSIM: 7×7 uniform window, sample covariance, data range 1, mean over the valid interior/channels."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    np_ = win * win
    cov_norm = np_ / (np_ - 1)
    vals = []
    for c in range(x.shape[-1]):
        a, b = x[..., c], y[..., c]
        mu_a, mu_b = uniform_filter(a, win), uniform_filter(b, win)
        va = cov_norm * (uniform_filter(a * a, win) - mu_a ** 2)
        vb = cov_norm * (uniform_filter(b * b, win) - mu_b ** 2)
        cab = cov_norm * (uniform_filter(a * b, win) - mu_a * mu_b)
        s = ((2 * mu_a * mu_b + c1) * (2 * cab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
        pad = (win - 1) // 2
        vals.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(vals))


def test_ssim_matches_independent_implementation():
    rng = np.random.default_rng(1)
    x = rng.random((24, 20, 3))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert ssim(y, x) == pytest.approx(_ssim_reference(x, y), abs=1e-10)
    assert ssim_batch(y[None], x[None]).shape == (1,)
    assert ssim(y, x) < 1.0


def test_identical_images_psnr_inf_capped_and_ssim_one():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(x, x) == math.inf
    assert ssim(x, x) == pytest.approx(1.0)
    capped, n = cap_psnr(np.array([math.inf, 30.0, np.nan]))
    assert n == 1 and capped[0] == PSNR_CAP_DB and capped[1] == 30.0 and np.isnan(capped[2])


# --------------------------------------------------------------------------------------------------------------
# LPIPS
# --------------------------------------------------------------------------------------------------------------
def test_lpips_offline_with_local_backbone(lpips_with_weights, no_download):
    metric, features = lpips_with_weights
    assert metric.available, metric.reason
    assert lpm.lpips_status()[0]
    # trunk weights are the saved torchvision ones, each in its lpips slice
    net_state = metric.model.net.state_dict()
    assert len(net_state) == 10
    for idx, slice_name in lpm.FEATURE_TO_SLICE.items():
        for p in ("weight", "bias"):
            assert torch.equal(net_state[f"{slice_name}.{idx}.{p}"].cpu(), features[f"features.{idx}.{p}"])
    # linear layers are the ones shipped in the lpips wheel
    import lpips
    wheel = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    for k, v in wheel.items():
        assert torch.equal(metric.model.state_dict()[k].cpu(), v)

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    same = metric(a, a)
    diff = metric(a, b)
    assert same.shape == diff.shape == (3,)
    assert np.allclose(same, 0.0, atol=1e-7)
    assert np.all(diff > 0) and np.all(np.isfinite(diff))
    # batching does not change values
    single = lpm.LpipsMetric(batch_size=1)
    assert np.allclose(single(a, b), diff, rtol=1e-5, atol=1e-7)
    assert not no_download


def test_lpips_unavailable_is_nan_with_reason(lpips_without_weights, tmp_path, no_download):
    ok, reason = lpm.lpips_status()
    expected = tmp_path / "empty_hub" / "checkpoints" / lpm.ALEXNET_FILENAME
    assert not ok and str(expected) in reason and "download_weights" in reason
    metric = lpips_without_weights
    assert not metric.available and str(expected) in metric.reason
    x = np.zeros((2, 32, 32, 3), np.uint8)
    assert np.isnan(metric(x, x)).all()
    assert not no_download


def test_lpips_rejects_a_file_that_is_not_alexnet(monkeypatch, tmp_path, no_download):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"something": torch.zeros(3)}, tmp_path / "checkpoints" / lpm.ALEXNET_FILENAME)
    _set_hub_dir(monkeypatch, tmp_path)
    metric = lpm.LpipsMetric()
    assert not metric.available and "could not be loaded" in metric.reason
    assert np.isnan(metric(np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.uint8))).all()


def test_alexnet_download_constants(tmp_path):
    assert lpm.ALEXNET_URL == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert lpm.ALEXNET_URL.endswith(lpm.ALEXNET_FILENAME) and lpm.ALEXNET_SHA256_PREFIX in lpm.ALEXNET_FILENAME
    f = tmp_path / "x.pth"
    f.write_bytes(b"not the weights")
    assert not lpm.verify_alexnet_weights(f)
    assert not lpm.verify_alexnet_weights(tmp_path / "missing.pth")


# --------------------------------------------------------------------------------------------------------------
# LMD
# --------------------------------------------------------------------------------------------------------------
def test_lmd_from_points_centring_and_scale():
    rng = np.random.default_rng(4)
    gt = rng.random((2, 40, 2)) * 100
    shifted = gt + np.array([7.0, -3.0])  # a pure translation is removed by the centring
    assert np.allclose(lmd_from_points(shifted, gt, width=256), 0.0)
    moved = gt.copy()
    moved[:, :20, 1] += 2.0  # half the points 2 px down -> after centring each point is off by 1 px
    assert np.allclose(lmd_from_points(moved, gt, width=512), 1.0)
    assert np.allclose(lmd_from_points(moved, gt, width=128), 4.0)  # 512-px-frame pixels
    moved[1, 0] = np.nan
    assert np.isnan(lmd_from_points(moved, gt, width=512)[1])


def test_lmd_grows_with_lip_displacement_and_misses_are_counted(face512):
    ks = [0, 2, 4, 6]
    renders = np.stack([_warp_lower_lip(face512, k) for k in ks] + [np.full_like(face512, 128)])  # last: grey
    targets = np.repeat(face512[None], len(renders), axis=0)
    res = compute_lmd(renders, targets)
    v = res.values
    assert res.render_found[:4].all() and not res.render_found[4] and res.gt_found.all()
    assert v[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(v[:4]) > 0), v
    assert np.isnan(v[4]) and res.n_missed == 1
    # precomputed ground-truth lips give the same values as detecting on the targets
    gt_pts = lip_points(detect_landmarks(targets[:1], video_mode=False))
    res2 = compute_lmd(renders[:4], gt_lip_points=np.repeat(gt_pts, 4, axis=0))
    assert np.allclose(res2.values, v[:4], atol=1e-6)
    # a GT row without a face (NaN) is a miss too
    gt_nan = np.repeat(gt_pts, 4, axis=0)
    gt_nan[2] = np.nan
    res3 = compute_lmd(renders[:4], gt_lip_points=gt_nan)
    assert np.isnan(res3.values[2]) and res3.n_missed == 1 and not res3.gt_found[2]


def test_mouth_sync_follows_opening_and_flags_a_static_mouth(face512):
    ks = [0, 3, 6, 2, 5, 1]
    targets = np.stack([_warp_lower_lip(face512, k) for k in ks])
    same = compute_lmd(targets.copy(), targets).mouth_sync()
    assert same["r"] == pytest.approx(1.0) and same["n"] == len(ks)
    opening = mouth_opening_from_lips(lip_points(detect_landmarks(targets, video_mode=False)))
    assert np.corrcoef(opening, ks)[0, 1] > 0.95  # the measure rises with the lower lip's drop
    reversed_ = compute_lmd(targets[::-1].copy(), targets).mouth_sync()
    assert reversed_["r"] < 0
    static = compute_lmd(np.repeat(targets[:1], len(ks), axis=0), targets).mouth_sync()
    assert math.isnan(static["r"]) and "constant in the render" in static["status"]
    # frames missing in either series are left out; fewer than 3 left -> undefined
    a, b = np.array([0.1, np.nan, 0.3, 0.2]), np.array([0.2, 0.5, 0.6, 0.4])
    assert mouth_sync(a, b)["n"] == 3 and mouth_sync(a, b)["r"] == pytest.approx(1.0)
    assert "fewer than 3" in mouth_sync(a[:2], b[:2])["status"]


# --------------------------------------------------------------------------------------------------------------
# face crops and evaluate_cell
# --------------------------------------------------------------------------------------------------------------
def test_face_crop_box_square_inside_and_clamped():
    x0, y0, x1, y1 = face_crop_box(np.array([40.0, 50.0, 80.0, 70.0]), 128, 128)
    assert x1 - x0 == y1 - y0 == 48  # longer side 40 × 1.2
    assert (x0 + x1) / 2 == pytest.approx(60, abs=1) and (y0 + y1) / 2 == pytest.approx(60, abs=1)
    x0, y0, x1, y1 = face_crop_box(np.array([100.0, -10.0, 140.0, 30.0]), 128, 128)  # off the top-right corner
    assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and x1 - x0 == y1 - y0 == 48
    x0, y0, x1, y1 = face_crop_box(np.array([0.0, 0.0, 200.0, 100.0]), 96, 128)  # larger than the frame
    assert (x1 - x0, y1 - y0) == (96, 96) and y0 == 0
    assert face_crop_box(np.array([np.nan, 0, 1, 1]), 64, 64) is None
    boxes = face_boxes_from_points(np.array([[[1.0, 2.0], [5.0, 9.0]], [[np.nan, 1.0], [2.0, 3.0]]]))
    assert np.allclose(boxes[0], [1, 2, 5, 9]) and np.isnan(boxes[1]).all()


@pytest.fixture(scope="module")
def small_cell(face128):
    """4 frames at 128²: identical, warped mouth, noisy, grey render (no face)."""
    rng = np.random.default_rng(5)
    noisy = np.clip(face128.astype(int) + rng.integers(-15, 16, face128.shape), 0, 255).astype(np.uint8)
    renders = np.stack([face128, _warp_lower_lip(face128, 2.0), noisy, np.full_like(face128, 128)])
    targets = np.repeat(face128[None], 4, axis=0)
    lm = detect_landmarks(face128[None], video_mode=False)
    boxes = np.repeat(face_boxes_from_points(lm.points), 4, axis=0)
    return renders, targets, boxes, np.array([250, 251, 252, 253])


def _reject_constant(token: str):
    raise AssertionError(f"invalid JSON constant {token}")


def test_evaluate_cell_tables_and_files(small_cell, lpips_with_weights, tmp_path):
    metric, _ = lpips_with_weights
    renders, targets, boxes, ids = small_cell
    df, summary = evaluate_cell(renders, targets, boxes, ids, lpips_metric=metric)
    assert list(df.columns) == FRAME_COLUMNS
    assert len(df) == 8 and set(df.protocol) == {"head", "face"}
    head = df[df.protocol == "head"].set_index("frame")
    assert head.loc[250, "psnr"] == math.inf and head.loc[250, "ssim"] == pytest.approx(1.0)
    assert head.loc[250, "lpips"] == pytest.approx(0.0, abs=1e-7) and head.loc[250, "lmd"] == pytest.approx(0.0)
    assert np.isnan(head.loc[253, "lmd"]) and not head.loc[253, "face_found"] and head.loc[253, "gt_face_found"]
    assert summary["n_frames"] == 4 and summary["n_missed_faces"] == 1
    ph = summary["protocols"]["head"]
    assert ph["lmd"]["n"] == 3 and ph["lmd"]["n_missed"] == 1
    assert ph["psnr"]["n"] == 4 and ph["psnr"]["n_capped"] == 1 and math.isfinite(ph["psnr"]["mean"])
    assert ph["psnr"]["mean"] == pytest.approx(np.mean(np.minimum(head["psnr"], PSNR_CAP_DB)))
    assert summary["protocols"]["full"] == {"status": FULL_NOT_APPLICABLE}
    assert summary["lpips"]["available"] and summary["protocols"]["face"]["crop"]["size"] == FACE_CROP_SIZE
    face = df[df.protocol == "face"].set_index("frame")
    assert np.allclose(face["lmd"], head["lmd"], equal_nan=True)

    csv_path, json_path = write_cell_metrics(tmp_path / "cell", df, summary, {"method": "retrieval", "seconds": 10})
    doc = json.loads(json_path.read_text(), parse_constant=_reject_constant)  # strict JSON: no NaN/Infinity tokens
    assert doc["n_missed_faces"] == 1 and doc["method"] == "retrieval" and "json_note" in doc
    assert set(doc["protocols"]) == {"head", "face", "full"}
    back = pd.read_csv(csv_path)
    assert len(back) == 8 and set(back.protocol) == {"head", "face"} and np.isinf(back.psnr).sum() >= 1
    assert sorted(p.name for p in (tmp_path / "cell").iterdir()) == ["metrics.json", "metrics_frames.csv"]
    with pytest.raises(ValueError):
        write_cell_metrics(tmp_path / "cell", df, summary, {"protocols": 1})


def test_face_protocol_ignores_pixels_outside_the_box(small_cell, lpips_with_weights):
    metric, _ = lpips_with_weights
    renders, targets, boxes, ids = small_cell
    renders, targets, boxes, ids = renders[1:3], targets[1:3], boxes[1:3], ids[1:3]
    df1, _ = evaluate_cell(renders, targets, boxes, ids, lpips_metric=metric)
    x0, y0, x1, y1 = face_crop_box(boxes[0], 128, 128)
    changed = renders.copy()
    outside = np.ones((128, 128), bool)
    outside[y0:y1, x0:x1] = False
    changed[:, outside] = 255 - changed[:, outside]
    # LMD needs the face, which stays; landmarks may move with the changed context, so compare image metrics
    df2, _ = evaluate_cell(changed, targets, boxes, ids, lpips_metric=metric)
    f1, f2 = df1[df1.protocol == "face"], df2[df2.protocol == "face"]
    h1, h2 = df1[df1.protocol == "head"], df2[df2.protocol == "head"]
    for m in ("psnr", "ssim", "lpips"):
        assert np.allclose(f1[m].to_numpy(), f2[m].to_numpy(), rtol=0, atol=1e-12), m
    assert np.all(h2["psnr"].to_numpy() < h1["psnr"].to_numpy())


def test_evaluate_cell_full_protocol_and_missing_lpips(small_cell, lpips_without_weights, tmp_path):
    renders, targets, boxes, ids = small_cell
    lm = detect_landmarks(targets[:1], video_mode=False)
    gt_lips = np.repeat(lip_points(lm), 2, axis=0)
    df, summary = evaluate_cell(renders[:2], targets[:2], boxes[:2], ids[:2], renders_full=renders[:2],
                                targets_full=targets[:2], gt_lip_points=gt_lips, lpips_metric=lpips_without_weights)
    assert set(df.protocol) == {"head", "face", "full"} and len(df) == 6
    assert df["lpips"].isna().all()
    assert not summary["lpips"]["available"] and "download_weights" in summary["lpips"]["reason"]
    full = summary["protocols"]["full"]
    assert full["lpips"]["n"] == 0 and math.isnan(full["lpips"]["mean"]) and "unavailable" in full["lpips"]["status"]
    assert full["psnr"]["n"] == 2
    _, json_path = write_cell_metrics(tmp_path, df, summary, {})
    doc = json.loads(json_path.read_text(), parse_constant=_reject_constant)
    assert doc["protocols"]["head"]["lpips"]["mean"] is None and doc["lpips"]["available"] is False
