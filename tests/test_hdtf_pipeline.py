"""The four real HDTF clips (../shared/data/hdtf) through the ordinary `subjects:` config: the same protocol at a
smaller scale (train on 2/4/6 s, common 2-s test tail), preprocessing + the retrieval floor + metrics + Table 1."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hdtf_run(tmp_path_factory, hdtf_clips):
    wd = tmp_path_factory.mktemp("hdtf")
    subjects = {p.stem.split("_")[1].lower(): {"video": str(p)} for p in hdtf_clips}
    config = {"subjects": subjects, "durations": [2, 4, 6], "test": {"mode": "tail", "gap_s": 0.0, "seconds": 2.0},
              "resolution": 128, "methods": ["retrieval"], "preset": "tiny", "device": "cpu"}
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--configfile",
           str(wd / "config.yaml"), "--cores", "2", "reports/table1.csv"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=wd)
    logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((wd / "logs").rglob("*.log")))
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{logs[-6000:]}"
    return wd, list(subjects)


def test_every_real_clip_is_preprocessed(hdtf_run):
    from gt_core.preprocess.landmarks import Landmarks
    from gt_core.preprocess.masks import load_labels
    from gt_core.preprocess.pose import HeadPose

    wd, subjects = hdtf_run
    for s in subjects:
        data = wd / "results" / s / "data"
        frames = np.load(data / "frames.npy", mmap_mode="r")
        assert frames.shape == (200, 128, 128, 3)
        lms = Landmarks.load(data / "landmarks.npz")
        assert lms.found_fraction >= 0.99
        pose = HeadPose.load(data / "pose.npz")
        assert np.median(pose.reproj_error_px) < 2.0, f"{s}: reprojection error {np.median(pose.reproj_error_px)}"
        labels = load_labels(data / "labels.npz")
        head = (labels == 2).mean(axis=(1, 2))
        assert (head > 0.05).all() and ((labels == 1).mean(axis=(1, 2)) > 0.02).all()
        transforms = json.loads((data / "transforms.json").read_text())
        assert len(transforms["frames"]) == 200 and transforms["w"] == 128


def test_cells_and_table_on_real_clips(hdtf_run):
    wd, subjects = hdtf_run
    for s in subjects:
        for d in (2, 4, 6):
            meta = json.loads((wd / f"results/{s}/{d}s/cell/cell.json").read_text())
            assert meta["train"] == [0, d * 25] and meta["test"] == [150, 200]
    table = pd.read_csv(wd / "reports/table1.csv")
    assert list(table["metric"]) == ["PSNR", "SSIM", "LPIPS", "LMD"]
    assert [c for c in table.columns if c != "metric"] == ["retrieval_2s", "retrieval_4s", "retrieval_6s"]
    psnr = table.set_index("metric").loc["PSNR"]
    assert np.isfinite(psnr.astype(float)).all()


def test_retrieval_beats_renders_without_a_working_method(hdtf_run):
    """Per cell, the retrieval floor beats the head-protocol background alone (plate + ground-truth torso, no head)
    by 2 dB, and over the grid a static head (the first training frame's head pasted on every test frame) by 1 dB.

    Measured on the four clips (2/4/6 s): background alone 12.3–15.2 dB, static head 14.3–19.8 dB (mean 17.4),
    retrieval 17.4–25.0 dB (mean 20.6); the smallest per-cell margin over the background is 3.9 dB. The mean
    training head is not a bound here: on these 2-s test tails its blur scores 15.2–23.0 dB, above retrieval in 6 of
    12 cells (PSNR rewards blur; on the demo subject retrieval beats it, see test_pipeline_e2e)."""
    from gt_core.data.cell import LABEL_HEAD, load_cell
    from gt_core.metrics.image import psnr_batch

    wd, subjects = hdtf_run
    floor, static = [], []
    for s in subjects:
        for d in (2, 4, 6):
            cell = load_cell(wd / f"results/{s}/{d}s/cell")
            test = cell.test
            got = json.loads((wd / f"results/{s}/{d}s/retrieval/metrics.json").read_text())
            got = got["protocols"]["head"]["psnr"]["mean"]
            background = psnr_batch(test.backgrounds, test.targets).mean()
            first = (cell.train.labels[0] == LABEL_HEAD)[None, ..., None]
            static.append(psnr_batch(np.where(first, cell.train.frames[0][None], test.backgrounds), test.targets).mean())
            floor.append(got)
            assert got > background + 2.0, f"{s} {d}s: retrieval {got:.2f} dB vs background alone {background:.2f} dB"
    assert np.mean(floor) > np.mean(static) + 1.0, f"retrieval {np.mean(floor):.2f} dB vs static head {np.mean(static):.2f}"


def test_no_plate_behind_the_chin(hdtf_run):
    """A head render that falls 2 px short of the head mask (the mask eroded by a 5 × 5 square) shows the
    head-protocol background in a band along the mask's edge; where a neck lies below (head pixels with torso within
    4 rows under them), that background continues the neck (``torso_background``) instead of showing the plate.

    Measured on the four clips' 6-s cells (1.5-s tail), as a fraction of the plate's mean |background − frame| in
    that band (41 / 60 / 61 / 96 levels for Bob Menendez / Ocasio-Cortez / Ed Markey / Radio): 0.36 / 0.21 / 0.59 /
    0.23 (Ed Markey's neck is labelled head down to his collar, so his band is mostly collar); 8 px of fill instead of
    16 (at 512 px) give 0.60 / 0.55 / 0.73 / 0.57, no continuation 1."""
    import cv2

    from gt_core.data.cell import load_cell
    from gt_core.preprocess.background import torso_background
    from gt_core.preprocess.masks import HEAD, TORSO

    wd, subjects = hdtf_run
    ratios = {}
    for s in subjects:
        cell = load_cell(wd / f"results/{s}/6s/cell")
        test = cell.test
        head, torso = test.labels == HEAD, test.labels == TORSO
        short = np.stack([cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) for m in head])
        neck_below = np.zeros_like(torso)
        for d in range(1, 5):
            neck_below[:, :-d] |= torso[:, d:]
        band = head & ~short & neck_below  # [N, H, W]
        assert band.sum() > 50 * len(band), f"{s}: only {band.sum() / len(band):.0f} band pixels a frame"
        target = test.targets.astype(np.float64)
        continued, _ = torso_background(np.ascontiguousarray(test.frames), test.labels, cell.plate)
        ours = np.abs(continued.astype(np.float64) - target)[band].mean()
        plate = np.abs(cell.plate[None].astype(np.float64) - target)[band].mean()
        ratios[s] = ours / plate
    assert max(ratios.values()) < 0.7 and np.mean(list(ratios.values())) < 0.45, ratios
