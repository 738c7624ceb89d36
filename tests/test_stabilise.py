"""SyncTalk's head-sync stabiliser (gt_core.preprocess.stabilise): BA on a known scene, LK tracking, no leakage from
frames after ``canonical_frames``, and one-line errors for bad input. Fast (a few seconds), deterministic."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import FACE_OVAL, LIPS, MOUTH_LEFT, MOUTH_RIGHT, N_POINTS, Landmarks
from gt_core.preprocess.pose import HeadPose
from gt_core.preprocess.stabilise import (LEFT_BROW, LEFT_EYE, RIGHT_BROW, RIGHT_EYE, StabiliseConfig, Tracks,
                                          adjust_head_pose, rotation_jitter_deg, stabilise_head_pose, track_keypoints)

SIZE, FOCAL = 128, 300.0
FAST = StabiliseConfig(points_iters=200, ba_iters=600, pose_iters=400)
torch.set_num_threads(1)


def face_layout(rng: np.random.Generator) -> np.ndarray:
    """[478, 3] head-frame landmarks on the plane z = 0 (metres, y up): an oval, two eye + brow clusters, lips."""
    pts = np.zeros((N_POINTS, 3))
    pts[:, :2] = rng.uniform(-0.03, 0.03, (N_POINTS, 2))
    a = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    pts[FACE_OVAL, :2] = np.stack([0.05 * np.sin(a), 0.06 * np.cos(a)], 1)
    for idx, centre in ((np.r_[LEFT_EYE, LEFT_BROW], (0.02, 0.02)), (np.r_[RIGHT_EYE, RIGHT_BROW], (-0.02, 0.02)),
                        (LIPS, (0.0, -0.035))):
        pts[idx, :2] = np.array(centre) + rng.uniform(-0.004, 0.004, (len(idx), 2))
    pts[[MOUTH_LEFT, MOUTH_RIGHT], :2] = [[0.006, -0.035], [-0.006, -0.035]]
    return pts


def true_poses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth head motion (±4°, ±8 mm) in front of the camera: R [n, 3, 3] (frontal = diag(1,-1,-1)), t [n, 3]."""
    rng = np.random.default_rng(seed)
    s = np.arange(n)[:, None] / n * 2 * np.pi
    ang = 4 * np.sin(s * rng.uniform(0.5, 1.5, 3) + rng.uniform(0, 6, 3))
    rot = np.diag([1.0, -1.0, -1.0])[None] @ Rotation.from_euler("YXZ", ang, degrees=True).as_matrix()
    t = np.c_[0.008 * np.sin(1.3 * s), 0.005 * np.cos(0.7 * s), 0.5 + 0.005 * np.sin(s)]
    return rot, t


def project(rot, t, x):
    y = np.einsum("nij,pj->npi", rot, x) + t[:, None]
    return FOCAL * y[..., :2] / y[..., 2:3] + SIZE / 2


def noisy(rot, t, rng, deg=0.5, metres=0.002):
    """Per-frame independent noise on the poses (what a landmark tracker's jitter looks like)."""
    rot_n = Rotation.from_rotvec(np.radians(deg) * rng.normal(size=(len(rot), 3))).as_matrix() @ rot
    return rot_n, t + metres * rng.normal(size=t.shape)


def tracker_pose(rot, t, canonical, landmarks) -> HeadPose:
    from gt_core.preprocess.pose import reprojection_error

    err = reprojection_error(canonical, landmarks, rot, t, FOCAL, SIZE / 2, SIZE / 2)
    return HeadPose(rot, t, FOCAL, SIZE / 2, SIZE / 2, SIZE, SIZE, canonical, err)


def rotation_errors_deg(a, b):
    return np.degrees(Rotation.from_matrix(np.einsum("nij,nkj->nik", a, b)).magnitude())


def test_bundle_adjustment_lowers_pose_error_and_jitter():
    rng = np.random.default_rng(0)
    n, k = 60, 40
    canonical = face_layout(rng)
    rot, t = true_poses(n, seed=1)
    points = np.c_[rng.uniform(-0.04, 0.04, (80, 2)), rng.uniform(-0.01, 0.02, 80)]  # [P, 3] a curved face
    uv = project(rot, t, points) + rng.normal(0, 0.05, (n, 80, 2))
    uv[rng.random((n, 80)) < 0.2] = np.nan  # 20 % of the observations missing
    lms = np.concatenate([project(rot, t, canonical) + rng.normal(0, 0.5, (n, N_POINTS, 2)),
                          np.zeros((n, N_POINTS, 1))], -1)
    rot0, t0 = noisy(rot, t, rng)
    res = adjust_head_pose(Tracks(uv.astype(np.float32), np.zeros(80, np.int64)), lms, tracker_pose(rot0, t0, canonical, lms),
                           k, replace(FAST, anchor_weight=0.05))  # weak anchor: the keypoint BA itself is tested
    before, after = rotation_errors_deg(rot0, rot), rotation_errors_deg(res.pose.R, rot)
    t_before, t_after = np.linalg.norm(t0 - t, axis=1), np.linalg.norm(res.pose.t - t, axis=1)
    jit = lambda r: np.abs(rotation_jitter_deg(r) - rotation_jitter_deg(rot)).mean()  # noqa: E731
    # measured: rotation error 0.65 -> 0.06 deg, translation 3.1 -> 0.5 mm, jitter excess 0.76 -> 0.06 deg
    print(f"\nrotation {before.mean():.3f} -> {after.mean():.3f} deg ({before[k:].mean():.3f} -> {after[k:].mean():.3f} after K), "
          f"translation {1000 * t_before.mean():.2f} -> {1000 * t_after.mean():.2f} mm, jitter excess {jit(rot0):.3f} -> "
          f"{jit(res.pose.R):.3f} deg")
    assert after.mean() < 0.4 * before.mean(), (before.mean(), after.mean())
    assert after[k:].mean() < 0.5 * before[k:].mean()  # the frames solved with the points fixed, too
    assert t_after.mean() < 0.5 * t_before.mean(), (t_before.mean(), t_after.mean())
    assert jit(res.pose.R) < 0.3 * jit(rot0), (jit(rot0), jit(res.pose.R))
    assert res.stats["canonical_keypoint_px_ba"] < res.stats["canonical_keypoint_px_init"]
    np.testing.assert_allclose(res.pose.canonical, canonical)  # the tracker's head frame and camera are kept
    assert res.pose.focal == FOCAL and res.points.shape == (80, 3)


def textured_plane_video(n: int, seed: int = 0):
    """Frames of a textured planar face under :func:`true_poses`, its landmarks and the true poses."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (256, 256)).astype(np.uint8), (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    canonical = face_layout(rng)
    rot, t = true_poses(n, seed)
    a = np.array([[0.12 / 256, 0, -0.06], [0, -0.12 / 256, 0.06], [0, 0, 1]])  # texture px -> plane (x, y, 1)
    k = np.array([[FOCAL, 0, SIZE / 2], [0, FOCAL, SIZE / 2], [0, 0, 1]])
    frames = np.stack([np.repeat(cv2.warpPerspective(tex, k @ np.c_[r[:, :2], tt] @ a, (SIZE, SIZE))[..., None], 3, -1)
                       for r, tt in zip(rot, t)])
    lms = np.concatenate([project(rot, t, canonical), np.zeros((n, N_POINTS, 1))], -1)
    return frames, lms, canonical, rot, t


def test_lk_tracks_recover_a_translation():
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE)).astype(np.uint8), (0, 0), 1.5)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    shift = np.array([0.4, -0.25]) * np.arange(20)[:, None]  # px per frame
    frames = np.stack([np.repeat(cv2.warpAffine(tex, np.float32([[1, 0, dx], [0, 1, dy]]), (SIZE, SIZE),
                                                borderMode=cv2.BORDER_REFLECT)[..., None], 3, -1) for dx, dy in shift])
    lm0 = project(*true_poses(1, 0), face_layout(rng))[0]  # [478, 2]
    lms = np.concatenate([lm0[None] + shift[:, None], np.zeros((20, N_POINTS, 1))], -1)
    tracks = track_keypoints(frames, lms, StabiliseConfig())
    seen = tracks.observed
    assert seen[0].sum() >= 30 and seen[-1].sum() >= 0.8 * seen[0].sum(), seen.sum(1)
    first = tracks.uv[0]
    for i in (5, 19):
        moved = tracks.uv[i][seen[i] & seen[0]] - first[seen[i] & seen[0]]
        np.testing.assert_allclose(np.median(moved, 0), shift[i], atol=0.05)
        assert np.abs(moved - shift[i]).max() < 0.3


def test_frames_after_canonical_do_not_change_points_or_first_poses():
    n, k = 40, 24
    frames, lms, canonical, rot, t = textured_plane_video(n)
    rng = np.random.default_rng(5)
    rot0, t0 = noisy(rot, t, rng)
    a = stabilise_head_pose(frames, lms, tracker_pose(rot0, t0, canonical, lms), k, FAST)
    frames2, lms2, rot2, t2 = frames.copy(), lms.copy(), rot0.copy(), t0.copy()
    frames2[k:] = rng.integers(0, 256, frames2[k:].shape, dtype=np.uint8)  # everything after K is changed
    lms2[k:, :, :2] += rng.normal(0, 2.0, lms2[k:, :, :2].shape)
    rot2[k:], t2[k:] = noisy(rot0[k:], t0[k:], rng)
    b = stabilise_head_pose(frames2, lms2, tracker_pose(rot2, t2, canonical, lms2), k, FAST)
    assert a.stats["canonical_tracks"] >= 12
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.pose.R[:k], b.pose.R[:k])
    np.testing.assert_array_equal(a.pose.t[:k], b.pose.t[:k])
    assert not np.allclose(a.pose.R[k:], b.pose.R[k:])  # the later frames did change (the test is not vacuous)
    # and on this real tracking problem the stabiliser beats the noisy tracker
    err_a, err_0 = rotation_errors_deg(a.pose.R, rot).mean(), rotation_errors_deg(rot0, rot).mean()
    print(f"\nplanar video: rotation error {err_0:.3f} -> {err_a:.3f} deg, tracks {a.stats['canonical_tracks']}")
    assert err_a < 0.8 * err_0, (err_0, err_a)


def test_bad_input_is_one_line_naming_file_and_fix(tmp_path):
    from gt_core.preprocess.stages import stabilise_stage

    n = 30
    frames = np.full((n, SIZE, SIZE, 3), 128, np.uint8)  # no texture: nothing to track
    rng = np.random.default_rng(0)
    canonical = face_layout(rng)
    rot, t = true_poses(n, 0)
    lms = np.concatenate([project(rot, t, canonical), np.zeros((n, N_POINTS, 1))], -1)
    np.save(tmp_path / "frames.npy", frames)
    Landmarks(lms.astype(np.float32), np.ones(n, bool), SIZE, SIZE).save(tmp_path / "landmarks.npz")
    out = [tmp_path / "pose_stabilised.npz", tmp_path / "transforms_stabilised.json", tmp_path / "stats.json"]
    with pytest.raises(InputError) as err:  # missing input
        stabilise_stage(tmp_path / "frames.npy", tmp_path / "landmarks.npz", tmp_path / "pose.npz", *out, 20)
    assert "pose.npz" in str(err.value) and "fix:" in str(err.value) and "\n" not in str(err.value)
    tracker_pose(rot, t, canonical, lms).save(tmp_path / "pose.npz")
    with pytest.raises(InputError) as err:  # too few trackable points
        stabilise_stage(tmp_path / "frames.npy", tmp_path / "landmarks.npz", tmp_path / "pose.npz", *out, 20)
    msg = str(err.value)
    assert "frames.npy" in msg and "keypoints" in msg and "fix:" in msg and "\n" not in msg, msg
    assert not out[0].exists()
    with pytest.raises(InputError):
        replace(StabiliseConfig(), ba_lr=0.0)
