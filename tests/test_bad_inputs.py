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


def make_video_short_audio(path: Path, seconds: float, audio_seconds: float, size: int = 64) -> Path:
    """A video whose audio stream ends ``seconds - audio_seconds`` before its picture (the container keeps the
    longer stream's duration): frames from :func:`make_video`, a shorter tone muxed in without ``-shortest``."""
    import ffmpeg

    from gt_core.io.video import FFMPEG, write_wav

    silent = make_video(path.with_name(path.stem + "_picture.mp4"), seconds=seconds, size=size, audio=False)
    t = np.arange(int(audio_seconds * 16000)) / 16000
    wav = path.with_suffix(".wav")
    write_wav(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    (ffmpeg.output(ffmpeg.input(str(silent)).video, ffmpeg.input(str(wav)).audio, str(path), vcodec="copy",
                   acodec="aac").overwrite_output().run(cmd=FFMPEG, quiet=True))
    return path


# subject -> (video maker, the log whose error line names it, words the line must hold)
BAD_SUBJECTS = {
    "missing": (None, "probe", ["nowhere/missing.mp4", "not found", "subjects.<name>.video"]),
    "mute": (lambda p: make_video(p, seconds=5.0, audio=False), "probe", ["mute.mp4", "no audio"]),
    "short": (lambda p: make_video(p, seconds=3.0), "probe", ["short.mp4", "3.00 s long", "needs 4.00 s",
                                                              "durations"]),
    # ffmpeg prints 1000 fps as "1k fps": once misread as "no readable video stream"
    "fast": (lambda p: make_video(p, seconds=5.0, fps=1000), "probe", ["fast.mp4", "implausible frame rate 1000 fps",
                                                                       "-r 25"]),
    "slow": (lambda p: make_video(p, seconds=5.0, fps=2), "probe", ["slow.mp4", "implausible frame rate 2 fps",
                                                                    "-r 25"]),
    # 5 s of picture, 3 s of audio: was padded with 2 s of silence (only < 50 % audio was refused)
    "cutaudio": (lambda p: make_video_short_audio(p, seconds=5.0, audio_seconds=3.0), "audio",
                 ["cutaudio.mp4", "audio track holds 3.0", "for 5.00 s of video", "truncated", "full audio"]),
}


@pytest.fixture(scope="module")
def bad_subjects(tmp_path_factory):
    wd = tmp_path_factory.mktemp("bad")
    make_video(wd / "good.mp4", seconds=5.0)
    videos = {"good": "good.mp4"}
    for name, (maker, _, _) in BAD_SUBJECTS.items():
        videos[name] = "nowhere/missing.mp4" if maker is None else f"{name}.mp4"
        if maker is not None:
            maker(wd / f"{name}.mp4")
    config = {
        "subjects": {name: {"video": video} for name, video in videos.items()},
        "durations": [2], "test": {"gap_s": 0.0, "seconds": 2.0},
    }
    (wd / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/{s}/data/{'audio.wav' if s in ('good', 'cutaudio') else 'probe.json'}"
               for s in config["subjects"]]
    proc = snakemake(wd, "--keep-going", *targets)
    return wd, proc, targets


def test_bad_videos_fail_their_own_jobs_only(bad_subjects):
    wd, proc, _ = bad_subjects
    assert proc.returncode != 0
    assert (wd / "results/good/data/probe.json").exists() and (wd / "results/good/data/audio.wav").exists()
    for s, (_, rule, _) in BAD_SUBJECTS.items():
        assert not (wd / f"results/{s}/data/{'audio.wav' if rule == 'audio' else 'probe.json'}").exists(), s
    assert (wd / "results/cutaudio/data/probe.json").exists()  # what came before the failing job is kept


@pytest.mark.parametrize("subject", list(BAD_SUBJECTS))
def test_each_error_is_one_line_naming_file_and_fix(bad_subjects, subject):
    wd, _, _ = bad_subjects
    _, rule, words = BAD_SUBJECTS[subject]
    line = error_line(wd / f"logs/{subject}/{rule}.log")
    assert "fix:" in line
    for word in words:
        assert word in line, (word, line)


def test_good_outputs_untouched_by_a_rerun(bad_subjects):
    wd, _, targets = bad_subjects
    good = [wd / "results/good/data/probe.json", wd / "results/good/data/audio.wav",
            wd / "results/cutaudio/data/probe.json"]
    before = [p.stat().st_mtime_ns for p in good]
    proc = snakemake(wd, "--keep-going", *targets)
    assert proc.returncode != 0
    assert [p.stat().st_mtime_ns for p in good] == before


def test_plausible_frame_rates_and_a_few_ms_of_missing_audio_are_accepted(tmp_path):
    """The guards above are not trigger-happy: 120 fps (phone slow motion at real speed) probes fine, and an audio
    stream 0.1 s shorter than the picture (encoder padding is a few ms) is padded to the frames' length."""
    from gt_core.io.video import read_wav
    from gt_core.preprocess.stages import audio_stage, probe_stage

    info = probe_stage(make_video(tmp_path / "hfr.mp4", seconds=2.0, fps=120), tmp_path / "p.json", 2.0)
    assert info.fps == 120.0
    video = make_video_short_audio(tmp_path / "nearly.mp4", seconds=4.0, audio_seconds=3.9)
    probe_stage(video, tmp_path / "probe.json", 4.0)
    audio_stage(video, tmp_path / "probe.json", tmp_path / "audio.wav")
    audio, rate = read_wav(tmp_path / "audio.wav")
    assert len(audio) == 4 * rate


def cut_wav(path: Path, seconds: float, keep: float) -> Path:
    """A 16 kHz wav of ``seconds`` whose file is cut after ``keep`` of its bytes (odd: mid-sample), header intact."""
    from gt_core.io.video import write_wav

    t = np.arange(int(seconds * 16000)) / 16000
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) | 1])
    return path


def test_wav_cut_mid_file_is_named(tmp_path):
    from gt_core.io.video import read_wav

    wav = cut_wav(tmp_path / "audio.wav", 2.0, 0.6)
    with pytest.raises(InputError) as err:
        read_wav(wav)
    msg = str(err.value)
    assert "audio.wav" in msg and "truncated wav" in msg and "declares 2.00 s" in msg and "fix:" in msg
    assert "\n" not in msg


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "gt_core.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def cli_error(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a bad input leaves on stderr (exit status 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_audio_features_refuse_a_truncated_or_short_wav(tmp_path):
    """The audio_features job reads results/{subject}/data/audio.wav: cut mid-file, or shorter than the video's
    frames need, it stops with one line (it used to zero-pad the missing windows silently)."""
    import json

    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"path": "v.mp4", "width": 64, "height": 64, "fps": 25.0, "duration": 2.0,
                                 "has_audio": True, "audio_rate": 16000, "n_frames_25fps": 50}))
    out = tmp_path / "audio_mel.npy"
    cut = cut_wav(tmp_path / "cut.wav", 2.0, 0.6)
    line = cli_error(run_cli("audio-features", "--wav", str(cut), "--probe", str(probe), "--name", "mel",
                             "--out", str(out)))
    assert "cut.wav" in line and "truncated wav" in line and "fix:" in line
    from gt_core.io.video import write_wav

    write_wav(tmp_path / "short.wav", np.zeros(16000, np.float32), 16000)
    line = cli_error(run_cli("audio-features", "--wav", str(tmp_path / "short.wav"), "--probe", str(probe),
                             "--name", "mel", "--out", str(out)))
    assert "short.wav" in line and "holds 1.00 s" in line and "need 2.00 s" in line and "fix:" in line
    assert not out.exists()
    write_wav(tmp_path / "ok.wav", np.zeros(32000, np.float32), 16000)
    assert run_cli("audio-features", "--wav", str(tmp_path / "ok.wav"), "--probe", str(probe), "--name", "mel",
                   "--out", str(out)).returncode == 0
    assert np.load(out).shape == (50, 16, 32)


# ------------------------------------------------------------------------------------- train/render job inputs
@pytest.fixture(scope="module")
def cell_dir(tmp_path_factory):
    """A real cell (the small synthetic subject of test_leakage), and a method directory holding an interrupted
    run's files, which a refused job must leave as they were."""
    from test_leakage import make_cell, write_subject

    root = tmp_path_factory.mktemp("jobs")
    write_subject(root / "subject" / "data")
    return make_cell(root / "subject" / "data", root / "subject" / "cell")


def earlier_work(out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"ckpt_latest.pt": b"an interrupted run's checkpoint", "train_log.csv": b"stage,iteration\ncanonical,1\n",
             "resume_fingerprint.json": b"{}"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def assert_untouched(out: Path, files: dict[str, bytes]) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data, name


def train_args(cell: Path, out: Path, *extra: str) -> list[str]:
    args = {"--cell": str(cell), "--method": "gaussiantalker", "--preset": "tiny", "--params": "{}",
            "--out": str(out), "--device": "cpu", "--seed": "0"}
    for flag, value in zip(extra[::2], extra[1::2]):
        args[flag] = value
    return ["train", *[x for kv in args.items() for x in kv]]


def test_cuda_without_a_gpu_is_one_line(cell_dir, tmp_path, monkeypatch):
    import torch

    from gt_core.methods.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(InputError, match=f"device: {name}: no CUDA device is visible.*fix: set `device: auto`"):
            resolve_device(name)
    with pytest.raises(InputError, match="device: gpu: not a device name"):
        resolve_device("gpu")
    assert resolve_device("auto").type == "cpu"

    out = tmp_path / "gaussiantalker"
    files = earlier_work(out)
    no_gpu = {"CUDA_VISIBLE_DEVICES": ""}
    line = cli_error(run_cli(*train_args(cell_dir, out, "--device", "cuda"), env=no_gpu))
    assert line.startswith("error: device: cuda: no CUDA device is visible") and "fix: set `device: auto` or `cpu`" in line
    assert_untouched(out, files)
    files["train.json"] = b'{"method": "gaussiantalker", "checkpoint": "checkpoint.pt"}'
    files["checkpoint.pt"] = b"a trained model"
    for name in ("train.json", "checkpoint.pt"):
        (out / name).write_bytes(files[name])
    line = cli_error(run_cli("render", "--cell", str(cell_dir), "--train", str(out / "train.json"),
                             "--out", str(out / "renders.npz"), "--device", "cuda", env=no_gpu))
    assert line.startswith("error: device: cuda: no CUDA device is visible")
    assert_untouched(out, files)


def test_unknown_hyper_parameter_is_named_with_the_valid_ones(cell_dir, tmp_path):
    from gt_core.methods.registry import get_method

    out = tmp_path / "gaussiantalker"
    files = earlier_work(out)
    line = cli_error(run_cli(*train_args(cell_dir, out, "--params", '{"iterations_canonicall": 5}')))
    assert "method_params.gaussiantalker.iterations_canonicall: unknown hyper-parameter" in line
    assert "did you mean `iterations_canonical`?" in line
    valid = sorted(get_method("gaussiantalker").presets["tiny"])
    assert f"valid ones: {', '.join(valid)}" in line
    assert_untouched(out, files)

    line = cli_error(run_cli(*train_args(cell_dir, out, "--preset", "huge")))
    presets = sorted(get_method("gaussiantalker").presets)
    assert "preset: huge: method gaussiantalker has no such preset" in line and f"use one of {presets}" in line
    assert_untouched(out, files)

    retrieval = get_method("retrieval")
    with pytest.raises(InputError, match=r"method_params\.retrieval\.feather: .*did you mean `feather_px`"):
        retrieval.resolve_config("tiny", {"feather": 2.0})
    with pytest.raises(InputError, match=r"method_params\.retrieval: must be a mapping"):
        retrieval.resolve_config("tiny", [("feather_px", 2.0)])
    assert retrieval.resolve_config("tiny", {"feather_px": 2.0})["feather_px"] == 2.0


def test_unknown_preset_in_the_config_stops_before_any_job(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"subjects": {"a": {"video": "a.mp4"}}, "preset": "huge"}))
    proc = snakemake(tmp_path, "-n", "all")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "preset" in out and "huge" in out and "fix:" in out
    assert not (tmp_path / "results").exists()


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
