"""GaussianTalker training: canonical stage, bake, deformation stage (original-methods.md §1.4).

**Stage 1 — canonical** (``paper``: 7,999 its, batch 1). The Gaussians are rendered without deformation from a
training frame's tracked camera; opacity and SH (and in the paper's variant scale/rotation residuals) come from F_can
on the tri-plane features at every step. Gaussians are densified (clone small / split large) and pruned on the
accumulated screen-space gradient. At the end F_can's outputs are baked into the free parameters
(:meth:`GaussianTalkerModel.bake`) and the optimiser is rebuilt.

**Stage 2 — deformation** (``paper``: 10,000 its, batch 32 frames). Every frame's Gaussians are the canonical ones
plus the offsets predicted by the spatial-audio attention from the frame's audio context, eye value and camera.

**Loss** (both stages): ``0.8·L1 + 0.2·(1 − SSIM) + 0.4·L1(lip box) [+ 0.01·VGG16 perceptual]`` between the render
composited over the frame's head-protocol background (ground-truth torso over the plate, passed to the rasterizer
as its per-pixel background) and the head-protocol target. The VGG term is used only when its weights are already
cached (never downloaded); the log and checkpoint say which. The original's ``0.4·L1(sigmoid(depth)·2−1, mask)``
depth term is **dropped**: its rasterizer discards the depth gradient, so the term never changed any parameter.

**Optimiser**: Adam (eps 1e-15) with the original's groups: ``xyz`` 1.6e-4→1.6e-6, network MLPs ("deformation"
group: F_can, condition encoders, attention, offset heads) 1e-4→1e-5 and tri-plane ``grid`` 1.6e-3→1.6e-4, each
decayed log-linearly over ``lr_max_steps`` (the original's 20,000, scaled with the preset) and restarted in each
stage; ``f_dc`` 2.5e-3, ``f_rest`` 1.25e-4, ``opacity`` 0.05, ``scaling`` 5e-3, ``rotation`` 1e-3 constant.
*Spatial LR scale.* The original multiplies the xyz, network and grid LRs by ``cameras_extent`` = 1.1 × the largest
distance of a training camera centre from their mean, in its world (the tracked head frame, tracker units ≈
decimetres), and uses the same extent for the densification thresholds (``percent_dense``·extent, ``0.1``·extent).
We compute it the same way in our head frame (``extent: camera``, :func:`camera_extent`, metres; floored at
``min_extent`` = 2 cm so that a speaker who never moves does not get a zero LR): the xyz LR and the thresholds use
it in metres, the network and grid LRs use it in the original's units (metres / ``xyz_offset_unit``), times the
preset's ``network_lr_scale`` (1 in ``paper``). Measured camera extents: demo subject 0.203 m (camera ≈ 2 m
away), the four HDTF clips 0.13–0.29 m (camera 0.6–0.7 m away), i.e. 0.8–1.8 head widths — the order of the
original's (head ≈ 1.6 tracker units). ``extent: cloud`` (the initial cloud's AABB diagonal: 0.344 m on the demo
subject, 1.7× its camera extent, 2.4 head widths) was this module's earlier choice; it stays for the ``tiny``/``small``
presets, whose few, large Gaussians the world-scale prune at 0.1 × a camera extent would remove. On the demo 10 s
cell's canonical stage both extents fill the 6,000 cap; median Gaussian scale 2.1 mm (camera) vs 3.1 mm (cloud).
``init_stats`` in the checkpoint (and ``train_info`` in ``train.json``) record both values for every run.

*Audio.* The original feeds the DeepSpeech logits raw; ``audio_normalisation: auto`` does the same for
``deepspeech`` and standardises the other features (log-mel in dB, wakeword embeddings) per channel with the
training frames' mean and std, whose raw scales are unrelated to DeepSpeech's logits.

**Densification** (canonical stage only): :mod:`.densify`.

**Engine**: :class:`GaussianTalkerProgram` is this method's :class:`~gt_core.engine.loop.Program`; the shared
engine runs the stage loop, resume from ``ckpt_latest.pt`` (model, optimiser, densification statistics, RNG states,
stage and iteration, bit-identical on the CPU), periodic atomic checkpoints every ``checkpoint_every`` its and at
each stage's end, the NaN/inf guard (:class:`~gt_core.errors.TrainingDiverged`, the last good checkpoint kept) and
``train_log.csv`` (stage, iteration, loss terms, Gaussian count, LRs, SH degree, seconds). Batches are a pure
function of (seed, stage, epoch) (:func:`gt_core.engine.batches.batch_indices`). The final ``checkpoint.pt`` holds
what rendering needs.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gt_core.data.cell import CellData
from gt_core.engine.batches import batch_indices
from gt_core.engine.frames import FrameData
from gt_core.engine.loop import CKPT_FINAL, CKPT_LATEST, LOG_NAME, Program, TrainingInterrupted, run_program
from gt_core.engine.schedules import expon_lr
from gt_core.engine.state import load_model_checkpoint
from gt_core.methods.gaussiantalker.config import TrainConfig
from gt_core.methods.gaussiantalker.densify import POINT_GROUPS, Densifier, densify_prune
from gt_core.methods.gaussiantalker.init import (  # noqa: F401  (camera_extent etc. are part of this API)
    camera_extent,
    cloud_diagonal,
    init_model,
    scene_extent,
    standardises_audio,
)
from gt_core.methods.gaussiantalker.model import SH_DEGREE, GaussianState, GaussianTalkerModel, ModelConfig
from gt_core.nn.losses import l1_loss, lip_l1, load_vgg16_perceptual, ssim
from gt_core.render.cameras import Camera
from gt_core.render.gaussians import rasterize_gaussians

log = logging.getLogger(__name__)

STAGES = ("canonical", "deform")
FORMAT = "gaussiantalker-v1"
__all__ = ["CKPT_FINAL", "CKPT_LATEST", "LOG_NAME", "TrainingInterrupted", "GaussianTalkerProgram", "train"]


# ------------------------------------------------------------------------------------------------------- render
def render_states(states: list[GaussianState], cameras: list[Camera], backgrounds: Tensor, sh_degree: int,
                  backend: str = "auto") -> tuple[Tensor, list]:
    """Rasterize one Gaussian set per camera over ``backgrounds`` [B, 3, H, W] → ([B, 3, H, W], raster outputs)."""
    images, outs = [], []
    for state, cam, bg in zip(states, cameras, backgrounds):
        colors = state.shs  # [N, 16, 3]
        out = rasterize_gaussians(state.xyz, state.quats, state.scales, state.opacities, colors, cam, bg,
                                  sh_degree=sh_degree, backend=backend)
        images.append(out.color)
        outs.append(out)
    return torch.stack(images), outs


# ------------------------------------------------------------------------------------------------ optimisation
def build_optimizer(model: GaussianTalkerModel, tc: TrainConfig) -> torch.optim.Adam:
    lrs = {"xyz": tc.lr_xyz_init, "f_dc": tc.lr_f_dc, "f_rest": tc.lr_f_rest, "opacity": tc.lr_opacity,
           "scaling": tc.lr_scaling, "rotation": tc.lr_rotation}
    groups = [{"params": [getattr(model, attr)], "lr": lrs[name], "name": name} for name, attr in POINT_GROUPS.items()]
    groups.append({"params": model.network_parameters(), "lr": tc.lr_network_init, "name": "network"})
    groups.append({"params": model.grid_parameters(), "lr": tc.lr_grid_init, "name": "grid"})
    return torch.optim.Adam(groups, lr=0.0, eps=1e-15)


@dataclass(frozen=True)
class LrScales:
    """The original's ``spatial_lr_scale`` (= its cameras_extent) in our units: ``xyz`` multiplies the position LR
    (the extent in metres, positions being metres), ``network`` the deformation-network and grid LRs (the extent in
    the original's tracker units, metres / ``xyz_offset_unit``, times the preset's ``network_lr_scale``)."""

    xyz: float
    network: float

    @classmethod
    def of(cls, model: GaussianTalkerModel, tc: TrainConfig) -> "LrScales":
        extent = float(model.scene_extent)
        return cls(extent, tc.network_lr_scale * extent / model.cfg.xyz_offset_unit)


def set_learning_rates(opt: torch.optim.Adam, tc: TrainConfig, stage: str, iteration: int,
                       scales: LrScales) -> dict[str, float]:
    max_steps = tc.lr_max_steps_canonical if stage == "canonical" else tc.lr_max_steps_deform
    xyz, net = scales.xyz, scales.network
    lrs = {
        "xyz": expon_lr(iteration, tc.lr_xyz_init * xyz, tc.lr_xyz_final * xyz, max_steps),
        "network": expon_lr(iteration, tc.lr_network_init * net, tc.lr_network_final * net, max_steps),
        "grid": expon_lr(iteration, tc.lr_grid_init * net, tc.lr_grid_final * net, max_steps),
    }
    for g in opt.param_groups:
        if g["name"] in lrs:
            g["lr"] = lrs[g["name"]]
    return lrs


# --------------------------------------------------------------------------------------------------------- loss
class PhotometricLoss:
    """0.8·L1 + 0.2·(1 − SSIM) + 0.4·lip L1 [+ 0.01·VGG] (weights from the config)."""

    def __init__(self, tc: TrainConfig, device: torch.device):
        self.tc = tc
        self.vgg, self.vgg_status = (None, "vgg: disabled (lambda_vgg = 0)")
        if tc.lambda_vgg > 0:
            self.vgg, self.vgg_status = load_vgg16_perceptual(device)

    @property
    def perceptual(self) -> dict[str, Any]:
        """Whether the 0.01·VGG16 term is in the loss, and why (train.json, provenance, the train log)."""
        return {"active": self.vgg is not None, "weight": self.tc.lambda_vgg, "status": self.vgg_status}

    def __call__(self, pred: Tensor, target: Tensor, boxes: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``pred``/``target`` [B, 3, H, W], ``boxes`` [B, 4] lip boxes."""
        tc = self.tc
        l1 = l1_loss(pred, target)
        dssim = 1.0 - ssim(pred, target)
        lip = lip_l1(pred, target, boxes)
        total = tc.lambda_l1 * l1 + tc.lambda_dssim * dssim + tc.lambda_lip * lip
        terms = {k: float(v.detach()) for k, v in (("l1", l1), ("dssim", dssim), ("lip", lip))}
        terms["vgg"] = None  # an empty cell of train_log.csv: the term is not in the loss
        if self.vgg is not None:
            vgg = self.vgg(pred, target)
            total = total + tc.lambda_vgg * vgg
            terms["vgg"] = float(vgg.detach())
        return total, terms


def compute_loss(loss_fn: PhotometricLoss, pred: Tensor, target: Tensor, boxes: Tensor
                 ) -> tuple[Tensor, dict[str, float]]:
    """The training loss of one batch (a module-level hook, so tests can inject a divergence)."""
    return loss_fn(pred, target, boxes)


def forward_batch(model: GaussianTalkerModel, data: FrameData, idx: np.ndarray, stage: str, sh_degree: int,
                  backend: str = "auto", features: Tensor | None = None, canonical: GaussianState | None = None
                  ) -> tuple[Tensor, list, Tensor | None]:
    """Render frames ``idx`` of ``data``: the canonical Gaussians (``stage == "canonical"``) or the deformed ones.

    ``features``/``canonical`` may be passed in cached (rendering). Returns images [B, 3, H, W] composited over the
    frames' backgrounds, the raster outputs, and the attention weights [B, N, 4] (None in the canonical stage).
    """
    idx_t = torch.from_numpy(np.asarray(idx)).to(data.device)
    feats = model.features() if features is None else features  # [N, 64]
    canon = model.canonical(feats) if canonical is None else canonical
    weights = None
    if stage == "canonical":
        states = [canon] * len(idx)
    else:
        deformed, weights = model.deform(canon, feats, data.audio_ctx[idx_t], data.eye[idx_t], data.viewmats[idx_t])
        states = [deformed.frame(b) for b in range(len(idx))]
    bgs = FrameData.image(data.backgrounds[idx_t])
    pred, outs = render_states(states, [data.cameras[int(i)] for i in idx], bgs, sh_degree, backend)
    return pred, outs, weights


@torch.no_grad()
def render_frames(model: GaussianTalkerModel, data: FrameData, sh_degree: int, batch: int, backend: str = "auto"
                  ) -> tuple[Tensor, Tensor]:
    """Every frame of ``data`` deformed and rendered in batches, tri-plane features and canonical attributes
    computed once. Returns uint8 frames [N, H, W, 3] and the mean attention per token [N, 4], on the device."""
    was_training = model.training
    model.eval()
    feats = model.features()
    canon = model.canonical(feats)
    chunks, att = [], []
    for lo in range(0, data.n, max(1, batch)):
        idx = np.arange(lo, min(lo + batch, data.n))
        images, _, weights = forward_batch(model, data, idx, "deform", sh_degree, backend, feats, canon)
        chunks.append((images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1))
        att.append(weights.mean(dim=1))
    model.train(was_training)
    return torch.cat(chunks), torch.cat(att)


# ------------------------------------------------------------------------------------------------- checkpoints
def model_record(model: GaussianTalkerModel) -> dict[str, Any]:
    """What rebuilding the model needs (besides its state dict)."""
    return {"model_config": asdict(model.cfg), "audio_dim": model.audio_dim, "n_points": model.n_points,
            "aabb": model.triplane.aabb.detach().cpu(), "scene_extent": float(model.scene_extent)}


def build_model(record: dict[str, Any], state_dict: dict[str, Tensor] | None, device: torch.device
                ) -> GaussianTalkerModel:
    """A model from :func:`model_record` and a state dict (sizes taken from the record)."""
    n = int(record["n_points"])
    model = GaussianTalkerModel(torch.zeros(max(n, 2), 3).uniform_(-1, 1), None, int(record["audio_dim"]),
                                record["aabb"], ModelConfig.from_dict(record["model_config"]),
                                record["scene_extent"])
    model.resize_points(n)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.to(device)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[GaussianTalkerModel, dict]:
    """``checkpoint.pt`` (or ``ckpt_latest.pt``) → (model on ``device`` in eval mode, the whole record)."""
    return load_model_checkpoint(path, FORMAT, build_model, device)


def sh_degree_at(tc: TrainConfig, stage: str, iteration: int) -> int:
    """Active SH degree: +1 every ``sh_degree_interval`` canonical its (max 3); the deformation stage keeps the
    degree the canonical stage reached (the original's ``oneupSHdegree`` state carries over)."""
    if stage == "canonical":
        return min(SH_DEGREE, (iteration - 1) // tc.sh_degree_interval)
    return min(SH_DEGREE, tc.iterations_canonical // tc.sh_degree_interval)


# -------------------------------------------------------------------------------------------------------- train
class GaussianTalkerProgram(Program):
    """GaussianTalker's two stages on the shared engine: the canonical stage (with densification), the bake, the
    deformation stage; one step = learning rates, SH degree, batch, render, loss | backward, Adam, densification."""

    name = "gaussiantalker"
    format = FORMAT
    stages = STAGES
    log_fields = ("l1", "dssim", "lip", "vgg", "n_gaussians", "lr_xyz", "lr_network", "lr_grid", "sh_degree")

    def __init__(self, cell: CellData, cfg: dict[str, Any], device: torch.device):
        self.cell, self.device = cell, torch.device(device)
        self.tc = TrainConfig.from_dict(cfg)
        self.mcfg = ModelConfig.from_dict(cfg)
        self.seed, self.checkpoint_every = self.tc.seed, self.tc.checkpoint_every
        self.data = FrameData(cell, "train", self.device, self.mcfg.audio_context, head_pose=self.tc.head_pose)
        self.model: GaussianTalkerModel | None = None
        self.init_stats: dict[str, Any] = {}

    def iterations(self, stage: str) -> int:
        return {"canonical": self.tc.iterations_canonical, "deform": self.tc.iterations_deform}[stage]

    def batch(self, stage: str) -> int:
        return {"canonical": self.tc.batch_canonical, "deform": self.tc.batch_deform}[stage]

    # ----------------------------------------------------------------------------------------- model lifecycle
    def start(self) -> None:
        self.model, self.init_stats = init_model(self.cell, self.tc, self.mcfg, self.device)
        self._prepare()

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model = build_model(ckpt["record"], ckpt["model"], self.device)
        self.init_stats = ckpt["init_stats"]
        self._prepare()

    def _prepare(self) -> None:
        self.scales = LrScales.of(self.model, self.tc)
        self.loss_fn = PhotometricLoss(self.tc, self.device)
        log.info("gaussiantalker: %s", self.loss_fn.vgg_status)

    def begin_stage(self, stage: str, ckpt: dict[str, Any] | None) -> None:
        model = self.model
        if stage == "deform" and not bool(model.baked):
            model.bake()
        self.opt = build_optimizer(model, self.tc)
        self.dens = Densifier(model.n_points, self.device)
        if ckpt is not None:
            self.opt.load_state_dict(ckpt["optimizer"])
            self.dens.load_state_dict({k: v.to(self.device) for k, v in ckpt["densifier"].items()})
        model.train()

    # ------------------------------------------------------------------------------------------------ one step
    def forward(self, stage: str, it: int) -> tuple[Tensor, dict[str, Any]]:
        tc, data = self.tc, self.data
        self._lrs = set_learning_rates(self.opt, tc, stage, it, self.scales)
        self._sh = sh_degree_at(tc, stage, it)
        idx = batch_indices(tc.seed, STAGES.index(stage), it, self.batch(stage), data.n)
        pred, self._outs, _ = forward_batch(self.model, data, idx, stage, self._sh, tc.backend)
        idx_t = torch.from_numpy(idx).to(data.device)
        return compute_loss(self.loss_fn, pred, FrameData.image(data.targets[idx_t]), data.mouth_boxes[idx_t])

    def update(self, stage: str, it: int, loss: Tensor) -> dict[str, Any]:
        tc, model = self.tc, self.model
        loss.backward()
        if stage == "canonical" and it < tc.densify_until:
            self.dens.add_stats(self._outs, self.data.width, self.data.height)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if stage == "canonical":
            densify_prune(model, self.opt, self.dens, tc, it, self.data.width)
        self._outs = None
        lrs = self._lrs
        return {"n_gaussians": model.n_points, "lr_xyz": lrs["xyz"], "lr_network": lrs["network"],
                "lr_grid": lrs["grid"], "sh_degree": self._sh}

    # ----------------------------------------------------------------------------------------------- records
    def state(self, stage: str) -> dict[str, Any]:
        return {"record": model_record(self.model), "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "densifier": self.dens.state_dict(),
                "train_config": asdict(self.tc), "init_stats": self.init_stats,
                "vgg": self.loss_fn.vgg_status, "perceptual": self.loss_fn.perceptual}

    def finish(self) -> None:
        if not bool(self.model.baked):  # no deformation iterations: still bake so rendering sees free parameters
            self.model.bake()

    def final(self) -> dict[str, Any]:
        cell = self.cell
        return {"record": model_record(self.model), "model": self.model.state_dict(), "train_config": asdict(self.tc),
                "init_stats": self.init_stats, "vgg": self.loss_fn.vgg_status, "perceptual": self.loss_fn.perceptual,
                "cell": {"subject": cell.subject, "duration_s": cell.duration_s,
                         "train_frame_ids": cell.train.frame_ids.tolist(), "width": cell.width, "height": cell.height}}

    def progress(self) -> dict[str, Any]:
        return {"n": self.model.n_points}

    def describe(self) -> str:
        return f"{self.model.n_points} Gaussians"

    def summary(self) -> str:
        return f"{self.model.n_points} Gaussians; {self.loss_fn.vgg_status}"


def train(cell: CellData, cfg: dict[str, Any], out_dir: str | Path, device: torch.device,
          stop_after: int | None = None) -> Path:
    """Train GaussianTalker on ``cell.train``; write ``checkpoint.pt`` in ``out_dir`` and return its path
    (resumes from ``out_dir/ckpt_latest.pt``; ``stop_after``: see :func:`gt_core.engine.loop.run_program`)."""
    return run_program(GaussianTalkerProgram(cell, cfg, device), out_dir, stop_after)
