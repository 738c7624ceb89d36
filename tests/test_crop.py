"""Fixed square head crop from landmarks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gt_core.errors import InputError
from gt_core.preprocess.crop import CHIN, FOREHEAD_TOP, CropBox, crop_box_for_video, head_crop_box
from gt_core.preprocess.landmarks import Landmarks, detect_landmarks

HDTF = Path(__file__).resolve().parents[1].parent / "shared/data/hdtf"


@pytest.fixture(scope="module")
def face_points() -> np.ndarray:
    """Face-mesh landmarks of the astronaut photo, [478, 3] pixels of a 512² image."""
    from skimage import data

    lm = detect_landmarks(data.astronaut()[None], video_mode=False)
    assert lm.found[0]
    return lm.points[0]


def tracks(points, n, w, h, offset=(0.0, 0.0), jitter=2.0, seed=0, missing=0):
    rng = np.random.default_rng(seed)
    pts = np.repeat(points[None], n, 0).copy()
    pts[..., :2] += np.array(offset, np.float32) + rng.normal(0, jitter, (n, 1, 2)).astype(np.float32)
    found = np.ones(n, bool)
    found[:missing] = False
    pts[~found] = np.nan
    return Landmarks(pts, found, w, h)


def test_box_frames_the_head_in_a_large_frame(face_points):
    lm = tracks(face_points, 20, 1920, 1080, offset=(700, 250))
    box = head_crop_box(lm)
    face_h = np.linalg.norm(face_points[FOREHEAD_TOP, :2] - face_points[CHIN, :2])
    assert box.size % 2 == 0 and box.x0 % 2 == 0 and box.y0 % 2 == 0
    assert abs(box.size - 2.2 * face_h) <= 2
    assert 0 <= box.x0 and box.x0 + box.size <= 1920 and 0 <= box.y0 and box.y0 + box.size <= 1080
    face = lm.points[0, :468, :2]
    inside = box.map_points(face)
    assert (inside > 0).all() and (inside < box.size).all()
    # the face sits in the upper middle: its centre is above the box centre, and horizontally centred
    centre = inside.mean(0)
    assert centre[1] < 0.5 * box.size and abs(centre[0] - 0.5 * box.size) < 0.08 * box.size


def test_box_is_shifted_inside_and_clamped_to_short_side(face_points):
    near_edge = tracks(face_points, 10, 640, 480, offset=(-200, -150))
    box = head_crop_box(near_edge)
    assert box.x0 == 0 and box.y0 == 0
    big = head_crop_box(tracks(face_points, 10, 640, 480), scale=5.0)
    assert big.size == 480 and 0 <= big.x0 <= 640 - 480 and big.y0 == 0


def test_no_face_on_most_frames_raises(face_points):
    lm = tracks(face_points, 10, 512, 512, missing=6)
    with pytest.raises(InputError, match="no face found on most frames"):
        head_crop_box(lm, what="clip.mp4")
    assert head_crop_box(tracks(face_points, 10, 512, 512, missing=4)).size > 0


def test_json_roundtrip_and_points_mapping(tmp_path):
    box = CropBox(10, 20, 300)
    box.to_json(tmp_path / "crop.json")
    assert CropBox.from_json(tmp_path / "crop.json") == box
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError):
        CropBox.from_json(tmp_path / "bad.json")
    p = np.array([[160.0, 170.0, 30.0]])
    np.testing.assert_allclose(box.map_points(p, out_size=150), [[75.0, 75.0, 15.0]])
    assert box.as_tuple() == (10, 20, 300)


def test_real_video_in_a_wide_frame(tmp_path):
    """An HDTF clip pasted into a 1280x720 frame: the crop finds the head and crops it at the right scale."""
    clips = sorted(HDTF.glob("*.mp4"))
    if not clips:
        pytest.skip(f"no HDTF clips in {HDTF}")
    from gt_core.io.video import read_frames, write_video

    src = read_frames(clips[0], max_frames=25)
    canvas = np.full((len(src), 720, 1280, 3), 40, np.uint8)
    canvas[:, 150:662, 600:1112] = src
    write_video(tmp_path / "wide.mp4", canvas)
    box, lm = crop_box_for_video(tmp_path / "wide.mp4", sample_fps=5)
    assert lm.found.mean() == 1.0 and len(lm) >= 4
    face_h = np.median(np.linalg.norm(lm.points[:, FOREHEAD_TOP, :2] - lm.points[:, CHIN, :2], axis=1))
    assert abs(box.size - 2.2 * face_h) <= 2 and box.y0 + box.size <= 720 and box.x0 + box.size <= 1280
    out = read_frames(tmp_path / "wide.mp4", crop=box.as_tuple(), size=128, max_frames=3)
    assert out.shape == (3, 128, 128, 3)
    lm_crop = detect_landmarks(out, video_mode=False)
    assert lm_crop.found.all()
    expected = box.map_points(lm.points[0, :468, :2], out_size=128)
    assert np.abs(lm_crop.points[0, :468, :2] - expected).mean() < 3.0
