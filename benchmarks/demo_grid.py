"""Wall time of the whole demo grid, per stage and per cell, from the benchmark files of one finished run.

    .venv/bin/python benchmarks/demo_grid.py [results] [--targets train=240,grid=1200]

Reads every Snakemake `benchmark:` tsv under ``results/`` (and the demo video's under ``benchmarks/out``): one row
per job with its wall seconds and peak memory. Prints the time per rule (summed over subjects/cells), each train
and render job, the grid's total, and the ratios measured/target for the stated targets (a demo GaussianTalker cell
trains in <= 4 min, the whole demo grid stays near 20 min on 2 cores). Jobs that ran in parallel are summed, so the
total is the grid's CPU-serial cost, which is what `--cores 1` (the `make all` default) takes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def collect(results: Path) -> pd.DataFrame:
    rows = []
    paths = sorted(results.rglob("*.tsv")) + sorted(Path("benchmarks/out").glob("*.tsv"))
    for tsv in paths:
        bench = pd.read_csv(tsv, sep="\t")
        if "s" not in bench:
            continue
        rel = tsv.relative_to(results) if tsv.is_relative_to(results) else tsv
        parts = rel.parts
        if tsv.parent.name == "benchmarks":  # results/{subject}/data/benchmarks/{stage}.tsv or benchmarks/out/
            rule, where = tsv.stem, (parts[0] if tsv.is_relative_to(results) else "-")
        else:  # results/{subject}/{D}s/{method or cell}/{rule}_benchmark.tsv
            rule, where = tsv.stem.removesuffix("_benchmark"), "/".join(parts[:-1])
        rows.append({"rule": rule, "job": where, "seconds": float(bench["s"].mean()),
                     "max_rss_mb": float(bench["max_rss"].mean()) if "max_rss" in bench else float("nan")})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="?", default="results")
    ap.add_argument("--targets", default="train=240,grid=1200",
                    help="seconds: `train` per GaussianTalker cell, `grid` for the whole run")
    args = ap.parse_args(argv)
    targets = {k: float(v) for k, v in (kv.split("=") for kv in args.targets.split(","))}
    jobs = collect(Path(args.results))
    if jobs.empty:
        raise SystemExit(f"no benchmark files under {args.results}: run `make all` first")
    per_rule = jobs.groupby("rule")["seconds"].agg(["count", "sum", "max"]).sort_values("sum", ascending=False)
    total = float(jobs["seconds"].sum())
    print(per_rule.to_string(float_format=lambda v: f"{v:.1f}"))
    print()
    for rule in ("train", "render", "evaluate"):
        sub = jobs[jobs["rule"] == rule].sort_values("job")
        for _, r in sub.iterrows():
            print(f"{rule:9s} {r['job']:40s} {r['seconds']:8.1f} s  peak {r['max_rss_mb']:7.0f} MB")
    result = {"total_s": total}
    gt = jobs[(jobs["rule"] == "train") & jobs["job"].str.endswith("gaussiantalker")]
    if not gt.empty and "train" in targets:
        worst = float(gt["seconds"].max())
        result["gaussiantalker_train_max_s"] = worst
        print(f"\nGaussianTalker train per cell: max {worst:.1f} s, mean {gt['seconds'].mean():.1f} s; "
              f"max / target ({targets['train']:.0f} s) = {worst / targets['train']:.2f}")
    if "grid" in targets:
        print(f"whole grid (sum of jobs): {total:.1f} s = {total / 60:.1f} min; "
              f"/ target ({targets['grid'] / 60:.0f} min) = {total / targets['grid']:.2f}")
    return result


if __name__ == "__main__":
    main()
