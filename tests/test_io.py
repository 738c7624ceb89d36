"""Video/audio I/O through the imageio-ffmpeg binary."""
import numpy as np
import pytest

from conftest import make_video
from gt_core.errors import InputError
from gt_core.io.video import extract_audio, probe_video, read_frames, read_wav, write_wav


def test_probe_and_exact_frame_count(tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=3.0, size=64)
    info = probe_video(video)
    assert (info.width, info.height, info.fps, info.has_audio) == (64, 64, 25.0, True)
    assert info.n_frames_25fps == 75
    frames = read_frames(video)
    assert frames.shape == (75, 64, 64, 3) and frames.dtype == np.uint8


def test_crop_resize_and_audio_length(tmp_path):
    video = make_video(tmp_path / "v.mp4", seconds=2.0, size=64)
    frames = read_frames(video, crop=(8, 4, 48), size=32)
    assert frames.shape == (50, 32, 32, 3)
    extract_audio(video, tmp_path / "a.wav")
    audio, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and abs(len(audio) / rate - 2.0) < 0.04


def test_missing_and_silent_video_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        probe_video(tmp_path / "nope.mp4")
    video = make_video(tmp_path / "mute.mp4", seconds=1.0, audio=False)
    assert not probe_video(video).has_audio
    with pytest.raises(InputError, match="no audio"):
        extract_audio(video, tmp_path / "a.wav")


def test_corrupt_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="bad.mp4"):
        probe_video(bad)
    wav = tmp_path / "bad.wav"
    wav.write_bytes(b"RIFF\x00\x00")
    with pytest.raises(InputError, match="bad.wav"):
        read_wav(wav)


def test_wav_round_trip(tmp_path):
    x = np.sin(np.linspace(0, 20, 1600)).astype(np.float32) * 0.5
    write_wav(tmp_path / "x.wav", x, 16000)
    y, rate = read_wav(tmp_path / "x.wav")
    assert rate == 16000 and np.abs(x - y).max() < 1e-4


def test_write_video_never_leaves_ffmpeg_output_in_an_unread_pipe(tmp_path, monkeypatch):
    """ffmpeg's stderr goes to a file, not to a pipe: on a loaded machine a slow encode filled a 64 KiB stderr pipe
    with progress lines and ``write_video`` waited forever on ffmpeg, which waited on the pipe (the demo test hung)."""
    import subprocess

    import numpy as np

    from gt_core.io.video import probe_video, write_video

    seen = []
    real = subprocess.Popen

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording)
    write_video(tmp_path / "v.mp4", (np.random.default_rng(0).random((12, 32, 32, 3)) * 255).astype(np.uint8))
    assert probe_video(tmp_path / "v.mp4").n_frames_25fps == 12
    writers = [kw for kw in seen if kw.get("stdin") is subprocess.PIPE]  # the streaming encoder (not the probe)
    assert writers and all(kw.get("stderr") is not subprocess.PIPE and kw.get("stdout") is not subprocess.PIPE
                           for kw in writers), writers
