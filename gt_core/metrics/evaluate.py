"""Per-cell evaluation: every metric on every test frame under every protocol, written as CSV + JSON.

Protocols (DESIGN.md §3), named in every output row:

* ``head`` — full frame as given: the render composited over the ground-truth torso + background plate vs the
  ground-truth frame with its background replaced by the plate. The Table 1 protocol.
* ``face`` — the same images restricted to the face box of each frame (from the ground-truth landmarks): the box is
  expanded by :data:`FACE_BOX_MARGIN` of its size on every side, made square (side = the longer side), shifted
  inside the frame and clamped to it. PSNR is computed on the native-resolution crop (no resampling); SSIM and LPIPS
  on both crops resized to :data:`FACE_CROP_SIZE`² (``cv2.INTER_AREA`` when shrinking, bilinear when enlarging), so
  the SSIM window and the AlexNet receptive fields cover the same part of the face at 128 px and at 512 px. LMD is
  the head-protocol value (the landmark detector always sees the whole frame).
* ``full`` — everything the method renders (own torso, own background) vs the raw frame; only when the method supplies
  such renders, otherwise reported as not applicable.

Averaging: mean and population std (ddof 0) over frames where the value is finite. PSNR is averaged after capping at
:data:`~gt_core.metrics.image.PSNR_CAP_DB` (identical frames give +inf; ``n_capped`` says how many). LMD (and
``lmd40``, the 40-lip-point variant kept for comparison, not a Table 1 row) is averaged over frames where a face was
found in both render and ground truth; ``n_missed_render`` counts renders without a face (``n_missed_faces`` at the
top of ``metrics.json``: head protocol), ``n_missed_gt`` ground-truth frames without one. When more than
:data:`~gt_core.metrics.lmd.MAX_MISSED_FRACTION` (10%) of a protocol's renders have no face, its LMD and lmd40 are
*unavailable* (mean/std NaN, ``status`` giving the count): averaging over the remaining frames would flatter a method
that loses the face. When LPIPS is unavailable (no AlexNet weights offline, or a file with the wrong checksum) its
values are NaN and the reason is recorded.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from gt_core.metrics.image import PSNR_CAP_DB, SSIM_SIGMA, SSIM_WINDOW, cap_psnr, psnr, ssim
from gt_core.metrics.lmd import LMD_REFERENCE_WIDTH, MAX_MISSED_FRACTION, N_LIP_POINTS, N_MOUTH_POINTS, compute_lmd
from gt_core.metrics.lpips_metric import LpipsMetric

PROTOCOLS = ("head", "face", "full")
METRICS = ("psnr", "ssim", "lpips", "lmd", "lmd40")  # Table 1 shows the first four; lmd40 is in the long table
LMD_METRICS = ("lmd", "lmd40")
FACE_BOX_MARGIN = 0.1  # face box grows by this fraction of its size on each side before being made square
FACE_CROP_SIZE = 128  # face crops are resized to this square size for SSIM and LPIPS
FULL_NOT_APPLICABLE = "not applicable: method renders only the head"
FRAME_COLUMNS = ["frame", "protocol", "psnr", "ssim", "lpips", "lmd", "lmd40", "face_found", "gt_face_found"]

METRIC_DEFINITIONS = {
    "psnr": (f"dB, skimage peak_signal_noise_ratio(data_range=1) per frame on [0,1] RGB; identical frames give inf "
             f"(kept per frame, capped at {PSNR_CAP_DB:g} dB for the mean); higher is better"),
    "ssim": (f"skimage structural_similarity(data_range=1, channel_axis=-1, gaussian_weights=True, "
             f"sigma={SSIM_SIGMA:g}, use_sample_covariance=False): {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window, "
             f"sigma {SSIM_SIGMA:g}, population covariance, K1=0.01, K2=0.03 (Wang et al. 2004); mean over the "
             f"valid interior and RGB channels; higher is better"),
    "lpips": ("lpips 0.1 AlexNet (v0.1 linear layers), trunk verified by sha256 prefix, inputs in [-1,1], per frame; "
              "lower is better"),
    "lmd": (f"mediapipe face mesh on render and ground truth (static images), the {N_MOUTH_POINTS} mouth points of the "
            f"68-point iBUG scheme (48-67, via gt_core.metrics.lmd.IBUG_MOUTH) in 2D, each set centred on its mean, "
            f"mean Euclidean distance in pixels of a {LMD_REFERENCE_WIDTH}-px-wide frame; NaN for a frame without a "
            f"face in either; unavailable for the cell when more than {MAX_MISSED_FRACTION:.0%} of the renders have "
            f"no face; lower is better"),
    "lmd40": (f"as lmd, over all {N_LIP_POINTS} mediapipe lip points (the project's earlier LMD); not in Table 1"),
    "mouth_sync": ("Pearson r over the test frames between the mouth opening (inner-lip gap / mouth width, from the "
                   "LMD lip points) of the render and of the ground truth; 1 = the rendered mouth opens and closes "
                   "with the real one, ~0 = it ignores the audio; not part of Table 1"),
    "head": "render composited over GT torso + background plate vs GT frame with background replaced by the plate",
    "face": (f"head images cropped to the GT-landmark face box (+{FACE_BOX_MARGIN:g} margin per side, square, "
             f"clamped); PSNR on the native crop, SSIM/LPIPS on crops resized to {FACE_CROP_SIZE}x{FACE_CROP_SIZE}; "
             f"LMD as head"),
    "full": "the method's own full-frame render (torso, background) vs the raw frame",
    "mean_std": "mean and population std (ddof=0) over frames with a finite value; n = number of such frames",
}


# ----------------------------------------------------------------------------------------------------------------
# face boxes and crops
# ----------------------------------------------------------------------------------------------------------------
def face_boxes_from_points(points: np.ndarray) -> np.ndarray:
    """Tight landmark box per frame: ``[N, P, >=2]`` pixels -> ``[N, 4]`` (x0, y0, x1, y1); NaN rows stay NaN."""
    assert points.ndim == 3 and points.shape[-1] >= 2, points.shape
    xy = points[..., :2].astype(np.float64)
    out = np.full((len(points), 4), np.nan)
    ok = np.isfinite(xy).all(axis=(1, 2))
    out[ok, :2] = xy[ok].min(axis=1)
    out[ok, 2:] = xy[ok].max(axis=1)
    return out


def face_crop_box(box: np.ndarray, height: int, width: int, margin: float = FACE_BOX_MARGIN) -> tuple[int, int, int, int] | None:
    """Square integer crop ``(x0, y0, x1, y1)`` (exclusive end) around a face box, inside an ``height × width`` frame.

    The box grows by ``margin`` × its size on each side, becomes a square of its longer side, and is shifted (not
    shrunk) to lie inside the frame; only if the square is larger than the frame is it clamped to the shorter frame
    side. ``None`` for a box with NaN (no ground-truth face).
    """
    box = np.asarray(box, dtype=np.float64)
    assert box.shape == (4,), box.shape
    if not np.isfinite(box).all():
        return None
    x0, y0, x1, y1 = box
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * margin)
    side = int(round(min(max(side, 8.0), height, width)))
    left = int(round(cx - side / 2.0))
    top = int(round(cy - side / 2.0))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side


def _resize(crop: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


# ----------------------------------------------------------------------------------------------------------------
# summary statistics
# ----------------------------------------------------------------------------------------------------------------
def _stats(values: np.ndarray, metric: str) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {}
    if metric == "psnr":
        values, n_capped = cap_psnr(values)
        out["n_capped"] = n_capped
        out["cap_db"] = PSNR_CAP_DB
    ok = np.isfinite(values)
    n = int(ok.sum())
    out = {"mean": float(values[ok].mean()) if n else math.nan,
           "std": float(values[ok].std()) if n else math.nan,
           "n": n, "n_undefined": int((~ok).sum()), **out}
    return out


def _protocol_metrics(
    name: str,
    preds: np.ndarray,  # [N, H, W, 3] uint8
    gts: np.ndarray,  # [N, H, W, 3] uint8
    boxes: np.ndarray | None,  # [N, 4] for the face protocol
    lpips_metric: LpipsMetric,
    progress: bool,
) -> dict[str, np.ndarray]:
    """PSNR/SSIM/LPIPS per frame for one protocol: each ``[N]`` float64."""
    n = len(preds)
    p_psnr, p_ssim, p_lpips = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    if boxes is None:
        for i in tqdm(range(n), desc=f"{name} psnr/ssim", unit="frame", disable=not progress, leave=False):
            p_psnr[i] = psnr(preds[i], gts[i])
            p_ssim[i] = ssim(preds[i], gts[i])
        p_lpips[:] = lpips_metric(preds, gts)
        return {"psnr": p_psnr, "ssim": p_ssim, "lpips": p_lpips}
    h, w = preds.shape[1:3]
    crops_p, crops_g, idx = [], [], []
    for i in tqdm(range(n), desc=f"{name} psnr/ssim", unit="frame", disable=not progress, leave=False):
        cb = face_crop_box(boxes[i], h, w)
        if cb is None:
            continue  # no ground-truth face box: NaN for this frame, counted in n_undefined
        x0, y0, x1, y1 = cb
        cp, cg = preds[i, y0:y1, x0:x1], gts[i, y0:y1, x0:x1]
        p_psnr[i] = psnr(cp, cg)
        rp, rg = _resize(cp, FACE_CROP_SIZE), _resize(cg, FACE_CROP_SIZE)
        p_ssim[i] = ssim(rp, rg)
        crops_p.append(rp)
        crops_g.append(rg)
        idx.append(i)
    if idx:
        p_lpips[np.array(idx)] = lpips_metric(np.stack(crops_p), np.stack(crops_g))
    return {"psnr": p_psnr, "ssim": p_ssim, "lpips": p_lpips}


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------
def evaluate_cell(
    renders: np.ndarray,  # [N, H, W, 3] uint8, head-protocol renders
    targets: np.ndarray,  # [N, H, W, 3] uint8, head-protocol targets
    face_boxes: np.ndarray,  # [N, 4] float (x0, y0, x1, y1) pixels of the H×W frame, from GT landmarks
    frame_ids: np.ndarray,  # [N] int, video frame index of each test frame
    renders_full: np.ndarray | None = None,  # [N, H, W, 3] uint8, `full` protocol (method's own full frame)
    targets_full: np.ndarray | None = None,  # [N, H, W, 3] uint8, raw frames
    gt_lip_points: np.ndarray | None = None,  # [N, 40, 2] precomputed GT lip points (LIPS order), H×W pixels
    device: str = "cpu",
    progress: bool = False,
    lpips_metric: LpipsMetric | None = None,  # reuse a built metric across cells (optional)
) -> tuple[pd.DataFrame, dict]:
    """Evaluate one cell: per-frame table (one row per frame and protocol) and a summary dict.

    Returns ``(frames_df, summary)``; ``frames_df`` has the columns of :data:`FRAME_COLUMNS`; ``summary`` has
    ``protocols`` (per protocol and metric: mean, std, n, ...; ``status`` where unavailable; or only ``status`` for an
    inapplicable ``full``), ``n_frames``, ``n_missed_faces`` (renders without a detected face, head protocol),
    ``lpips`` (available, reason), ``metric_definitions``.
    """
    assert renders.ndim == 4 and renders.shape[-1] == 3 and renders.dtype == np.uint8, (renders.shape, renders.dtype)
    assert targets.shape == renders.shape and targets.dtype == np.uint8, (targets.shape, targets.dtype)
    n, h, w, _ = renders.shape
    face_boxes = np.asarray(face_boxes, dtype=np.float64)
    frame_ids = np.asarray(frame_ids)
    assert face_boxes.shape == (n, 4), face_boxes.shape
    assert frame_ids.shape == (n,) and np.issubdtype(frame_ids.dtype, np.integer), (frame_ids.shape, frame_ids.dtype)
    assert (renders_full is None) == (targets_full is None), "give both renders_full and targets_full, or neither"
    if renders_full is not None:
        assert renders_full.shape[0] == n and renders_full.ndim == 4 and renders_full.dtype == np.uint8, renders_full.shape
        assert targets_full.shape == renders_full.shape and targets_full.dtype == np.uint8, targets_full.shape
    if gt_lip_points is not None:
        gt_lip_points = np.asarray(gt_lip_points, dtype=np.float64)
        assert gt_lip_points.shape == (n, N_LIP_POINTS, 2), gt_lip_points.shape

    lp = lpips_metric if lpips_metric is not None else LpipsMetric(device=device)

    per: dict[str, dict[str, np.ndarray]] = {}
    head_lmd = compute_lmd(renders, targets, gt_lip_points, progress=progress)
    per["head"] = _protocol_metrics("head", renders, targets, None, lp, progress)
    per["head"].update(lmd=head_lmd.values, lmd40=head_lmd.values40, face_found=head_lmd.render_found,
                       gt_face_found=head_lmd.gt_found)
    per["face"] = _protocol_metrics("face", renders, targets, face_boxes, lp, progress)
    per["face"].update(lmd=head_lmd.values.copy(), lmd40=head_lmd.values40.copy(),
                       face_found=head_lmd.render_found.copy(), gt_face_found=head_lmd.gt_found.copy())
    lmd_results = {"head": head_lmd, "face": head_lmd}
    if renders_full is not None:
        gt_pts_full = None
        if gt_lip_points is not None and renders_full.shape[1:3] == (h, w):
            gt_pts_full = gt_lip_points  # the raw frame's lips are where the head target's are
        full_lmd = compute_lmd(renders_full, targets_full, gt_pts_full, progress=progress)
        per["full"] = _protocol_metrics("full", renders_full, targets_full, None, lp, progress)
        per["full"].update(lmd=full_lmd.values, lmd40=full_lmd.values40, face_found=full_lmd.render_found,
                           gt_face_found=full_lmd.gt_found)
        lmd_results["full"] = full_lmd

    frames = []
    for proto, vals in per.items():
        frames.append(pd.DataFrame({
            "frame": frame_ids.astype(np.int64), "protocol": proto,
            **{m: vals[m].astype(np.float64) for m in METRICS},
            "face_found": vals["face_found"].astype(bool), "gt_face_found": vals["gt_face_found"].astype(bool),
        }))
    frames_df = pd.concat(frames, ignore_index=True)[FRAME_COLUMNS]

    protocols: dict[str, Any] = {}
    for proto in PROTOCOLS:
        if proto not in per:
            protocols[proto] = {"status": FULL_NOT_APPLICABLE}
            continue
        entry = {m: _stats(per[proto][m], m) for m in METRICS}
        res = lmd_results[proto]
        lmd_reason = res.unavailable_reason()
        for m in LMD_METRICS:
            entry[m].update(n_missed=res.n_missed, n_missed_render=res.n_missed_render,
                            n_missed_gt=int((~res.gt_found).sum()), max_missed_fraction=MAX_MISSED_FRACTION)
            if lmd_reason is not None:  # too many renders without a face: no mean over the rest
                entry[m].update(mean=math.nan, std=math.nan, status=f"unavailable: {lmd_reason}")
        entry["mouth_sync"] = res.mouth_sync()
        if not lp.available:
            entry["lpips"]["status"] = f"unavailable: {lp.reason}"
        if proto == "face":
            entry["crop"] = {"margin": FACE_BOX_MARGIN, "size": FACE_CROP_SIZE,
                             "n_no_box": int((~np.isfinite(face_boxes).all(axis=1)).sum())}
        protocols[proto] = entry

    summary = {
        "protocols": protocols,
        "n_frames": int(n),
        "n_missed_faces": head_lmd.n_missed_render,
        "frame_size": [int(h), int(w)],
        "lpips": {"available": bool(lp.available), "reason": lp.reason},
        "metric_definitions": dict(METRIC_DEFINITIONS),
    }
    return frames_df, summary


def _json_safe(obj: Any) -> Any:
    """Recursively convert numpy types to Python ones and NaN/±inf floats to None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_json_safe(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temp file in the same directory, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


JSON_NOTE = ("NaN (undefined: no face found, no face box, LPIPS weights unavailable or unverified, LMD unavailable "
             "because too many renders have no face) and inf (PSNR of identical frames) are written as null here; "
             "metrics_frames.csv keeps per-frame values, with 'nan' and 'inf'")


def write_cell_metrics(out_dir: str | Path, frames_df: pd.DataFrame, summary: dict, extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``metrics_frames.csv`` (per frame and protocol) and ``metrics.json`` (summary + ``extra``) atomically.

    ``extra`` holds provenance (subject, duration, method, config hash, timings, ...) merged at the top level; a key
    that collides with a summary key is an error. The JSON is written last, so its presence means the cell is done.
    Returns (csv path, json path).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [c for c in FRAME_COLUMNS if c not in frames_df.columns]
    assert not missing, f"frames_df lacks columns {missing}"
    extra = dict(extra or {})
    clash = sorted(set(extra) & (set(summary) | {"json_note"}))
    if clash:
        raise ValueError(f"extra provenance keys collide with summary keys: {clash}")

    csv_path, json_path = out_dir / "metrics_frames.csv", out_dir / "metrics.json"
    _atomic_write_text(csv_path, frames_df.to_csv(index=False, na_rep="nan"))
    doc = {**summary, **extra, "json_note": JSON_NOTE}
    _atomic_write_text(json_path, json.dumps(_json_safe(doc), indent=2, allow_nan=False) + "\n")
    return csv_path, json_path
