"""Execution profiles and the paper config: what a cluster run would submit, planned without running anything.

Dry runs only (fast): the paper grid with placeholder videos made by the demo generator, and the SLURM profile's
resources (`gpu` on train/render jobs and on no others). That jobs really run independently of the submitting
process is tested in test_pipeline_e2e.py (cluster-generic executor).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
GPU_RULES = {"train", "render"}


@pytest.fixture(scope="module")
def paper_workdir(tmp_path_factory):
    """A working directory where config/paper.yaml's three videos exist (copies of one short demo video)."""
    from gt_core.data.demo import DemoSpec, generate_demo

    workdir = tmp_path_factory.mktemp("paper")
    video = workdir / "placeholder.mp4"
    generate_demo(video, workdir / "placeholder_truth.npz", DemoSpec(seed=1, duration_s=12, size=128))
    for subject in PAPER["subjects"].values():
        (workdir / subject["video"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, workdir / subject["video"])
    return workdir


def dry_run(workdir: Path, *extra: str) -> str:
    """Plan the paper grid; $TENSORFLOW_HOME points into the workdir, so the DeepSpeech graph is never there."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(ROOT / "config/paper.yaml"), "-n", *extra, "all"]
    env = {**os.environ, "TENSORFLOW_HOME": str(workdir / "tensorflow_home")}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def job_blocks(out: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job a dry run prints: a ``rule X:`` line, then its indented fields."""
    jobs: list[tuple[str, dict[str, str], dict[str, str]]] = []
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append((m.group(1), {}, {}))
            continue
        m = re.match(r"^\s+(wildcards|resources): (.*)$", line)
        if m and jobs:
            fields = dict(kv.split("=", 1) for kv in m.group(2).split(", ") if "=" in kv)
            jobs[-1][1 if m.group(1) == "wildcards" else 2].update(fields)
    return jobs


def test_paper_config_plans_the_full_grid(paper_workdir):
    jobs = job_blocks(dry_run(paper_workdir))
    rules = [r for r, _, _ in jobs]
    n_subjects, n_durations, n_methods = len(PAPER["subjects"]), len(PAPER["durations"]), len(PAPER["methods"])
    assert (n_subjects, n_durations) == (3, 3) and set(PAPER["methods"]) >= {"retrieval", "gaussiantalker"}
    for rule in ("train", "render", "evaluate"):
        assert rules.count(rule) == n_subjects * n_durations * n_methods, rule
    assert rules.count("cell") == n_subjects * n_durations
    for rule in ("probe", "frames", "landmarks", "pose", "masks", "audio_features"):
        assert rules.count(rule) == n_subjects, rule
    # the originals' audio features; their graph is fetched once, by the one rule that downloads it
    assert PAPER["audio_features"] == "deepspeech"
    assert {w["feature"] for r, w, _ in jobs if r == "audio_features"} == {"deepspeech"}
    assert rules.count("download_deepspeech") == 1 and "download_weights" not in rules
    assert rules.count("tables") == 1 and "demo_video" not in rules


def test_paper_config_names_a_missing_video(tmp_path):
    """Without the videos the plan still forms; running a subject's first job fails naming the file."""
    from gt_core.config import validate_config

    cfg = validate_config(dict(PAPER))
    assert cfg["preset"] == "paper" and cfg["resolution"] == 512
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(ROOT / "config/paper.yaml"), "--cores", "1",
                           "results/obama/data/probe.json"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert "data/videos/obama.mp4" in logs + proc.stderr and "fix:" in logs + proc.stderr


def test_slurm_profile_puts_gpus_on_train_and_render_only(paper_workdir):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from gt_core.methods.registry import METHODS

    jobs = job_blocks(dry_run(paper_workdir, "--profile", str(ROOT / "workflow/profiles/slurm")))
    gpu_jobs = 0
    for rule, wildcards, res in jobs:
        if rule == "all":
            continue
        wants = METHODS[wildcards["method"]].gpus if rule in GPU_RULES else 0
        assert int(res.get("gpu", 0)) == wants, (rule, wildcards, res)
        assert int(res["mem_mb"]) > 0 and int(res["runtime"]) > 0, (rule, res)  # every job sized for the scheduler
        gpu_jobs += wants > 0
    n_cells = len(PAPER["subjects"]) * len(PAPER["durations"])
    n_gpu_methods = sum(METHODS[m].gpus > 0 for m in PAPER["methods"])
    assert n_gpu_methods == 2  # ernerf and gaussiantalker; retrieval asks for none
    assert gpu_jobs == 2 * n_cells * n_gpu_methods  # a train + a render per cell and GPU method
