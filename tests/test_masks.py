"""Background / torso / head parsing on real frames."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import Landmarks, detect_landmarks
from gt_core.preprocess.masks import BACKGROUND, HEAD, TORSO, load_labels, save_labels, segment_frames

HDTF = Path(__file__).resolve().parents[1].parent / "shared/data/hdtf"
N_FRAMES = 40


def clips() -> list[Path]:
    return sorted(HDTF.glob("*.mp4"))[:4]


@pytest.fixture(scope="module", params=range(4), ids=lambda i: f"clip{i}")
def clip(request):
    found = clips()
    if len(found) <= request.param:
        pytest.skip(f"no HDTF clips in {HDTF}")
    from gt_core.io.video import read_frames

    frames = read_frames(found[request.param], max_frames=N_FRAMES)
    lm = detect_landmarks(frames)
    return frames, lm, segment_frames(frames, lm)


def test_every_frame_has_head_and_torso(clip):
    frames, _, labels = clip
    assert labels.shape == frames.shape[:3] and labels.dtype == np.uint8
    area = np.stack([(labels == k).mean((1, 2)) for k in (BACKGROUND, TORSO, HEAD)], 1)  # [N, 3]
    assert (area[:, HEAD] > 0.1).all() and (area[:, TORSO] > 0.01).all()


def test_head_covers_face_landmarks(clip):
    _, lm, labels = clip
    pts = np.round(lm.points[:, :468, :2]).astype(int)
    n, h, w = labels.shape
    x, y = np.clip(pts[..., 0], 0, w - 1), np.clip(pts[..., 1], 0, h - 1)
    inside = labels[np.arange(n)[:, None], y, x] == HEAD
    assert inside.mean() >= 0.99


def test_background_is_large_and_on_the_border(clip):
    _, _, labels = clip
    bg = labels == BACKGROUND
    assert bg.mean() > 0.2
    border = np.concatenate([bg[:, 0, :], bg[:, :, 0], bg[:, :, -1]], axis=1)  # top, left, right edges
    assert border.mean() > 0.5
    # the bottom edge is mostly torso (these clips are cropped tight: a chin may touch it)
    bottom = labels[:, -1, :]
    assert (bottom == TORSO).mean() > 2 * (bottom == HEAD).mean()


def test_labels_are_temporally_stable(clip):
    _, _, labels = clip
    head = labels == HEAD
    inter = (head[1:] & head[:-1]).sum((1, 2))
    union = (head[1:] | head[:-1]).sum((1, 2))
    assert (inter / union).min() > 0.9


def test_missing_face_frames_and_other_resolution(clip):
    frames, lm, labels = clip
    small = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in frames[:6]])
    pts = lm.points[:6].copy()
    found = lm.found[:6].copy()
    pts[2], found[2] = np.nan, False
    lab_small = segment_frames(small, Landmarks(pts, found, lm.width, lm.height))
    assert lab_small.shape == (6, 128, 128)
    assert ((lab_small == HEAD).mean((1, 2)) > 0.1).all()
    big = cv2.resize(labels[2], (128, 128), interpolation=cv2.INTER_NEAREST)
    assert ((lab_small[2] == HEAD) == (big == HEAD)).mean() > 0.95


def test_astronaut_spacesuit_is_torso():
    from skimage import data

    img = data.astronaut()
    lm = detect_landmarks(img[None], video_mode=False)
    assert lm.found[0]
    lab = segment_frames(img[None], lm)[0]
    p = lm.points[0]
    chin, top = p[152, :2], p[10, :2]
    face_h = np.linalg.norm(chin - top)
    below = lab[int(chin[1] + 0.4 * face_h):int(chin[1] + 1.0 * face_h), int(chin[0] - 20):int(chin[0] + 20)]
    assert (below == TORSO).mean() > 0.9
    assert (lab[int(chin[1] + 0.4 * face_h):] == HEAD).sum() == 0
    nose = p[1, :2].astype(int)
    assert lab[nose[1], nose[0]] == HEAD


def test_save_load_labels(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (3, 8, 8), dtype=np.uint8)
    save_labels(tmp_path / "labels.npz", labels)
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.npz"), labels)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(InputError):
        load_labels(tmp_path / "bad.npz")


def test_mismatched_landmarks_raise():
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    lm = Landmarks(np.full((2, 478, 3), np.nan, np.float32), np.zeros(2, bool), 32, 32)
    with pytest.raises(InputError):
        segment_frames(frames, lm)
