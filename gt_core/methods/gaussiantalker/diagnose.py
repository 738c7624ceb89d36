"""Why does a trained GaussianTalker cell's mouth move (or not)? Measurements on its own training frames.

* :func:`offset_ablation` — render every frame with only some of the five offsets (Δμ, Δs, Δr, Δα, ΔSH) and score
  the mouth opening and eye openness against the ground truth: which offsets move the mouth, which paint it.
* :func:`offset_field` — the Δμ field itself: its per-Gaussian constant part, how much of its frame-to-frame change
  is a rigid (similarity) motion of the whole head, and the lip separation (lower-lip minus upper-lip Gaussians'
  vertical offset, in the head frame) against the ground-truth lip gap.
* :func:`head_frame_jitter` — how much the tracked head frame jitters where the mouth is: the high-frequency part
  (minus a σ = 2-frame Gaussian smoothing) of the projected canonical mouth centre, against the lip gap's spread.

Used by ``benchmarks/gaussiantalker_mouth.py``; the numbers are the diagnosis of issue 12 (see the README).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from gt_core.data.cell import CellData
from gt_core.methods.gaussiantalker import train as T
from gt_core.methods.gaussiantalker.model import GaussianTalkerModel
from gt_core.preprocess.landmarks import LIPS_INNER_LOWER, LIPS_INNER_UPPER, mouth_opening

# mediapipe face-mesh lip contours without the corners (outer and inner rings)
UPPER_LIP = np.array([185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415])
LOWER_LIP = np.array([146, 91, 181, 84, 17, 314, 405, 321, 375, 95, 88, 178, 87, 14, 317, 402, 318, 324])
LIP_RADIUS_M = 0.008  # Gaussians within this distance of a lip landmark (canonical frame) belong to that lip
OFFSETS = ("xyz", "scale", "rotation", "opacity", "shs")


def render_with_offsets(model: GaussianTalkerModel, data: T.FrameData, keep: set[str], sh_degree: int,
                        batch: int = 8) -> np.ndarray:
    """Every frame of ``data`` rendered with only the offsets in ``keep`` (the others zeroed): [N, H, W, 3] uint8."""
    assert keep <= set(OFFSETS), keep
    heads = model.offsets
    original = heads.forward

    def only(x):
        return {k: (v if k in keep else torch.zeros_like(v)) for k, v in original(x).items()}

    heads.forward = only
    try:
        with torch.no_grad():
            frames, _ = T.render_frames(model, data, sh_degree, batch)
    finally:
        heads.forward = original
    return frames.cpu().numpy()


def mouth_and_eye_fit(renders: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Mouth opening (LMD's detector, 40 lip points) and eye openness of ``renders`` vs ``targets`` [N, H, W, 3]:
    correlation, and the rendered spread over the ground truth's."""
    from gt_core.metrics.lmd import compute_lmd
    from gt_core.report.real_clips import blink_agreement, eye_openness_of

    sync = compute_lmd(renders, targets).mouth_sync()
    blink = blink_agreement(eye_openness_of(renders), eye_openness_of(targets))
    psnr = 10 * np.log10(1.0 / np.mean((renders / 255.0 - targets / 255.0) ** 2, axis=(1, 2, 3)))
    return {"psnr": float(psnr.mean()), "mouth_r": sync["r"], "mouth_std_ratio": sync["render_std"] / sync["gt_std"],
            "blink_r": blink["r"], "eye_std_ratio": blink["render_std"] / blink["gt_std"]}


def offset_ablation(model: GaussianTalkerModel, cell: CellData, sh_degree: int, device: torch.device,
                    variants: dict[str, set[str]] | None = None) -> dict[str, dict[str, float]]:
    """:func:`mouth_and_eye_fit` of the training frames rendered with each variant's offsets only."""
    variants = variants or {"all": set(OFFSETS), "xyz only": {"xyz"}, "geometry (xyz, scale, rotation)":
                            {"xyz", "scale", "rotation"}, "appearance + shape, no xyz": set(OFFSETS) - {"xyz"},
                            "none (canonical)": set()}
    data = T.FrameData(cell, "train", device, model.cfg.audio_context)
    targets = np.ascontiguousarray(cell.train.targets)
    return {name: mouth_and_eye_fit(render_with_offsets(model, data, keep, sh_degree), targets)
            for name, keep in variants.items()}


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` [N, 3] moved by the least-squares similarity onto ``dst`` [N, 3]."""
    from gt_core.preprocess.pose import umeyama

    s, rot, t = umeyama(src, dst)
    return s * src @ rot.T + t


def offset_field(model: GaussianTalkerModel, cell: CellData, device: torch.device, every: int = 3
                 ) -> dict[str, Any]:
    """Statistics of Δμ over every ``every``-th training frame (millimetres, head frame; y up)."""
    model.eval()
    data = T.FrameData(cell, "train", device, model.cfg.audio_context)
    idx = np.arange(0, data.n, every)
    with torch.no_grad():
        feats = model.features()
        canon = model.canonical(feats)
        deformed, _ = model.deform(canon, feats, data.audio_ctx[idx], data.eye[idx], data.viewmats[idx])
    xyz = canon.xyz.detach().cpu().numpy().astype(np.float64)  # [N, 3]
    d = 1000.0 * (deformed.xyz.detach().cpu().numpy() - xyz[None])  # [F, N, 3] mm
    constant = d.mean(0)  # [N, 3]
    varying = d - constant[None]
    base = xyz + constant / 1000.0
    nonrigid = np.stack([1000.0 * np.linalg.norm(xyz + f / 1000.0 - _similarity(base, xyz + f / 1000.0), axis=1)
                         for f in d])  # [F, N] mm
    lm = cell.canonical[:, :3]
    dist_up = np.linalg.norm(xyz[:, None] - lm[UPPER_LIP][None], axis=-1).min(1)
    dist_lo = np.linalg.norm(xyz[:, None] - lm[LOWER_LIP][None], axis=-1).min(1)
    upper = (dist_up < LIP_RADIUS_M) & (dist_up < dist_lo)
    lower = (dist_lo < LIP_RADIUS_M) & (dist_lo <= dist_up)
    separation = d[:, lower, 1].mean(1) - d[:, upper, 1].mean(1)  # [F] mm, negative = lower lip below upper
    gap = mouth_opening(cell.train.landmarks[idx])
    return {"n_frames": int(len(idx)), "n_upper_lip": int(upper.sum()), "n_lower_lip": int(lower.sum()),
            "constant_mm": float(np.linalg.norm(constant, axis=1).mean()),
            "varying_mm": float(np.linalg.norm(varying.std(0), axis=1).mean()),
            "global_translation_std_mm": varying.mean(1).std(0).tolist(),
            "non_rigid_mm": float(nonrigid.mean()),
            "lip_separation_std_mm": float(separation.std()),
            "lip_separation_vs_gap_r": (float(np.corrcoef(separation, gap)[0, 1]) if separation.std() > 1e-12
                                        else float("nan"))}


def head_frame_jitter(cell: CellData, sigma: float = 2.0) -> dict[str, float]:
    """High-frequency motion (px) of the canonical mouth centre projected with the tracked training cameras, and
    the detected inner-lip gap's spread (px) for scale."""
    from gt_core.render.cameras import Camera

    tr = cell.train
    mouth = cell.canonical[np.concatenate([UPPER_LIP, LOWER_LIP]), :3].mean(0)  # [3] head frame
    xy = []
    for c2w in tr.c2w:
        cam = Camera.from_c2w_opengl(torch.from_numpy(np.asarray(c2w, np.float32)), cell.fx, cell.fy, cell.cx,
                                     cell.cy, cell.width, cell.height)
        x, y, z = (cam.viewmat.double().numpy() @ np.append(mouth, 1.0))[:3]  # OpenCV camera frame
        xy.append((cell.fx * x / z + cell.cx, cell.fy * y / z + cell.cy))
    xy = np.asarray(xy, np.float64)  # [N, 2]
    high = xy - gaussian_filter1d(xy, sigma, axis=0, mode="nearest")
    gap_px = np.linalg.norm(tr.landmarks[:, LIPS_INNER_LOWER, :2] - tr.landmarks[:, LIPS_INNER_UPPER, :2], axis=-1)
    return {"mouth_centre_jitter_px": float(np.linalg.norm(high.std(0))), "lip_gap_std_px": float(gap_px.std()),
            "lip_gap_mean_px": float(gap_px.mean())}
