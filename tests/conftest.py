"""Shared fixtures: the project root, the real HDTF clips, and small generated videos."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
HDTF_DIR = ROOT.parent / "shared" / "data" / "hdtf"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def hdtf_clips() -> list[Path]:
    clips = sorted(HDTF_DIR.glob("*.mp4"))
    if not clips:
        pytest.skip(f"real HDTF clips not found in {HDTF_DIR} (see ../shared/data/README.md)")
    return clips


def make_video(path: Path, seconds: float, size: int = 64, fps: int = 25, audio: bool = True,
               seed: int = 0) -> Path:
    """A small synthetic video (moving gradient) with a tone, for I/O and bad-input tests."""
    from gt_core.io.video import write_video, write_wav

    n = int(round(seconds * fps))
    yy, xx = np.mgrid[0:size, 0:size]
    frames = [np.stack([(xx + 3 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (7 * i + seed) % 256)], -1)
              .astype(np.uint8) for i in range(n)]
    wav = None
    if audio:
        t = np.arange(int(seconds * 16000)) / 16000
        wav = path.with_suffix(".wav")
        write_wav(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    write_video(path, frames, fps=fps, audio_wav=wav)
    return path
