"""The stage loop every learned method trains through.

A method describes its training as a :class:`Program`: named stages with iteration counts, how to build its model
(fresh or from a checkpoint payload), what to set up at the start of a stage (optimiser, schedules, callback state),
one optimisation step split in two (``forward`` → loss, then ``update`` → backward, optimiser step, callbacks), the
payload of a periodic checkpoint and of the final one. :func:`run_program` does the rest, identically for every
method:

* **resume** from ``ckpt_latest.pt`` when it exists (the run's ``seed``, RNG states, stage, iteration, elapsed
  time and the program's payload), so a resumed run is bit-identical to an uninterrupted one on the CPU;
* **periodic atomic checkpoints** every ``checkpoint_every`` iterations and at each stage's end;
* a **NaN/inf loss** raises :class:`~gt_core.errors.TrainingDiverged` before the backward pass, naming the stage,
  the iteration and the last good checkpoint, which is kept;
* ``train_log.csv`` with one row per iteration (``stage, iteration, loss, <the program's fields>, seconds``);
* a tqdm bar per stage; ``stop_after`` (tests) raises :class:`TrainingInterrupted` after that many steps.

Checkpoint files are flat dicts: the engine's keys (``ENGINE_KEYS``) next to the program's payload keys.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gt_core.engine.log import CsvLog
from gt_core.engine.state import load_torch, rng_state, save_torch, seed_all, set_rng_state
from gt_core.errors import TrainingDiverged

log = logging.getLogger(__name__)

CKPT_LATEST = "ckpt_latest.pt"
CKPT_FINAL = "checkpoint.pt"
LOG_NAME = "train_log.csv"
ENGINE_KEYS = ("format", "stage", "iteration", "rng", "elapsed_s", "train_seconds")
DONE = "done"


class TrainingInterrupted(RuntimeError):
    """Raised by ``run_program(..., stop_after=k)`` after k iterations: a simulated crash for resume tests."""


class Program(ABC):
    """One method's training, as the engine drives it (see the module docstring)."""

    name: str  # log and error prefix, e.g. "gaussiantalker"
    format: str  # checkpoint format tag, checked on resume and load
    stages: tuple[str, ...]  # in training order
    log_fields: tuple[str, ...]  # the CSV columns between ``loss`` and ``seconds``
    seed: int
    checkpoint_every: int

    @abstractmethod
    def iterations(self, stage: str) -> int:
        """Iterations of ``stage`` (0 skips its steps)."""

    @abstractmethod
    def start(self) -> None:
        """Build the model of a fresh run (the engine has seeded every RNG with ``seed``)."""

    @abstractmethod
    def restore(self, ckpt: dict[str, Any]) -> None:
        """Rebuild the model from a periodic checkpoint (everything :meth:`state` wrote)."""

    @abstractmethod
    def begin_stage(self, stage: str, ckpt: dict[str, Any] | None) -> None:
        """Set up ``stage`` (optimiser, callback state, train mode); ``ckpt`` when resuming inside this stage."""

    @abstractmethod
    def forward(self, stage: str, it: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The loss of iteration ``it`` (1-based) and its logged terms."""

    @abstractmethod
    def update(self, stage: str, it: int, loss: torch.Tensor) -> dict[str, Any]:
        """Backward, optimiser step and the iteration's callbacks; returns the rest of the log row."""

    @abstractmethod
    def state(self, stage: str) -> dict[str, Any]:
        """Payload of a periodic checkpoint inside ``stage`` (model, optimiser, callback state, …)."""

    def finish(self) -> None:
        """After the last stage, before the final checkpoint (e.g. bake predicted attributes)."""

    @abstractmethod
    def final(self) -> dict[str, Any]:
        """Payload of the final checkpoint: what rendering needs."""

    def progress(self) -> dict[str, Any]:
        """Extra fields of the progress bar."""
        return {}

    def describe(self) -> str:
        """A few words on the model's state for error messages (e.g. "4,000 Gaussians")."""
        return ""

    def summary(self) -> str:
        """The closing log line's details."""
        return ""


def checkpoint_position(path: str | Path) -> tuple[str, int]:
    """(stage, iteration) recorded in a periodic checkpoint."""
    ckpt = load_torch(path)
    return str(ckpt["stage"]), int(ckpt["iteration"])


def train_step(program: Program, stage: str, it: int, latest: Path) -> tuple[float, dict[str, Any]]:
    """One optimisation step (looked up by name in :func:`run_program`, so tests can count or kill steps).
    Returns the loss and the log row's program fields; raises TrainingDiverged on a non-finite loss."""
    loss, terms = program.forward(stage, it)
    if not bool(torch.isfinite(loss)):
        where = (f"the last good checkpoint {latest} is kept" if latest.exists() else "no checkpoint was written yet")
        state = f" ({program.describe()})" if program.describe() else ""
        raise TrainingDiverged(
            f"{program.name}: loss became {float(loss.detach())} at {stage} iteration {it}{state}; {where} — lower "
            f"the learning rates or check the cell's inputs")
    extra = program.update(stage, it, loss)
    return float(loss.detach()), {**terms, **extra}


def run_program(program: Program, out_dir: str | Path, stop_after: int | None = None) -> Path:
    """Train ``program`` in ``out_dir`` (resuming from its ``ckpt_latest.pt``); returns the final checkpoint's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    latest = out_dir / CKPT_LATEST
    stages = program.stages
    ckpt: dict[str, Any] | None = None
    if latest.exists():
        ckpt = load_torch(latest)
        assert ckpt.get("format") == program.format, \
            f"{latest} is not a {program.format} checkpoint: delete it to start afresh"
        program.restore(ckpt)
        stage, done, elapsed = str(ckpt["stage"]), int(ckpt["iteration"]), float(ckpt["elapsed_s"])
        log.info("resuming %s from %s at %s iteration %d", out_dir, latest.name, stage, done)
    else:
        seed_all(program.seed)
        program.start()
        stage, done, elapsed = stages[0], 0, 0.0
    fields = ("stage", "iteration", "loss", *program.log_fields, "seconds")
    csv_log = CsvLog(out_dir / LOG_NAME, fields, stages, (stages.index(stage), done) if ckpt is not None else None)
    run_iters = 0

    def save_latest(stage_: str, it: int) -> None:
        csv_log.flush()
        payload = program.state(stage_)
        clash = set(payload) & set(ENGINE_KEYS)
        assert not clash, f"program payload uses engine keys {sorted(clash)}"
        save_torch(latest, {"format": program.format, "stage": stage_, "iteration": it, "rng": rng_state(),
                            "elapsed_s": elapsed, **payload})

    try:
        for stage_name in stages[stages.index(stage):]:
            resume_here = ckpt is not None and ckpt["stage"] == stage_name
            program.begin_stage(stage_name, ckpt if resume_here else None)
            start = 0
            if resume_here:
                set_rng_state(ckpt["rng"])
                start = int(ckpt["iteration"])
            ckpt = None
            total = program.iterations(stage_name)
            bar = tqdm(range(start + 1, total + 1), desc=f"{program.name} {stage_name}", initial=start, total=total,
                       leave=False)
            for it in bar:
                t0 = time.perf_counter()
                loss, row = train_step(program, stage_name, it, latest)
                step_s = time.perf_counter() - t0
                elapsed += step_s
                csv_log.write({"stage": stage_name, "iteration": it, "loss": loss, **row, "seconds": step_s})
                bar.set_postfix(loss=f"{loss:.4f}", **program.progress())
                if it % program.checkpoint_every == 0 or it == total:
                    save_latest(stage_name, it)
                run_iters += 1
                if stop_after is not None and run_iters >= stop_after:
                    raise TrainingInterrupted(f"stopped after {run_iters} iterations (at {stage_name} {it})")
            bar.close()
            if total == 0:
                save_latest(stage_name, 0)
    finally:
        csv_log.close()

    program.finish()
    final = out_dir / CKPT_FINAL
    payload = program.final()
    clash = set(payload) & set(ENGINE_KEYS)
    assert not clash, f"program payload uses engine keys {sorted(clash)}"
    save_torch(final, {"format": program.format, "stage": DONE, "train_seconds": elapsed, **payload})
    log.info("%s: %.1f s of training steps%s", program.name, elapsed,
             f"; {program.summary()}" if program.summary() else "")
    return final
