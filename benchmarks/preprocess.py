"""Seconds per 100 frames of each preprocessing stage, read from the Snakemake benchmark files of a finished run.

    python benchmarks/preprocess.py [results/demo]

Each rule's `benchmark:` tsv records wall time and peak memory of that job (process start-up included); this divides
by the subject's frame count, so subjects of different lengths compare, and prints each stage's share of the total.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def main(subject_dir: str = "results/demo") -> None:
    data = Path(subject_dir) / "data"
    n_frames = json.loads((data / "probe.json").read_text())["n_frames_25fps"]
    rows = []
    for tsv in sorted((data / "benchmarks").glob("*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"stage": tsv.stem, "seconds": bench["s"].mean(), "max_rss_mb": bench["max_rss"].mean()})
    table = pd.DataFrame(rows)
    table["s_per_100_frames"] = table["seconds"] / n_frames * 100
    table["share"] = table["seconds"] / table["seconds"].sum()
    print(f"{subject_dir}: {n_frames} frames")
    print(table.sort_values("seconds", ascending=False).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"total: {table['seconds'].sum():.1f} s = {table['s_per_100_frames'].sum():.2f} s per 100 frames")


if __name__ == "__main__":
    main(*sys.argv[1:])
