"""ER-NeRF training on the shared engine: head, lip fine-tuning and torso stages (``main.py``, ``nerf_triplane/
utils.py`` ``train_step``; the fact sheet's §4).

**Head** (``paper``: 100,000 its): one training frame per step (a pure function of seed and step), ``num_rays``
random pixels of it (with replacement, as the original's ``torch.randint``), jittered samples through the occupancy
grid (refreshed every 16 steps from one random training frame's audio and eye value), the head composited over the
frame's head-protocol background (ground-truth torso over the plate). Loss, per ray: MSE over RGB weighted by the
uncertainty (0.2 + 0.8·clamp((1 − sf) + sf·w, 0, 10), w = softmax(u)·R) plus its β terms on the face box and the
1e-3 term off it; mean; + 1e-4·binary entropy of the head opacity; + the ambient penalties (audio attention off the
face, eye attention on it); every 16 steps + 1e-5·sf·(jitter smoothness of uncertainty/ambient outputs), with
``sf = step / iterations_head``. Eye values get U(−0.05, 0.05) noise per step; frame ``i`` uses individual code ``i``.

**Lips** (``paper``: 25,000 its, the original's resumed run with ``--finetune_lips``): the optimiser and its state
carry over from the head stage; steps alternate between all pixels of the lip square and ``num_rays / patch²``
random ``patch``² patches; MSE (no uncertainty, no jitter term) + LPIPS-alex (0.01 on the lip square, 0.1 on
patches) **only when the AlexNet backbone weights are cached** (never downloaded; otherwise the term is dropped and
the log and ``train.json`` say why) + the entropy and ambient terms; the grid keeps updating; the LR multiplier is
``0.05^(global/(head + lips))``, continuing the original's resumed scheduler.

**Torso** (``paper``: 200,000 its, the original's separate ``--torso`` run): the head is frozen; a fresh AdamW on
the torso groups; random pixels; target = the frame's ground-truth torso over the plate (``bg_torso_color``); loss =
MSE of ``torso·α + plate·(1 − α)`` + the anchor regulariser (the original's alpha-entropy block after it never runs);
the 2-D torso occupancy refreshed every 16 steps; LR multiplier ``0.5^(step/iterations_torso)``.

**Optimiser**: AdamW, betas (0, 0.99), eps 1e-8, the field's groups (grids 1e-2 with AdamW's default weight decay
0.01, nets 1e-3, audio attention 5e-3 with 1e-4), LambdaLR ``0.5^(step/iterations_head)`` in the head stage.

Deviations (each with its reason):

* No EMA of the weights: the original's ``--test`` evaluation loads the raw ``ngp_ep*.pth`` weights (its EMA,
  updated every 1,000 steps, only feeds validation and ``ngp.pth``), so evaluation follows the raw weights.
* No AMP (fp16) and no CUDA ray marcher: the shared pure-torch volume renderer (its own deviations in
  :mod:`gt_core.render.volume`: a fixed ``n_steps`` lattice over the box chord that the grid only thins).
* The field's box is a cube around the subject's canonical face mesh (``head_box_scale`` × its largest half extent,
  centred on the mesh) in the head frame, metres; the original's box is fixed in its NGP world.
* Audio features other than DeepSpeech are standardised with the training frames' statistics (the original feeds
  DeepSpeech logits raw; ``audio_normalisation``, the same rule as GaussianTalker).
* Patch and lip-square sizes scale with the working resolution (``patch_px512`` = 32 at 512 px).
* ``lip_frames`` (1 = the original): a lip-square step may train on the lip squares of several frames (the stage's
  next ``lip_frames`` frames of its per-epoch permutation), each with its own audio code, eye value and camera, the
  loss over all their rays, rendered in one pass (per-ray codes). At 512 px one frame's lip square is ~7,700 rays;
  at 128 px it is ~600, under half the ``demo`` step's 1,536, so one frame per step gives the mouth a third of the
  supervision the patch steps give the rest of the face. Measured in ``method.py``: 2 whole squares gave better
  LMD than 1 on the demo subject and on two real clips, 3 cost mouth_sync on real clips; ``demo`` now sets 8 with
  ``lip_square_rays`` (below), which keeps the step's rays and spreads them over more frames.
* ``lip_square_rays`` (0 = the original: every pixel of each square): when the LPIPS term is dropped (its AlexNet
  weights not cached), a lip-square step may instead draw this many rays uniformly, with replacement, from its
  ``lip_frames`` frames' lip squares (an equal share each). The original renders whole squares because LPIPS needs
  them laid out as images; the MSE that remains without it is a per-ray mean, which a uniform sample of the square
  estimates without bias, so the same rays can come from more frames, each with its own audio code. With the term
  active the squares stay whole whatever this says. ``demo`` sets 8 frames × 150 rays (measured in ``method.py``).
* ``frames_per_step`` (1 = the original): a head step or a lip-stage patch step splits its ``num_rays`` evenly over
  that many frames (the stage's per-epoch permutation, as ``lip_frames``), rendered in one pass with per-ray codes.
  The original's step takes 65,536 rays of one frame; with AdamW's β1 = 0 each update is then that one frame's
  audio code's gradient alone, which a 100,000-step run averages out and a 600-step one does not. The jitter term
  is evaluated with the first frame's values: the outputs it smooths (uncertainty, ambient) do not depend on them.
* SyncTalk's switches (each off, i.e. ER-NeRF's, by default; ``gt_core.methods.synctalk`` sets them, with refs):
  ``criterion`` (``l1``: the photometric, lip and jitter terms use L1), ``unc_beta_weight`` / ``unc_static_weight``
  (0.01 / 0.01), ``ambient_masks`` (``lower_face``: :func:`~gt_core.methods.ernerf.losses.lower_face_penalties`),
  ``head_pose`` (``stabilised``: the head-sync stabiliser's cameras, usable by ER-NeRF too, so its effect can be
  measured apart), and in :class:`~gt_core.methods.ernerf.model.ModelConfig` ``audio_source`` (``ave``) and
  ``expression`` (``upper_face``). The lip-stage LPIPS terms are the same in both originals.
* ``opacity_weight`` (0 = the original: no such term): head and lip steps may add ``w · mean((α − m)²)`` with ``m``
  the ray's pixel in the segmentation's head label, for budgets too short for the alpha entropy to make the head
  opaque. Measured in ``method.py``; no preset sets it.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from gt_core.data.cell import CellData, ave_features_path
from gt_core.errors import InputError
from gt_core.engine.batches import batch_indices
from gt_core.engine.frames import HEAD_POSES, FrameData
from gt_core.engine.loop import CKPT_FINAL, CKPT_LATEST, LOG_NAME, Program, TrainingInterrupted, run_program
from gt_core.engine.schedules import power_decay
from gt_core.engine.state import load_model_checkpoint
from gt_core.methods.base import known_fields
from gt_core.methods.ernerf import losses as L
from gt_core.methods.ernerf.field import HeadFieldConfig
from gt_core.methods.ernerf.model import ERNeRFModel, ModelConfig, build_model, model_record, new_model
from gt_core.methods.ernerf.render import HeadRays, render_head_rays
from gt_core.methods.ernerf.rays import FrameRays
from gt_core.methods.ernerf.torso import anchor_loss, render_torso

log = logging.getLogger(__name__)

STAGES = ("head", "lips", "torso")
AMBIENT_MASKS = ("face", "lower_face")
OPTIMISER_OF = {"head": "head", "lips": "head", "torso": "torso"}  # the stage -> whose optimiser it steps
FORMAT = "ernerf-v1"
__all__ = ["CKPT_FINAL", "CKPT_LATEST", "LOG_NAME", "TrainingInterrupted", "ERNeRFProgram", "train", "TrainConfig"]


@dataclass
class TrainConfig:
    """Training hyper-parameters (the presets in ``method.py`` fill every field)."""

    seed: int = 0
    iterations_head: int = 100000
    iterations_lips: int = 25000
    iterations_torso: int = 200000
    num_rays: int = 65536  # pixels per step (at 512 px: a quarter of the frame)
    patch_px512: int = 32  # lip-stage patch side at 512 px (scaled with the resolution)
    lr_grid: float = 1e-2
    lr_net: float = 1e-3
    lr_decay_head: float = 0.5  # LambdaLR 0.5^(step/iters)
    lr_warmup_head: int = 0  # linear LR warm-up over the first head steps (0 = the original: none)
    lr_decay_lips: float = 0.05  # 0.05^(step/iters) in the resumed lip run
    lr_decay_torso: float = 0.5
    eye_noise: float = 0.05  # ± uniform noise on the eye value in training
    unc_loss: bool = True
    opacity_weight: float = 0.0  # head and lip stages: + this · mean((α − head mask)²) (0 = the original: none)
    lpips_rect: float = 0.01
    lpips_patch: float = 0.1
    extra_interval: int = 16  # occupancy / torso-occupancy refresh and the jitter regulariser
    jitter_points: int = 4096  # samples the jitter regulariser evaluates (the original: all of the step's)
    audio_normalisation: str = "auto"
    individual_codes: bool = True  # frame i trains with code i (the original); False: code 0 throughout
    lip_frames: int = 1  # frames whose lip squares one lip-square step trains on (1 = the original)
    lip_square_rays: int = 0  # without the LPIPS term: a lip-square step's rays, drawn in its frames' squares (0: all)
    frames_per_step: int = 1  # frames a head / patch step splits its num_rays over (1 = the original)
    criterion: str = "mse"  # photometric error per ray: "mse" (ER-NeRF) or "l1" (SyncTalk)
    unc_beta_weight: float = 1.0  # weight of the uncertainty β terms (ER-NeRF 1; SyncTalk 0.01)
    unc_static_weight: float = 1e-3  # weight of the off-face uncertainty term (ER-NeRF 1e-3; SyncTalk 0.01)
    ambient_masks: str = "face"  # attention penalties: "face" (ER-NeRF's) or "lower_face" (SyncTalk's)
    head_pose: str = "tracker"  # cameras: "tracker" (the pose rule's) or "stabilised" (the head-sync stabiliser's)
    checkpoint_every: int = 1000
    render_chunk: int = 8192

    def __post_init__(self) -> None:
        for name, low in (("lip_frames", 1), ("frames_per_step", 1), ("lip_square_rays", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"TrainConfig.{name} must be an int >= {low}, got {value!r}")
        if 0 < self.lip_square_rays < self.lip_frames:
            raise ValueError(f"TrainConfig.lip_square_rays ({self.lip_square_rays}) must be 0 or at least lip_frames "
                             f"({self.lip_frames}): each frame draws lip_square_rays // lip_frames rays")
        for name, allowed in (("criterion", L.CRITERIA), ("ambient_masks", AMBIENT_MASKS), ("head_pose", HEAD_POSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.frames_per_step > self.num_rays:
            raise ValueError(f"TrainConfig.frames_per_step ({self.frames_per_step}) must not exceed num_rays "
                             f"({self.num_rays})")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "TrainConfig":
        return cls(**known_fields(cls, cfg))


class StepRays(NamedTuple):
    """One step's rays through the head, with what the losses need of them."""

    out: HeadRays
    target: Tensor  # [R, 3]
    face: Tensor  # [R] bool, inside the frame's face box
    head_mask: Tensor  # [R] float, 1 on the frame's head pixels
    code: Tensor  # [dim_aud] (one frame) or [R, dim_aud]
    eye: Tensor  # [] or [R]
    code_index: int | Tensor | None  # the individual code(s): an int or None (one frame) or [R]
    counts: list[int]  # rays per frame, in frame order
    shapes: list[tuple[int, int, int] | None]  # per frame: the (B, h, w) layout of its rays (lip stage)
    lower_face: Tensor  # [R] bool, inside the frame's lower-face box (SyncTalk's attention masks)


class ERNeRFProgram(Program):
    """ER-NeRF's three stages on the shared engine (module docstring)."""

    name = "ernerf"
    format = FORMAT
    stages = STAGES
    log_fields = ("mse", "unc", "lpips", "entropy", "amb_aud", "amb_eye", "smooth", "anchor", "opacity", "lr_mult",
                  "occupied")

    def __init__(self, cell: CellData, cfg: dict[str, Any], device: torch.device):
        self.cell, self.device, self.cfg = cell, torch.device(device), dict(cfg)
        self.tc = TrainConfig.from_dict(cfg)
        self.seed, self.checkpoint_every = self.tc.seed, self.tc.checkpoint_every
        self.mcfg = ModelConfig.from_dict(cfg)
        self.data = frame_data(cell, "train", self.device, self.mcfg, self.tc.head_pose)
        self.eyes = eye_values(self.data, self.mcfg)  # [N] or [N, 7]
        self.rays = FrameRays(self.data, cell)
        self.plate = torch.from_numpy(np.ascontiguousarray(cell.plate)).to(self.device).float() / 255.0  # [H,W,3]
        self.model: ERNeRFModel | None = None
        self.lpips = None
        self._opt_owner: str | None = None  # whose parameters self.opt holds

    def iterations(self, stage: str) -> int:
        return {"head": self.tc.iterations_head, "lips": self.tc.iterations_lips,
                "torso": self.tc.iterations_torso}[stage]

    # ----------------------------------------------------------------------------------------- model lifecycle
    def start(self) -> None:
        self.model = new_model(self.cell, self.cfg, self.device, audio_inputs(self.cell, "train", self.mcfg))
        self._prepare()

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model = build_model(ckpt["record"], ckpt["model"], self.device)
        self._prepare()

    def _prepare(self) -> None:
        from gt_core.metrics.lpips_metric import LpipsMetric

        metric = LpipsMetric(self.device) if self.tc.iterations_lips > 0 else None
        if metric is not None and metric.available:
            self.lpips, self.lpips_status = metric.model, "lpips: active (AlexNet backbone cached)"
        else:
            reason = metric.reason if metric is not None else "no lip stage"
            self.lpips, self.lpips_status = None, f"lpips: dropped from the lip stage ({reason})"
            if self.tc.iterations_lips > 0 and self.tc.lip_square_rays > 0:
                self.lpips_status += (f"; lip-square steps draw {self.tc.lip_square_rays} rays from "
                                      f"{self.tc.lip_frames} frames' lip squares")
        log.info("%s: %s", self.name, self.lpips_status)

    def begin_stage(self, stage: str, ckpt: dict[str, Any] | None) -> None:
        m, owner = self.model, OPTIMISER_OF[stage]
        if owner != self._opt_owner:  # a fresh optimiser for head and torso; lips go on with the head's and its state
            module = m.head if owner == "head" else m.torso
            self.opt = torch.optim.AdamW(module.param_groups(self.tc.lr_grid, self.tc.lr_net), betas=(0.0, 0.99),
                                         eps=1e-8)
            self._opt_owner = owner
            for g in self.opt.param_groups:
                g["base_lr"] = g["lr"]
        m.head.requires_grad_(owner == "head")
        if ckpt is not None:
            self.opt.load_state_dict(ckpt["optimizer"])
        m.train()

    # ------------------------------------------------------------------------------------------------ one step
    def _lr(self, stage: str, it: int) -> float:
        tc = self.tc
        if stage == "head":
            mult = power_decay(it, tc.lr_decay_head, tc.iterations_head)
            if tc.lr_warmup_head > 0:
                mult *= min(1.0, it / tc.lr_warmup_head)
        elif stage == "lips":
            mult = power_decay(tc.iterations_head + it, tc.lr_decay_lips, tc.iterations_head + tc.iterations_lips)
        else:
            mult = power_decay(it, tc.lr_decay_torso, tc.iterations_torso)
        for g in self.opt.param_groups:
            g["lr"] = g["base_lr"] * mult
        return mult

    def forward(self, stage: str, it: int) -> tuple[Tensor, dict[str, Any]]:
        tc, m, data = self.tc, self.model, self.data
        self._mult = self._lr(stage, it)
        i = int(batch_indices(tc.seed, STAGES.index(stage), it, 1, data.n)[0])
        if (it - 1) % tc.extra_interval == 0:  # the original: global_step % 16 == 0 before the step, from step 0
            self._refresh_grids(stage)
        if stage == "torso":
            return self._torso_loss(i)
        rect = stage == "lips" and it % 2 == 1
        n_frames = tc.lip_frames if rect else tc.frames_per_step
        frames = [i]
        if n_frames > 1:
            frames = batch_indices(tc.seed, STAGES.index(stage), it, n_frames, data.n).tolist()
        step = self._step_rays(stage, frames, rect)
        out, target, face = step.out, step.target, step.face
        terms: dict[str, Any] = {"lpips": None, "unc": None, "smooth": None, "anchor": None, "opacity": None}
        err = L.photometric(out.rgb, target, tc.criterion)  # [R]
        mse = err if tc.criterion == "mse" else L.photometric(out.rgb, target, "mse")  # [R], logged either way
        terms["mse"] = float(mse.mean().detach())
        if stage == "head" and tc.unc_loss:
            sf = L.step_factor(it, tc.iterations_head)
            per_ray = L.uncertainty_photometric(out.rgb, target, out.uncertainty, face, sf, tc.criterion,
                                                tc.unc_beta_weight, tc.unc_static_weight)
            terms["unc"] = float(out.uncertainty.mean().detach())
        else:
            sf = L.step_factor(tc.iterations_head + it, tc.iterations_head + tc.iterations_lips)
            per_ray = err
        loss = per_ray.mean()
        if stage == "lips" and self.lpips is not None:
            rgbs, targets = out.rgb.split(step.counts), target.split(step.counts)
            lp = torch.stack([self._lpips(o, t, sh) for o, t, sh in zip(rgbs, targets, step.shapes)]).mean()
            loss = loss + (tc.lpips_rect if rect else tc.lpips_patch) * lp
            terms["lpips"] = float(lp.detach())
        if tc.opacity_weight > 0:
            opacity = ((out.alpha - step.head_mask) ** 2).mean()
            loss = loss + tc.opacity_weight * opacity
            terms["opacity"] = float(opacity.detach())
        entropy = L.alpha_entropy(out.alpha)
        if tc.ambient_masks == "lower_face":
            aud, eye_term = L.lower_face_penalties(out.ambient_aud, out.ambient_eye, step.lower_face, sf)
        else:
            aud, eye_term = L.ambient_penalties(out.ambient_aud, out.ambient_eye, face, sf, m.n_steps)
        loss = loss + L.ENTROPY_WEIGHT * entropy + aud + eye_term
        terms.update(entropy=float(entropy.detach()), amb_aud=float(aud.detach()), amb_eye=float(eye_term.detach()))
        if stage == "head" and (it - 1) % tc.extra_interval == 0 and out.points.shape[0] > 0:
            keep = torch.randperm(out.points.shape[0], device=self.device)[:tc.jitter_points]
            pts, dirs_s = out.points[keep].detach(), out.sample_dirs[keep]
            code_d, eye, ci = step.code.detach(), step.eye, step.code_index
            if len(step.counts) > 1:  # per-ray values; the jittered outputs (uncertainty, ambient) do not depend on
                code_d, eye, ci = code_d[0], eye[0], (None if ci is None else ci[0])  # them: the first ray's
            smooth = L.jitter_smoothness(lambda p: m.head(p, dirs_s, code_d, eye, ci), pts, criterion=tc.criterion)
            loss = loss + L.JITTER_WEIGHT * sf * smooth
            terms["smooth"] = float(smooth.detach())
        return loss, terms

    def _step_rays(self, stage: str, frames: list[int], rect: bool) -> StepRays:
        """The step's rays of ``frames`` (one frame unless ``lip_frames`` / ``frames_per_step`` > 1) through the head
        in one pass, each ray with its frame's audio code, noisy eye value and individual code."""
        tc, m, data = self.tc, self.model, self.data
        eyes = [self.eyes[j] + (torch.rand(self.eyes[j].shape, device=self.device) - 0.5) * 2 * tc.eye_noise
                for j in frames]
        codes = m.audio_code(data.audio_ctx[frames])  # [F, dim_aud]
        pieces, shapes = [], []
        per_frame = tc.num_rays // len(frames)  # head and patch steps split the step's rays over the frames
        sampled = rect and self.lpips is None and tc.lip_square_rays > 0  # no image layout needed: sample squares
        for j in frames:
            if sampled:
                pix, shape = self.rays.lip_square_sample(j, tc.lip_square_rays // len(frames)), None
            elif stage == "lips":
                pix, shape = self.rays.lip_square(j) if rect else self.rays.patches(per_frame, tc.patch_px512)
            else:
                pix, shape = self.rays.random_pixels(per_frame), None
            origins, dirs = self.rays.rays(j, pix)
            pieces.append((origins, dirs, self.rays.background(j, pix), self.rays.target(j, pix),
                           self.rays.in_face_box(j, pix), self.rays.head_mask(j, pix),
                           self.rays.in_lower_face_box(j, pix)))
            shapes.append(shape)
        origins, dirs, bg, target, face, head_mask, lower_face = (torch.cat(t) for t in zip(*pieces))
        counts = [p[0].shape[0] for p in pieces]
        if len(frames) == 1:  # one frame: shared code and eye value (the original's step)
            code, eye, ci = codes[0], eyes[0], (frames[0] if tc.individual_codes else None)
        else:  # per ray
            reps = torch.tensor(counts, device=self.device)
            code, eye = codes.repeat_interleave(reps, dim=0), torch.stack(eyes).repeat_interleave(reps, dim=0)
            ci = torch.tensor(frames, device=self.device).repeat_interleave(reps) if tc.individual_codes else None
        out = render_head_rays(m.head, origins, dirs, bg, code, eye, ci, m.n_steps, m.grid, True, m.t_thresh,
                               m.min_near, use_uncertainty=tc.unc_loss and stage == "head")
        return StepRays(out, target, face, head_mask, code, eye, ci, counts, shapes, lower_face)

    def _lpips(self, pred: Tensor, target: Tensor, shape: tuple[int, ...]) -> Tensor:
        """LPIPS-alex between the rays laid out as images (``shape`` = (B, h, w)), inputs in [-1, 1]."""
        b, h, w = shape
        to_img = lambda x: x.view(b, h, w, 3).permute(0, 3, 1, 2) * 2 - 1  # noqa: E731
        pad = max(0, 32 - h), max(0, 32 - w)  # the original zero-pads the lip square to >= 32 px
        a, t = to_img(pred), to_img(target)
        if any(pad):
            a = torch.nn.functional.pad(a, (0, pad[1], 0, pad[0]))
            t = torch.nn.functional.pad(t, (0, pad[1], 0, pad[0]))
        return self.lpips(a, t).mean()

    def _torso_loss(self, i: int) -> tuple[Tensor, dict[str, Any]]:
        tc, m = self.tc, self.model
        pix = self.rays.random_pixels(tc.num_rays)
        coords = self.rays.torso_coords(pix)
        pred, _ = render_torso(m.torso, m.torso_grid, coords, self.data.c2w[i], i, self.rays.plate(pix))
        target = self.rays.background(i, pix)
        mse = ((pred - target) ** 2).mean()
        anchor = anchor_loss(m.torso)
        return mse + anchor, {"mse": float(mse.detach()), "anchor": float(anchor.detach()), "lpips": None,
                              "unc": None, "smooth": None, "entropy": None, "amb_aud": None, "amb_eye": None,
                              "opacity": None}

    @torch.no_grad()
    def _refresh_grids(self, stage: str) -> None:
        """The original's ``update_extra_state``: the head grid (head and lip stages) or the torso grid, from one
        random training frame (the global RNG, restored on resume)."""
        m, data = self.model, self.data
        j = int(torch.randint(0, data.n, ()).item())
        if stage == "torso":
            c2w = data.c2w[j]
            m.torso_grid.update(lambda coords: m.torso(coords, c2w, j).alpha, step=0, force=True)
            return
        code = m.audio_code(data.audio_ctx[j:j + 1])[0]
        m.grid.update(lambda p: m.head.density(p, code, self.eyes[j]), step=0, force=True)

    def update(self, stage: str, it: int, loss: Tensor) -> dict[str, Any]:
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"lr_mult": self._mult, "occupied": float(self.model.grid.occupied.float().mean())}

    # ----------------------------------------------------------------------------------------------- records
    def state(self, stage: str) -> dict[str, Any]:
        return {"record": model_record(self.model), "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "train_config": asdict(self.tc),
                "lpips": self.lpips_status}

    def final(self) -> dict[str, Any]:
        cell = self.cell
        return {"record": model_record(self.model), "model": self.model.state_dict(), "train_config": asdict(self.tc),
                "lpips": self.lpips_status,
                "cell": {"subject": cell.subject, "duration_s": cell.duration_s, "width": cell.width,
                         "height": cell.height, "train_frame_ids": cell.train.frame_ids.tolist()}}

    def progress(self) -> dict[str, Any]:
        return {"occ": f"{float(self.model.grid.occupied.float().mean()):.3f}"}

    def summary(self) -> str:
        return self.lpips_status


def audio_inputs(cell: CellData, which: str, mcfg: ModelConfig) -> np.ndarray:
    """The model's per-frame audio input of ``cell.train`` / ``cell.test``: ``[N, 16, C]`` (the cell's windows) or
    ``[N, 1, 512]`` (the AVE features, ``audio_source: ave``)."""
    fs = getattr(cell, which)
    if mcfg.audio_source != "ave":
        return np.asarray(fs.audio, np.float32)
    if fs.ave is None:
        path = ave_features_path(cell.cell_dir)
        raise InputError(path, "AVE audio features missing (audio_source: ave)",
                         f"run `snakemake {path}` (rule ave) first")
    return np.asarray(fs.ave, np.float32)[:, None, :]


def frame_data(cell: CellData, which: str, device: torch.device, mcfg: ModelConfig, head_pose: str) -> FrameData:
    """``cell.train`` / ``cell.test`` on ``device`` with the model's audio input (:func:`audio_inputs`) and the
    chosen head pose."""
    return FrameData(cell, which, device, HeadFieldConfig.audio_context, audio=audio_inputs(cell, which, mcfg),
                     head_pose=head_pose)


def eye_values(data: FrameData, mcfg: ModelConfig) -> Tensor:
    """The field's expression input per frame: ``[N]`` blink values or ``[N, 7]`` brow/blink values."""
    return data.expression if mcfg.expression == "upper_face" else data.eye


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[ERNeRFModel, dict]:
    """``checkpoint.pt`` (or ``ckpt_latest.pt``) → (model on ``device`` in eval mode, the whole record)."""
    return load_model_checkpoint(path, FORMAT, build_model, device)


def train(cell: CellData, cfg: dict[str, Any], out_dir: str | Path, device: torch.device,
          stop_after: int | None = None, name: str = "ernerf") -> Path:
    """Train ER-NeRF (or a method on its stack, ``name``: its logs' label) on ``cell.train``; returns the final
    checkpoint (resumes from ``ckpt_latest.pt``)."""
    program = ERNeRFProgram(cell, cfg, device)
    program.name = name
    return run_program(program, out_dir, stop_after)
