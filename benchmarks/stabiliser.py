"""The head-sync stabiliser against the tracker: demo ground truth, and landmark reprojection on real clips.

    .venv/bin/python benchmarks/stabiliser.py [--demo results/demo/data] [--truth resources/videos/demo_truth.npz]
        [--canonical-frames 250] [--real DIR ...] [--real-canonical-frames 50] [--preset fast] [--stabilised]

Demo: the tracker's ``pose.npz`` and the stabilised pose (computed here with ``--preset``, or read from
``pose_stabilised.npz`` with ``--stabilised``) against the generator's truth (``DemoTruth``): rotation error after the
best constant rotation (the two head frames differ; as tests/test_pipeline_e2e.py compares), translation error of the
head centre's image position (px of the working frame, after the best constant shift; the generator moves the head in
the image plane only, so the depth's frame-to-frame change is reported on its own: truth 0), and frame-to-frame jitter
(mean |Δ| between consecutive frames) minus the truth's. Real clips (``--real``: subject data directories up to
``pose.npz``): mean landmark reprojection error (px, pose.STABLE) of the tracker and of the stabilised pose.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from gt_core.data.demo import load_truth  # noqa: E402
from gt_core.preprocess.landmarks import Landmarks  # noqa: E402
from gt_core.preprocess.pose import HeadPose  # noqa: E402
from gt_core.preprocess.stabilise import PRESETS, rotation_jitter_deg, stabilise_head_pose  # noqa: E402


def _angle_deg(a: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((np.trace(a, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def pose_vs_truth(pose: HeadPose, truth, crop: dict) -> dict:
    """Errors and jitter of ``pose`` against the demo truth (see the module docstring)."""
    est, gt = pose.R.astype(np.float64), truth.R.astype(np.float64)  # [N, 3, 3]
    u, _, vt = np.linalg.svd(np.einsum("nji,njk->ik", gt, est))  # best constant Q with est ≈ gt @ Q
    q = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    rot_err = _angle_deg(np.einsum("nij,njk->nik", np.transpose(gt @ q, (0, 2, 1)), est))
    # head centre (centroid of the mesh) in the image: truth moves it as p' = R (p - pivot) + pivot + [tx, ty, 0]
    c0 = truth.source_points[:468].astype(np.float64).mean(0)
    c = np.einsum("nij,j->ni", gt, c0 - truth.pivot) + truth.pivot
    scale = pose.width / crop["size"]
    uv_true = (c[:, :2] + truth.translation_px - np.array([crop["x0"], crop["y0"]])) * scale  # working px
    uv_est = pose.focal * pose.t[:, :2] / pose.t[:, 2:3] + np.array([pose.cx, pose.cy])
    d = uv_est - uv_true
    trans_err = np.linalg.norm(d - d.mean(0), axis=1)
    jit_rot, jit_rot_true = rotation_jitter_deg(est), rotation_jitter_deg(gt)
    jit_uv = np.linalg.norm(np.diff(uv_est, axis=0), axis=1)
    jit_uv_true = np.linalg.norm(np.diff(uv_true, axis=0), axis=1)
    return {
        "rotation_error_deg": float(rot_err.mean()),
        "translation_error_px": float(trans_err.mean()),
        "rotation_jitter_deg": float(jit_rot.mean()), "rotation_jitter_excess_deg": float((jit_rot - jit_rot_true).mean()),
        "translation_jitter_px": float(jit_uv.mean()), "translation_jitter_excess_px": float((jit_uv - jit_uv_true).mean()),
        "depth_jitter_mm": float(1000 * np.abs(np.diff(pose.t[:, 2])).mean()),
        "landmark_reprojection_px": float(pose.reproj_error_px.mean()),
    }


def stabilised(data: Path, canonical_frames: int, preset: str, read: bool) -> tuple[HeadPose, HeadPose, dict]:
    tracker = HeadPose.load(data / "pose.npz")
    if read:
        stats_path = data / "pose_stabilised.json"
        return tracker, HeadPose.load(data / "pose_stabilised.npz"), (
            json.loads(stats_path.read_text()) if stats_path.exists() else {})
    frames = np.load(data / "frames.npy")
    lms = Landmarks.load(data / "landmarks.npz").interpolated().astype(np.float64)
    res = stabilise_head_pose(frames, lms, tracker, canonical_frames, PRESETS[preset], what=data / "frames.npy")
    return tracker, res.pose, res.stats


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default=str(ROOT / "results/demo/data"))
    ap.add_argument("--truth", default=str(ROOT / "resources/videos/demo_truth.npz"))
    ap.add_argument("--canonical-frames", type=int, default=250)
    ap.add_argument("--real", nargs="*", default=[])
    ap.add_argument("--real-canonical-frames", type=int, default=50)
    ap.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    ap.add_argument("--stabilised", action="store_true", help="read pose_stabilised.npz instead of computing it")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out: dict = {}
    if args.demo:
        data = Path(args.demo)
        start = time.perf_counter()
        tracker, stab, stats = stabilised(data, args.canonical_frames, args.preset, args.stabilised)
        seconds = time.perf_counter() - start
        truth = load_truth(args.truth)
        crop = json.loads((data / "crop.json").read_text())
        rows = {"tracker": pose_vs_truth(tracker, truth, crop), "stabilised": pose_vs_truth(stab, truth, crop)}
        print(f"demo ({data}, {len(tracker)} frames, canonical {args.canonical_frames}, preset {args.preset}, "
              f"{seconds:.1f} s; stats: {json.dumps({k: v for k, v in stats.items() if k != 'config'})})")
        keys = list(rows["tracker"])
        print(f"{'':12s}" + "".join(f"{k:>30s}" for k in keys))
        for name, row in rows.items():
            print(f"{name:12s}" + "".join(f"{row[k]:30.4f}" for k in keys))
        out["demo"] = rows
    for d in args.real:
        data = Path(d)
        tracker, stab, stats = stabilised(data, args.real_canonical_frames, args.preset, args.stabilised)
        before, after = float(tracker.reproj_error_px.mean()), float(stab.reproj_error_px.mean())
        rj = (float(rotation_jitter_deg(tracker.R).mean()), float(rotation_jitter_deg(stab.R).mean()))
        print(f"{data.parent.name:28s} landmark reprojection {before:.4f} -> {after:.4f} px; rotation jitter "
              f"{rj[0]:.4f} -> {rj[1]:.4f} deg; tracks {stats.get('canonical_tracks')}+{stats.get('late_tracks')}")
        out[data.parent.name] = {"reprojection_px": (before, after), "rotation_jitter_deg": rj}
    return out


if __name__ == "__main__":
    main()
