"""Background plate from training frames only, and the `head`-protocol images (DESIGN.md §3, §4).

The plate is the per-pixel median, over the given frames, of the pixels labelled background that lie at least
``margin_px`` from any foreground pixel of that frame (the originals' ``bc.jpg`` rule keeps 5 px away from the
parsing mask to avoid halos of hair and shoulders). Pixels never seen that way (usually behind the body) are
inpainted with OpenCV's Telea method. Only ``frame_indices`` are read: fit it on a cell's training frames.

The `head` protocol's per-pixel background is the frame's own torso/neck over the plate. Where the head mask reaches
below the jaw (it is the jaw line pushed out, see :mod:`gt_core.preprocess.masks`), a head render that does not fill
the mask — a retrieved head from another frame, or a Gaussian head whose chin sits a pixel higher — would show the
plate as a light crescent between jaw and neck. So, as the originals build their torso image (``process.py``'s
vertical in-painting of the neck), :func:`torso_background` continues every column's top torso colour upwards
into the head region behind the chin (darkening 2 % a pixel, then a small blur), and only the head pixels above the
neck get it: background pixels keep the plate. The colour is read 4 px below the neck's top (the original's
``push_down``); lengths are given at 512 px and scaled to the frame width.

Deviation: the fill reaches 16 px up at 512 px (4 px at 128), not the original's 48 + 4. Our head mask ends
``JAW_MARGIN`` (3 % of the face height, ~2 px at 128) below the jaw, so 52 px reach ~11 px into the real chin, and a
skin-coloured chin behind the head takes away the photometric signal of the jaw's motion: on the end-to-end demo
cell (4 s, `small`) the test mouth_sync fell from 0.62 (no fill) to 0.07 with 52 px, with the mouth opening's std
at 0.07 × the real one; with 16 px it is 0.63 (std 0.55 ×). The seam is covered as well by 16 px as by 52: mean
|background − frame| in a 2-px band along the mask's lower edge, as a fraction of the plate's, 0.21 / 0.36 / 0.59 /
0.23 on the four HDTF clips against 0.19 / 0.37 / 0.60 / 0.18 with 52 px (8 px: 0.55 / 0.60 / 0.73 / 0.57).
"""
from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from gt_core.preprocess.masks import BACKGROUND, HEAD, TORSO

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


NECK_EXTEND_PX512 = 16  # rows above the neck's top pixel that get its colour, at 512 px (the original: 48 + 4)
NECK_SOURCE_DOWN_PX512 = 4  # the colour is read this far below the neck's top pixel (the original's push_down)
NECK_DARKEN = 0.98  # per row of the extension (the original's darken_scaler)


def torso_background(
    frames: np.ndarray,  # [N, H, W, 3] uint8
    labels: np.ndarray,  # [N, H, W] uint8
    plate: np.ndarray,  # [H, W, 3] uint8
) -> tuple[np.ndarray, np.ndarray]:
    """The head protocol's per-pixel background [N, H, W, 3] uint8 — the plate, the frame's torso pixels, and the
    neck continued behind the chin — and the mask [N, H, W] bool of those continued (head-labelled) pixels.

    Per column whose top torso pixel has a head pixel right above it: the colour ``NECK_SOURCE_DOWN`` rows below that
    top (less if the column's torso is shorter) fills the contiguous run of head pixels above it, at most
    ``NECK_EXTEND`` rows, darkened by ``NECK_DARKEN`` per row; the filled pixels are then replaced by their values
    in the blurred background (a Gaussian the size of the original's 5 × 5 at 512 px, at least 3 × 3) so that
    columns do not streak. No head pixel of the frame is read.
    """
    assert frames.ndim == 4 and labels.shape == frames.shape[:3], (frames.shape, labels.shape)
    assert plate.shape == frames.shape[1:], (plate.shape, frames.shape)
    n, h, w, _ = frames.shape
    scale = w / 512.0
    length = max(1, int(round(NECK_EXTEND_PX512 * scale)))
    down = int(round(NECK_SOURCE_DOWN_PX512 * scale))
    torso, head = labels == TORSO, labels == HEAD
    out = np.where(torso[..., None], frames, plate[None])
    top = torso.argmax(axis=1)  # [N, W] first torso row per column
    count = torso.sum(axis=1)  # [N, W]
    nn_, xx = np.meshgrid(np.arange(n), np.arange(w), indexing="ij")  # [N, W] each
    alive = (count > 0) & (top > 0) & head[nn_, np.maximum(top - 1, 0), xx]
    colour = frames[nn_, np.clip(top + np.minimum(count - 1, down), 0, h - 1), xx].astype(np.float32)  # [N, W, 3]
    mask = np.zeros((n, h, w), bool)
    for k in range(1, length + 1):
        y = np.maximum(top - k, 0)
        alive &= (top - k >= 0) & head[nn_, y, xx]
        if not alive.any():
            break
        fn, fy, fx = nn_[alive], y[alive], xx[alive]
        out[fn, fy, fx] = np.clip(np.round(colour[alive] * NECK_DARKEN ** k), 0, 255).astype(np.uint8)
        mask[fn, fy, fx] = True
    ksize = max(3, int(round(5 * scale)) | 1)
    for i in np.nonzero(mask.any(axis=(1, 2)))[0]:
        out[i][mask[i]] = cv2.GaussianBlur(out[i], (ksize, ksize), 0)[mask[i]]
    return out, mask


def compose_head_protocol(
    frames: np.ndarray,  # [N, H, W, 3] uint8
    labels: np.ndarray,  # [N, H, W] uint8
    plate: np.ndarray,  # [H, W, 3] uint8
    indices: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `head` protocol's images for ``indices`` (default all frames), each [K, H, W, 3] uint8:

    * ``background_with_torso``: the plate, with the frame's ground-truth torso/neck (label 1) pasted over it and
      the neck continued into the head region behind the chin (:func:`torso_background`);
      it is handed to every method as its per-pixel background;
    * ``target``: the frame where label is torso or head, the plate where background.
    """
    assert frames.ndim == 4 and labels.shape == frames.shape[:3], (frames.shape, labels.shape)
    assert plate.shape == frames.shape[1:], (plate.shape, frames.shape)
    idx = np.arange(len(frames)) if indices is None else np.asarray(indices, dtype=np.int64)
    f, lab = frames[idx], labels[idx]
    fg = (lab != BACKGROUND)[..., None]
    background_with_torso, _ = torso_background(f, lab, plate)
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
