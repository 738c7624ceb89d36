"""Background plate (training frames only) and the `head`-protocol composition."""
from __future__ import annotations

import numpy as np

from gt_core.preprocess.background import (
    _masked_median,
    background_plate,
    background_valid,
    compose_head_protocol,
    torso_background,
    iter_head_protocol,
)
from gt_core.preprocess.masks import BACKGROUND, HEAD, TORSO

H = W = 64


def scene(n: int = 24, seed: int = 0):
    """A textured background, a 16-px 'head' square moving left to right, and a fixed 'torso' block at the
    bottom-centre that never moves (its pixels are never seen as background)."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], n, 0)
    labels = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        x = int(round(2 + i * (W - 20) / (n - 1)))
        frames[i, 10:26, x:x + 16] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        labels[i, 10:26, x:x + 16] = HEAD
    frames[:, 48:, 24:40] = 7
    labels[:, 48:, 24:40] = TORSO
    return bg, frames, labels


def test_plate_recovers_background_and_inpaints_unseen():
    bg, frames, labels = scene()
    plate, seen = background_plate(frames, labels, np.arange(len(frames)), margin_px=3)
    assert plate.shape == (H, W, 3) and plate.dtype == np.uint8 and seen.shape == (H, W)
    np.testing.assert_array_equal(plate[seen], bg[seen])  # exact where seen
    assert seen[10:26, 2:62].all()  # the moving square uncovered its whole path
    assert not seen[50:, 28:36].any()  # behind the fixed block, never seen
    hidden = plate[52:, 30:34].astype(int)
    assert (hidden != 7).any() and hidden.min() >= bg.min() and hidden.max() <= bg.max()
    # margin: pixels next to the fixed block (within 3 px) are not "seen"
    assert not seen[47, 30] and not seen[55, 22] and seen[55, 18]


def test_plate_uses_only_listed_frames():
    bg, frames, labels = scene()
    listed = np.arange(0, len(frames), 2)
    poisoned = frames.copy()
    others = np.setdiff1d(np.arange(len(frames)), listed)
    poisoned[others] = 255  # any read of these shows up in the plate
    poisoned_labels = labels.copy()
    poisoned_labels[others] = BACKGROUND
    plate, seen = background_plate(poisoned, poisoned_labels, listed, margin_px=3)
    ref_plate, ref_seen = background_plate(frames[listed], labels[listed], np.arange(len(listed)), margin_px=3)
    np.testing.assert_array_equal(seen, ref_seen)
    np.testing.assert_array_equal(plate, ref_plate)
    np.testing.assert_array_equal(plate[seen], bg[seen])


def test_max_frames_thins_evenly_and_margin_zero():
    bg, frames, labels = scene(n=30)
    plate, seen = background_plate(frames, labels, np.arange(30), margin_px=0, max_frames=10)
    np.testing.assert_array_equal(plate[seen], bg[seen])
    assert seen[10:26, 4:60].all()


def test_masked_median_matches_numpy():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 256, (9, 5, 6, 3), dtype=np.uint8)
    valid = rng.random((9, 5, 6)) > 0.4
    valid[:, 0, 0] = False
    got = _masked_median(values, valid)
    for y in range(5):
        for x in range(6):
            if valid[:, y, x].any():
                np.testing.assert_allclose(got[y, x], np.median(values[valid[:, y, x], y, x], axis=0))
            else:
                assert (got[y, x] == 0).all()


def test_background_valid_margin():
    lab = np.zeros((1, 21, 21), np.uint8)
    lab[0, 10, 10] = HEAD
    v = background_valid(lab, margin_px=5)[0]
    assert not v[10, 6] and v[10, 5] and not v[10, 10] and v[0, 0]


def test_compose_head_protocol_semantics():
    frames = np.stack([np.full((2, 3, 3), 100 + i, np.uint8) for i in range(3)])  # [3, 2, 3, 3]
    labels = np.array([[[0, 1, 2], [2, 1, 0]]] * 3, np.uint8)
    plate = np.full((2, 3, 3), 9, np.uint8)
    bgt, target = compose_head_protocol(frames, labels, plate)
    assert bgt.shape == target.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(bgt[1, :, :, 0], [[9, 101, 9], [9, 101, 9]])
    np.testing.assert_array_equal(target[1, :, :, 0], [[9, 101, 101], [101, 101, 9]])
    sub_bgt, sub_target = compose_head_protocol(frames, labels, plate, indices=np.array([2]))
    np.testing.assert_array_equal(sub_bgt[0], bgt[2])
    np.testing.assert_array_equal(sub_target[0], target[2])
    chunks = list(iter_head_protocol(frames, labels, plate, chunk=2))
    assert [c[0].tolist() for c in chunks] == [[0, 1], [2]]
    np.testing.assert_array_equal(np.concatenate([c[2] for c in chunks]), target)


def test_neck_continues_behind_the_chin_and_nowhere_else():
    """The head-protocol background continues the neck upwards into the head region behind the chin (as the
    originals' torso images), so a head render that falls short of the mask shows neck, not the plate; background
    pixels, torso pixels and head pixels without a neck under them keep what they were."""
    h = w = 128  # extension 4 rows, colour read 1 row below the neck's top
    frames = np.full((1, h, w, 3), 50, np.uint8)
    labels = np.zeros((1, h, w), np.uint8)
    labels[0, 20:81, 40:89] = HEAD
    labels[0, 81:, 50:79] = TORSO  # neck under the chin
    labels[0, 100:, 20:31] = TORSO  # a shoulder with background above it
    frames[0, 81:, 50:79] = 200
    frames[0, 100:, 20:31] = 120
    plate = np.full((h, w, 3), 9, np.uint8)
    bgt, _ = torso_background(frames, labels, plate)
    bgt = bgt[0, ..., 0].astype(int)
    # behind the chin, away from the blurred side edges: the neck colour darkened 2 % a row, 4 rows up
    for k in (1, 2, 3):
        np.testing.assert_allclose(bgt[81 - k, 55:74], 200 * 0.98 ** k, atol=1.5)
    assert (9 < bgt[81 - 4, 55:74]).all() and (bgt[81 - 4, 55:74] < 200 * 0.98 ** 4).all(), "blurred top row"
    assert (bgt[20:81 - 4, 40:89] == 9).all(), "the extension must stop 4 rows above the neck"
    assert (bgt[20:81, 40:49] == 9).all() and (bgt[20:81, 80:89] == 9).all(), "no neck below: plate"
    assert (bgt[labels[0] == BACKGROUND] == 9).all(), "background pixels keep the plate"
    assert (bgt[labels[0] == TORSO] == frames[0, ..., 0][labels[0] == TORSO]).all(), "torso pixels are the frame's"
    again, mask = torso_background(frames, labels, plate)
    assert mask.sum() == 4 * 29 and (labels[mask] == HEAD).all()
    np.testing.assert_array_equal(again[0, ..., 0], bgt)
    other_face = frames.copy()
    other_face[labels == HEAD] = 255
    np.testing.assert_array_equal(torso_background(other_face, labels, plate)[0], again), "no head pixel is read"
