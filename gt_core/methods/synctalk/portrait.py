"""``synctalk-portrait``: SyncTalk's Portrait-Sync Generator as the original evaluates it — the ``synctalk``
render pasted into the ground-truth frame inside a blurred face mask, every other pixel copied from the ground truth.

The original (``--portrait``; ZiqiaoPeng/SyncTalk nerf_triplane/utils.py:36-45 ``blend_with_mask_cuda`` and
1395-1396; provider.py:303-330, 610-625) evaluates ``pred = render · M + gt · (1 − M)`` against ``gt``, with ``M``
the face-parsing mask ``parsing/*_face.png`` (data_utils/face_parsing/test.py:53-102: BiSeNet classes 1–6 and
10–13 — skin, brows, eyes, nose, mouth, lips; the chin contour pushed down 5 px in the middle half of the face's
width; a 9×9 Gaussian blur; read as ``(255 − G) / 255``). Since every pixel outside ``M`` is ground truth copied
into the prediction, the row measures the face region only and is **not comparable with the other rows**: Table 1
shows it apart, under its own label. It is a row derived from ``synctalk``'s renders (nothing is trained twice).

Deviations (and why):

1. ``M`` is the filled face-mesh oval of the test frame (mediapipe's FACE_OVAL: forehead to chin, cheek to cheek —
   the same regions as the parsing classes, which we do not run), with the chin pushed down and blurred as the
   original, both sizes scaled from 512 px to the working resolution (5 px → ``5·W/512``, 9×9 → the nearest odd
   size ≥ 3).
2. ``gt`` is the head protocol's target (the frame with its background replaced by the training plate) rather than
   the raw frame, so the row is evaluated against the same targets as every other row of the ``head`` protocol.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gt_core.data.cell import CellData
from gt_core.methods.base import Method, Renders
from gt_core.preprocess.landmarks import FACE_OVAL

CHIN_PAD_PX512 = 5  # face_parsing/test.py:60 (pad = 5)
BLUR_PX512 = 9  # face_parsing/test.py:97 (GaussianBlur (9, 9))


def portrait_masks(landmarks: np.ndarray, height: int, width: int, chin_pad_px512: float = CHIN_PAD_PX512,
                   blur_px512: float = BLUR_PX512) -> np.ndarray:
    """``landmarks [N, 478, ≥2]`` (pixels) → ``[N, H, W]`` float32 blurred face masks in [0, 1]."""
    assert landmarks.ndim == 3 and landmarks.shape[1] >= FACE_OVAL.max() + 1, landmarks.shape
    pad = max(1, round(chin_pad_px512 * width / 512))
    k = max(3, int(round(blur_px512 * width / 512)) | 1)
    out = np.zeros((len(landmarks), height, width), np.float32)
    for i, pts in enumerate(landmarks):
        oval = np.round(pts[FACE_OVAL, :2]).astype(np.int32)  # [36, 2] (x, y)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [oval], 1)
        cols = np.nonzero(mask.any(axis=0))[0]
        if len(cols):  # the chin contour pushed down by `pad` in the middle half of the face's width
            lo, hi = cols.min(), cols.max()
            quarter = (hi - lo) // 4
            for x in range(lo + quarter, hi - quarter + 1):
                rows = np.nonzero(mask[:, x])[0]
                if len(rows):
                    mask[rows.max():min(height, rows.max() + pad + 1), x] = 1
        out[i] = cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0)
    return np.clip(out, 0.0, 1.0)


def compose_portrait(renders: np.ndarray, ground_truth: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``render · M + gt · (1 − M)``: ``[N, H, W, 3]`` uint8 ×2 and ``[N, H, W]`` masks → ``[N, H, W, 3]`` uint8."""
    assert renders.shape == ground_truth.shape and renders.shape[:3] == masks.shape, \
        (renders.shape, ground_truth.shape, masks.shape)
    m = masks[..., None]
    out = renders.astype(np.float32) * m + ground_truth.astype(np.float32) * (1.0 - m)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class SyncTalkPortrait(Method):
    """The derived ``synctalk-portrait`` row (module docstring): no training, no rendering of its own."""

    name = "synctalk-portrait"
    source = "synctalk"  # the method whose renders it composes (the registry's `derived_from`)
    presets: dict[str, dict[str, Any]] = {p: {"chin_pad_px512": CHIN_PAD_PX512, "blur_px512": BLUR_PX512}
                                          for p in ("tiny", "small", "demo", "paper")}

    def train(self, cell, cfg, out_dir, device, stop_after=None) -> Path:
        raise NotImplementedError("synctalk-portrait is derived from synctalk's renders (gt-core derive)")

    def derive(self, source: Renders, cell: CellData, cfg: dict[str, Any]) -> Renders:
        """``source``: ``synctalk``'s renders of ``cell``'s test frames → the portrait composites (head protocol)."""
        assert np.array_equal(source.frame_ids, cell.test.frame_ids), "the renders must cover the cell's test frames"
        masks = portrait_masks(cell.test.landmarks, cell.height, cell.width, cfg["chin_pad_px512"], cfg["blur_px512"])
        head = compose_portrait(source.head, np.asarray(cell.test.targets), masks)
        info = {"derived_from": self.source, "mask_mean": float(masks.mean())}
        return Renders(source.frame_ids, head, None, source.seconds, info)
