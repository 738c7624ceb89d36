"""Per-frame head pose and a pinhole camera from face-mesh landmarks, without a 3DMM (DESIGN.md §4).

The original methods track the BFM 3DMM (a licensed download). This module replaces it with what the mediapipe
landmarks already contain:

1. **Lifting.** mediapipe gives each point's image position ``(u, v)`` (perspective-projected) and a relative depth
   ``z`` in pixel units. For a pinhole camera with focal ``f`` the point's depth relative to the face's mean depth
   is ``1 + z/f`` (``z`` re-centred on the face per frame), so the camera-space point up to one per-frame scale is
   ``(1 + z/f) * ((u - cx)/f, (v - cy)/f, 1)``. Unlike the raw landmarks, lifted points are free of the
   perspective distortion of the frame they came from (the per-frame scale is removed by the similarity fits).
2. **Canonical shape.** Generalized Procrustes (similarity) of the lifted landmarks of ``canonical_frames`` on the
   :data:`STABLE` points, then expressed in head axes like the BFM's: x towards the subject's left (image right in
   a frontal view), y up, z out of the face (towards the camera in a frontal view), with "frontal" defined as the
   mean head orientation over ``canonical_frames`` (so yaw/pitch/roll are relative to the subject's average pose);
   origin = centroid of the 468 mesh points; unit = metres, by setting the distance between the two eye centres
   (mid-points of the eye corners) to :data:`EYE_DISTANCE_M` = 0.063 (adult mean interpupillary distance). A head
   is then ~0.15 wide and, for the framings of talking-head videos, 0.4-1 units from the camera.
3. **Camera.** Pinhole, principal point at the image centre, fx = fy = focal chosen by search as the 3DMM trackers
   do: a coarse sweep of fields of view (default 10-50 degrees, log-spaced in focal), then a golden-section
   refinement; each candidate rebuilds the canonical shape from points lifted with that focal and solves every
   search frame's pose; the focal with the lowest mean reprojection error wins. The search uses only
   ``canonical_frames`` (no test frame decides anything). Weak-perspective input (an orthographic synthetic video,
   a far-away face) has no perspective cue and ends at the long end of the sweep, which is the right answer.
4. **Per-frame pose.** Similarity alignment (Umeyama) of the frame's lifted points to the canonical shape gives an
   initial ``(R, t)``; a batched Levenberg-Marquardt over all frames then minimises the 2D reprojection error of the
   stable points.
5. **Smoothing.** mediapipe jitters (~0.5 degrees per frame in yaw/pitch on HDTF clips), and rotation-vs-translation
   is the weakly determined direction of a 2D fit, so by default rotations are Gaussian-filtered in time
   (quaternions, ``smooth_sigma`` frames), translations are then re-solved per frame for the filtered rotations
   (so the 2D fit stays tight: +0.05 px mean error for sigma 1 instead of +0.5 px when filtering both) and lightly
   filtered (``smooth_sigma / 2``).

Conventions: ``R`` [N,3,3], ``t`` [N,3] map head (= world) coordinates to the OpenCV camera (x right, y down,
z forward); ``X_cam = R @ X_head + t``; a frontal upright face has ``R ≈ diag(1, -1, -1)``.
:meth:`HeadPose.c2w_opengl` gives the camera-to-world matrices of the NeRF/3DGS ``transforms.json`` convention
(camera x right, y up, z backward): for a frontal face the camera sits at ``(0, 0, +d)`` with identity rotation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import LEFT_EYE_CORNERS, N_POINTS, RIGHT_EYE_CORNERS, Landmarks

EYE_DISTANCE_M = 0.063  # distance between the two eye centres (mid-points of the corners) in the canonical shape
N_MESH = 468  # face-mesh points without the 10 iris points

# Points that move rigidly with the skull: the face above the nose base, without lips, eyelids (the lid contours
# of FACEMESH_LEFT/RIGHT_EYE, corners kept), eyebrows and iris, and without the silhouette points of the face
# oval that slide with yaw. Chosen from the per-point residual motion after rigid alignment on four HDTF clips
# (kept: motion < 1.1 % of the eye distance; the excluded points moved 1.1-4 %).
STABLE = np.array([
    1, 2, 3, 4, 5, 6, 8, 9, 10, 19, 20, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33, 35, 36, 44, 45, 47, 48, 49, 50,
    51, 56, 59, 60, 64, 67, 69, 75, 79, 94, 97, 99, 100, 101, 102, 104, 108, 109, 110, 112, 113, 114, 115, 117, 118,
    119, 120, 121, 122, 124, 125, 126, 128, 129, 130, 131, 133, 134, 141, 142, 151, 166, 168, 174, 188, 189, 190,
    193, 195, 196, 197, 198, 203, 209, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232,
    233, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 247, 248, 250, 252, 253, 254, 255, 256, 257, 258,
    259, 260, 261, 263, 265, 266, 274, 275, 277, 278, 279, 280, 281, 286, 289, 290, 294, 297, 298, 299, 305, 309,
    328, 329, 330, 331, 333, 337, 338, 339, 341, 342, 343, 344, 345, 346, 347, 348, 349, 350, 351, 352, 353, 354,
    355, 357, 358, 359, 360, 362, 363, 366, 368, 370, 371, 383, 392, 399, 412, 413, 414, 417, 419, 420, 425, 429,
    437, 438, 439, 440, 441, 442, 445, 446, 447, 448, 449, 450, 451, 452, 453, 455, 456, 457, 458, 459, 461, 462,
    463, 464, 465, 467], dtype=np.int64)  # 213 points
NOSE_TIP = 1

_CV_TO_GL = np.diag([1.0, -1.0, -1.0])  # flips y and z: OpenCV camera axes <-> OpenGL camera axes


# ----------------------------------------------------------------------------------------------------------------
# geometry helpers (batched, float64)

def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched similarity fit ``dst ≈ s * R @ src + t`` (least squares, proper rotations).

    ``src``, ``dst``: [N, P, 3] (or [P, 3], broadcast). Returns ``s`` [N], ``R`` [N, 3, 3], ``t`` [N, 3].
    """
    src, dst = np.broadcast_arrays(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    squeeze = src.ndim == 2
    if squeeze:
        src, dst = src[None], dst[None]
    ms, md = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    a, b = src - ms, dst - md
    cov = np.einsum("npi,npj->nij", b, a) / src.shape[1]
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones((len(src), 3))
    d[:, 2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ (d[:, :, None] * vt)
    var = (a**2).sum((1, 2)) / src.shape[1]
    s = (sv * d).sum(1) / np.maximum(var, 1e-30)
    t = md[:, 0] - s[:, None] * np.einsum("nij,nj->ni", rot, ms[:, 0])
    return (s[0], rot[0], t[0]) if squeeze else (s, rot, t)


def _apply(s: np.ndarray, rot: np.ndarray, t: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``s R p + t`` batched: s [N], R [N,3,3], t [N,3], pts [N,P,3] or [P,3] -> [N,P,3]."""
    pts = np.broadcast_to(pts, (len(rot),) + pts.shape[-2:])
    return s[:, None, None] * np.einsum("nij,npj->npi", rot, pts) + t[:, None]


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Rotation vectors [N, 3] -> rotation matrices [N, 3, 3]."""
    theta = np.linalg.norm(w, axis=1)
    k = np.zeros((len(w), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    k = k - k.transpose(0, 2, 1)
    small = theta < 1e-8
    th = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(th) / th)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(th)) / th**2)
    return np.eye(3)[None] + a[:, None, None] * k + b[:, None, None] * (k @ k)


def lift_landmarks(points: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """Camera-space landmarks up to a per-frame scale: [N, P, 3] pixel landmarks -> [N, P, 3] (mean depth ≈ 1).

    ``z`` is re-centred on the mean depth of the 468 mesh points of each frame before lifting.
    """
    p = np.asarray(points, np.float64)
    z = p[..., 2] - p[..., :N_MESH, 2].mean(-1, keepdims=True)
    depth = 1.0 + z / focal
    return np.stack([(p[..., 0] - cx) / focal * depth, (p[..., 1] - cy) / focal * depth, depth], axis=-1)


def procrustes_canonical(shapes: np.ndarray, iters: int = 8) -> np.ndarray:
    """Generalized Procrustes mean of camera-space shapes [M, 478, 3] (aligned on :data:`STABLE`) -> [478, 3].

    The result is in head axes that coincide with the mean camera orientation of the input frames (x right, y up,
    z towards the camera: "frontal" = the subject's average pose in these frames), centred on the centroid of the
    468 mesh points and scaled to metres by the eye distance (:data:`EYE_DISTANCE_M`).
    """
    shapes = np.asarray(shapes, np.float64)
    ref = shapes[0]
    for _ in range(iters):
        s, rot, t = umeyama(shapes[:, STABLE], ref[STABLE])
        new = _apply(s, rot, t, shapes).mean(0)
        st = new[STABLE] - new[STABLE].mean(0)
        new = (new - new[STABLE].mean(0)) / np.sqrt((st**2).sum(1).mean())  # fixed gauge: unit RMS, centred
        done = np.abs(new - ref).max() < 1e-7
        ref = new
        if done:
            break
    rot = umeyama(shapes[:, STABLE], ref[STABLE])[1]  # shape_i -> ref; ref -> camera_i is rot_i^T
    u, _, vt = np.linalg.svd(rot.transpose(0, 2, 1).sum(0))
    mean_rot = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt  # chordal mean: ref -> mean camera (OpenCV)
    centre = ref[:N_MESH].mean(0)
    eye_r = ref[list(RIGHT_EYE_CORNERS)].mean(0)
    eye_l = ref[list(LEFT_EYE_CORNERS)].mean(0)
    scale = EYE_DISTANCE_M / np.linalg.norm(eye_l - eye_r)
    return scale * (ref - centre) @ (_CV_TO_GL @ mean_rot).T


def solve_poses(
    canonical: np.ndarray,  # [478, 3] head coordinates (metres)
    points: np.ndarray,  # [N, 478, 3] pixel landmarks
    focal: float,
    cx: float,
    cy: float,
    iters: int = 15,
    idx: np.ndarray = STABLE,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    fix_rotation: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame ``R`` [N,3,3], ``t`` [N,3] minimising the reprojection error of ``canonical[idx]`` onto the 2D
    landmarks ``points[:, idx, :2]`` for a pinhole (focal, cx, cy); returns also the mean error per frame [N] (px).

    Initialised by a similarity fit of the lifted landmarks (or ``init`` = (R, t)), refined by batched
    Levenberg-Marquardt (6 parameters per frame, all frames at once; 3 with ``fix_rotation``).
    """
    canonical = np.asarray(canonical, np.float64)
    x_head = canonical[idx]  # [P, 3]
    uv = np.asarray(points, np.float64)[:, idx, :2]  # [N, P, 2]
    if init is None:
        lifted = lift_landmarks(points, focal, cx, cy)[:, idx]
        s, rot, t = umeyama(x_head, lifted)  # lifted ≈ s (R X + t/s); true depth scale = 1/s
        t = t / s[:, None]
    else:
        rot, t = np.array(init[0], np.float64), np.array(init[1], np.float64)
    n = len(uv)
    principal = np.array([cx, cy])

    def residual(rot_, t_):
        y = np.einsum("nij,pj->npi", rot_, x_head) + t_[:, None]
        z = np.maximum(y[..., 2:3], 1e-6)
        return y, focal * y[..., :2] / z + principal - uv

    y, r = residual(rot, t)
    cost = (r**2).sum((1, 2))
    lam = np.full(n, 1e-3)
    for _ in range(iters):
        q = y - t[:, None]  # R X
        z = np.maximum(y[..., 2], 1e-6)
        dpi = np.zeros(y.shape[:2] + (2, 3))  # d(u,v)/dY
        dpi[..., 0, 0] = focal / z
        dpi[..., 1, 1] = focal / z
        dpi[..., 0, 2] = -focal * y[..., 0] / z**2
        dpi[..., 1, 2] = -focal * y[..., 1] / z**2
        skew = np.zeros(q.shape + (3,))  # -[q]x
        skew[..., 0, 1], skew[..., 0, 2] = q[..., 2], -q[..., 1]
        skew[..., 1, 0], skew[..., 1, 2] = -q[..., 2], q[..., 0]
        skew[..., 2, 0], skew[..., 2, 1] = q[..., 1], -q[..., 0]
        jac = np.concatenate([dpi @ skew, dpi], axis=-1).reshape(n, -1, 6)  # [N, 2P, 6]
        if fix_rotation:
            jac = jac[..., 3:]
        k = jac.shape[-1]
        jtj = jac.transpose(0, 2, 1) @ jac
        jtr = np.einsum("nki,nk->ni", jac, r.reshape(n, -1))
        damp = lam[:, None, None] * (jtj * np.eye(k)[None] + 1e-9 * np.eye(k)[None])
        delta = -np.linalg.solve(jtj + damp, jtr[..., None])[..., 0]
        if fix_rotation:
            delta = np.concatenate([np.zeros((n, 3)), delta], axis=1)
        rot_new = _rodrigues(delta[:, :3]) @ rot
        t_new = t + delta[:, 3:]
        y_new, r_new = residual(rot_new, t_new)
        cost_new = (r_new**2).sum((1, 2))
        ok = cost_new < cost
        rot[ok], t[ok], y[ok], r[ok], cost[ok] = rot_new[ok], t_new[ok], y_new[ok], r_new[ok], cost_new[ok]
        lam = np.where(ok, lam * 0.3, lam * 10.0)
    err = np.linalg.norm(r, axis=-1).mean(1)
    return rot, t, err


def reprojection_error(canonical, points, rot, t, focal, cx, cy, idx: np.ndarray = STABLE) -> np.ndarray:
    """Mean distance (px) between projected ``canonical[idx]`` under (R, t) and ``points[:, idx, :2]``: [N]."""
    y = np.einsum("nij,pj->npi", rot, np.asarray(canonical, np.float64)[idx]) + t[:, None]
    proj = focal * y[..., :2] / y[..., 2:3] + np.array([cx, cy])
    return np.linalg.norm(proj - np.asarray(points, np.float64)[:, idx, :2], axis=-1).mean(1)


def smooth_rotations(rot: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter in time (``sigma`` frames) of rotations [N, 3, 3] via sign-aligned unit quaternions."""
    if sigma <= 0 or len(rot) < 2:
        return rot
    q = Rotation.from_matrix(rot).as_quat()  # [N, 4]
    flip = np.cumprod(np.where(np.einsum("ni,ni->n", q[1:], q[:-1]) < 0, -1.0, 1.0))
    q[1:] *= flip[:, None]
    q = gaussian_filter1d(q, sigma, axis=0, mode="nearest")
    return Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_matrix()


# ----------------------------------------------------------------------------------------------------------------

@dataclass
class HeadPose:
    """Head pose per frame plus the pinhole camera, for one video (see the module docstring for conventions)."""

    R: np.ndarray  # [N, 3, 3] head -> OpenCV camera rotation
    t: np.ndarray  # [N, 3] head -> OpenCV camera translation (metres)
    focal: float  # pixels, fx = fy
    cx: float
    cy: float
    width: int
    height: int
    canonical: np.ndarray  # [478, 3] canonical landmarks in head coordinates (metres; x left-eye-ward, y up, z out)
    reproj_error_px: np.ndarray  # [N] mean reprojection error of the STABLE points (px), after smoothing
    found: np.ndarray = None  # [N] bool, False where the landmarks were interpolated (no face detected)
    focal_curve: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [K, 2] (focal px, mean error px)

    def __post_init__(self):
        n = len(self.R)
        assert self.R.shape == (n, 3, 3) and self.t.shape == (n, 3), (self.R.shape, self.t.shape)
        assert self.canonical.shape == (N_POINTS, 3), self.canonical.shape
        assert self.reproj_error_px.shape == (n,), self.reproj_error_px.shape
        if self.found is None:
            self.found = np.ones(n, dtype=bool)
        assert self.found.shape == (n,), self.found.shape

    def __len__(self) -> int:
        return len(self.R)

    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 pinhole matrix K."""
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1.0]])

    def w2c(self) -> np.ndarray:
        """[N, 4, 4] world(head) -> OpenCV camera."""
        m = np.tile(np.eye(4), (len(self), 1, 1))
        m[:, :3, :3], m[:, :3, 3] = self.R, self.t
        return m

    def c2w_opengl(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world in the NeRF/3DGS transforms.json convention (camera x right, y up, z back)."""
        rt = self.R.transpose(0, 2, 1)
        c2w = np.tile(np.eye(4), (len(self), 1, 1))
        c2w[:, :3, :3] = rt @ _CV_TO_GL
        c2w[:, :3, 3] = -np.einsum("nij,nj->ni", rt, self.t)
        return c2w

    def project(self, pts_head: np.ndarray) -> np.ndarray:
        """Project head-frame points [P, 3] into every frame: [N, P, 2] pixels."""
        y = np.einsum("nij,pj->npi", self.R, np.asarray(pts_head, np.float64)) + self.t[:, None]
        return self.focal * y[..., :2] / y[..., 2:3] + np.array([self.cx, self.cy])

    def euler_deg(self) -> np.ndarray:
        """[N, 3] (yaw, pitch, roll) in degrees of the head seen from an upright camera (0 = frontal).

        ``diag(1,-1,-1) @ R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` with y up, x right, z towards the viewer.
        """
        return Rotation.from_matrix(_CV_TO_GL[None] @ self.R).as_euler("YXZ", degrees=True)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path, R=self.R, t=self.t, canonical=self.canonical, reproj_error_px=self.reproj_error_px,
            found=self.found, focal_curve=self.focal_curve,
            camera=np.array([self.focal, self.cx, self.cy, self.width, self.height], dtype=np.float64),
        )

    @classmethod
    def load(cls, path: str | Path) -> "HeadPose":
        with np.load(path) as z:
            f, cx, cy, w, h = z["camera"]
            return cls(z["R"], z["t"], float(f), float(cx), float(cy), int(w), int(h), z["canonical"],
                       z["reproj_error_px"], z["found"].astype(bool), z["focal_curve"])

    def transforms_dict(self, frame_ids: np.ndarray | None = None) -> dict:
        """The ``transforms.json`` content for ``frame_ids`` (indices into this pose; default all)."""
        ids = np.arange(len(self)) if frame_ids is None else np.asarray(frame_ids, dtype=np.int64)
        c2w = self.c2w_opengl()
        return {
            "fl_x": self.focal, "fl_y": self.focal, "cx": self.cx, "cy": self.cy, "w": self.width, "h": self.height,
            "focal_len": self.focal,
            "frames": [
                {"img_id": int(i), "aud_id": int(i), "transform_matrix": c2w[i].tolist()} for i in ids
            ],
        }

    def write_transforms_json(self, path: str | Path, frame_ids: np.ndarray | None = None) -> None:
        """Write ``transforms.json`` (``{fl_x, fl_y, cx, cy, w, h, focal_len, frames: [{img_id, aud_id,
        transform_matrix}]}``, aud_id = img_id) for ``frame_ids`` (default all frames)."""
        Path(path).write_text(json.dumps(self.transforms_dict(frame_ids), indent=1))

    def scaled(self, factor: float) -> "HeadPose":
        """The same poses for the frames resized by ``factor`` (e.g. landmarks at 512 px, renders at 128 px)."""
        return HeadPose(self.R, self.t, self.focal * factor, self.cx * factor, self.cy * factor,
                        int(round(self.width * factor)), int(round(self.height * factor)), self.canonical,
                        self.reproj_error_px * factor, self.found, self.focal_curve * np.array([factor, factor]))


def _fov_to_focal(fov_deg: float, width: int) -> float:
    return 0.5 * width / np.tan(np.radians(fov_deg) / 2)


def fit_head_pose(
    landmarks: Landmarks,
    canonical_frames: np.ndarray,
    focal_candidates: int = 9,
    smooth_sigma: float = 1.0,
    fov_range_deg: tuple[float, float] = (10.0, 50.0),
    refine_steps: int = 8,
    max_search_frames: int = 80,
    what: str = "landmarks",
) -> HeadPose:
    """Fit the canonical head, the focal length and every frame's head pose (see the module docstring).

    ``canonical_frames``: frame indices shared by every training cell (the canonical shape and the focal come from
    these only). ``focal_candidates``: size of the coarse field-of-view sweep over ``fov_range_deg`` (horizontal
    FOV, log-spaced in focal), followed by ``refine_steps`` golden-section steps. ``smooth_sigma``: Gaussian
    temporal filter of the rotations in frames (0 = off); translations are re-fitted to the filtered rotations and
    filtered with half that sigma. Frames without a face use time-interpolated landmarks and are marked
    ``found=False``. ``what`` names the input in error messages.
    """
    n = len(landmarks)
    canonical_frames = np.unique(np.asarray(canonical_frames, dtype=np.int64))
    if n == 0 or not landmarks.found.any():
        raise InputError(what, "no face landmarks in any frame", "use a video with one frontal face")
    if canonical_frames.size == 0 or canonical_frames.min() < 0 or canonical_frames.max() >= n:
        raise InputError(what, f"canonical_frames must be non-empty indices in [0, {n})", "pass training frame ids")
    canonical_frames = canonical_frames[landmarks.found[canonical_frames]]
    if canonical_frames.size < 2:
        raise InputError(what, "fewer than 2 canonical frames have a face", "use more training frames with a face")
    points = landmarks.interpolated().astype(np.float64)  # [N, 478, 3]
    w, h = landmarks.width, landmarks.height
    cx, cy = w / 2.0, h / 2.0

    search = canonical_frames
    if len(search) > max_search_frames:
        search = search[np.linspace(0, len(search) - 1, max_search_frames).round().astype(int)]
    cache: dict[float, float] = {}

    def evaluate(log_f: float) -> float:
        if log_f not in cache:
            f = float(np.exp(log_f))
            canon = procrustes_canonical(lift_landmarks(points[search], f, cx, cy), iters=5)
            cache[log_f] = float(solve_poses(canon, points[search], f, cx, cy, iters=10)[2].mean())
        return cache[log_f]

    lo, hi = np.log(_fov_to_focal(fov_range_deg[1], w)), np.log(_fov_to_focal(fov_range_deg[0], w))
    grid = np.linspace(lo, hi, max(int(focal_candidates), 2))
    errs = [evaluate(g) for g in grid]
    k = int(np.argmin(errs))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    golden = (np.sqrt(5) - 1) / 2
    c, d = b - golden * (b - a), a + golden * (b - a)
    for _ in range(refine_steps):
        if evaluate(c) < evaluate(d):
            b, d = d, c
            c = b - golden * (b - a)
        else:
            a, c = c, d
            d = a + golden * (b - a)
    best = min(cache, key=cache.get)
    focal = float(np.exp(best))

    canonical = procrustes_canonical(lift_landmarks(points[canonical_frames], focal, cx, cy))
    rot, t, _ = solve_poses(canonical, points, focal, cx, cy)
    if smooth_sigma > 0:
        rot = smooth_rotations(rot, smooth_sigma)
        t = solve_poses(canonical, points, focal, cx, cy, iters=8, init=(rot, t), fix_rotation=True)[1]
        t = gaussian_filter1d(t, smooth_sigma / 2, axis=0, mode="nearest")
    err = reprojection_error(canonical, points, rot, t, focal, cx, cy)
    curve = np.array(sorted((np.exp(k_), v) for k_, v in cache.items()))
    return HeadPose(rot, t, focal, cx, cy, w, h, canonical.astype(np.float64), err, landmarks.found.copy(), curve)
