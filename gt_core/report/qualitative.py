"""Qualitative comparisons: the Figure-2-style frame grid and a side-by-side comparison video.

* :func:`choose_frames` picks which test frames to show (spread over the test segment, or where the mouth moves).
* :func:`load_renders` reads a cell's ``renders.npz`` (or ``renders.npy`` + ``frame_ids.npy``) and selects
  video frames by index.
* :func:`qualitative_grid` lays out rows = chosen test frames, columns = ground truth then every method × duration
  (grouped by duration, registry order inside), each tile with a zoomed mouth inset in its lower-right corner.
* :func:`side_by_side_video` writes an mp4 with ground truth and renders next to each other under a label strip.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from gt_core.errors import InputError
from gt_core.io.video import write_video
from gt_core.report.collect import method_label, order_methods

INSET_FRACTION = 0.45  # side of the mouth inset relative to the tile side
INSET_COLOR = (255, 214, 0)  # RGB outline of the mouth box and of the inset
MIN_TILE_PX = 256  # tiles are upsampled by an integer factor to at least this many pixels before the inset is drawn


# ------------------------------------------------------------------------------------------------ choosing the frames
def choose_frames(n_test: int, k: int = 3, seed: int = 0, opening: np.ndarray | None = None) -> list[int]:
    """Pick ``k`` test-frame indices (positions in ``[0, n_test)``), sorted, deterministically.

    Without ``opening``: the test segment is cut into ``k`` equal bins and one frame is drawn (with ``seed``) from
    the middle half of each bin, so the frames are spread out and never adjacent.
    With ``opening`` (``[n_test]`` mouth-opening curve, NaN where no face): the frames where the opening varies
    most over a short window (the mouth is moving: hardest for the methods), at least ``n_test / (2k)`` apart.
    """
    if n_test < 1:
        raise ValueError(f"choose_frames: n_test must be >= 1, got {n_test}")
    k = min(int(k), n_test)
    if opening is None:
        rng = np.random.default_rng(seed)
        edges = np.round(np.linspace(0, n_test, k + 1)).astype(int)  # strictly increasing since n_test >= k
        picks = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            quarter = (hi - lo) // 4
            picks.append(int(rng.integers(lo + quarter, hi - quarter)))
        return picks
    opening = np.asarray(opening, dtype=np.float64)
    if opening.shape != (n_test,):
        raise ValueError(f"choose_frames: opening must have shape ({n_test},), got {opening.shape}")
    half = max(1, n_test // (8 * k))  # window ±half frames
    score = np.full(n_test, -np.inf)  # [n_test] local variance of the opening
    for i in range(n_test):
        window = opening[max(0, i - half): i + half + 1]
        if np.isfinite(opening[i]) and np.isfinite(window).sum() >= 2:
            score[i] = np.nanvar(window)
    min_gap = max(1, n_test // (2 * k))
    picks: list[int] = []
    for i in np.argsort(-score, kind="stable"):
        if len(picks) == k:
            break
        if all(abs(int(i) - p) >= min_gap for p in picks):
            picks.append(int(i))
    if len(picks) < k:  # not enough separated frames (very short segment): fill with the spread-out choice
        for i in choose_frames(n_test, k, seed):
            if len(picks) < k and i not in picks:
                picks.append(i)
    return sorted(picks)


def load_renders(cell_dir: str | Path, video_frame_ids: Sequence[int], protocol: str = "head") -> np.ndarray:
    """The renders of one cell at the given video frame indices: ``-> [K, R, R, 3]`` uint8.

    Reads ``{cell_dir}/renders.npz`` as the render stage writes it (``frame_ids [N_test]``, ``head`` and optionally
    ``full`` ``[N_test, R, R, 3]``; ``protocol`` picks the array), or else ``{cell_dir}/renders.npy`` (memory-mapped)
    with ``{cell_dir}/frame_ids.npy`` (video frame index of each render).
    """
    cell_dir = Path(cell_dir)
    if (cell_dir / "renders.npz").is_file():
        source = cell_dir / "renders.npz"
        with np.load(source) as z:
            if protocol not in z.files:
                raise InputError(source, f"no `{protocol}` renders (has {sorted(z.files)})",
                                 "use protocol='head', or a method that renders the full frame")
            ids, renders = z["frame_ids"], z[protocol]  # [N_test], [N_test, R, R, 3]
    else:
        source = cell_dir / "renders.npy"
        for path in (source, cell_dir / "frame_ids.npy"):
            if not path.is_file():
                raise InputError(path, "not found", "run the render stage of that cell first")
        renders = np.load(source, mmap_mode="r")  # [N_test, R, R, 3]
        ids = np.load(cell_dir / "frame_ids.npy")  # [N_test]
    if renders.ndim != 4 or renders.shape[-1] != 3 or len(ids) != len(renders):
        raise InputError(source, f"renders {renders.shape} do not match frame_ids {ids.shape}",
                         "delete the renders and re-run the cell")
    position = {int(f): i for i, f in enumerate(ids)}
    missing = [int(f) for f in video_frame_ids if int(f) not in position]
    if missing:
        raise InputError(source, f"video frames {missing[:5]} were not rendered",
                         "choose frames of the common test segment")
    return np.ascontiguousarray(renders[[position[int(f)] for f in video_frame_ids]]).astype(np.uint8)


# ------------------------------------------------------------------------------------------------------------ the grid
def _square_box(box: Sequence[float], h: int, w: int, margin: float = 0.12) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) around ``box`` enlarged by ``margin`` per side, shifted to lie inside ``h × w``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = int(round(min(max(side, 8.0), h, w)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    return left, top, left + side, top + side


def compose_tile(image: np.ndarray, box: Sequence[float] | None, min_px: int = MIN_TILE_PX) -> np.ndarray:
    """One grid tile: ``image`` ``[H, W, 3]`` upsampled by an integer factor to ≥ ``min_px`` (bicubic), with the
    mouth ``box`` (x0, y0, x1, y1 in ``image`` pixels) outlined and shown zoomed in the lower-right corner.
    Returns ``[f·H, f·W, 3]`` uint8."""
    h, w = image.shape[:2]
    f = max(1, math.ceil(min_px / min(h, w)))
    tile = cv2.resize(np.ascontiguousarray(image), (w * f, h * f), interpolation=cv2.INTER_CUBIC) if f > 1 \
        else np.array(image, copy=True)
    if box is None or not np.all(np.isfinite(np.asarray(box, dtype=float))):
        return tile
    H, W = tile.shape[:2]
    x0, y0, x1, y1 = _square_box([v * f for v in box], H, W)
    crop = tile[y0:y1, x0:x1].copy()  # [s, s, 3], taken before any drawing
    line = max(1, round(min(H, W) / 256))
    cv2.rectangle(tile, (x0, y0), (x1 - 1, y1 - 1), INSET_COLOR, line, cv2.LINE_AA)
    side = int(round(INSET_FRACTION * min(H, W)))
    inset = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
    tile[H - side:, W - side:] = inset
    cv2.rectangle(tile, (W - side, H - side), (W - 1, H - 1), INSET_COLOR, 2 * line)
    return tile


def _as_uint8_frames(array: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"{name}: expected [K, H, W, 3], got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8, got {array.dtype}")
    if shape is not None and array.shape[0] != shape[0]:
        raise ValueError(f"{name}: {array.shape[0]} frames, expected {shape[0]}")
    if shape is not None and array.shape[1:3] != shape[1:3]:  # other resolution: resize to the ground truth's
        array = np.stack([cv2.resize(np.ascontiguousarray(a), (shape[2], shape[1]), interpolation=cv2.INTER_AREA)
                          for a in array])
    return array


def qualitative_grid(
    gt: np.ndarray,  # [K, H, W, 3] uint8 ground-truth targets of the chosen test frames
    renders: Mapping[tuple[str, float], np.ndarray],  # (method, duration_s) -> [K, H, W, 3] uint8
    frame_ids: Sequence[int],  # [K] video frame index of each row (row labels)
    mouth_boxes: np.ndarray | None = None,  # [K, 4] (x0, y0, x1, y1) in GT pixels, or None for no inset
    path: str | Path | None = None,
    title: str | None = None,
    tile_in: float = 1.3,  # tile side in inches (at dpi 150 → ~195 px)
    dpi: int = 150,
) -> Figure:
    """Figure-2-style grid: rows = the K test frames, columns = ground truth, then each method × duration grouped by
    duration (ascending; registry order inside), with duration group headers, method headers, frame labels and a
    zoomed mouth inset per tile. Saved as PNG to ``path`` (when given) and returned; one image axes per tile
    (``K × (1 + n_methods × n_durations)``).
    """
    gt = _as_uint8_frames(gt, "gt")
    k, h, w, _ = gt.shape
    if len(frame_ids) != k:
        raise ValueError(f"frame_ids has {len(frame_ids)} entries for {k} ground-truth frames")
    if mouth_boxes is not None:
        mouth_boxes = np.asarray(mouth_boxes, dtype=np.float64)
        if mouth_boxes.shape != (k, 4):
            raise ValueError(f"mouth_boxes: expected shape ({k}, 4), got {mouth_boxes.shape}")
    durations = sorted({float(d) for _, d in renders})
    methods = order_methods(m for m, _ in renders)
    checked = {(m, float(d)): _as_uint8_frames(r, f"renders[{m!r}, {d}]", gt.shape) for (m, d), r in renders.items()}
    columns: list[tuple[str, float] | None] = [None]  # None = ground truth
    columns += [(m, d) for d in durations for m in methods]

    # layout in inches
    gap, group_gap, left_m, right_m = 0.04, 0.16, 0.32, 0.06
    title_h = 0.40 if title else 0.08
    group_h = 0.26 if durations else 0.0
    head_h = 0.34
    widths = [tile_in] * len(columns)
    xs, x = [], left_m
    for c, col in enumerate(columns):
        if c > 0:
            new_group = columns[c - 1] is None or (col is not None and columns[c - 1][1] != col[1])
            x += group_gap if new_group else gap
        xs.append(x)
        x += widths[c]
    fig_w = x + right_m
    fig_h = title_h + group_h + head_h + k * tile_in + (k - 1) * gap + 0.08
    fig = Figure(figsize=(fig_w, fig_h), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")

    def fx(inches: float) -> float:
        return inches / fig_w

    def fy(inches_from_top: float) -> float:
        return 1.0 - inches_from_top / fig_h

    top_tiles = title_h + group_h + head_h
    for r in range(k):
        y_top = top_tiles + r * (tile_in + gap)
        box = None if mouth_boxes is None else mouth_boxes[r]
        for c, col in enumerate(columns):
            ax = fig.add_axes((fx(xs[c]), fy(y_top + tile_in), fx(tile_in), tile_in / fig_h))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            image = gt[r] if col is None else checked.get(col, [None] * k)[r]
            if image is None:  # this method was not run at this duration
                ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor="0.93", edgecolor="none"))
                ax.text(0.5, 0.5, "n/a", transform=ax.transAxes, ha="center", va="center", color="0.45",
                        fontsize=9)
                continue
            ax.imshow(compose_tile(image, box), interpolation="antialiased")
        fig.text(fx(left_m - 0.06), fy(y_top + tile_in / 2), f"frame {int(frame_ids[r])}", rotation=90,
                 ha="right", va="center", fontsize=8.5, color="0.2")

    # column headers: method (or "Ground truth") just above the tiles, duration group above them
    max_chars = max(8, int(tile_in * 13))  # characters of a 9-pt label that fit over one tile
    heads = ["Ground truth" if col is None else method_label(col[0]) for col in columns]
    heads = [textwrap.fill(t, max_chars, break_long_words=False, break_on_hyphens=False) for t in heads]
    longest = max(len(line) for t in heads for line in t.splitlines())
    size = min(9.0, max(6.0, 9.0 * max_chars / longest))  # one font size for every header
    for c, (col, text) in enumerate(zip(columns, heads)):
        fig.text(fx(xs[c] + tile_in / 2), fy(top_tiles - 0.05), text, ha="center", va="bottom", fontsize=size,
                 fontweight="bold" if col is None else "normal", linespacing=1.0)
    for d in durations:
        idx = [c for c, col in enumerate(columns) if col is not None and col[1] == d]
        x0, x1 = xs[idx[0]], xs[idx[-1]] + tile_in
        y = top_tiles - head_h
        fig.add_artist(Line2D([fx(x0 + 0.05), fx(x1 - 0.05)], [fy(y), fy(y)], transform=fig.transFigure,
                              color="0.3", linewidth=0.8))
        label = f"{d:g} s of training video" if len(idx) > 1 else f"trained on {d:g} s"
        fig.text(fx((x0 + x1) / 2), fy(y - 0.03), label, ha="center", va="bottom", fontsize=9.5, fontweight="bold")
    if title:
        fig.text(0.5, fy(0.08), title, ha="center", va="top", fontsize=11, fontweight="bold")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, facecolor="white")
    return fig


# ----------------------------------------------------------------------------------------------------------- the video
def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    """A dark ``[height, width, 3]`` strip with ``text`` centred in white, scaled down to fit the width."""
    strip = np.full((height, width, 3), 32, np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1 if height < 40 else 2
    scale = height / 34.0
    while scale > 0.2:
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
        if tw <= 0.92 * width and th <= 0.62 * height:
            break
        scale *= 0.9
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(strip, text, org, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return strip


def side_by_side_frames(
    gt_frames: np.ndarray,  # [N, H, W, 3] uint8
    renders: Mapping[str, np.ndarray],  # label -> [N, H, W, 3] uint8 (resized to H × W when different)
    labels: bool = True,
    separator_px: int = 2,
    gt_label: str = "Ground truth",
):
    """Yield the composed frames ``[H + strip, (1 + M) W + M·sep (+pad to even), 3]`` one at a time."""
    gt_frames = _as_uint8_frames(gt_frames, "gt_frames")
    n, h, w, _ = gt_frames.shape
    panels = [(gt_label, gt_frames)]
    panels += [(str(lbl), _as_uint8_frames(r, f"renders[{lbl!r}]", gt_frames.shape)) for lbl, r in renders.items()]
    strip_h = 2 * max(8, round(h * 0.055)) if labels else 0  # even
    total_w = len(panels) * w + (len(panels) - 1) * separator_px
    out_w, out_h = total_w + total_w % 2, h + strip_h + (h + strip_h) % 2  # libx264 yuv420p needs even sides
    header = np.zeros((strip_h, out_w, 3), np.uint8)
    for p, (label, _) in enumerate(panels):
        x0 = p * (w + separator_px)
        if labels:
            header[:, x0:x0 + w] = _label_strip(label, w, strip_h)
    for i in range(n):
        frame = np.zeros((out_h, out_w, 3), np.uint8)  # [H', W', 3]
        frame[:strip_h] = header
        for p, (_, frames) in enumerate(panels):
            x0 = p * (w + separator_px)
            frame[strip_h:strip_h + h, x0:x0 + w] = frames[i]
        yield frame


def side_by_side_video(
    gt_frames: np.ndarray,  # [N, H, W, 3] uint8
    renders: Mapping[str, np.ndarray],  # label -> [N, H, W, 3] uint8, e.g. {"GaussianTalker 10s": ...}
    path: str | Path,
    fps: float = 25.0,
    audio_wav: str | Path | None = None,
    labels: bool = True,
) -> Path:
    """Write an H.264 mp4 with ground truth and each render side by side (in ``renders`` order) under a label strip,
    muxing ``audio_wav`` (the test-segment audio) when given. Every input must have the same N frames."""
    if not renders:
        raise ValueError("side_by_side_video: no renders given")
    path = Path(path)
    write_video(path, side_by_side_frames(gt_frames, renders, labels=labels), fps=fps, audio_wav=audio_wav)
    return path
