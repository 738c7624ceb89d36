"""ER-NeRF's stage schedules: the head stage's optional linear warm-up, the lip stage continuing the head's decay
with the head's optimiser, a fresh optimiser for the torso, and how many frames a lip-square step trains on."""
from __future__ import annotations

import math

import pytest
import torch

from gt_core.methods.ernerf.train import ERNeRFProgram
from gt_core.methods.registry import get_method


@pytest.fixture(scope="module")
def cell():
    from test_gaussiantalker import synthetic_cell

    return synthetic_cell()


def program(cell, **overrides) -> ERNeRFProgram:
    method = get_method("ernerf")
    cfg = {**method.resolve_config("tiny", {"iterations_head": 20, "iterations_lips": 10, **overrides}), "seed": 0}
    prog = ERNeRFProgram(cell, cfg, torch.device("cpu"))
    prog.start()
    return prog


def test_head_warmup_ramps_the_lr_linearly_then_follows_the_decay(cell):
    prog = program(cell, lr_warmup_head=5)
    prog.begin_stage("head", None)
    decay = prog.tc.lr_decay_head
    for it in (1, 3, 5, 6, 20):
        expected = min(1.0, it / 5) * decay ** (it / 20)
        assert math.isclose(prog._lr("head", it), expected, rel_tol=1e-12), it
        for g in prog.opt.param_groups:
            assert math.isclose(g["lr"], g["base_lr"] * expected, rel_tol=1e-12)


def test_without_warmup_the_first_step_runs_at_the_full_decayed_lr(cell):
    prog = program(cell, lr_warmup_head=0)
    prog.begin_stage("head", None)
    assert math.isclose(prog._lr("head", 1), prog.tc.lr_decay_head ** (1 / 20), rel_tol=1e-12)


def test_lips_keep_the_head_optimiser_and_torso_gets_its_own(cell):
    prog = program(cell)
    prog.begin_stage("head", None)
    head_opt = prog.opt
    prog.begin_stage("lips", None)
    assert prog.opt is head_opt
    assert all(p.requires_grad for p in prog.model.head.parameters())
    prog.begin_stage("torso", None)
    assert prog.opt is not head_opt
    assert not any(p.requires_grad for p in prog.model.head.parameters())
    torso_params = {id(p) for p in prog.model.torso.parameters()}
    assert all(id(p) in torso_params for g in prog.opt.param_groups for p in g["params"])


def record_lip_squares(prog: ERNeRFProgram) -> list[int]:
    seen: list[int] = []
    square = prog.rays.lip_square

    def recording(i: int):
        seen.append(i)
        return square(i)

    prog.rays.lip_square = recording
    return seen


@pytest.mark.parametrize("lip_frames", [1, 3])
def test_a_lip_square_step_trains_on_lip_frames_distinct_frames(cell, lip_frames):
    from gt_core.engine.batches import batch_indices

    prog = program(cell, lip_frames=lip_frames)
    prog.begin_stage("lips", None)
    seen = record_lip_squares(prog)
    loss, _ = prog.forward("lips", 3)  # odd: a lip-square step
    assert torch.isfinite(loss)
    assert seen == [int(j) for j in batch_indices(0, 1, 3, lip_frames, prog.data.n)]  # stage 1 = lips
    assert len(set(seen)) == lip_frames
    loss.backward()
    grads = [p.grad for p in prog.model.head.audio.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_a_patch_step_stays_on_one_frame(cell):
    prog = program(cell, lip_frames=3)
    prog.begin_stage("lips", None)
    seen = record_lip_squares(prog)
    loss, _ = prog.forward("lips", 2)  # even: a patch step
    assert torch.isfinite(loss) and seen == []


def record_ray_pixels(prog: ERNeRFProgram) -> list[tuple[int, torch.Tensor]]:
    """Each frame's pixel indices the step casts rays through, in order."""
    seen: list[tuple[int, torch.Tensor]] = []
    rays = prog.rays.rays

    def recording(i: int, idx):
        seen.append((i, idx.clone()))
        return rays(i, idx)

    prog.rays.rays = recording
    return seen


@pytest.mark.parametrize("stage, it", [("head", 1), ("head", 2), ("lips", 2)])  # head 1: with the jitter term
@pytest.mark.parametrize("frames_per_step", [1, 4])
def test_a_head_or_patch_step_splits_its_rays_over_frames_per_step_frames(cell, stage, it, frames_per_step):
    from gt_core.engine.batches import batch_indices
    from gt_core.methods.ernerf.train import STAGES

    prog = program(cell, frames_per_step=frames_per_step)
    prog.begin_stage(stage, None)
    seen = record_ray_pixels(prog)
    loss, terms = prog.forward(stage, it)
    assert torch.isfinite(loss)
    assert (terms["smooth"] is not None) == (stage == "head" and it == 1)
    frames = [f for f, _ in seen]
    expected = batch_indices(0, STAGES.index(stage), it, frames_per_step, prog.data.n)
    assert frames == [int(j) for j in expected] and len(set(frames)) == frames_per_step
    per_frame = prog.tc.num_rays // frames_per_step
    if stage == "head":
        assert all(idx.shape[0] == per_frame for _, idx in seen)
    else:  # whole patches: at most the frame's share
        assert all(0 < idx.shape[0] <= per_frame for _, idx in seen)
    loss.backward()
    grads = [p.grad for p in prog.model.head.audio.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_frames_per_step_is_validated():
    from gt_core.methods.ernerf.train import TrainConfig

    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="frames_per_step"):
            TrainConfig(frames_per_step=bad)
    with pytest.raises(ValueError, match="must not exceed num_rays"):
        TrainConfig(num_rays=8, frames_per_step=9)


def test_the_opacity_term_is_the_head_mask_error_of_the_alpha_added_to_the_loss(cell):
    from gt_core.data.cell import LABEL_HEAD

    def step(weight):
        torch.manual_seed(0)
        prog = program(cell, opacity_weight=weight)
        prog.begin_stage("head", None)
        torch.manual_seed(1)
        loss, terms = prog.forward("head", 2)
        return prog, float(loss), terms

    _, plain, terms0 = step(0.0)
    prog, weighted, terms = step(0.5)
    assert terms0["opacity"] is None and terms["opacity"] > 0
    assert math.isclose(weighted - plain, 0.5 * terms["opacity"], rel_tol=1e-4, abs_tol=1e-9)
    # the mask is the segmentation's head label at the rays' pixels
    pix = torch.arange(prog.data.width * prog.data.height)
    mask = prog.rays.head_mask(3, pix).view(prog.data.height, prog.data.width)
    assert torch.equal(mask.bool(), torch.from_numpy(cell.train.labels[3] == LABEL_HEAD))
    assert 0 < float(mask.mean()) < 1



@pytest.mark.parametrize("with_lpips", [False, True])
def test_without_lpips_a_lip_square_step_samples_lip_square_rays_over_its_frames(cell, with_lpips):
    prog = program(cell, lip_frames=4, lip_square_rays=40)
    prog.begin_stage("lips", None)
    if with_lpips:  # the term needs whole squares laid out as images: lip_square_rays does not apply
        prog.lpips = lambda a, t: ((a - t) ** 2).mean(dim=(1, 2, 3))
    seen = record_ray_pixels(prog)
    loss, terms = prog.forward("lips", 3)  # odd: a lip-square step
    assert torch.isfinite(loss) and (terms["lpips"] is not None) == with_lpips
    assert len({i for i, _ in seen}) == 4
    for i, idx in seen:
        square, _ = prog.rays.lip_square(i)
        if with_lpips:
            assert torch.equal(idx, square)
        else:
            assert idx.shape[0] == 10 and bool(torch.isin(idx, square).all())


def test_lip_square_rays_is_validated():
    from gt_core.methods.ernerf.train import TrainConfig

    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="lip_square_rays"):
            TrainConfig(lip_square_rays=bad)
    with pytest.raises(ValueError, match="at least lip_frames"):
        TrainConfig(lip_frames=8, lip_square_rays=7)
