"""The shared training engine on a toy program: resume is bit-identical, a NaN keeps the last good checkpoint,
the log has one row per iteration, schedules and batches are what they claim (GaussianTalker and ER-NeRF run on
this loop; their own resume/determinism tests are registry-driven in test_resume / test_leakage)."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from gt_core.engine import loop
from gt_core.engine.batches import batch_indices
from gt_core.engine.schedules import expon_lr, power_decay
from gt_core.errors import TrainingDiverged


class ToyProgram(loop.Program):
    """Two stages fitting y = 3x − 1 with noisy mini-batches (RNG used in every step, so a resume that
    forgot the RNG state would differ)."""

    name, format, stages, log_fields = "toy", "toy-v1", ("a", "b"), ("lr",)

    def __init__(self, iters=(30, 20), every=7, nan_at=None):
        self.seed, self.checkpoint_every, self.iters, self.nan_at = 0, every, dict(zip(self.stages, iters)), nan_at

    def iterations(self, stage):
        return self.iters[stage]

    def start(self):
        self.w = torch.nn.Parameter(torch.randn(2))

    def restore(self, ckpt):
        self.w = torch.nn.Parameter(ckpt["w"].clone())

    def begin_stage(self, stage, ckpt):
        self.opt = torch.optim.Adam([self.w], lr=0.1 if stage == "a" else 0.03)
        if ckpt is not None:
            self.opt.load_state_dict(ckpt["opt"])

    def forward(self, stage, it):
        x = torch.rand(16)
        y = 3 * x - 1 + 0.01 * torch.randn(16)
        loss = ((self.w[0] * x + self.w[1] - y) ** 2).mean()
        if (stage, it) == self.nan_at:
            loss = loss * float("nan")
        return loss, {}

    def update(self, stage, it, loss):
        loss.backward()
        self.opt.step()
        self.opt.zero_grad()
        return {"lr": self.opt.param_groups[0]["lr"]}

    def state(self, stage):
        return {"w": self.w.detach().clone(), "opt": self.opt.state_dict()}

    def final(self):
        return {"w": self.w.detach().clone()}


def test_resume_is_bit_identical_and_logs_every_iteration_once(tmp_path):
    ref = torch.load(loop.run_program(ToyProgram(), tmp_path / "ref"), weights_only=False)
    for stop in (2, 40):  # inside stage a, inside stage b
        out = tmp_path / f"stop{stop}"
        with pytest.raises(loop.TrainingInterrupted):
            loop.run_program(ToyProgram(), out, stop_after=stop)
        resumed = torch.load(loop.run_program(ToyProgram(), out), weights_only=False)
        assert torch.equal(resumed["w"], ref["w"]), f"resume after {stop} steps changed the result"
        with open(out / loop.LOG_NAME, newline="") as fh:
            rows = [(r["stage"], int(r["iteration"])) for r in csv.DictReader(fh)]
        assert rows == [("a", i) for i in range(1, 31)] + [("b", i) for i in range(1, 21)]
    with open(tmp_path / "ref" / loop.LOG_NAME, newline="") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert losses[-1] < 0.5 * losses[0], losses  # it learned


def test_nan_loss_raises_before_backward_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"toy: loss became nan at b iteration 2; the last good checkpoint"):
        loop.run_program(ToyProgram(nan_at=("b", 2)), tmp_path)
    assert loop.checkpoint_position(tmp_path / loop.CKPT_LATEST) == ("a", 30)
    assert not (tmp_path / loop.CKPT_FINAL).exists()


def test_a_zero_iteration_stage_is_skipped_but_checkpointed(tmp_path):
    final = torch.load(loop.run_program(ToyProgram(iters=(0, 4)), tmp_path), weights_only=False)
    assert final["stage"] == loop.DONE and final["train_seconds"] >= 0


def test_lr_schedules_and_batches():
    assert math.isclose(expon_lr(0, 1e-4, 1e-6, 100), 1e-4)
    assert math.isclose(expon_lr(50, 1e-4, 1e-6, 100), 1e-5, rel_tol=1e-9)
    assert math.isclose(expon_lr(500, 1e-4, 1e-6, 100), 1e-6)
    assert math.isclose(power_decay(100, 0.5, 100), 0.5) and math.isclose(power_decay(50, 0.05, 100), 0.05 ** 0.5)
    seen = np.concatenate([batch_indices(0, 1, it, 2, 6) for it in (1, 2, 3)])
    assert sorted(seen) == list(range(6))  # one epoch = a permutation
    assert np.array_equal(batch_indices(0, 1, 7, 3, 6), batch_indices(0, 1, 7, 3, 6))
    assert not np.array_equal(batch_indices(0, 0, 1, 6, 6), batch_indices(0, 1, 1, 6, 6))
