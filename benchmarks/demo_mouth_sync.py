"""Does the rendered mouth follow the test audio? Demo subject only: its generator's jaw curve is the ground truth.

    .venv/bin/python benchmarks/demo_mouth_sync.py [results/demo] [--truth resources/videos/demo_truth.npz]

For every ``{D}s/{method}/renders.npz`` of the demo subject: mediapipe face mesh on each rendered test frame, mouth
opening (inner-lip gap / mouth width) and its Pearson r with the generator's ``jaw_open`` at the same video frames
(the curve espeak's phoneme timing drew the mouth with, i.e. the audio's visemes). The same measure on the ground
truth test frames is the ceiling (the detector's own agreement with the curve); a method that ignored the audio
would score near 0. Also prints each cell's ``mouth_sync`` (render vs ground-truth mouth opening, from metrics.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.data.cell import load_cell  # noqa: E402
from gt_core.data.demo import load_truth  # noqa: E402
from gt_core.methods.base import Renders  # noqa: E402
from gt_core.preprocess.landmarks import detect_landmarks, mouth_opening  # noqa: E402


def opening_r(frames: np.ndarray, curve: np.ndarray) -> tuple[float, int]:
    lms = detect_landmarks(frames, video_mode=False)
    opening = mouth_opening(lms.points)
    ok = lms.found & np.isfinite(opening)
    return float(np.corrcoef(opening[ok], curve[ok])[0, 1]), int(ok.sum())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("subject_dir", nargs="?", default="results/demo")
    ap.add_argument("--truth", default="resources/videos/demo_truth.npz")
    args = ap.parse_args(argv)
    truth = load_truth(args.truth)
    subject = Path(args.subject_dir)
    results: dict[str, float] = {}
    ceiling_done = False
    for npz in sorted(subject.glob("*s/*/renders.npz")):
        duration, method = npz.parts[-3], npz.parts[-2]
        renders = Renders.load(npz)
        curve = truth.jaw_open[renders.frame_ids]
        if not ceiling_done:
            cell = load_cell(subject / duration / "cell")
            r_gt, n_gt = opening_r(np.ascontiguousarray(cell.test.targets), curve)
            print(f"{'ground truth':14s}        r = {r_gt:.3f}  ({n_gt} frames with a face)")
            results["ground_truth"] = r_gt
            ceiling_done = True
        r, n = opening_r(renders.head, curve)
        metrics = npz.parent / "metrics.json"
        sync = json.loads(metrics.read_text())["protocols"]["head"].get("mouth_sync", {}) if metrics.exists() else {}
        print(f"{method:14s} {duration:>5s}  r = {r:.3f}  ({n} frames)  mouth_sync vs GT frames: "
              f"{sync.get('r', float('nan')):.3f}")
        results[f"{method}_{duration}"] = r
    if not results:
        raise SystemExit(f"no renders under {subject}: run `make all` first")
    return results


if __name__ == "__main__":
    main()
