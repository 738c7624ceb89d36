"""SyncTalk's head-sync stabiliser: keypoints tracked inside the face + bundle adjustment of the head pose.

What the original does (ZiqiaoPeng/SyncTalk, read at the mirror's HEAD; facts we build on, no code copied):

- ``data_utils/process.py:263-355`` (``extract_flow``, after DFA-NeRF): reference frame ``ref_id = 2`` (:266); optical
  flow (UNFaceFlow) from the reference frame to every frame (:275-285); the rigid region is the head part of the
  face parsing of the reference frame (``face_mask > 250``, :289; ``face_mask`` = parsing's head part, :145-150);
  at most 2,500 frames (:291-292); per pixel the temporal Laplacian ``(-0.5, 1, -0.5)`` of the flow, its norm
  (:299-304), frames whose mean exceeds 3x the overall mean are ignored (:305), the mean over time is scaled to
  0-255 (:307-309); keypoints = in each 5x5 window the pixel of lowest value below 40, kept when no other keypoint
  lies within 5 px (:315-333); a keypoint's track in frame i = its reference position + the flow ref->i (:342-349);
  then ``bundle_adjustment.py`` is run (:352-354).
- ``data_utils/face_tracking/bundle_adjustment.py``: initial per-frame euler angles, translation ``/ 1000`` and focal
  from the 3DMM tracker (:21-24; the tracker's translation is ~ -600 in depth, ``face_tracker.py:53``, i.e. mm, so
  the BA works in metres); 3-D points initialised at zero (:31); stage 1: Adam lr 1e-2 on the points only, 500
  iterations (:36-44); stage 2: Adam lr 1e-4 on points + euler + translation, 8,000 iterations (:47-58); the loss is
  the mean squared 2-D reprojection error over all frames and points (:41, :54; ``util.py:79-80``), with no
  regulariser; the focal is not optimised; rotation = Rx Ry Rz of the euler angles (``util.py:18-40``); pinhole
  projection about the image centre (``util.py:60-69``, :34); ``save_transforms`` then reads the adjusted poses
  (``process.py:371``).

Ours (:func:`stabilise_head_pose`): (1) keypoints from ``cv2.goodFeaturesToTrack`` in a rigid-face mask of a
reference frame, tracked by pyramidal Lucas-Kanade *from their reference frame* to every later frame (like the
original's ref->frame flow: no frame-to-frame drift), initialised at the previous frame's position, with a
forward-backward check; failing tracks end; when too few live, new ones are seeded on the current frame.
(2) Adam bundle adjustment in torch (points only, then points + poses) on the canonical frames, then the poses of
the other frames with the points fixed. (3) The result is a :class:`HeadPose` with the tracker's canonical/focal.

Deviations from the original, each with its reason:

- **Leakage.** Points and poses are adjusted jointly only on the first ``canonical_frames`` frames (those every cell
  trains on); every other frame's pose is then solved with those points fixed (tracks born after them get points
  triangulated from the tracker's poses of those later frames only). The original fits the whole video, which
  would let test frames shape the head model the training frames are posed with. Tracking is causal, so nothing
  the canonical frames get depends on later frames (tested).
- **Keypoints**: Shi-Tomasi corners + LK + forward-backward check instead of UNFaceFlow/RAFT flow and the
  flow-Laplacian selection: no network weights to download; the FB check plays the Laplacian's role (reject
  unreliable tracks). The rigid region is built from face-mesh landmarks (hull of pose.STABLE minus dilated eye +
  brow hulls, eroded at its border), not from a parsing net: it also excludes the eyes and brows, which move
  non-rigidly and which the original's head mask keeps; tracks leaving the current frame's mask end.
- **Points initialised** by back-projecting each track's first observation at the canonical mesh's depth under the
  tracker's pose, not at zero (a zero start is a degenerate point behind no camera and needs the 1e-2 stage to
  escape; ours starts near the answer).
- **Rotation** as an axis-angle increment on the tracker's rotation, not euler angles (same 3 DoF, no gimbal/
  convention mismatch with our OpenCV head->camera R). Translation is in metres, as the original's ``/1000``.
- **Robust loss**: Huber on each keypoint's reprojection distance (``huber_px``) instead of the plain MSE: a track
  that slips (LK on a low-texture patch) must not pull its frames' poses.
- **Anchor**: plus ``anchor_weight`` x the Huber reprojection error of the tracker's canonical landmarks
  (pose.STABLE) on the detected landmarks. The keypoint BA alone is invariant to a similarity of points + poses
  (gauge freedom: a global rotation/translation and scale-with-depth), which Adam's per-parameter steps let drift
  over 8,000 iterations; the anchor pins the gauge to the tracker's canonical head and metric scale.
- **Cheaper preset** for the rule (``PRESETS["fast"]``), measured below.

- **Seeding**: per 5x5 window the best Shi-Tomasi score, not ``cv2.goodFeaturesToTrack`` (its local maxima gave
  only 16-42 corners on the demo's 128-px face; the windows give ~60 and tracks ~400 frames long on average).

- **Temporal filter** on the result (``smooth_sigma``, ``resolve_translation``): the tracker's own step 5
  (pose.py: rotations Gaussian-filtered in time, sigma 1 frame; translations re-solved on the landmarks for those
  rotations, then filtered with sigma 1/2), applied within [0, K) and [K, N) apart so no later frame reaches an
  earlier segment. The original's BA output has no filter, but its input (a 3DMM track) is not ours: without the
  filter the comparison pits raw BA poses against the tracker's filtered ones, and BA rotations jittered more
  (demo excess over the truth 0.120 -> 0.156 deg/frame; HDTF 0.39 -> 0.55 on Bob Menendez).

Measurements (2-core CPU; ``benchmarks/stabiliser.py``). Demo (1,100 frames, 128 px, K = 250, preset fast, anchor
2.0) against the generator's truth, tracker -> stabilised: rotation error 0.977 -> 0.815 deg; frame-to-frame
rotation jitter 0.228 -> 0.140 deg (the truth's 0.108: excess 0.120 -> 0.032); head-centre image translation error
0.114 -> 0.109 px, translation jitter excess 0.0187 -> 0.0186 px/frame (unchanged: the translations are re-solved on
the landmarks as the tracker's are); landmark reprojection 0.113 -> 0.121 px. With the translations kept from the BA
(``resolve_translation`` off): translation error 0.087 px and jitter excess 0.010 px/frame, but landmark
reprojection 0.130 px on the demo and +0.019-0.029 px on the HDTF clips, so the default re-solves them. HDTF (200
frames, K = 50), tracker -> stabilised: landmark reprojection AOC 0.361 -> 0.369, Bob Menendez 0.277 -> 0.286, Ed
Markey 0.395 -> 0.402, Radio2 0.327 -> 0.337 px (+2-3 %: a pose that is not the landmark fit's optimum fits the
landmarks a little less, as on the demo, where its rotation is closer to the truth); rotation jitter 0.931 -> 0.852,
0.388 -> 0.324, 0.945 -> 0.888, 1.520 -> 1.479 deg/frame. Without the filter: demo
rotation error 0.834 deg, jitter excess 0.156 deg/frame. Time: demo 32 s wall (tracking 1.0 s; original preset
8,000 + 3,000 its: 185 s); HDTF 16-22 s per clip (Snakemake benchmark).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import FACE_OVAL, LIPS, MOUTH_LEFT, MOUTH_RIGHT
from gt_core.preprocess.pose import N_MESH, STABLE, HeadPose, reprojection_error, smooth_rotations, solve_poses

# mediapipe face-mesh FACEMESH_LEFT_EYE / RIGHT_EYE contours and eyebrows (fixed by the model's topology)
LEFT_EYE = np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398])
RIGHT_EYE = np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173])
LEFT_BROW = np.array([276, 283, 282, 295, 285, 300, 293, 334, 296, 336])
RIGHT_BROW = np.array([46, 53, 52, 65, 55, 70, 63, 105, 66, 107])


@dataclass(frozen=True)
class StabiliseConfig:
    """Options of the stabiliser; defaults = the original's BA schedule (bundle_adjustment.py:36-58)."""

    max_corners: int = 200  # most keypoints live at once
    seed_window: int = 5  # one keypoint candidate per seed_window^2 square (the original's 5x5, process.py:315)
    quality_level: float = 0.01  # Shi-Tomasi score floor relative to the mask's best
    lk_window: int = 11  # LK window side (px of the working frame)
    lk_levels: int = 2  # pyramid levels above the base
    fb_threshold_px: float = 0.5  # forward-backward error above which a track ends
    max_misses: int = 5  # a track ends after this many failed frames in a row
    reseed_fraction: float = 0.7  # seed again when fewer than this x the keypoints live after the last seeding
    mask_margin_px: float = 2.0  # eyes/brows/lips hulls dilated, the face hull eroded by this
    min_observations: int = 5  # a track needs this many observations (in the frames it is fitted on)
    min_points: int = 12  # fewer usable tracks on the canonical frames is an error
    points_iters: int = 500  # stage 1: points only (bundle_adjustment.py:37)
    points_lr: float = 1e-2  # (:36)
    ba_iters: int = 8000  # stage 2: points + poses on the canonical frames (:50)
    ba_lr: float = 1e-4  # (:47)
    pose_iters: int = 2000  # stage 3 (ours): poses of the other frames, points fixed
    pose_lr: float = 1e-4
    huber_px: float = 1.0  # Huber threshold on a keypoint's reprojection distance (px of the working frame)
    anchor_weight: float = 2.0  # weight of the landmark reprojection term (gauge; HDTF: 0.05 raised it 0.15 px)
    smooth_sigma: float = 1.0  # the tracker's temporal filter on the result (pose.py step 5; 0 = none), per segment
    resolve_translation: bool = True  # after smoothing, translations re-solved on the landmarks (as the tracker)

    def __post_init__(self):
        ints = ("max_corners", "seed_window", "lk_window", "min_observations", "min_points")
        for name in ints:
            if getattr(self, name) < 1:
                raise InputError(f"stabilise.{name}", f"must be >= 1, got {getattr(self, name)}", "use a positive value")
        for name in ("points_iters", "ba_iters", "pose_iters", "lk_levels", "max_misses"):
            if getattr(self, name) < 0:
                raise InputError(f"stabilise.{name}", f"must be >= 0, got {getattr(self, name)}", "use 0 or more")
        for name in ("quality_level", "fb_threshold_px", "points_lr", "ba_lr", "pose_lr", "huber_px"):
            if not getattr(self, name) > 0:
                raise InputError(f"stabilise.{name}", f"must be > 0, got {getattr(self, name)}", "use a positive value")
        if not 0 <= self.reseed_fraction <= 1 or self.anchor_weight < 0 or self.mask_margin_px < 0:
            raise InputError("stabilise", "reseed_fraction in [0, 1], anchor_weight and mask_margin_px >= 0",
                             "fix the stabiliser options")


# "fast" (the rule's): on the demo subject the BA loss is within 0.05 % of its 8,000-iteration value after 1,500
# and the pose stage's within 0.03 % after 800 (loss traces in pose_stabilised.json), at a third of the time.
PRESETS = {"original": StabiliseConfig(), "fast": StabiliseConfig(ba_iters=1500, pose_iters=800)}


# ---------------------------------------------------------------------------------------------------- keypoints
def rigid_face_mask(points: np.ndarray, height: int, width: int, margin_px: float = 2.0) -> np.ndarray:
    """uint8 [H, W] mask (255 inside) of the rigid face: the face-oval hull (eroded: its silhouette slides with yaw)
    minus the dilated hulls of each eye + brow and of the lips + chin (the jaw moves with speech).

    ``points``: [478, >=2] landmarks (px) of one frame.
    """
    assert points.ndim == 2 and points.shape[0] >= N_MESH, points.shape
    xy = np.round(points[:, :2]).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(xy[FACE_OVAL]), 255)
    kernel = np.ones((2 * int(np.ceil(margin_px)) + 1,) * 2, np.uint8)
    mask = cv2.erode(mask, kernel)
    mouth_y = xy[[MOUTH_LEFT, MOUTH_RIGHT], 1].min()
    chin = FACE_OVAL[xy[FACE_OVAL, 1] >= mouth_y]  # the oval below the mouth corners' line
    holes = np.zeros_like(mask)
    for idx in (np.r_[LEFT_EYE, LEFT_BROW], np.r_[RIGHT_EYE, RIGHT_BROW], np.r_[LIPS, chin]):
        cv2.fillConvexPoly(holes, cv2.convexHull(xy[idx]), 255)
    mask[cv2.dilate(holes, kernel) > 0] = 0
    return mask


@dataclass
class Tracks:
    """Keypoint tracks over a video."""

    uv: np.ndarray  # [N, T, 2] float32 pixel position of track T in frame N; NaN where not observed
    ref_frame: np.ndarray  # [T] int64 frame each track was seeded on

    def __post_init__(self):
        assert self.uv.ndim == 3 and self.uv.shape[2] == 2 and self.ref_frame.shape == (self.uv.shape[1],)

    @property
    def observed(self) -> np.ndarray:  # [N, T] bool
        return np.isfinite(self.uv[..., 0])


def _in_mask(mask: np.ndarray, p: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    x, y = np.round(p[:, 0]).astype(int), np.round(p[:, 1]).astype(int)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    ok = np.zeros(len(p), bool)
    ok[inside] = mask[y[inside], x[inside]] > 0
    return ok


def seed_keypoints(gray: np.ndarray, mask: np.ndarray, cfg: StabiliseConfig, limit: int) -> np.ndarray:
    """Up to ``limit`` keypoints [K, 2] float32 in ``mask``: in each ``seed_window`` square the pixel of largest
    minimal structure-tensor eigenvalue (Shi-Tomasi score), kept above ``quality_level`` x the mask's best,
    strongest first (the original picks one point per 5x5 window, process.py:315-333, by a different score)."""
    eig = cv2.cornerMinEigenVal(gray, blockSize=5)
    eig[mask == 0] = 0
    if limit <= 0 or eig.max() <= 0:
        return np.zeros((0, 2), np.float32)
    s = cfg.seed_window
    h, w = (gray.shape[0] // s) * s, (gray.shape[1] // s) * s
    blocks = eig[:h, :w].reshape(h // s, s, w // s, s).transpose(0, 2, 1, 3).reshape(h // s, w // s, s * s)
    arg = blocks.argmax(-1)
    best = np.take_along_axis(blocks, arg[..., None], -1)[..., 0]
    by, bx = np.nonzero(best > cfg.quality_level * eig.max())
    order = np.argsort(-best[by, bx], kind="stable")[:limit]
    by, bx, a = by[order], bx[order], arg[by[order], bx[order]]
    return np.stack([bx * s + a % s, by * s + a // s], 1).astype(np.float32)


def track_keypoints(frames: np.ndarray, landmarks: np.ndarray, cfg: StabiliseConfig = StabiliseConfig()) -> Tracks:
    """Seed keypoints in the rigid face mask and track each by LK from its seed frame to every later frame,
    initialised at its last position, with a forward-backward check (see the module docstring).

    ``frames``: [N, H, W, 3] uint8 RGB; ``landmarks``: [N, 478, 3] px (time-interpolated, no NaN). A frame that
    fails the check is not observed; ``max_misses`` failures in a row, or leaving the mask, end the track. New
    keypoints are seeded when fewer than ``reseed_fraction`` x those live after the last seeding remain. Causal:
    what frames < k get depends only on frames < k.
    """
    n, h, w = frames.shape[:3]
    assert frames.ndim == 4 and frames.dtype == np.uint8 and landmarks.shape[0] == n, (frames.shape, landmarks.shape)
    lk = dict(winSize=(cfg.lk_window, cfg.lk_window), maxLevel=cfg.lk_levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    groups: list[dict] = []  # per seeding: gray seed image, anchors [k, 2], track ids [k], last [k, 2], misses [k]
    columns: list[np.ndarray] = []  # per track: [N, 2]
    after_seed = 0
    for i in range(n):
        gray = cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY)
        mask = rigid_face_mask(landmarks[i], h, w, cfg.mask_margin_px)
        live = 0
        for g in groups:
            fwd, st, _ = cv2.calcOpticalFlowPyrLK(g["gray"], gray, g["anchor"], g["last"].copy(),
                                                  flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(gray, g["gray"], fwd, g["anchor"].copy(),
                                                     flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
            fb = np.linalg.norm(back - g["anchor"], axis=1)
            inside = _in_mask(mask, fwd)
            ok = (st[:, 0] == 1) & (st_b[:, 0] == 1) & (fb < cfg.fb_threshold_px) & inside
            for tid, p in zip(g["ids"][ok], fwd[ok]):
                columns[tid][i] = p
            g["misses"] = np.where(ok, 0, g["misses"] + 1)
            g["last"] = np.where(ok[:, None], fwd, g["last"])
            keep = (g["misses"] <= cfg.max_misses) & (inside | ~(st[:, 0] == 1))
            for key in ("anchor", "ids", "last", "misses"):
                g[key] = g[key][keep]
            live += int(keep.sum())
        groups = [g for g in groups if len(g["ids"])]
        if not groups or live < cfg.reseed_fraction * after_seed:
            seed_mask = mask.copy()
            for g in groups:
                for p in g["last"]:
                    cv2.circle(seed_mask, (int(round(p[0])), int(round(p[1]))), cfg.seed_window // 2 + 1, 0, -1)
            pts = seed_keypoints(gray, seed_mask, cfg, cfg.max_corners - live)
            if len(pts):
                ids = np.arange(len(columns), len(columns) + len(pts))
                for p in pts:
                    col = np.full((n, 2), np.nan, np.float32)
                    col[i] = p
                    columns.append(col)
                groups.append({"gray": gray, "anchor": pts, "ids": ids, "last": pts.copy(),
                               "misses": np.zeros(len(pts), np.int64)})
            after_seed = live + len(pts)
    uv = np.stack(columns, axis=1) if columns else np.zeros((n, 0, 2), np.float32)
    ref = np.argmax(np.isfinite(uv[..., 0]), axis=0).astype(np.int64)
    return Tracks(uv, ref)


# ---------------------------------------------------------------------------------------------- bundle adjustment
def _rotvec_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rotation vectors [N, 3] -> matrices [N, 3, 3] (Rodrigues; smooth at 0)."""
    theta2 = (w * w).sum(-1)[:, None, None]  # [N, 1, 1]
    zero = torch.zeros_like(w[:, 0])
    k = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1).view(-1, 3, 3)
    small = theta2 < 1e-12
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta**2)
    return torch.eye(3, dtype=w.dtype, device=w.device) + a * k + b * (k @ k)


def _project(rot: torch.Tensor, t: torch.Tensor, x: torch.Tensor, focal: float, cxy: torch.Tensor) -> torch.Tensor:
    """rot [N, 3, 3], t [N, 3], head points x [P, 3] -> pixels [N, P, 2]."""
    y = torch.matmul(x, rot.transpose(1, 2)) + t[:, None]  # [N, P, 3]
    return focal * y[..., :2] / y[..., 2:3].clamp_min(1e-6) + cxy


def _huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber of the distances ``|r|`` (r [..., 2]) scaled to px^2 units: e^2/2 below delta, linear above."""
    e = torch.sqrt((r * r).sum(-1) + 1e-12)
    return torch.where(e < delta, 0.5 * e * e, delta * (e - 0.5 * delta))


@dataclass
class _Problem:
    """One adjustment problem on a set of frames; float32 tensors on one device (px residuals ~0.1 of ~100:
    float32 resolves 1e-5 px; float64 costs 3x on CPU)."""

    rot0: torch.Tensor  # [F, 3, 3] initial rotations (tracker's)
    t0: torch.Tensor  # [F, 3]
    uv: torch.Tensor  # [F, P, 2] keypoint observations (0 where unobserved)
    seen: torch.Tensor  # [F, P] float 1 where observed, else 0
    lm_uv: torch.Tensor  # [F, S, 2] detected STABLE landmarks
    lm_head: torch.Tensor  # [S, 3] the tracker's canonical STABLE points
    focal: float
    cxy: torch.Tensor  # [2]

    def loss(self, w: torch.Tensor, dt: torch.Tensor, points: torch.Tensor, cfg: StabiliseConfig,
             anchor: bool = True) -> torch.Tensor:
        """Mean Huber keypoint reprojection + ``anchor_weight`` x mean Huber landmark reprojection (``anchor``
        False leaves out the landmark term: a constant while the poses are fixed)."""
        rot, t = _rotvec_to_matrix(w) @ self.rot0, self.t0 + dt
        kp = _huber(_project(rot, t, points, self.focal, self.cxy) - self.uv, cfg.huber_px)
        loss = (kp * self.seen).sum() / self.seen.sum().clamp_min(1)
        if anchor and cfg.anchor_weight > 0:
            lm = _huber(_project(rot, t, self.lm_head, self.focal, self.cxy) - self.lm_uv, cfg.huber_px)
            loss = loss + cfg.anchor_weight * lm.mean()
        return loss

    def keypoint_error_px(self, w, dt, points) -> float:
        """Mean keypoint reprojection distance (px) over the observations."""
        with torch.no_grad():
            rot, t = _rotvec_to_matrix(w) @ self.rot0, self.t0 + dt
            e = (_project(rot, t, points, self.focal, self.cxy) - self.uv).norm(dim=-1)
            return float(e[self.seen > 0].mean()) if bool(self.seen.any()) else float("nan")


def _adam(params: list[torch.Tensor], loss_fn, iters: int, lr: float, trace: list | None = None) -> tuple[float, float]:
    """``iters`` Adam steps on ``params``; returns the loss before the first and after the last step (``trace``:
    appended the loss every 100 steps)."""
    with torch.no_grad():
        first = float(loss_fn())
    if iters == 0 or not params:
        return first, first
    opt = torch.optim.Adam(params, lr=lr)
    for it in range(iters):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        if trace is not None and it % 100 == 0:
            trace.append(float(loss.detach()))
    with torch.no_grad():
        return first, float(loss_fn())


@dataclass
class Stabilised:
    """What :func:`stabilise_head_pose` returns."""

    pose: HeadPose  # the stabilised poses (the tracker's canonical shape and camera)
    points: np.ndarray  # [P, 3] head-frame keypoints fitted on the canonical frames
    tracks: Tracks
    stats: dict  # JSON-able: tracks, losses per stage, errors and jitter before/after, seconds


def _backproject(uv: np.ndarray, frame: np.ndarray, pose: HeadPose) -> np.ndarray:
    """Head-frame 3-D points [T, 3] of observations ``uv`` [T, 2] in frames ``frame`` [T] at the depth of the
    canonical mesh under the tracker's pose there (inverse-distance mean of the 3 nearest projected mesh points)."""
    rot, t = pose.R[frame], pose.t[frame]  # [T, 3, 3], [T, 3]
    cam = np.einsum("tij,pj->tpi", rot, pose.canonical[:N_MESH]) + t[:, None]  # [T, 468, 3]
    proj = pose.focal * cam[..., :2] / cam[..., 2:3] + np.array([pose.cx, pose.cy])
    d = np.linalg.norm(proj - uv[:, None], axis=-1)  # [T, 468]
    near = np.argsort(d, axis=1)[:, :3]
    wgt = 1.0 / (np.take_along_axis(d, near, 1) + 0.5)
    depth = (np.take_along_axis(cam[..., 2], near, 1) * wgt).sum(1) / wgt.sum(1)  # [T]
    ray = np.concatenate([(uv - np.array([pose.cx, pose.cy])) / pose.focal, np.ones((len(uv), 1))], 1)
    return np.einsum("tji,tj->ti", rot, depth[:, None] * ray - t)  # R^T (X_cam - t)


def stabilise_head_pose(frames: np.ndarray, landmarks: np.ndarray, pose: HeadPose, canonical_frames: int,
                        cfg: StabiliseConfig = StabiliseConfig(), what: str = "frames.npy",
                        device: torch.device | str = "cpu") -> Stabilised:
    """Stabilised head pose of every frame: :func:`track_keypoints` then :func:`adjust_head_pose`.

    ``frames``: [N, H, W, 3] uint8; ``landmarks``: [N, 478, 3] px, time-interpolated; ``pose``: the tracker's;
    ``canonical_frames``: K, points are fitted on frames [0, K) only. ``what`` names the frames in errors.
    """
    n = len(frames)
    assert landmarks.shape == (n, landmarks.shape[1], 3) and len(pose) == n, (frames.shape, landmarks.shape, len(pose))
    start = time.perf_counter()
    tracks = track_keypoints(frames, landmarks, cfg)
    res = adjust_head_pose(tracks, landmarks, pose, canonical_frames, cfg, what, device)
    res.stats["seconds"]["tracking_s"] = time.perf_counter() - start - res.stats["seconds"]["total_s"]
    res.stats["seconds"]["total_s"] = time.perf_counter() - start
    return res


def adjust_head_pose(tracks: Tracks, landmarks: np.ndarray, pose: HeadPose, canonical_frames: int,
                     cfg: StabiliseConfig = StabiliseConfig(), what: str = "frames.npy",
                     device: torch.device | str = "cpu") -> Stabilised:
    """Bundle adjustment of keypoint ``tracks`` ([N, T, 2]) from the tracker's ``pose`` (see the module docstring):
    points + poses on frames [0, ``canonical_frames``), then the other frames' poses with the points fixed."""
    n = len(pose)
    assert tracks.uv.shape[0] == n and landmarks.shape[0] == n, (tracks.uv.shape, landmarks.shape, n)
    if not 2 <= canonical_frames <= n:
        raise InputError(what, f"canonical_frames {canonical_frames} must be in [2, {n}] (the video's frames)",
                         "pass --canonical-frames = round(min(durations) * fps) for a video at least that long")
    clock = {"start": time.perf_counter(), "tracking_s": 0.0}
    seen = tracks.observed  # [N, T]
    k = canonical_frames
    canon_tracks = np.flatnonzero(seen[:k].sum(0) >= cfg.min_observations)
    late_tracks = np.flatnonzero((seen[:k].sum(0) < cfg.min_observations) & (seen[k:].sum(0) >= cfg.min_observations))
    if len(canon_tracks) < cfg.min_points:
        raise InputError(what, f"only {len(canon_tracks)} face keypoints could be tracked over >= "
                               f"{cfg.min_observations} of the first {k} frames (need {cfg.min_points})",
                         "use a sharper / higher-resolution video of a face with visible skin texture, or lower "
                         "the stabiliser's min_points")
    dev = torch.device(device)
    f64 = dict(dtype=torch.float32, device=dev)
    cxy = torch.tensor([pose.cx, pose.cy], **f64)
    lm_head = torch.tensor(pose.canonical[STABLE], **f64)

    def problem(fr: np.ndarray, tr: np.ndarray) -> _Problem:
        uv = np.nan_to_num(tracks.uv[np.ix_(fr, tr)], nan=0.0)
        return _Problem(torch.tensor(pose.R[fr], **f64), torch.tensor(pose.t[fr], **f64), torch.tensor(uv, **f64),
                        torch.tensor(seen[np.ix_(fr, tr)], **f64), torch.tensor(landmarks[fr][:, STABLE, :2], **f64),
                        lm_head, pose.focal, cxy)

    def init_points(fr: np.ndarray, tr: np.ndarray) -> torch.Tensor:
        first = fr[np.argmax(seen[np.ix_(fr, tr)], axis=0)]  # first observing frame of each track within fr
        return torch.tensor(_backproject(tracks.uv[first, tr].astype(np.float64), first, pose), **f64)

    def zeros(m: int) -> torch.Tensor:
        return torch.zeros(m, 3, **f64)

    stats: dict = {"n_tracks": int(seen.shape[1]), "canonical_tracks": int(len(canon_tracks)),
                   "late_tracks": int(len(late_tracks)), "keypoints_per_frame_mean": float(seen.sum(1).mean()),
                   "keypoints_per_frame_min": int(seen.sum(1).min()), "canonical_frames": int(k),
                   "config": asdict(cfg)}
    # stages 1 + 2 on the canonical frames: points only (tracker poses), then points + poses
    fr = np.arange(k)
    prob = problem(fr, canon_tracks)
    points = init_points(fr, canon_tracks).requires_grad_(True)  # [P, 3] head frame, metres
    w, dt = zeros(k), zeros(k)
    stats["canonical_keypoint_px_init"] = prob.keypoint_error_px(w, dt, points)
    stats["loss_points_stage"] = _adam([points], lambda: prob.loss(w, dt, points, cfg, anchor=False), cfg.points_iters,
                                       cfg.points_lr)
    stats["canonical_keypoint_px_points"] = prob.keypoint_error_px(w, dt, points)
    w.requires_grad_(True), dt.requires_grad_(True)
    stats["loss_ba_trace"], stats["loss_pose_trace"] = [], []
    stats["loss_ba_stage"] = _adam([points, w, dt], lambda: prob.loss(w, dt, points, cfg), cfg.ba_iters, cfg.ba_lr,
                                   stats["loss_ba_trace"])
    stats["canonical_keypoint_px_ba"] = prob.keypoint_error_px(w, dt, points)
    with torch.no_grad():
        rot_k, t_k = (_rotvec_to_matrix(w) @ prob.rot0).cpu().numpy(), (prob.t0 + dt).cpu().numpy()
    points_k = points.detach()
    clock["canonical_ba_s"] = time.perf_counter() - clock["start"] - clock["tracking_s"]
    rot, t = pose.R.copy(), pose.t.copy()
    rot[:k], t[:k] = rot_k, t_k
    if k < n:  # stage 3: the other frames' poses with the points fixed (late tracks: points from tracker poses)
        fr = np.arange(k, n)
        late = problem(fr, late_tracks)
        late_pts = init_points(fr, late_tracks).requires_grad_(True)
        wl, dtl = zeros(n - k), zeros(n - k)
        _adam([late_pts], lambda: late.loss(wl, dtl, late_pts, cfg, anchor=False), cfg.points_iters, cfg.points_lr)
        tr = np.r_[canon_tracks, late_tracks]
        rest = problem(fr, tr)
        all_pts = torch.cat([points_k, late_pts.detach()])
        stats["other_keypoint_px_init"] = rest.keypoint_error_px(wl, dtl, all_pts)
        wl.requires_grad_(True), dtl.requires_grad_(True)
        stats["loss_pose_stage"] = _adam([wl, dtl], lambda: rest.loss(wl, dtl, all_pts, cfg), cfg.pose_iters,
                                         cfg.pose_lr, stats["loss_pose_trace"])
        stats["other_keypoint_px_final"] = rest.keypoint_error_px(wl, dtl, all_pts)
        with torch.no_grad():
            rot[k:], t[k:] = (_rotvec_to_matrix(wl) @ rest.rot0).cpu().numpy(), (rest.t0 + dtl).cpu().numpy()
    if cfg.smooth_sigma > 0:  # the tracker's filter, within [0, K) and [K, N) apart (no frame after K reaches one before)
        for seg in (slice(0, k), slice(k, n)):
            if seg.stop - seg.start >= 2:
                rot[seg] = smooth_rotations(rot[seg], cfg.smooth_sigma)
                if cfg.resolve_translation:
                    t[seg] = solve_poses(pose.canonical, landmarks[seg], pose.focal, pose.cx, pose.cy, iters=8,
                                         init=(rot[seg], t[seg]), fix_rotation=True)[1]
                t[seg] = gaussian_filter1d(t[seg], cfg.smooth_sigma / 2, axis=0, mode="nearest")
    err = reprojection_error(pose.canonical, landmarks, rot, t, pose.focal, pose.cx, pose.cy)
    out = replace(pose, R=rot, t=t, reproj_error_px=err)
    stats.update({
        "landmark_reprojection_px_before": float(pose.reproj_error_px.mean()),
        "landmark_reprojection_px_after": float(err.mean()),
        "rotation_jitter_deg_before": float(rotation_jitter_deg(pose.R).mean()),
        "rotation_jitter_deg_after": float(rotation_jitter_deg(rot).mean()),
        "translation_jitter_mm_before": float(1000 * np.linalg.norm(np.diff(pose.t, axis=0), axis=1).mean()),
        "translation_jitter_mm_after": float(1000 * np.linalg.norm(np.diff(t, axis=0), axis=1).mean()),
        "seconds": {**{key: v for key, v in clock.items() if key != "start"},
                    "total_s": time.perf_counter() - clock["start"]},
    })
    return Stabilised(out, points_k.cpu().numpy().astype(np.float64), tracks, stats)


def rotation_jitter_deg(rot: np.ndarray) -> np.ndarray:
    """Angle (deg) of the frame-to-frame rotation ``R[i+1] R[i]^T``: [N, 3, 3] -> [N-1]."""
    rel = np.einsum("nij,nkj->nik", rot[1:], rot[:-1])
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
