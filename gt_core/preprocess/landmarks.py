"""Dense face landmarks with mediapipe 0.10.21 ``solutions.face_mesh`` (478 points with iris refinement).

Points are stored in pixels of the frame they were detected on: x right, y down, and z (mediapipe's relative
depth, negative towards the camera) scaled by the frame width, so all three axes share one unit.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

N_POINTS = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)


def _indices(connections) -> np.ndarray:
    return np.array(sorted(set(itertools.chain(*connections))), dtype=np.int64)


# Landmark index sets (mediapipe face-mesh topology), fixed by the model.
LIPS = np.array(
    [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270, 291,
     308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415], dtype=np.int64)  # 40 lip points
LIPS_OUTER = np.array(
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146],
    dtype=np.int64)  # the outer lip contour (mediapipe FACEMESH_LIPS), corner 61 over the upper lip and back: iBUG 48–59's
LIPS_INNER_UPPER, LIPS_INNER_LOWER = 13, 14  # mid points of the inner lip contour
MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # lip corners
LEFT_EYE_LIDS = (386, 374)  # (upper, lower) lid mid points of the subject's left eye
RIGHT_EYE_LIDS = (159, 145)
LEFT_EYE_CORNERS = (362, 263)
RIGHT_EYE_CORNERS = (33, 133)
FACE_OVAL = np.array(
    [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149,
     150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109], dtype=np.int64)  # ordered around the face


@dataclass
class Landmarks:
    """Per-frame face landmarks of a video."""

    points: np.ndarray  # [N, 478, 3] float32, pixels (x, y) and width-scaled depth z; NaN where not found
    found: np.ndarray  # [N] bool, a face was found in the frame
    width: int
    height: int

    def __post_init__(self):
        assert self.points.ndim == 3 and self.points.shape[1:] == (N_POINTS, 3), self.points.shape
        assert self.found.shape == (self.points.shape[0],), self.found.shape

    def __len__(self) -> int:
        return self.points.shape[0]

    @property
    def found_fraction(self) -> float:
        return float(self.found.mean()) if len(self) else 0.0

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, points=self.points, found=self.found, size=np.array([self.width, self.height]))

    @classmethod
    def load(cls, path: str | Path) -> "Landmarks":
        with np.load(path) as z:
            return cls(z["points"], z["found"].astype(bool), int(z["size"][0]), int(z["size"][1]))

    def interpolated(self) -> np.ndarray:
        """Points with missing frames filled by linear interpolation in time (edges: nearest). ``[N, 478, 3]``."""
        pts = self.points.copy()
        idx = np.flatnonzero(self.found)
        if len(idx) == 0:
            return pts
        t = np.arange(len(self))
        flat = pts.reshape(len(self), -1)
        for j in range(flat.shape[1]):
            flat[:, j] = np.interp(t, idx, flat[idx, j])
        return flat.reshape(pts.shape)


@contextlib.contextmanager
def _quiet_stderr():
    """mediapipe/TFLite print absl warnings straight to fd 2 at start-up; keep them out of the user's logs."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def detect_landmarks(
    frames: np.ndarray,  # [N, H, W, 3] uint8 RGB
    video_mode: bool = True,
    min_confidence: float = 0.5,
    progress: bool = False,
) -> Landmarks:
    """Run face mesh (refined, one face) on every frame; frames without a face get ``found=False`` and NaN points.

    ``video_mode`` tracks across frames (mediapipe's ``static_image_mode=False``), which is faster and steadier
    for a video; use ``False`` for unrelated images (e.g. renders of different methods).
    """
    assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8, (frames.shape, frames.dtype)
    import mediapipe as mp

    n, h, w, _ = frames.shape
    points = np.full((n, N_POINTS, 3), np.nan, dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    scale = np.array([w, h, w], dtype=np.float32)
    with _quiet_stderr():
        mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not video_mode,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        try:
            for i in tqdm(range(n), desc="landmarks", unit="frame", disable=not progress, leave=False):
                result = mesh.process(np.ascontiguousarray(frames[i]))
                if result.multi_face_landmarks:
                    lm = result.multi_face_landmarks[0].landmark
                    points[i] = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float32) * scale
                    found[i] = True
        finally:
            mesh.close()
    return Landmarks(points, found, w, h)


def gap_over_width(points: np.ndarray, gap: tuple[int, int], width: tuple[int, int]) -> np.ndarray:
    """2D distance between points ``gap`` over that between points ``width``: ``[..., P, >=2] -> [...]``."""
    def dist(pair: tuple[int, int]) -> np.ndarray:
        return np.linalg.norm(points[..., pair[0], :2] - points[..., pair[1], :2], axis=-1)

    return dist(gap) / np.maximum(dist(width), 1e-6)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap normalised by mouth width: ``[..., 478, 3] -> [...]`` (scale-free, rises as the jaw opens)."""
    return gap_over_width(points, (LIPS_INNER_UPPER, LIPS_INNER_LOWER), (MOUTH_LEFT, MOUTH_RIGHT))


def eye_openness(points: np.ndarray) -> np.ndarray:
    """Mean lid gap over eye width of both eyes: ``[..., 478, 3] -> [...]`` (stands in for OpenFace AU45)."""
    left = gap_over_width(points, LEFT_EYE_LIDS, LEFT_EYE_CORNERS)
    right = gap_over_width(points, RIGHT_EYE_LIDS, RIGHT_EYE_CORNERS)
    return 0.5 * (left + right)
