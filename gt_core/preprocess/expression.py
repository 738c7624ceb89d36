"""SyncTalk's upper-face expression control: 7 brow and blink values per frame, from the face-mesh landmarks.

The original (ZiqiaoPeng/SyncTalk) runs MediaPipe's FaceLandmarker blendshape model on every frame
(``data_utils/blendshape_capture/main.py``: the 52 scores with ``_neutral`` dropped and a 0 appended, each channel
then smoothed over the video with a Savitzky–Golay filter, window 5, order 3, saved as ``bs.npy``) and, with
``--bs_area upper`` (the default, ``main.py:55``), feeds ``bs[:, 0:5]`` and ``bs[:, 8:10]`` (``nerf_triplane/
provider.py:256-258``). In MediaPipe's blendshape order (``_neutral`` first, then alphabetical ARKit names) with
``_neutral`` dropped these are: browDownLeft, browDownRight, browInnerUp, browOuterUpLeft, browOuterUpRight (0–4)
and eyeBlinkLeft, eyeBlinkRight (8–9; 5–7 are cheekPuff and the cheek squints). ``face_landmarker.task`` (which
holds the blendshape model) is not in the ``mediapipe==0.10.21`` wheel and cannot be fetched here, so this module
measures the same 7 quantities geometrically on the landmarks we already track.

Per frame, the 478 landmarks are lifted and similarity-aligned onto the subject's canonical shape on the rigid
:data:`~gt_core.preprocess.pose.STABLE` points (:func:`~gt_core.preprocess.pose.lift_landmarks`, ``umeyama``), so
the measures are free of head pose, distance and scale (head axes, metres: x to the subject's left, y up). Then
(L = the subject's left, as ARKit's names):

====================  ==================================================================================
channel               raw quantity (↑ = more of the expression)
====================  ==================================================================================
0 browDownLeft        − mean height of the left brow's 10 points above the left eye centre
1 browDownRight       − the same on the right
2 browInnerUp         mean height of the two inner brow ends (107/55, 336/285) above their eye centres
3 browOuterUpLeft     height of the left brow's outer end (300/276) above the left eye centre
4 browOuterUpRight    the same on the right (70/46)
5 eyeBlinkLeft        eye openness (lid gap 386–374 / corner distance 362–263), mapped to a blink value
6 eyeBlinkRight       the same on the right (159–145 / 33–133)
====================  ==================================================================================

:func:`expression_values` normalises per subject **on the training frames only** (the cell's split): a brow
channel becomes ``(q − median) / u`` (the training frames' median; ``u`` = :data:`BROW_UNIT_M`, a tenth of the
canonical eye distance, 6.3 mm, so a brow raise of a few millimetres is of order 1, as a blendshape score), clipped
to [−2, 2]; a blink channel
the AU45-like value the pipeline's eye control already uses (:func:`gt_core.data.cell.blink_values`: 0 at the
training median openness, 1 at 40 % of it). Each channel is then smoothed over the whole video with the original's
Savitzky–Golay filter (window 5, order 3).

Deviations (and why):

1. Geometric measures instead of MediaPipe's learned blendshape scores (the model is not available offline). The
   scales differ (a blendshape score is in [0, 1] with 0 at rest; ours are centred on the subject's training median):
   the field's expression attention is linear (``eye_att_net`` has no sigmoid in the original), so a per-channel
   offset and scale is absorbed by it.
2. Centred per subject on the training frames (the original feeds raw scores): the rest height of the brows differs
   between faces; the training-frame statistics keep the test frames out of every fit. The brows are scaled by a
   fixed length, not by their training spread: on the demo subject, whose brows never move, a spread-based scale
   blew the tracker's jitter up to unit variance (std 0.31–0.44 per channel), a signal the field would learn from.
   The blink channels reach r = 0.98 / 0.96 with the demo generator's true blink.
3. Smoothing after normalisation (the original smooths the scores, which are already normalised by the model).
"""
from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

from gt_core.preprocess.landmarks import LEFT_EYE_CORNERS, LEFT_EYE_LIDS, RIGHT_EYE_CORNERS, RIGHT_EYE_LIDS
from gt_core.preprocess.pose import EYE_DISTANCE_M, STABLE, lift_landmarks, umeyama

EXPRESSION_NAMES = ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
                    "eyeBlinkLeft", "eyeBlinkRight")
N_EXPRESSION = len(EXPRESSION_NAMES)
LEFT_BROW = np.array([336, 296, 334, 293, 300, 285, 295, 282, 283, 276])  # mediapipe FACEMESH_LEFT_EYEBROW
RIGHT_BROW = np.array([107, 66, 105, 63, 70, 55, 65, 52, 53, 46])  # FACEMESH_RIGHT_EYEBROW
LEFT_BROW_INNER, RIGHT_BROW_INNER = (336, 285), (107, 55)
LEFT_BROW_OUTER, RIGHT_BROW_OUTER = (300, 276), (70, 46)
BROW_CHANNELS = (0, 1, 2, 3, 4)
BLINK_CHANNELS = (5, 6)
SAVGOL_WINDOW, SAVGOL_ORDER = 5, 3  # blendshape_capture/main.py: savgol_filter(bs[:, j], 5, 3)
BROW_CLIP = 2.0
BROW_UNIT_M = 0.1 * EYE_DISTANCE_M  # brow heights in units of 6.3 mm
BLINK_CLOSED_RATIO = 0.4  # the same mapping as gt_core.data.cell.blink_values


def aligned_landmarks(landmarks: np.ndarray, canonical: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """``landmarks [N, 478, 3]`` (pixels, mediapipe depth) → ``[N, 478, 3]`` in the canonical head frame (metres)."""
    assert landmarks.ndim == 3 and landmarks.shape[1:] == canonical.shape, (landmarks.shape, canonical.shape)
    lifted = lift_landmarks(landmarks, focal, cx, cy)  # [N, 478, 3] camera space, per-frame scale
    s, rot, t = umeyama(lifted[:, STABLE], np.asarray(canonical, np.float64)[STABLE])
    return s[:, None, None] * np.einsum("nij,npj->npi", rot, lifted) + t[:, None]


def raw_expression(landmarks: np.ndarray, canonical: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """The 7 raw geometric measures of the module docstring's table: ``[N, 478, 3]`` → ``[N, 7]`` float64 (brow
    heights in metres, openness as a ratio)."""
    p = aligned_landmarks(landmarks, canonical, focal, cx, cy)  # [N, 478, 3]
    y = p[..., 1]  # [N, 478] height (head y up)
    eye_l = y[:, list(LEFT_EYE_CORNERS)].mean(1)  # [N]
    eye_r = y[:, list(RIGHT_EYE_CORNERS)].mean(1)

    def openness(lids: tuple[int, int], corners: tuple[int, int]) -> np.ndarray:
        gap = np.linalg.norm(p[:, lids[0]] - p[:, lids[1]], axis=-1)
        width = np.linalg.norm(p[:, corners[0]] - p[:, corners[1]], axis=-1)
        return gap / np.maximum(width, 1e-9)

    out = np.stack([
        -(y[:, LEFT_BROW].mean(1) - eye_l),
        -(y[:, RIGHT_BROW].mean(1) - eye_r),
        0.5 * ((y[:, list(LEFT_BROW_INNER)].mean(1) - eye_l) + (y[:, list(RIGHT_BROW_INNER)].mean(1) - eye_r)),
        y[:, list(LEFT_BROW_OUTER)].mean(1) - eye_l,
        y[:, list(RIGHT_BROW_OUTER)].mean(1) - eye_r,
        openness(LEFT_EYE_LIDS, LEFT_EYE_CORNERS),
        openness(RIGHT_EYE_LIDS, RIGHT_EYE_CORNERS),
    ], axis=1)
    assert out.shape == (len(landmarks), N_EXPRESSION)
    return out


def normalise_expression(raw: np.ndarray, train_ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """``raw [N, 7]`` → ``[N, 7]`` float32 normalised with the training frames' statistics and smoothed (module
    docstring), and the statistics (for ``cell.json``)."""
    assert raw.ndim == 2 and raw.shape[1] == N_EXPRESSION, raw.shape
    train_ids = np.asarray(train_ids)
    assert len(train_ids) > 0 and train_ids.min() >= 0 and train_ids.max() < len(raw), "train_ids out of range"
    tr = raw[train_ids]
    out = np.empty_like(raw, dtype=np.float64)
    stats: dict[str, dict[str, float]] = {}
    for c in BROW_CHANNELS:
        med = float(np.median(tr[:, c]))
        out[:, c] = np.clip((raw[:, c] - med) / BROW_UNIT_M, -BROW_CLIP, BROW_CLIP)
        stats[EXPRESSION_NAMES[c]] = {"median_train": med, "p5_p95_train": float(np.percentile(tr[:, c], 95) -
                                                                                 np.percentile(tr[:, c], 5))}
    for c in BLINK_CHANNELS:
        open_ref = float(np.median(tr[:, c]))
        span = max(open_ref * (1.0 - BLINK_CLOSED_RATIO), 1e-9)
        out[:, c] = np.clip((open_ref - raw[:, c]) / span, 0.0, 1.0)
        stats[EXPRESSION_NAMES[c]] = {"open_median_train": open_ref, "closed_at": BLINK_CLOSED_RATIO * open_ref}
    if len(out) >= SAVGOL_WINDOW:
        out = savgol_filter(out, SAVGOL_WINDOW, SAVGOL_ORDER, axis=0)
    return out.astype(np.float32), stats


def expression_values(landmarks: np.ndarray, canonical: np.ndarray, focal: float, cx: float, cy: float,
                      train_ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """The cell's ``[N, 7]`` expression values for every frame of the video (see the module docstring)."""
    return normalise_expression(raw_expression(landmarks, canonical, focal, cx, cy), train_ids)
