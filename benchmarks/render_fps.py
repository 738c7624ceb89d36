"""Benchmark: render FPS of every trained method on one cell, measured in one run.

    .venv/bin/python benchmarks/render_fps.py [results/demo/10s] [--device cpu] [--repeats 2] [--threads N]

For each ``{cell_dir}/{method}/train.json`` of a finished run, loads the checkpoint and renders the cell's test
frames ``repeats`` times through the method's own ``render`` (the same call as the `render` rule). Two figures per
method: the method's own timer (``Renders.seconds``: what it counts as rendering, e.g. GaussianTalker's deform +
rasterize, as the original's FPS) and the wall time of the whole call (checkpoint loading and set-up included).
Prints FPS and each method's ratio to the slowest one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.data.cell import load_cell  # noqa: E402
from gt_core.methods.registry import get_method  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("cell_dir", nargs="?", default="results/demo/10s")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cell_dir = Path(args.cell_dir)
    cell = load_cell(cell_dir / "cell")
    n = len(cell.test.frame_ids)
    results = {}
    for train_json in sorted(cell_dir.glob("*/train.json")):
        record = json.loads(train_json.read_text())
        method = get_method(record["method"])
        own, wall = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            renders = method.render(train_json.parent / record["checkpoint"], cell, torch.device(args.device))
            wall.append(time.perf_counter() - start)
            own.append(renders.seconds)
        results[record["method"]] = {"fps": n / statistics.median(own), "fps_wall": n / statistics.median(wall)}
    if not results:
        raise SystemExit(f"no trained method under {cell_dir}: run `make all` first")
    slowest = min(r["fps"] for r in results.values())
    print(f"{cell_dir}: {n} test frames at {cell.width}x{cell.height}, {args.device}, {torch.get_num_threads()} threads")
    for name, r in results.items():
        print(f"{name:16s} {r['fps']:8.1f} FPS (method's timer)  {r['fps_wall']:8.1f} FPS (whole call)  "
              f"x{r['fps'] / slowest:.1f} vs slowest")
    return results


if __name__ == "__main__":
    main()
