"""Real clips: does each method fit its training frames, and does it generalise to the held-out tail?

    .venv/bin/python benchmarks/real_clips.py [--clips ../shared/data/hdtf] [--methods retrieval gaussiantalker]
        [--durations 2 4 6] [--test-seconds 1.5] [--preset demo] [--resolution 128] [--workdir DIR]
        [--train-sample 25] [--cores 2] [--device cpu] [--audio-features mel] [--params '{"gaussiantalker": {...}}']

One subject per clip in ``--clips``; the real Snakemake DAG runs in ``--workdir`` (default
``benchmarks/out/real_clips``) up to every cell's metrics.json; then every trained cell re-renders its training frames
and a sample of ``--train-sample`` of them is scored with the same metric code. Prints PSNR, SSIM, LMD, mouth_sync
and blink agreement (rendered vs ground-truth eye openness, Pearson r) per method × duration × clip for the test
frames and the training sample, averaged over clips first; writes ``real_clips.csv`` / ``real_clips.md`` and one
ground truth | render video per cell (``videos/``) into the workdir. Logic: :mod:`gt_core.report.real_clips`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.errors import InputError  # noqa: E402
from gt_core.report.real_clips import run_benchmark, table_markdown  # noqa: E402


def main(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default=str(ROOT.parent / "shared/data/hdtf"))
    ap.add_argument("--methods", nargs="+", default=["retrieval", "gaussiantalker"])
    ap.add_argument("--durations", nargs="+", type=float, default=[2, 4, 6])
    ap.add_argument("--test-seconds", type=float, default=1.5)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--workdir", default=str(ROOT / "benchmarks/out/real_clips"))
    ap.add_argument("--train-sample", type=int, default=25)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-videos", action="store_true")
    ap.add_argument("--audio-features", default="mel", help="mel | wakeword | deepspeech (the config's key)")
    ap.add_argument("--params", default=None, help="method_params as JSON: {method: {hyper-parameter: value}}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        table = run_benchmark(args.clips, args.workdir, args.methods, args.durations, args.test_seconds, args.preset,
                              args.resolution, args.train_sample, args.cores, args.device,
                              method_params=json.loads(args.params) if args.params else None,
                              videos=not args.no_videos, audio_features=args.audio_features)
    except InputError as err:
        raise SystemExit(f"error: {err}")
    print(table_markdown(table))
    print(f"table: {Path(args.workdir) / 'real_clips.csv'} (+ .md); videos: {Path(args.workdir) / 'videos'}; "
          f"{time.perf_counter() - start:.0f} s")
    return table


if __name__ == "__main__":
    main()
