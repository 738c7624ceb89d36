"""Resume really resumes: a re-run after a crash starts at the checkpoint's iteration instead of retraining.

Training is seeded, so a run that ignores ``ckpt_latest`` and retrains from scratch ends with exactly the same
parameters as one that resumes: comparing final results cannot tell them apart. These tests count the optimisation
steps the second run makes (the engine's :func:`gt_core.engine.loop.train_step` wrapped by a counter) and assert it
makes exactly ``total - checkpointed`` of them, starting right after the checkpoint.

Registry-driven: every learned method in :mod:`gt_core.methods.registry` (all but the non-learned ``retrieval``)
trains through the shared engine, so one probe covers them all: the stages and their iteration counts come from
``Method.stage_iterations``, the checkpoint's position from :func:`gt_core.engine.loop.checkpoint_position`.
The run goes through :func:`gt_core.methods.run.train_stage` (the ``train`` job's code, with its resume
fingerprint), on the small synthetic cell of ``test_gaussiantalker``.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from gt_core.engine import loop
from gt_core.methods import registry
from gt_core.methods import run as run_mod

LEARNED = sorted(registry.LEARNED_METHODS)  # the non-learned floor only stores its training frames: nothing to resume


class Crash(RuntimeError):
    """A simulated kill in the middle of training."""


def test_every_learned_method_trains_through_the_engine():
    assert LEARNED, "the registry lists no learned method"
    for name in LEARNED:
        stages = registry.get_method(name).stage_iterations(registry.get_method(name).resolve_config("tiny"))
        assert stages and all(n >= 0 for n in stages.values()), f"{name}: no engine stages ({stages})"


@pytest.fixture(scope="module")
def cell():
    from test_gaussiantalker import synthetic_cell

    return synthetic_cell()


def _log_positions(path: Path) -> list[tuple[str, int]]:
    with open(path, newline="") as fh:
        return [(r["stage"], int(r["iteration"])) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("crash_fraction", [0.45, 0.9])
@pytest.mark.parametrize("method_name", LEARNED)
def test_rerun_starts_at_the_checkpointed_iteration(method_name, crash_fraction, cell, tmp_path, monkeypatch, caplog):
    method = registry.get_method(method_name)
    cfg = method.resolve_config("tiny", {})
    stages = method.stage_iterations(cfg)
    offsets = dict(zip(stages, [sum(list(stages.values())[:i]) for i in range(len(stages))]))
    total = sum(stages.values())

    def order(stage: str, it: int) -> int:  # global 1-based index of a (stage, iteration)
        return offsets[stage] + it

    crash_after = max(1, int(crash_fraction * total))
    assert crash_after < total
    monkeypatch.setattr(run_mod, "load_cell", lambda _cell_dir: cell)  # train_stage on the in-memory cell
    real_step = loop.train_step
    calls: list[tuple[str, int]] = []
    crash_at = {"n": crash_after}

    def counting_step(program, stage, it, latest):
        if len(calls) == crash_at["n"]:
            raise Crash(f"killed after {len(calls)} steps")
        calls.append((stage, int(it)))
        return real_step(program, stage, it, latest)

    monkeypatch.setattr(loop, "train_step", counting_step)
    out = tmp_path / method_name

    with pytest.raises(Crash):
        run_mod.train_stage("unused", method_name, "tiny", {}, out, "cpu", seed=0)
    assert len(calls) == crash_after
    done = order(*loop.checkpoint_position(out / loop.CKPT_LATEST))
    assert 0 < done <= crash_after, f"checkpoint at {done} iterations after a crash at {crash_after}"

    calls.clear()
    crash_at["n"] = None
    with caplog.at_level(logging.INFO):
        run_mod.train_stage("unused", method_name, "tiny", {}, out, "cpu", seed=0)
    orders = [order(*k) for k in calls]
    assert len(calls) == total - done, (
        f"{method_name}: the re-run made {len(calls)} training steps; resuming from the checkpoint at iteration "
        f"{done} of {total} needs {total - done} (first step of the re-run: {calls[:1]})")
    assert orders == list(range(done + 1, total + 1)), f"{method_name}: re-run steps {calls[:3]}... not {done + 1}…"
    # every iteration logged exactly once across both runs (rows past the checkpoint dropped on resume)
    positions = _log_positions(out / loop.LOG_NAME)
    assert [order(*p) for p in positions] == list(range(1, total + 1))
    assert (out / "train.json").exists()
    assert any("resuming" in r.getMessage() for r in caplog.records), "no 'resuming ...' log message"
