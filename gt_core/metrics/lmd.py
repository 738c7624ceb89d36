"""LMD — landmark (mouth) distance between a render and its ground-truth frame.

Definition (DESIGN.md §3, after the ER-NeRF/SyncTalk ``LMDMeter``): the same detector runs on the render and on the
ground truth, the 20 mouth points of the 68-point iBUG scheme (indices 48–67) are taken in 2D, each set is centred on
its own mean, and LMD is the mean Euclidean distance between corresponding points, in pixels of a 512-px-wide frame
(``× 512 / frame width``; no other normalisation). A frame where no face is found in the render or in the ground
truth gets NaN; it is never dropped silently: the evaluation counts the render misses (``n_missed_faces``) and makes
a cell's LMD unavailable when more than :data:`MAX_MISSED_FRACTION` of its frames have no face in the render.

Deviations from the originals, and why:

* detector: mediapipe face mesh (``detect_landmarks(..., video_mode=False)``, 478 points) instead of FAN-68
  (``face_alignment``), whose weights a run would have to download. The 20 iBUG mouth points are read from the mesh
  through the fixed map :data:`IBUG_MOUTH` (one mesh point per iBUG point, chosen from the lip contours
  ``FACEMESH_LIPS`` where the iBUG point sits on the canonical face mesh); the two detectors place the points
  slightly differently, so absolute values are close to, not identical with, FAN-based LMD;
* pixels of a 512-px frame: the originals measure at their working resolution (512 px for the paper's crops); ours
  rescales so 128-px demo runs report on the same scale;
* ``lmd40`` (long table and ``metrics.json`` only, not a Table 1 row): the same distance over all 40 mediapipe lip
  points (:data:`gt_core.preprocess.landmarks.LIPS`), this project's earlier definition, kept for comparison.

Mouth sync (reported next to LMD, not in Table 1): the same lip detections give each frame's mouth opening (inner-lip
gap over mouth width, :func:`gt_core.preprocess.landmarks.mouth_opening`); its Pearson correlation between renders and
ground truth over the test frames says whether the rendered mouth opens and closes *when* the real one does —
something a per-frame distance such as LMD cannot separate from a static mouth of the right average shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gt_core.preprocess.landmarks import (LIPS, LIPS_INNER_LOWER, LIPS_INNER_UPPER, MOUTH_LEFT, MOUTH_RIGHT, Landmarks,
                                          detect_landmarks, gap_over_width)

LMD_REFERENCE_WIDTH = 512  # LMD is reported in pixels of a frame this wide
MAX_MISSED_FRACTION = 0.10  # a cell's LMD is unavailable when more of its renders than this have no detected face
N_LIP_POINTS = len(LIPS)  # 40
_LIP_INDEX = {int(v): i for i, v in enumerate(LIPS)}  # mesh index -> position in the 40 lip points

# iBUG-68 mouth point (48 + row) -> mediapipe face-mesh index. "Left"/"right" are as seen in a frontal image (iBUG 48
# is the image-left corner, i.e. the subject's right). Outer lip 48–59 runs from the image-left corner along the upper
# lip to the other corner and back along the lower lip; inner lip 60–67 the same way. Every index is a point of the
# mediapipe lip contours (FACEMESH_LIPS), picked where the iBUG point sits on the canonical face mesh: corners and
# midlines exactly, the cupid's-bow peaks at the highest upper-lip points, the others about halfway in between.
# The same 20 indices, in the same order, as GeneFace++'s mediapipe -> FAN-68 map (`index_lm68_from_lm478`,
# data_gen/utils/mp_feature_extractors/face_landmarker.py): a correspondence already in use in talking-head code.
IBUG_MOUTH = np.array([
    61,   # 48 outer lip, image-left corner
    40,   # 49 upper outer lip, between the left corner and the left cupid's-bow peak
    37,   # 50 upper outer lip, left cupid's-bow peak
    0,    # 51 upper outer lip, midline (philtrum)
    267,  # 52 upper outer lip, right cupid's-bow peak
    270,  # 53 upper outer lip, between the right peak and the right corner
    291,  # 54 outer lip, image-right corner
    321,  # 55 lower outer lip, between the right corner and the midline (outer part)
    314,  # 56 lower outer lip, near the midline, right
    17,   # 57 lower outer lip, midline
    84,   # 58 lower outer lip, near the midline, left
    91,   # 59 lower outer lip, between the midline and the left corner (outer part)
    78,   # 60 inner lip, image-left corner
    81,   # 61 upper inner lip, left of the midline
    13,   # 62 upper inner lip, midline
    311,  # 63 upper inner lip, right of the midline
    308,  # 64 inner lip, image-right corner
    402,  # 65 lower inner lip, right of the midline
    14,   # 66 lower inner lip, midline
    178,  # 67 lower inner lip, left of the midline
], dtype=np.int64)
N_MOUTH_POINTS = len(IBUG_MOUTH)  # 20
_MOUTH_IN_LIPS = np.array([_LIP_INDEX[int(i)] for i in IBUG_MOUTH], dtype=np.int64)  # rows of the 40 lip points


def lip_points(landmarks: Landmarks) -> np.ndarray:
    """2D lip points of every frame: ``Landmarks -> [N, 40, 2]`` float64 pixels, NaN where no face was found."""
    pts = landmarks.points[:, LIPS, :2].astype(np.float64)
    pts[~landmarks.found] = np.nan
    return pts


def mouth_points_from_lips(lips: np.ndarray) -> np.ndarray:
    """The 20 iBUG mouth points (48–67, in iBUG order) from the 40 lip points: ``[N, 40, 2] -> [N, 20, 2]``."""
    assert lips.ndim == 3 and lips.shape[1:] == (N_LIP_POINTS, 2), lips.shape
    return lips[:, _MOUTH_IN_LIPS]


def lmd_from_points(pred: np.ndarray, gt: np.ndarray, width: int) -> np.ndarray:
    """Mean-centred point distance per frame: ``[N, P, 2] x2 -> [N]`` in 512-px-frame pixels; NaN if a set has NaN.

    LMD passes the 20 iBUG mouth points (:func:`mouth_points_from_lips`), ``lmd40`` all 40 lip points.

    ``width`` is the width in pixels of the frames both point sets were measured on.
    """
    assert pred.shape == gt.shape and pred.ndim == 3 and pred.shape[-1] == 2, (pred.shape, gt.shape)
    assert width > 0
    with np.errstate(invalid="ignore"):
        a = pred - pred.mean(axis=1, keepdims=True)  # [N, P, 2]
        b = gt - gt.mean(axis=1, keepdims=True)
        d = np.linalg.norm(a - b, axis=-1).mean(axis=1)  # [N]; NaN propagates from any missing point
    return d * (LMD_REFERENCE_WIDTH / float(width))


def mouth_opening_from_lips(lips: np.ndarray) -> np.ndarray:
    """Inner-lip gap over mouth width from the 40 lip points: ``[N, 40, 2] -> [N]`` (NaN where points are NaN)."""
    assert lips.ndim == 3 and lips.shape[1:] == (N_LIP_POINTS, 2), lips.shape
    return gap_over_width(lips, (_LIP_INDEX[LIPS_INNER_UPPER], _LIP_INDEX[LIPS_INNER_LOWER]),
                          (_LIP_INDEX[MOUTH_LEFT], _LIP_INDEX[MOUTH_RIGHT]))


def mouth_sync(render_opening: np.ndarray, gt_opening: np.ndarray) -> dict:
    """Pearson r of render vs ground-truth mouth opening over the frames where both exist (``[N]`` each).

    Returns ``{"r", "n", "render_std", "gt_std"}``; ``r`` is NaN (with a ``status``) when fewer than 3 frames have
    both or either series is constant.
    """
    assert render_opening.shape == gt_opening.shape and render_opening.ndim == 1
    ok = np.isfinite(render_opening) & np.isfinite(gt_opening)
    a, b = render_opening[ok], gt_opening[ok]
    out = {"n": int(ok.sum()), "render_std": float(a.std()) if a.size else float("nan"),
           "gt_std": float(b.std()) if b.size else float("nan"), "r": float("nan")}
    if a.size < 3:
        out["status"] = "undefined: fewer than 3 frames with a face in both render and ground truth"
    elif a.std() < 1e-9 or b.std() < 1e-9:
        out["status"] = "undefined: the mouth opening is constant in the " + ("render" if a.std() < 1e-9 else "ground truth")
    else:
        out["r"] = float(np.corrcoef(a, b)[0, 1])
    return out


@dataclass
class LmdResult:
    """Per-frame LMD (20 iBUG mouth points) and ``lmd40`` (40 lip points), and which detections succeeded."""

    values: np.ndarray  # [N] float64, LMD in 512-px pixels; NaN where missed
    render_found: np.ndarray  # [N] bool, face found in the render
    gt_found: np.ndarray  # [N] bool, face found in (or supplied for) the ground truth
    values40: np.ndarray | None = None  # [N] float64, lmd40 in 512-px pixels; NaN where missed
    render_lips: np.ndarray | None = None  # [N, 40, 2] lip points detected on the renders (NaN where missed)
    gt_lips: np.ndarray | None = None  # [N, 40, 2] ground-truth lip points

    def mouth_sync(self) -> dict:
        """Correlation of render vs ground-truth mouth opening (see the module docstring)."""
        assert self.render_lips is not None and self.gt_lips is not None
        return mouth_sync(mouth_opening_from_lips(self.render_lips), mouth_opening_from_lips(self.gt_lips))

    @property
    def missed(self) -> np.ndarray:
        """[N] bool: LMD undefined for this frame (no face in the render or in the ground truth)."""
        return ~(self.render_found & self.gt_found)

    @property
    def n_missed(self) -> int:
        """Frames without an LMD value (no face in the render or in the ground truth)."""
        return int(self.missed.sum())

    @property
    def n_missed_render(self) -> int:
        """Frames whose render has no detected face: the method's misses (``n_missed_faces`` in metrics.json)."""
        return int((~self.render_found).sum())

    def unavailable_reason(self, max_fraction: float = MAX_MISSED_FRACTION) -> str | None:
        """Why the cell's LMD must not be reported (more than ``max_fraction`` of renders without a face), or None.

        Averaging only over the frames where a face was found would flatter a method whose renders lose the face.
        """
        n = len(self.render_found)
        if n == 0:
            return "no frames"
        missed = self.n_missed_render
        if missed > max_fraction * n:
            return (f"no face found in {missed} of {n} renders ({100.0 * missed / n:.0f}% > "
                    f"{100.0 * max_fraction:g}% allowed)")
        return None


def compute_lmd(
    renders: np.ndarray,  # [N, H, W, 3] uint8
    targets: np.ndarray | None = None,  # [N, H, W, 3] uint8; needed unless gt_lip_points is given
    gt_lip_points: np.ndarray | None = None,  # [N, 40, 2] precomputed GT lip points in pixels of the H×W frame
    progress: bool = False,
) -> LmdResult:
    """Detect lips on the renders (and on the targets unless ``gt_lip_points`` is given) and compute LMD per frame.

    Precomputed ground-truth points must be in pixels of frames of the renders' size (rescale them first if the
    landmarks were detected at another resolution); rows with NaN count as "no face in the ground truth".
    """
    assert renders.ndim == 4 and renders.shape[-1] == 3 and renders.dtype == np.uint8, (renders.shape, renders.dtype)
    n, h, w, _ = renders.shape
    if gt_lip_points is None:
        assert targets is not None, "compute_lmd needs targets or gt_lip_points"
        assert targets.shape == renders.shape and targets.dtype == np.uint8, (targets.shape, targets.dtype)
        gt_pts = lip_points(detect_landmarks(targets, video_mode=False, progress=progress))
    else:
        gt_pts = np.asarray(gt_lip_points, dtype=np.float64)
        assert gt_pts.shape == (n, N_LIP_POINTS, 2), gt_pts.shape
    gt_found = np.isfinite(gt_pts).all(axis=(1, 2))
    pred_lm = detect_landmarks(renders, video_mode=False, progress=progress)
    pred_pts = lip_points(pred_lm)  # [N, 40, 2]
    both = pred_lm.found & gt_found
    values = lmd_from_points(mouth_points_from_lips(pred_pts), mouth_points_from_lips(gt_pts), w)  # [N]
    values40 = lmd_from_points(pred_pts, gt_pts, w)  # [N]
    values[~both] = np.nan
    values40[~both] = np.nan
    return LmdResult(values=values, render_found=pred_lm.found.copy(), gt_found=gt_found, values40=values40,
                     render_lips=pred_pts, gt_lips=gt_pts)
