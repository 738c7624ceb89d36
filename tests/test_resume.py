"""Resume really resumes: a re-run after a crash starts at the checkpoint's iteration instead of retraining.

Training is seeded, so a run that ignores ``ckpt_latest`` and retrains from scratch ends with exactly the same
parameters as one that resumes: comparing final results cannot tell them apart. These tests count the optimisation
steps the second run makes (the method's step function wrapped by a counter) and assert it makes exactly
``total - checkpointed`` of them, starting right after the checkpoint.

Registry-driven: every learned method in :mod:`gt_core.methods.registry` (all but the non-learned ``retrieval``)
is covered. A new learned method needs an entry in ``RESUME_PROBES`` (how to read its checkpoint position and
which function is one training step); until it has one, ``test_every_learned_method_has_a_resume_probe`` fails.
The run goes through :func:`gt_core.methods.run.train_stage` (the ``train`` job's code, with its resume
fingerprint), on the small synthetic cell of ``test_gaussiantalker``.
"""
from __future__ import annotations

import csv
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from gt_core.methods import registry
from gt_core.methods import run as run_mod

LEARNED = sorted(registry.LEARNED_METHODS)  # the non-learned floor only stores its training frames: nothing to resume


class Crash(RuntimeError):
    """A simulated kill in the middle of training."""


@dataclass(frozen=True)
class ResumeProbe:
    step_owner: Callable[[], object]  # the module holding the step function
    step_name: str  # its attribute name; called once per optimisation step
    step_args: tuple[str, str]  # names of the step function's (stage, iteration) parameters
    position: Callable[[Path], int]  # iterations done (over all stages) recorded in the periodic checkpoint
    total: Callable[[dict], int]  # iterations of a whole run with these hyper-parameters
    order: Callable[[tuple], int]  # global 1-based index of a (stage, iteration)
    log_name: str = "train_log.csv"


def _gt_module():
    from gt_core.methods.gaussiantalker import train as T

    return T


def _gt_position(out_dir: Path) -> int:
    import torch

    T = _gt_module()
    ckpt = torch.load(out_dir / T.CKPT_LATEST, map_location="cpu", weights_only=False)
    cfg = ckpt["train_config"]
    return int(ckpt["iteration"]) + (cfg["iterations_canonical"] if ckpt["stage"] == "deform" else 0)


def _gt_order(cfg: dict) -> Callable[[tuple], int]:
    return lambda key: key[1] + (cfg["iterations_canonical"] if key[0] == "deform" else 0)


RESUME_PROBES: dict[str, Callable[[dict], ResumeProbe]] = {
    "gaussiantalker": lambda cfg: ResumeProbe(
        step_owner=_gt_module, step_name="train_step", step_args=("stage", "it"), position=_gt_position,
        total=lambda c: c["iterations_canonical"] + c["iterations_deform"], order=_gt_order(cfg)),
}


def test_every_learned_method_has_a_resume_probe():
    assert LEARNED, "the registry lists no learned method"
    missing = [m for m in LEARNED if m not in RESUME_PROBES]
    assert not missing, f"learned methods without a resume probe in tests/test_resume.py: {missing}"


@pytest.fixture(scope="module")
def cell():
    from test_gaussiantalker import synthetic_cell

    return synthetic_cell()


def _log_positions(path: Path) -> list[tuple[str, int]]:
    with open(path, newline="") as fh:
        return [(r["stage"], int(r["iteration"])) for r in csv.DictReader(fh)]


@pytest.mark.parametrize("crash_after", [13, 27])  # tiny preset: 20 canonical + 10 deform its, checkpoint every 5
@pytest.mark.parametrize("method_name", LEARNED)
def test_rerun_starts_at_the_checkpointed_iteration(method_name, crash_after, cell, tmp_path, monkeypatch, caplog):
    if method_name not in RESUME_PROBES:
        pytest.fail(f"{method_name}: no resume probe (see test_every_learned_method_has_a_resume_probe)")
    method = registry.get_method(method_name)
    cfg = method.resolve_config("tiny", {})
    probe = RESUME_PROBES[method_name](cfg)
    total = probe.total(cfg)
    assert crash_after < total
    monkeypatch.setattr(run_mod, "load_cell", lambda _cell_dir: cell)  # train_stage on the in-memory cell
    owner = probe.step_owner()
    real_step = getattr(owner, probe.step_name)
    signature = inspect.signature(real_step)
    calls: list[tuple] = []
    crash_at = {"n": crash_after}

    def counting_step(*args, **kwargs):
        if len(calls) == crash_at["n"]:
            raise Crash(f"killed after {len(calls)} steps")
        bound = signature.bind(*args, **kwargs).arguments
        calls.append((bound[probe.step_args[0]], int(bound[probe.step_args[1]])))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(owner, probe.step_name, counting_step)
    out = tmp_path / method_name

    with pytest.raises(Crash):
        run_mod.train_stage("unused", method_name, "tiny", {}, out, "cpu", seed=0)
    assert len(calls) == crash_after
    done = probe.position(out)
    assert 0 < done <= crash_after, f"checkpoint at {done} iterations after a crash at {crash_after}"

    calls.clear()
    crash_at["n"] = None
    with caplog.at_level(logging.INFO):
        run_mod.train_stage("unused", method_name, "tiny", {}, out, "cpu", seed=0)
    orders = [probe.order(k) for k in calls]
    assert len(calls) == total - done, (
        f"{method_name}: the re-run made {len(calls)} training steps; resuming from the checkpoint at iteration "
        f"{done} of {total} needs {total - done} (first step of the re-run: {calls[:1]})")
    assert orders == list(range(done + 1, total + 1)), f"{method_name}: re-run steps {calls[:3]}... not {done + 1}…"
    # every iteration logged exactly once across both runs (rows past the checkpoint dropped on resume)
    positions = _log_positions(out / probe.log_name)
    assert [probe.order(p) for p in positions] == list(range(1, total + 1))
    assert (out / "train.json").exists()
    if method_name == "gaussiantalker":
        assert any("resuming" in r.getMessage() for r in caplog.records), "no 'resuming ...' log message"
