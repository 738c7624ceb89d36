"""Per-frame parsing into background / torso (with neck and clothes) / head (face, hair, ears), DESIGN.md §4.

The original pipeline runs BiSeNet face parsing (a download). Here, without extra weights:

* **Person** = mediapipe selfie segmentation (``model_selection=0``, the "general" 256×256 model: on the four HDTF
  test clips it was more stable frame to frame than the landscape model (mean IoU of consecutive masks 0.990-0.997
  vs 0.989-0.997), had fewer uncertain pixels, and the landscape model leaked into a red flag behind one speaker),
  probability > 0.5, cleaned: only the component holding the face and components at least a fifth of its size are
  kept, and holes smaller than 0.5 % of the frame are filled.
* **Head** = person ∩ an extended head region built from the face-mesh landmarks in the face's own axes (up = chin
  → forehead top, origin = between the two ear-level oval points 234/454):

  - above ear level: a box ``HAIR_WIDTH`` half face-widths wide reaching ``HAIR_HEIGHT`` × the forehead height
    above ear level (hair, top of the ears; generous, since it is intersected with the person);
  - below ear level: the lower face oval (jaw line) pushed out by ``JAW_MARGIN`` of the face height, widened at
    ear level by ``EAR_WIDEN`` and tapering to the chin, so ears are head and the neck under the chin is torso;

  plus the convex hull of the 468 mesh points (always head, even where the person mask missed a bit).
* **Torso** = the rest of the person. Long hair hanging below ear level at the sides is therefore torso (BiSeNet
  would call it hair); in the ``head`` protocol it is handed to every method as ground truth, like the neck.

Frames without a detected face use the time-interpolated landmarks (:meth:`Landmarks.interpolated`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import FACE_OVAL, Landmarks, _quiet_stderr

BACKGROUND, TORSO, HEAD = 0, 1, 2
EAR_LEFT_OVAL, EAR_RIGHT_OVAL = 454, 234  # face-oval points at ear level (subject's left / right)
FOREHEAD_TOP, CHIN = 10, 152
HAIR_WIDTH = 1.8  # half face-widths either side of the face centre, above ear level
HAIR_HEIGHT = 2.2  # × the forehead height above ear level
EAR_WIDEN = 1.3  # widening of the jaw outline at ear level (tapers to 1 at the chin)
JAW_MARGIN = 0.03  # × face height, outward margin of the jaw line
SELFIE_MODEL = 0
PERSON_THRESHOLD = 0.5
MIN_HOLE_FRACTION = 0.005  # holes in the person smaller than this fraction of the frame are filled


def _poly(mask: np.ndarray, pts: np.ndarray) -> None:
    """Fill a polygon given in float pixel coordinates [K, 2] (sub-pixel accurate, 1/16 px)."""
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)


def head_region(points: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Extended head region and face hull of one frame's landmarks [478, >=2] (pixels): two [H, W] bool masks."""
    p = np.asarray(points, np.float64)[:, :2]
    centre = 0.5 * (p[EAR_LEFT_OVAL] + p[EAR_RIGHT_OVAL])
    up = p[FOREHEAD_TOP] - p[CHIN]
    face_h = float(np.linalg.norm(up))
    up /= max(face_h, 1e-6)
    right = np.array([-up[1], up[0]])  # image right for an upright face (y down)
    to_face = np.stack([right, up])  # rows: face axes; (a, b) = to_face @ (p - centre)

    def to_img(ab: np.ndarray) -> np.ndarray:
        return centre + ab @ to_face

    oval = (p[FACE_OVAL] - centre) @ to_face.T  # [36, 2] (a, b)
    half_w = 0.5 * abs(oval[:, 0].max() - oval[:, 0].min())
    b_top = max(float(oval[:, 1].max()), 0.1 * face_h)
    b_chin = min(float(oval[:, 1].min()), -0.1 * face_h)

    region = np.zeros((height, width), np.uint8)
    box = np.array([[-HAIR_WIDTH * half_w, 0.0], [HAIR_WIDTH * half_w, 0.0],
                    [HAIR_WIDTH * half_w, HAIR_HEIGHT * b_top], [-HAIR_WIDTH * half_w, HAIR_HEIGHT * b_top]])
    _poly(region, to_img(box))
    lower = oval[oval[:, 1] <= 0.0]
    # close the jaw polygon at ear level on both sides, then order it by angle around the centre
    lower = np.concatenate([lower, [[-half_w, 0.0], [half_w, 0.0]]])
    lower = lower[np.argsort(np.arctan2(lower[:, 1], lower[:, 0]))]
    tt = np.clip(lower[:, 1] / b_chin, 0.0, 1.0)  # 0 at ear level, 1 at the chin
    widen = 1.0 + (EAR_WIDEN - 1.0) * (1.0 - tt) ** 2
    lower = lower * np.stack([widen, np.ones_like(widen)], 1)
    lower = lower + JAW_MARGIN * face_h * lower / np.maximum(np.linalg.norm(lower, axis=1, keepdims=True), 1e-6)
    _poly(region, to_img(lower))

    hull = np.zeros((height, width), np.uint8)
    _poly(hull, cv2.convexHull(p[:468].astype(np.float32))[:, 0].astype(np.float64))
    return region.astype(bool), hull.astype(bool)


def clean_person(prob: np.ndarray, face: np.ndarray, threshold: float = PERSON_THRESHOLD) -> np.ndarray:
    """Person mask [H, W] bool from a probability map: keep the face's component (and big ones), fill small holes."""
    m = (prob > threshold).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        on_face = np.bincount(lab[face], minlength=n)[1:]
        main = int(np.argmax(on_face)) if on_face.max() > 0 else int(np.argmax(areas))
        keep = np.zeros(n, bool)
        keep[1:] = areas >= 0.2 * areas[main]
        keep[main + 1] = True
        m = keep[lab].astype(np.uint8)
    inv = (1 - m).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n > 1:
        hh, ww = m.shape
        x, y, w, h, area = (stats[1:, k] for k in range(5))
        touches = (x == 0) | (y == 0) | (x + w == ww) | (y + h == hh)
        fill = np.zeros(n, bool)
        fill[1:] = ~touches & (area < MIN_HOLE_FRACTION * hh * ww)
        m = m | fill[lab].astype(np.uint8)
    return m.astype(bool)


def segment_frames(
    frames: np.ndarray,  # [N, H, W, 3] uint8 RGB
    landmarks: Landmarks,
    progress: bool = False,
) -> np.ndarray:
    """Label every pixel: 0 background, 1 torso (neck, clothes), 2 head (face, hair, ears): [N, H, W] uint8.

    ``landmarks`` may come from the same frames at another resolution with the same aspect ratio (they are
    rescaled). Frames without a face use interpolated landmarks.
    """
    assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8, (frames.shape, frames.dtype)
    n, h, w, _ = frames.shape
    if len(landmarks) != n:
        raise InputError("landmarks", f"{len(landmarks)} landmark frames for {n} video frames",
                         "re-run landmark detection on the same frames")
    if not landmarks.found.any():
        raise InputError("landmarks", "no face found in any frame", "use a video with one frontal face")
    if abs(landmarks.width * h - landmarks.height * w) > max(landmarks.width, w):
        raise InputError("landmarks", f"landmarks of a {landmarks.width}x{landmarks.height} frame for {w}x{h} "
                         "frames", "detect landmarks on the cropped frames")
    points = landmarks.interpolated()[..., :2] * np.float32(w / landmarks.width)  # [N, 478, 2]
    import mediapipe as mp

    labels = np.zeros((n, h, w), np.uint8)
    with _quiet_stderr():  # model start-up and the first inference print absl/TFLite warnings on fd 2
        seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=SELFIE_MODEL)
        first = seg.process(np.ascontiguousarray(frames[0])).segmentation_mask if n else None
    try:
        for i in tqdm(range(n), desc="masks", unit="frame", disable=not progress, leave=False):
            prob = first if i == 0 else seg.process(np.ascontiguousarray(frames[i])).segmentation_mask
            region, hull = head_region(points[i], h, w)
            person = clean_person(prob, hull)
            head = (person & region) | hull
            lab = labels[i]
            lab[person] = TORSO
            lab[head] = HEAD
    finally:
        seg.close()
    return labels


def save_labels(path: str | Path, labels: np.ndarray) -> None:
    """Store labels [N, H, W] uint8 (0 bg, 1 torso, 2 head) compressed."""
    assert labels.ndim == 3 and labels.dtype == np.uint8, (labels.shape, labels.dtype)
    np.savez_compressed(path, labels=labels)


def load_labels(path: str | Path) -> np.ndarray:
    """Read labels written by :func:`save_labels`: [N, H, W] uint8."""
    try:
        with np.load(path) as z:
            labels = z["labels"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(path, f"unreadable label file ({err})", "delete it and re-run the masks step") from err
    if labels.ndim != 3 or labels.dtype != np.uint8 or labels.max(initial=0) > HEAD:
        raise InputError(path, "not a label array [N, H, W] uint8 with values 0-2", "delete it and re-run")
    return labels
