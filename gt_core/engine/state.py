"""RNG state and atomic torch files: what makes a resumed run bit-identical to an uninterrupted one."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gt_core.io.atomic import atomic_path


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(path: Path, obj: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file and a rename: a kill never leaves a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def load_model_checkpoint(path: str | Path, fmt: str, build, device: torch.device | str = "cpu"):
    """A method's ``checkpoint.pt`` (or ``ckpt_latest.pt``) → (``build(record, state_dict, device)`` in eval mode,
    the whole record); a file of another format is refused."""
    ckpt = load_torch(path)
    assert ckpt.get("format") == fmt, f"{path} is not a {fmt} checkpoint"
    model = build(ckpt["record"], ckpt["model"], torch.device(device))
    model.eval()
    return model, ckpt


def check_fits_cell(checkpoint: str | Path, ckpt: dict[str, Any], audio_dim: int, cell,
                    cell_audio_dim: int | None = None) -> None:
    """Refuse (one line naming the checkpoint and the fix) to render a cell of another resolution or audio
    feature than the checkpoint was trained on; ``cell_audio_dim``: the channels of the audio input the method
    reads (default: the cell's audio windows')."""
    from gt_core.errors import InputError

    meta = ckpt.get("cell", {})
    if meta and (meta["width"], meta["height"]) != (cell.width, cell.height):
        raise InputError(checkpoint, f"trained at {meta['width']}x{meta['height']}, the cell is "
                         f"{cell.width}x{cell.height}", "re-train the method on this cell")
    have = cell.test.audio.shape[-1] if cell_audio_dim is None else cell_audio_dim
    if audio_dim != have:
        raise InputError(checkpoint, f"trained on {audio_dim}-d audio features, the cell has {have}",
                         "re-train with the cell's audio feature")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA) before reading a clock; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
