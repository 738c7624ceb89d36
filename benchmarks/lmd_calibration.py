"""What does a cell's LMD measure at its frame size? Two read-outs for one cell's test frames.

    .venv/bin/python benchmarks/lmd_calibration.py results/demo/15s/cell \
        [results/demo/15s/retrieval/renders.npz results/demo/15s/ernerf/renders.npz ...] [--sigmas 0.5 0.8 1.2]

1. **Blur alone**: the ground-truth test frames blurred with a Gaussian of each ``--sigmas`` (pixels of the cell's
   frames), scored against the unblurred frames with the pipeline's own LMD (:func:`gt_core.metrics.lmd.compute_lmd`).
   A perfect mouth that is only blurred scores this; at 128 px it is a large part of every method's LMD.
2. **Where the error is**, per renders file: the test frames split into quartiles of the true mouth opening
   (inner-lip gap / mouth width on the ground truth); per quartile the mean LMD and the mean rendered vs true
   opening; and the rendered vs true opening std over all frames. A mouth that regresses to its mean opens too
   little on the widest quarter and does not close on the closed quarter.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.data.cell import load_cell  # noqa: E402
from gt_core.methods.base import Renders  # noqa: E402
from gt_core.metrics.lmd import compute_lmd, lip_points, mouth_opening_from_lips  # noqa: E402
from gt_core.preprocess.landmarks import detect_landmarks  # noqa: E402

N_BINS = 4


def blur_lmd(targets: np.ndarray, gt_lips: np.ndarray, sigma: float) -> float:
    """Mean LMD of ``targets [N, H, W, 3]`` blurred by ``sigma`` px against their own lip points ``gt_lips``."""
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in targets])
    return float(np.nanmean(compute_lmd(blurred, gt_lip_points=gt_lips).values))


def by_opening(renders: np.ndarray, gt_lips: np.ndarray) -> dict:
    """LMD and rendered / true opening per quartile of the true opening (``renders [N, H, W, 3]``, ``gt_lips``
    the ground truth's ``[N, 40, 2]`` lip points)."""
    res = compute_lmd(renders, gt_lip_points=gt_lips)
    true_open = mouth_opening_from_lips(res.gt_lips)  # [N]
    rend_open = mouth_opening_from_lips(res.render_lips)  # [N]
    edges = np.nanpercentile(true_open, np.linspace(0, 100, N_BINS + 1)[1:-1])
    bins = np.digitize(true_open, edges)  # [N] in 0..N_BINS-1
    rows = [{"lmd": float(np.nanmean(res.values[bins == b])), "render_open": float(np.nanmean(rend_open[bins == b])),
             "true_open": float(np.nanmean(true_open[bins == b]))} for b in range(N_BINS)]
    return {"lmd": float(np.nanmean(res.values)), "bins": rows,
            "render_std": float(np.nanstd(rend_open)), "true_std": float(np.nanstd(true_open))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cell")
    ap.add_argument("renders", nargs="*")
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.5, 0.8, 1.2])
    args = ap.parse_args(argv)
    test = load_cell(args.cell).test
    h, w = test.targets.shape[1:3]
    print(f"{args.cell}: {len(test.targets)} test frames at {w}x{h} px")
    gt_lips = lip_points(detect_landmarks(test.targets, video_mode=False))  # [N, 40, 2], detected once
    for s in args.sigmas:
        print(f"  ground truth blurred by sigma {s:g} px: LMD {blur_lmd(test.targets, gt_lips, s):.2f}")
    for path in args.renders:
        r = by_opening(Renders.load(path).head, gt_lips)
        quarters = "  ".join(f"Q{b + 1} {q['lmd']:.2f} ({q['render_open']:.3f} / {q['true_open']:.3f})"
                             for b, q in enumerate(r["bins"]))
        print(f"  {path}: LMD {r['lmd']:.2f}; by quarter of the true opening, LMD (rendered / true opening): "
              f"{quarters}; opening std {r['render_std']:.3f} / {r['true_std']:.3f}")


if __name__ == "__main__":
    main()
