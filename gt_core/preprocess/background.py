"""Background plate from training frames only, and the `head`-protocol images (DESIGN.md §3, §4).

The plate is the per-pixel median, over the given frames, of the pixels labelled background that lie at least
``margin_px`` from any foreground pixel of that frame (the originals' ``bc.jpg`` rule keeps 5 px away from the
parsing mask to avoid halos of hair and shoulders). Pixels never seen that way (usually behind the body) are
inpainted with OpenCV's Telea method. Only ``frame_indices`` are read: fit it on a cell's training frames.
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from gt_core.preprocess.masks import BACKGROUND, TORSO

_BAND_BYTES = 48 * 2**20  # memory of one row band of float32 samples in the median


def background_valid(labels: np.ndarray, margin_px: int = 5) -> np.ndarray:
    """Pixels of background at least ``margin_px`` from any foreground pixel: [..., H, W] labels -> bool mask."""
    lab = np.asarray(labels)
    flat = lab.reshape((-1,) + lab.shape[-2:])
    out = np.empty(flat.shape, bool)
    for i, one in enumerate(flat):
        bg = (one == BACKGROUND).astype(np.uint8)
        if margin_px <= 0 or not (bg == 0).any():
            out[i] = bg.astype(bool)
        else:
            out[i] = cv2.distanceTransform(bg, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) >= margin_px
    return out.reshape(lab.shape)


def _masked_median(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median over axis 0 of uint8 ``values`` [K, b, W, 3] where ``valid`` [K, b, W]: [b, W, 3] float32 (0 where
    no sample is valid). Invalid samples become 256 (above any uint8) so one sort puts them last."""
    k = values.shape[0]
    v = np.where(valid[..., None], values.astype(np.uint16), np.uint16(256))
    v = np.sort(np.moveaxis(v, 0, -1), axis=-1)  # [b, W, 3, K]
    count = valid.sum(0)[..., None, None].repeat(3, axis=-2)  # [b, W, 3, 1]
    lo = np.take_along_axis(v, np.clip((count - 1) // 2, 0, k - 1), -1)[..., 0].astype(np.float32)
    hi = np.take_along_axis(v, np.clip(count // 2, 0, k - 1), -1)[..., 0].astype(np.float32)
    return np.where(count[..., 0] > 0, 0.5 * (lo + hi), 0.0)


def background_plate(
    frames: np.ndarray,  # [N, H, W, 3] uint8 (only frame_indices are read)
    labels: np.ndarray,  # [N, H, W] uint8 (0 background, 1 torso, 2 head)
    frame_indices: np.ndarray,
    margin_px: int = 5,
    max_frames: int | None = 200,
    inpaint_radius: int = 5,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Background plate [H, W, 3] uint8 and ``seen`` [H, W] bool (False where the plate is inpainted).

    Uses only ``frame_indices`` (evenly thinned to ``max_frames`` if longer; ``None`` = all). Where no frame shows
    background the plate is black and ``seen`` is all False.
    """
    assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.dtype == np.uint8, (frames.shape, frames.dtype)
    assert labels.shape == frames.shape[:3], (labels.shape, frames.shape)
    idx = np.unique(np.asarray(frame_indices, dtype=np.int64))
    assert idx.size > 0 and idx.min() >= 0 and idx.max() < len(frames), "frame_indices out of range"
    if max_frames is not None and idx.size > max_frames:
        idx = idx[np.linspace(0, idx.size - 1, max_frames).round().astype(np.int64)]
    _, h, w, _ = frames.shape
    valid = np.stack([background_valid(labels[i], margin_px) for i in idx])  # [K, H, W] bool
    seen = valid.any(0)
    plate = np.zeros((h, w, 3), np.float32)
    rows = max(1, int(_BAND_BYTES // (idx.size * w * 3 * 2)))
    for r0 in tqdm(range(0, h, rows), desc="plate", unit="band", disable=not progress, leave=False):
        r1 = min(r0 + rows, h)
        plate[r0:r1] = _masked_median(frames[idx, r0:r1], valid[:, r0:r1])
    plate = np.clip(np.round(plate), 0, 255).astype(np.uint8)
    if seen.any() and not seen.all():
        plate = cv2.inpaint(plate, (~seen).astype(np.uint8), inpaint_radius, cv2.INPAINT_TELEA)
    return plate, seen


def compose_head_protocol(
    frames: np.ndarray,  # [N, H, W, 3] uint8
    labels: np.ndarray,  # [N, H, W] uint8
    plate: np.ndarray,  # [H, W, 3] uint8
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `head` protocol's images for ``indices`` (default all frames), each [K, H, W, 3] uint8:

    * ``background_with_torso``: the plate, with the frame's ground-truth torso/neck (label 1) pasted over it; it
      is handed to every method as its per-pixel background;
    * ``target``: the frame where label is torso or head, the plate where background.
    """
    assert frames.ndim == 4 and labels.shape == frames.shape[:3], (frames.shape, labels.shape)
    assert plate.shape == frames.shape[1:], (plate.shape, frames.shape)
    idx = np.arange(len(frames)) if indices is None else np.asarray(indices, dtype=np.int64)
    f, lab = frames[idx], labels[idx]
    torso = (lab == TORSO)[..., None]
    fg = (lab != BACKGROUND)[..., None]
    background_with_torso = np.where(torso, f, plate[None])
    target = np.where(fg, f, plate[None])
    return background_with_torso, target


def iter_head_protocol(
    frames: np.ndarray,
    labels: np.ndarray,
    plate: np.ndarray,
    indices: np.ndarray | None = None,
    chunk: int = 64,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`compose_head_protocol` in chunks of ``chunk`` frames: yields (indices [k], background_with_torso,
    target), so a long video never needs the composed images of all frames at once."""
    idx = np.arange(len(frames)) if indices is None else np.asarray(indices, dtype=np.int64)
    for s in range(0, len(idx), chunk):
        part = idx[s:s + chunk]
        yield (part, *compose_head_protocol(frames, labels, plate, part))
