"""Registry-driven smoke, resume and determinism tests: every learned method of :mod:`gt_core.methods.registry`
trains its ``tiny`` preset through the shared engine and renders, on the synthetic cell of ``test_gaussiantalker``.

One set of tests for all methods (not a copy per method): a new method is covered by its registry line.

* the ``tiny`` run lowers the loss (the method's ``fit_column``) of its first stage, logs every iteration, writes ``train.json`` through the
  train job's code and renders every test frame (finite, not just the background);
* killed after 45 % / 90 % of its steps and re-run, it ends with parameters bit-identical to an uninterrupted run;
* the same seed gives byte-identical renders, another seed other renders;
* a NaN loss stops training with :class:`~gt_core.errors.TrainingDiverged` and keeps the last good checkpoint.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from gt_core.engine import loop
from gt_core.errors import TrainingDiverged
from gt_core.methods import registry

LEARNED = sorted(registry.LEARNED_METHODS)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cell():
    from test_gaussiantalker import synthetic_cell

    return synthetic_cell()


def tiny(name: str, seed: int = 0) -> dict:
    return {**registry.get_method(name).resolve_config("tiny", {}), "seed": seed}


def train(name: str, cell, out, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    np.random.seed(seed)
    return registry.get_method(name).train(cell, tiny(name, seed), out, CPU, **kwargs)


def state_of(checkpoint) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def trained(cell, tmp_path_factory):
    """One uninterrupted seed-0 ``tiny`` run per learned method: {name: final checkpoint}."""
    return {name: train(name, cell, tmp_path_factory.mktemp(name)) for name in LEARNED}


@pytest.mark.parametrize("name", LEARNED)
def test_tiny_trains_lowers_the_loss_and_renders(name, cell, trained):
    method = registry.get_method(name)
    stages = method.stage_iterations(tiny(name))
    with open(trained[name].parent / loop.LOG_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["stage"], int(r["iteration"])) for r in rows] == \
        [(s, i) for s, n in stages.items() for i in range(1, n + 1)]
    first = [float(r[method.fit_column]) for r in rows if r["stage"] == next(iter(stages))]
    k = max(2, len(first) // 5)
    assert np.mean(first[-k:]) < np.mean(first[:k]), f"{name}: the first stage did not lower the loss: {first}"
    renders = method.render(trained[name], cell, CPU)
    assert renders.head.shape == (len(cell.test), cell.height, cell.width, 3) and renders.head.dtype == np.uint8
    assert np.array_equal(renders.frame_ids, cell.test.frame_ids) and renders.seconds > 0
    if method.supports_full:  # its own torso and background: the `full` protocol
        assert renders.full is not None and renders.full.shape == renders.head.shape
    else:
        assert renders.full is None
    drawn = np.abs(renders.head.astype(int) - cell.test.backgrounds.astype(int)).mean()
    assert drawn > 1.0, f"{name}: the renders are the background ({drawn:.2f} mean |diff|)"


@pytest.mark.parametrize("fraction", [0.45, 0.9])
@pytest.mark.parametrize("name", LEARNED)
def test_kill_and_resume_is_bit_identical(name, fraction, cell, trained, tmp_path):
    total = sum(registry.get_method(name).stage_iterations(tiny(name)).values())
    with pytest.raises(loop.TrainingInterrupted):
        train(name, cell, tmp_path, stop_after=max(1, int(fraction * total)))
    a, b = state_of(trained[name]), state_of(train(name, cell, tmp_path))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{name}: {key} differs after kill-and-resume at {fraction:.0%}"


@pytest.mark.parametrize("name", LEARNED)
def test_same_seed_same_renders_other_seed_other_renders(name, cell, trained, tmp_path):
    method = registry.get_method(name)
    ref = method.render(trained[name], cell, CPU).head
    again = method.render(train(name, cell, tmp_path / "again"), cell, CPU).head
    assert np.array_equal(ref, again), f"{name}: two seed-0 runs rendered differently"
    other = method.render(train(name, cell, tmp_path / "seed1", seed=1), cell, CPU).head
    assert not np.array_equal(ref, other), f"{name}: seed 1 rendered exactly what seed 0 did"


@pytest.mark.parametrize("name", LEARNED)
def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(name, cell, tmp_path, monkeypatch):
    real, calls = loop.train_step, {"n": 0}
    every = tiny(name)["checkpoint_every"]

    def diverging(program, stage, it, latest):
        calls["n"] += 1
        if calls["n"] == every + 3:
            forward = program.forward
            program.forward = lambda s, i: (lambda loss, terms: (loss * float("nan"), terms))(*forward(s, i))
        return real(program, stage, it, latest)

    monkeypatch.setattr(loop, "train_step", diverging)
    with pytest.raises(TrainingDiverged, match=f"{name}: loss became nan at .* iteration {every + 3}.*last good"):
        train(name, cell, tmp_path)
    assert loop.checkpoint_position(tmp_path / loop.CKPT_LATEST)[1] == every
    assert not (tmp_path / loop.CKPT_FINAL).exists()
