"""Train and render stages: run any registered method on a cell, with provenance and safe resume.

``results/{subject}/{D}s/{method}/`` receives the method's checkpoint(s), ``train_log.csv``, ``train.json``
(the stage's record: checkpoint name, hyper-parameters, provenance, wall time) and ``renders.npz``.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from gt_core.config import PROJECT_ROOT
from gt_core.data.cell import load_cell
from gt_core.errors import InputError
from gt_core.io.atomic import save_json
from gt_core.methods.base import Renders
from gt_core.methods.registry import get_method

log = logging.getLogger(__name__)
RESUME_FILES = ("ckpt_latest.pt", "ckpt_latest.npz")


def resolve_device(name: str = "auto"):
    """``auto`` → CUDA when present, else CPU; asking for ``cuda`` (or ``cuda:N``) without one, or for a device
    that does not exist, is a one-line error (before anything is read or written), not a torch traceback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device: {name}", "not a device name", "use `device: auto`, `cpu` or `cuda`") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {name}", "no CUDA device is visible to this job (torch.cuda.is_available() "
                             "is False)", "set `device: auto` or `cpu` in the config, or run the job on a GPU node")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device: {name}", f"only {torch.cuda.device_count()} CUDA device(s) visible",
                             "use `device: cuda` (the first visible GPU) or `auto`")
    elif device.type != "cpu":
        raise InputError(f"device: {name}", "unsupported device type", "use `device: auto`, `cpu` or `cuda`")
    return device


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def code_version() -> str:
    """``git describe`` of the checkout when available, else the package version."""
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    from importlib.metadata import version

    return f"gt-core {version('gt-core')}"


def provenance(device, seed: int, preset: str, config_hash: str) -> dict[str, Any]:
    import torch

    return {
        "config_hash": config_hash, "preset": preset, "seed": int(seed), "code_version": code_version(),
        "torch": torch.__version__, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "python": platform.python_version(),
    }


def train_stage(cell_dir: str | Path, method_name: str, preset: str, overrides: dict | None, out_dir: str | Path,
                device_name: str = "auto", seed: int = 0, config_hash: str = "") -> Path:
    """Train ``method_name`` on a cell; resumes from a periodic checkpoint only if it was made with the same
    hyper-parameters and seed (otherwise it is discarded: changed params must not continue an old run)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method = get_method(method_name)
    cfg = method.resolve_config(preset, overrides)
    device = resolve_device(device_name)
    fingerprint = {"method": method_name, "preset": preset, "cfg": cfg, "seed": seed}
    fp_path = out_dir / "resume_fingerprint.json"
    if fp_path.exists() and json.loads(fp_path.read_text()) != json.loads(json.dumps(fingerprint)):
        for name in RESUME_FILES:
            if (out_dir / name).exists():
                log.warning("discarding %s: it was trained with other hyper-parameters", out_dir / name)
                (out_dir / name).unlink()
    save_json(fp_path, fingerprint)

    seed_everything(seed)
    cell = load_cell(cell_dir)
    start = time.perf_counter()
    checkpoint = method.train(cell, {**cfg, "seed": seed}, out_dir, device)
    wall = time.perf_counter() - start
    info = method.train_info(Path(checkpoint))
    record = {
        "method": method_name, "checkpoint": Path(checkpoint).name, "hyperparameters": cfg,
        "train_frames": int(len(cell.train)), "train_wall_time_s": wall,
        "provenance": {**provenance(device, seed, preset, config_hash), "train_info": info},
    }
    save_json(out_dir / "train.json", record)
    log.info("trained %s on %s in %.1f s", method_name, cell_dir, wall)
    return out_dir / "train.json"


def render_stage(cell_dir: str | Path, train_json: str | Path, out_npz: str | Path,
                 device_name: str = "auto", seed: int = 0) -> Renders:
    device = resolve_device(device_name)  # a bad device is refused before anything is read
    train_json = Path(train_json)
    record = json.loads(train_json.read_text())
    method = get_method(record["method"])
    seed_everything(seed)
    cell = load_cell(cell_dir)
    renders = method.render(train_json.parent / record["checkpoint"], cell, device)
    assert np.array_equal(renders.frame_ids, cell.test.frame_ids), "renders must cover every test frame in order"
    renders.save(out_npz)
    log.info("rendered %d test frames at %.1f FPS", len(renders.head), renders.fps)
    return renders


def derive_stage(cell_dir: str | Path, method_name: str, source_train: str | Path, source_renders: str | Path,
                 out_dir: str | Path, preset: str = "demo", overrides: dict | None = None) -> Renders:
    """A derived row (:attr:`~gt_core.methods.registry.MethodEntry.derived_from`): its renders composed from the
    source method's, and a ``train.json`` that is the source's record with the derivation added."""
    from gt_core.methods.registry import derived_from

    source_name = derived_from(method_name)
    if source_name is None:
        raise InputError(f"--method {method_name}", "not a derived row", "use gt-core train/render for it")
    source_train, out_dir = Path(source_train), Path(out_dir)
    record = json.loads(source_train.read_text())
    if record.get("method") != source_name:
        raise InputError(source_train, f"is {record.get('method')!r}'s record, {method_name} is composed from "
                         f"{source_name!r}", f"pass results/.../{source_name}/train.json")
    method = get_method(method_name)
    cfg = method.resolve_config(preset, overrides)
    cell = load_cell(cell_dir)
    renders = method.derive(Renders.load(source_renders), cell, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    renders.save(out_dir / "renders.npz")
    checkpoint = os.path.relpath((source_train.parent / record["checkpoint"]).resolve(), out_dir.resolve())
    save_json(out_dir / "train.json", {**record, "method": method_name, "checkpoint": checkpoint,
                                       "derived_from": {"hyperparameters": cfg, "method": source_name, "train": str(source_train),
                                                        "renders": str(source_renders), **renders.info}})
    log.info("composed %s from %s: %d frames", method_name, source_name, len(renders.head))
    return renders
