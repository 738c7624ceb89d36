"""Tests of gt_core.metrics: PSNR/SSIM against hand computations, offline digest-checked LPIPS, the iBUG mouth map and
LMD on a real face, evaluate_cell (missed faces, lmd40) and the evaluate stage's renders check."""
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
from matplotlib.path import Path as PolygonPath
from skimage.metrics import structural_similarity

from gt_core.errors import InputError
from gt_core.io.download import ModelFile, file_digest
from gt_core.methods.base import Renders
from gt_core.metrics import cell_stage
from gt_core.metrics import lpips_metric as lpm
from gt_core.metrics.evaluate import (FACE_CROP_SIZE, FRAME_COLUMNS, FULL_NOT_APPLICABLE, evaluate_cell,
                                      face_boxes_from_points, face_crop_box, write_cell_metrics)
from gt_core.metrics.image import PSNR_CAP_DB, cap_psnr, psnr, psnr_batch, ssim, ssim_batch
from gt_core.metrics.lmd import (IBUG_MOUTH, MAX_MISSED_FRACTION, LmdResult, compute_lmd, lip_points, lmd_from_points,
                                 mouth_opening_from_lips, mouth_points_from_lips, mouth_sync)
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


@pytest.fixture(scope="module")
def fake_alexnet_digest(fake_alexnet_file) -> str:
    """sha256 of the fake AlexNet file (a random trunk: its digest is *not* the real file's 7be5be79...)."""
    digest = file_digest(fake_alexnet_file[1], "sha256")
    assert not digest.startswith(lpm.ALEXNET_SHA256_PREFIX)
    return digest


def _trust_digest(monkeypatch, digest: str) -> None:
    """Make ``digest`` the expected AlexNet digest for this test (the module reads ``lpm.ALEXNET`` at call time)."""
    monkeypatch.setattr(lpm, "ALEXNET", ModelFile(lpm.ALEXNET.name, lpm.ALEXNET.url, "sha256", digest[:8]))


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
def lpips_with_weights(monkeypatch, fake_alexnet_file, fake_alexnet_digest, no_download):
    """LPIPS on the fake trunk, its digest made the expected one (the happy path of the digest check)."""
    hub, path, features = fake_alexnet_file
    _set_hub_dir(monkeypatch, hub)
    _trust_digest(monkeypatch, fake_alexnet_digest)
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


def _ssim_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out from Wang et al. 2004, explicit loops over window positions (no library filter):

    11×11 Gaussian window with σ = 1.5, normalised to sum 1; population (weighted, biased) moments; C1 = (0.01·1)²,
    C2 = (0.03·1)²; the mean over every position whose whole window lies inside the image, and over the channels.
    """
    r, sigma = 5, 1.5
    g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g)
    w /= w.sum()  # [11, 11]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    h, wd, n_ch = x.shape
    vals = []
    for c in range(n_ch):
        for i in range(r, h - r):
            for j in range(r, wd - r):
                a, b = x[i - r:i + r + 1, j - r:j + r + 1, c], y[i - r:i + r + 1, j - r:j + r + 1, c]
                mu_a, mu_b = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - mu_a) ** 2).sum(), (w * (b - mu_b) ** 2).sum()
                cab = (w * (a - mu_a) * (b - mu_b)).sum()
                vals.append((2 * mu_a * mu_b + c1) * (2 * cab + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_is_the_standard_gaussian_definition():
    """Pins window (11×11), σ (1.5) and covariance (population): each alternative gives a different number."""
    rng = np.random.default_rng(1)
    # one window position: an 11×11 image has exactly one pixel whose window fits, per channel
    x1 = rng.random((11, 11, 3))
    y1 = np.clip(x1 + 0.15 * rng.standard_normal(x1.shape), 0, 1)
    assert ssim(y1, x1) == pytest.approx(_ssim_by_hand(x1, y1), abs=1e-12)
    # a few window positions, uint8 input (scaled to [0, 1] by /255)
    x = rng.integers(0, 256, (17, 14, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-40, 41, x.shape), 0, 255).astype(np.uint8)
    ours = ssim(y, x)
    assert ours == pytest.approx(_ssim_by_hand(x / 255.0, y / 255.0), abs=1e-12)
    assert ssim_batch(y[None], x[None]).shape == (1,) and ours < 1.0
    # the hand value separates the variants a wrong setting would compute (sample vs population covariance is a
    # factor 121/120 on the variances: ~2e-6 here, still a million times the 1e-12 agreement above)
    xf, yf = x / 255.0, y / 255.0
    wrong = {
        "7x7 uniform, sample covariance (skimage default)": structural_similarity(xf, yf, data_range=1,
                                                                                  channel_axis=-1),
        "sigma 1.0": structural_similarity(xf, yf, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.0,
                                           use_sample_covariance=False),
        "sample covariance": structural_similarity(xf, yf, data_range=1, channel_axis=-1, gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=True),
        "data range 255": structural_similarity(xf, yf, data_range=255, channel_axis=-1, gaussian_weights=True,
                                                sigma=1.5, use_sample_covariance=False),
    }
    for name, value in wrong.items():
        assert abs(value - ours) > 1e-7, name
    with pytest.raises(AssertionError, match="smaller than the 11x11"):
        ssim(x[:10], y[:10])


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


def test_lpips_refuses_an_alexnet_file_with_the_wrong_checksum(monkeypatch, fake_alexnet_file, fake_alexnet_digest,
                                                               no_download):
    """A real torchvision-AlexNet-shaped state dict with the right key names but other weights: unavailable, with
    'checksum' in the reason, and NaN instead of numbers (before the digest check it was accepted on key names)."""
    hub, path, _ = fake_alexnet_file
    _set_hub_dir(monkeypatch, hub)
    ok, reason = lpm.lpips_status()
    assert not ok and "checksum" in reason and str(path) in reason and "download_weights" in reason
    assert fake_alexnet_digest[:8] in reason and lpm.ALEXNET_SHA256_PREFIX in reason
    metric = lpm.LpipsMetric(device="cpu")
    assert not metric.available and metric.model is None and "checksum" in metric.reason
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert np.isnan(metric(a, 255 - a)).all()
    assert not lpm.verify_alexnet_weights(path)
    _trust_digest(monkeypatch, fake_alexnet_digest)  # the same file with its digest expected: numbers come out
    assert lpm.verify_alexnet_weights(path)
    trusted = lpm.LpipsMetric(device="cpu")
    assert trusted.available and "verified" in trusted.reason
    values = trusted(a, 255 - a)
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert not no_download


def test_lpips_rejects_a_file_that_is_not_alexnet(monkeypatch, tmp_path, no_download):
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / lpm.ALEXNET_FILENAME
    torch.save({"something": torch.zeros(3)}, path)
    _set_hub_dir(monkeypatch, tmp_path)
    metric = lpm.LpipsMetric()
    assert not metric.available and "checksum" in metric.reason  # refused before it is even opened
    _trust_digest(monkeypatch, file_digest(path, "sha256"))  # digest matches, keys do not
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


# (x, y) of the 40 mediapipe lip points on the canonical face mesh, x to the image right, y *up* (model units), from
# google/mediapipe mediapipe/modules/face_geometry/data/canonical_face_model.obj (vertex k = mesh index k).
CANONICAL_LIPS_XY = {
    0: (0.000000, -3.406404), 13: (0.000000, -3.994436), 14: (0.000000, -4.542400), 17: (0.000000, -5.365123),
    37: (-0.711452, -3.329355), 39: (-1.431615, -3.500953), 40: (-1.914910, -3.803146), 61: (-2.456206, -4.342621),
    78: (-2.153084, -4.276322), 80: (-1.469132, -4.036351), 81: (-1.024340, -3.989851), 82: (-0.533422, -3.993222),
    84: (-0.699606, -5.291850), 87: (-0.583218, -4.517982), 88: (-1.537170, -4.423206), 91: (-1.838624, -4.828746),
    95: (-1.826614, -4.399531), 146: (-2.196121, -4.598322), 178: (-1.098819, -4.458788),
    181: (-1.325085, -5.106507), 185: (-2.285339, -4.051196), 191: (-1.845110, -4.098880),
    267: (0.711452, -3.329355), 269: (1.431615, -3.500953), 270: (1.914910, -3.803146), 291: (2.456206, -4.342621),
    308: (2.153084, -4.276322), 310: (1.469132, -4.036351), 311: (1.024340, -3.989851), 312: (0.533422, -3.993222),
    314: (0.699606, -5.291850), 317: (0.583218, -4.517982), 318: (1.537170, -4.423206), 321: (1.838624, -4.828746),
    324: (1.826614, -4.399531), 375: (2.196121, -4.598322), 402: (1.098819, -4.458788), 405: (1.325085, -5.106507),
    409: (2.285339, -4.051196), 415: (1.845110, -4.098880),
}


def _check_ibug_mouth_layout(xy: np.ndarray) -> None:
    """``[20, 2]`` image coordinates (x right, y down) of iBUG 48–67: the layout of the 68-point scheme."""
    outer, inner = xy[:12], xy[12:]
    assert np.argmin(xy[:, 0]) == 0 and np.argmax(xy[:, 0]) == 6  # 48 leftmost (image-left corner), 54 rightmost
    assert np.argmin(inner[:, 0]) == 0 and np.argmax(inner[:, 0]) == 4  # 60 and 64: the inner corners
    assert np.argmax(xy[:, 1]) == 9  # 57: the lowest point of the mouth
    assert xy[3, 1] < xy[14, 1] < xy[18, 1] < xy[9, 1]  # 51 above 62 above 66 above 57 (top to bottom on the midline)
    assert np.all(xy[1:6, 1] < xy[[0, 6], 1].max()) and np.all(xy[7:12, 1] > xy[[0, 6], 1].min())  # upper / lower
    for ring in (outer, inner):  # each ring goes once around the mouth, clockwise on screen: left, top, right, bottom
        centre = ring.mean(axis=0)
        angles = np.unwrap(np.arctan2(ring[:, 1] - centre[1], ring[:, 0] - centre[0]))
        assert np.all(np.diff(angles) > 0) and angles[-1] - angles[0] < 2 * np.pi, angles
    assert PolygonPath(outer).contains_points(inner).all()  # the inner lip lies inside the outer lip


def test_ibug_mouth_map_is_20_distinct_lip_points_in_ibug_order():
    assert IBUG_MOUTH.shape == (20,) and len(set(IBUG_MOUTH.tolist())) == 20
    assert set(IBUG_MOUTH.tolist()) <= set(LIPS.tolist())  # all on the mediapipe lip contours
    assert IBUG_MOUTH[[0, 3, 6, 9, 14, 18]].tolist() == [61, 0, 291, 17, 13, 14]  # corners and midline points
    xy = np.array([CANONICAL_LIPS_XY[int(i)] for i in IBUG_MOUTH]) * np.array([1.0, -1.0])  # y down, as an image
    _check_ibug_mouth_layout(xy)
    # the canonical mesh is left/right symmetric: so is the map (iBUG mirror pairs)
    for a, b in [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]:
        pa, pb = xy[a - 48], xy[b - 48]
        assert pa[0] == pytest.approx(-pb[0], abs=1e-6) and pa[1] == pytest.approx(pb[1], abs=1e-6), (a, b)
    # the 20 points come out of the 40 lip points in iBUG order
    lips = np.arange(40 * 2, dtype=np.float64).reshape(1, 40, 2)
    pos = {int(v): k for k, v in enumerate(LIPS)}
    assert np.array_equal(mouth_points_from_lips(lips)[0], lips[0, [pos[int(i)] for i in IBUG_MOUTH]])


def test_ibug_mouth_map_on_a_detected_face(face512):
    """On a real (frontal) detection the map has the iBUG layout in image coordinates too (48 on the image left)."""
    lm = detect_landmarks(face512[None], video_mode=False)
    assert lm.found[0]
    _check_ibug_mouth_layout(mouth_points_from_lips(lip_points(lm))[0])


def test_lmd_unavailable_when_more_than_10_percent_of_renders_miss():
    def result(n: int, missed: int) -> LmdResult:
        found = np.ones(n, bool)
        found[:missed] = False
        return LmdResult(values=np.zeros(n), render_found=found, gt_found=np.ones(n, bool))

    assert MAX_MISSED_FRACTION == 0.10
    assert result(10, 1).unavailable_reason() is None  # exactly 10%: still reported
    reason = result(10, 2).unavailable_reason()
    assert reason == "no face found in 2 of 10 renders (20% > 10% allowed)"
    assert result(4, 1).n_missed_render == 1 and result(4, 1).unavailable_reason() is not None


def test_lmd_grows_with_lip_displacement_and_misses_are_counted(face512):
    ks = [0, 2, 4, 6]
    renders = np.stack([_warp_lower_lip(face512, k) for k in ks] + [np.full_like(face512, 128)])  # last: grey
    targets = np.repeat(face512[None], len(renders), axis=0)
    res = compute_lmd(renders, targets)
    v = res.values
    assert res.render_found[:4].all() and not res.render_found[4] and res.gt_found.all()
    assert v[0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(v[:4]) > 0), v
    assert np.isnan(v[4]) and res.n_missed == 1 and res.n_missed_render == 1
    # lmd40 (all 40 lip points) is kept next to it and grows too
    assert res.values40[0] == pytest.approx(0.0, abs=1e-6) and np.all(np.diff(res.values40[:4]) > 0)
    assert np.isnan(res.values40[4])
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
    assert ph["lmd"]["n"] == 3 and ph["lmd"]["n_missed"] == 1 and ph["lmd"]["n_missed_render"] == 1
    # 1 of 4 renders without a face (25% > 10%): LMD and lmd40 unavailable for the cell, with the count as reason
    for m in ("lmd", "lmd40"):
        assert math.isnan(ph[m]["mean"]) and math.isnan(ph[m]["std"]), m
        assert ph[m]["status"] == "unavailable: no face found in 1 of 4 renders (25% > 10% allowed)", m
        assert summary["protocols"]["face"][m]["status"] == ph[m]["status"]
    assert np.isfinite(head.loc[[250, 251, 252], "lmd40"]).all() and np.isnan(head.loc[253, "lmd40"])
    assert ph["psnr"]["n"] == 4 and ph["psnr"]["n_capped"] == 1 and math.isfinite(ph["psnr"]["mean"])
    assert ph["psnr"]["mean"] == pytest.approx(np.mean(np.minimum(head["psnr"], PSNR_CAP_DB)))
    assert summary["protocols"]["full"] == {"status": FULL_NOT_APPLICABLE}
    assert summary["lpips"]["available"] and summary["protocols"]["face"]["crop"]["size"] == FACE_CROP_SIZE
    face = df[df.protocol == "face"].set_index("frame")
    assert np.allclose(face["lmd"], head["lmd"], equal_nan=True)

    csv_path, json_path = write_cell_metrics(tmp_path / "cell", df, summary, {"method": "retrieval", "seconds": 10})
    doc = json.loads(json_path.read_text(), parse_constant=_reject_constant)  # strict JSON: no NaN/Infinity tokens
    assert doc["n_missed_faces"] == 1 and doc["method"] == "retrieval" and "json_note" in doc
    assert doc["protocols"]["head"]["lmd"]["mean"] is None and "1 of 4" in doc["protocols"]["head"]["lmd"]["status"]
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
    full_lmd = summary["protocols"]["full"]["lmd"]
    assert full_lmd["n"] == 2 and "status" not in full_lmd and math.isfinite(full_lmd["mean"])
    assert set(df.columns) >= {"lmd", "lmd40"} and summary["protocols"]["full"]["lmd40"]["n"] == 2


# --------------------------------------------------------------------------------------------------------------
# the evaluate stage: renders must belong to the cell
# --------------------------------------------------------------------------------------------------------------
class _Reached(Exception):
    pass


@pytest.fixture
def stub_cell(monkeypatch):
    """A cell whose test segment is frames 525..528 at 32² (what `load_cell` would return), and an evaluate_cell
    that only records that it was reached."""
    from types import SimpleNamespace

    test = SimpleNamespace(frame_ids=np.arange(525, 529), targets=np.zeros((4, 32, 32, 3), np.uint8),
                           face_boxes=np.zeros((4, 4)), frames=np.zeros((4, 32, 32, 3), np.uint8))
    cell = SimpleNamespace(subject="s1", duration_s=10, test=test)
    monkeypatch.setattr(cell_stage, "load_cell", lambda cell_dir: cell)

    def reached(*args, **kwargs):
        raise _Reached()

    monkeypatch.setattr(cell_stage, "evaluate_cell", reached)
    return cell


def _save_renders(path: Path, frame_ids: np.ndarray, size: int = 32) -> Path:
    Renders(np.asarray(frame_ids, dtype=np.int64), np.zeros((len(frame_ids), size, size, 3), np.uint8)).save(path)
    return path


def test_evaluate_stage_refuses_renders_of_another_cell(stub_cell, tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"method": "retrieval", "provenance": {}, "train_wall_time_s": 1.0,
                                 "hyperparameters": {}}))
    other = _save_renders(tmp_path / "other_subject_renders.npz", np.arange(300, 304))  # another subject's tail
    with pytest.raises(InputError) as err:
        cell_stage.evaluate_stage("cell", other, train, tmp_path / "out")
    msg = str(err.value)
    assert str(other) in msg and "re-render this cell" in msg and "\n" not in msg
    assert "4 frames 300..303" in msg and "4 frames 525..528" in msg
    shifted = _save_renders(tmp_path / "shifted.npz", np.arange(524, 528))  # same length, off by one frame
    with pytest.raises(InputError, match="shifted.npz.*re-render this cell"):
        cell_stage.evaluate_stage("cell", shifted, train, tmp_path / "out")
    short = _save_renders(tmp_path / "short.npz", np.arange(525, 528))  # a prefix of the test segment
    with pytest.raises(InputError, match="short.npz"):
        cell_stage.evaluate_stage("cell", short, train, tmp_path / "out")
    small = _save_renders(tmp_path / "small.npz", np.arange(525, 529), size=16)  # right frames, other resolution
    with pytest.raises(InputError, match="small.npz: renders are 16x16 px but this cell's frames are 32x32 px"):
        cell_stage.evaluate_stage("cell", small, train, tmp_path / "out")
    own = _save_renders(tmp_path / "own.npz", np.arange(525, 529))
    with pytest.raises(_Reached):  # the cell's own renders pass the check and are evaluated
        cell_stage.evaluate_stage("cell", own, train, tmp_path / "out")
    assert not (tmp_path / "out").exists()
