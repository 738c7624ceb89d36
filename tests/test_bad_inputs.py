"""Bad inputs: each stops only its own job with one line naming the file/key and the fix."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_video
from gt_core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def error_line(log: Path) -> str:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, log.read_text()
    return lines[0]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                           "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args],
                          capture_output=True, text=True, cwd=workdir)


@pytest.fixture(scope="module")
def bad_subjects(tmp_path_factory):
    wd = tmp_path_factory.mktemp("bad")
    make_video(wd / "good.mp4", seconds=5.0)
    make_video(wd / "mute.mp4", seconds=5.0, audio=False)
    make_video(wd / "short.mp4", seconds=3.0)
    config = {
        "subjects": {"good": {"video": "good.mp4"}, "missing": {"video": "nowhere/missing.mp4"},
                     "mute": {"video": "mute.mp4"}, "short": {"video": "short.mp4"}},
        "durations": [2], "test": {"gap_s": 0.0, "seconds": 2.0},
    }
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/{s}/data/probe.json" for s in config["subjects"]]
    proc = snakemake(wd, "--keep-going", *targets)
    return wd, proc, targets


def test_bad_videos_fail_their_own_jobs_only(bad_subjects):
    wd, proc, _ = bad_subjects
    assert proc.returncode != 0
    assert (wd / "results/good/data/probe.json").exists()
    for s in ("missing", "mute", "short"):
        assert not (wd / f"results/{s}/data/probe.json").exists()


@pytest.mark.parametrize("subject, words", [
    ("missing", ["nowhere/missing.mp4", "not found", "subjects.<name>.video"]),
    ("mute", ["mute.mp4", "no audio"]),
    ("short", ["short.mp4", "3.00 s long", "needs 4.00 s", "durations"]),
])
def test_each_error_is_one_line_naming_file_and_fix(bad_subjects, subject, words):
    wd, _, _ = bad_subjects
    line = error_line(wd / f"logs/{subject}/probe.log")
    assert "fix:" in line
    for word in words:
        assert word in line


def test_good_outputs_untouched_by_a_rerun(bad_subjects):
    wd, _, targets = bad_subjects
    good = wd / "results/good/data/probe.json"
    before = good.stat().st_mtime_ns
    proc = snakemake(wd, "--keep-going", *targets)
    assert proc.returncode != 0
    assert good.stat().st_mtime_ns == before


def test_unknown_config_key_stops_before_any_job(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"subjects": {"a": {"video": "a.mp4"}}, "resolutin": 64}))
    proc = snakemake(tmp_path, "-n", "all")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "resolutin" in out and "fix:" in out
    assert not (tmp_path / "results").exists()


def test_frame_without_face_is_named(tmp_path):
    from skimage.data import astronaut

    from gt_core.preprocess.stages import landmarks_stage

    face = np.ascontiguousarray(astronaut()[:320, 60:380])
    frames = np.stack([face] * 6)
    frames[3] = 128  # a grey frame: no face
    np.save(tmp_path / "frames.npy", frames)
    with pytest.raises(InputError) as err:
        landmarks_stage(tmp_path / "frames.npy", tmp_path / "lms.npz", tmp_path / "eyes.npy", source="talk.mp4")
    msg = str(err.value)
    assert "talk.mp4" in msg and "3 (0.12 s)" in msg and "max_missing_faces" in msg and "\n" not in msg
    assert not (tmp_path / "lms.npz").exists()
    landmarks_stage(tmp_path / "frames.npy", tmp_path / "lms.npz", tmp_path / "eyes.npy", max_missing=1)
    assert (tmp_path / "lms.npz").exists()
