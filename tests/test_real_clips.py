"""The real-clip benchmark (gt_core/report/real_clips.py) on ONE real HDTF clip at tiny size: the DAG, the training-
sample self-reconstruction, blink agreement, the table and the videos; plus its pure helpers without any clip."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gt_core.errors import InputError
from gt_core.report import real_clips as rc

TRAIN_SAMPLE = 5


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory, hdtf_clips):
    clips = tmp_path_factory.mktemp("clips")
    os.symlink(hdtf_clips[0], clips / hdtf_clips[0].name)  # one clip; the data stays in ../shared
    wd = tmp_path_factory.mktemp("real_clips")
    table = rc.run_benchmark(clips, wd, methods=["retrieval", "gaussiantalker"], durations=[2], preset="tiny",
                             train_sample=TRAIN_SAMPLE, cores=2, device="cpu")
    return wd, table, rc.subject_names([hdtf_clips[0]])


@pytest.mark.slow
def test_table_has_every_column_for_test_and_train(tiny_bench):
    wd, table, subjects = tiny_bench
    (subject,) = subjects
    on_disk = pd.read_csv(wd / "real_clips.csv")
    assert list(on_disk.columns) == rc.TABLE_COLUMNS
    assert (wd / "real_clips.md").read_text().count("\n|") >= 8
    for method in ("retrieval", "gaussiantalker"):
        for clip in ("mean", subject):
            for split, n in (("test", 38), ("train", TRAIN_SAMPLE)):
                row = table[(table["method"] == method) & (table["clip"] == clip) & (table["split"] == split)]
                assert len(row) == 1, (method, clip, split)
                row = row.iloc[0]
                assert row.n_frames == n and row.duration_s == 2
                assert 0 <= row.n_blink_frames <= {"test": 38, "train": 50}[split]
                assert math.isfinite(row.psnr) and math.isfinite(row.ssim), row
                if not math.isfinite(row.blink_r):
                    assert row.blink_status, row  # NaN only with a reason
    # retrieval copies real frames: its renders always have a face, so LMD and mouth_sync must be numbers
    ret = table[table["method"] == "retrieval"]
    assert np.isfinite(ret[["lmd", "mouth_sync"]].to_numpy()).all(), ret
    train = ret[(ret["split"] == "train") & (ret["clip"] == "mean")].iloc[0]
    test = ret[(ret["split"] == "test") & (ret["clip"] == "mean")].iloc[0]
    assert train.psnr > test.psnr + 3  # a training frame's nearest audio window is its own: near copies
    assert test.n_blink_frames == 38 and train.n_blink_frames == 50  # blink over all training frames, not the sample


@pytest.mark.slow
def test_videos_and_train_sample_metrics_exist(tiny_bench):
    wd, _, subjects = tiny_bench
    (subject,) = subjects
    for method in ("retrieval", "gaussiantalker"):
        video = wd / "videos" / f"{subject}_2s_{method}.mp4"
        assert video.exists() and video.stat().st_size > 1000, video
        assert (wd / f"results/{subject}/2s/{method}/train_sample/metrics.json").exists()


def test_blink_agreement_reasons():
    t = np.linspace(0, 1, 40)
    gt = 0.3 - 0.2 * np.exp(-((t - 0.5) / 0.05) ** 2)  # one blink: openness falls to 1/3
    assert rc.blink_agreement(gt + 0.001 * np.sin(7 * t), gt)["r"] > 0.99
    flat = rc.blink_agreement(gt, np.full(40, 0.3) + 0.002 * np.sin(9 * t))
    assert math.isnan(flat["r"]) and "no blink" in flat["status"]
    const = rc.blink_agreement(np.full(40, 0.3), gt)
    assert math.isnan(const["r"]) and "constant" in const["status"]
    none = rc.blink_agreement(np.full(40, np.nan), gt)
    assert math.isnan(none["r"]) and "fewer than 3" in none["status"]


def test_sample_rows_and_config(tmp_path):
    assert rc.sample_rows(50, 5).tolist() == [0, 12, 24, 37, 49]
    assert rc.sample_rows(3, 25).tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="train-sample"):
        rc.sample_rows(10, 0)
    clips = [Path("WDA_BobMenendez_000.mp4"), Path("RD_Radio2_000.mp4")]
    cfg = rc.benchmark_config(clips, ["retrieval"], [2, 4, 6])
    assert set(cfg["subjects"]) == {"bobmenendez", "radio2"}
    assert cfg["test"] == {"mode": "tail", "gap_s": 0.0, "seconds": 1.5}
    from gt_core.config import validate_config

    validate_config(cfg)  # every key is one the schema knows
    assert rc.cell_targets(cfg)[0] == "results/bobmenendez/2s/retrieval/metrics.json"


def test_empty_clips_folder_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no videos") as err:
        rc.find_clips(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(InputError, match="does not exist"):
        rc.find_clips(tmp_path / "missing")
