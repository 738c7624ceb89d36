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

**Densification** (canonical stage only, the original's schedule scaled by the preset's iteration counts): every
``densify_interval`` its in ``(densify_from, densify_until)``, while the count is below ``max_gaussians`` (a gate on
the call, as the original's 50k: one call may overshoot it), Gaussians whose mean screen-space gradient reaches
``densify_grad_threshold`` are cloned (max scale ≤ ``percent_dense``·extent) or split in two (samples from the
Gaussian, scales ÷ 1.6). The rasterizer gives ∂L/∂means2d in pixels; it is converted to the original's NDC
convention (× 0.5·W, × 0.5·H) before the norm. Pruning every ``prune_interval`` its in ``(prune_from,
densify_until)``: opacity < ``min_opacity``, and after ``prune_big_from`` also a screen radius >
``max_screen_radius_px512``·W/512 or a world scale > 0.1·extent. Densifying resets the accumulated statistics and
screen radii (the original's ``densification_postfix``) and runs just before pruning on the same iteration, so the
screen-radius test only bites once densification has stopped at the cap — exactly as in the original, where it
fires only after the cloud reached 50k Gaussians.
The optimiser step of an iteration runs before that iteration's densification (graphdeco runs it after, which
silently skips the per-point parameters' update on densification iterations).

**Checkpoints/resume**: ``ckpt_latest.pt`` (model, optimiser, densification statistics, RNG states, stage and
iteration, Gaussian count) is written atomically every ``checkpoint_every`` its and at each stage's end; ``train``
resumes from it. Batches are a pure function of (seed, stage, epoch), so a resumed run is bit-identical to an
uninterrupted one on the CPU. The final ``checkpoint.pt`` holds what rendering needs. A NaN/inf loss raises
:class:`~gt_core.errors.TrainingDiverged` and leaves the last good ``ckpt_latest.pt`` in place.
``train_log.csv``: one row per iteration (stage, iteration, loss terms, Gaussian count, LRs, SH degree, seconds).
"""
from __future__ import annotations

import csv
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from gt_core.data.cell import LABEL_HEAD, CellData
from gt_core.errors import InputError, TrainingDiverged
from gt_core.io.atomic import atomic_path
from gt_core.methods.gaussiantalker.model import (
    SH_DEGREE,
    GaussianState,
    GaussianTalkerModel,
    ModelConfig,
    initial_point_cloud,
    point_colors,
)
from gt_core.methods.losses import l1_loss, lip_l1, load_vgg16_perceptual, ssim
from gt_core.render.cameras import Camera
from gt_core.render.gaussians import rasterize_gaussians
from gt_core.render.torch_rasterizer import LOWPASS_PX2

log = logging.getLogger(__name__)

STAGES = ("canonical", "deform")
CKPT_LATEST = "ckpt_latest.pt"
CKPT_FINAL = "checkpoint.pt"
LOG_NAME = "train_log.csv"
FORMAT = "gaussiantalker-v1"
LOG_FIELDS = ("stage", "iteration", "loss", "l1", "dssim", "lip", "vgg", "n_gaussians", "lr_xyz", "lr_network",
              "lr_grid", "sh_degree", "seconds")
# the original's per-point LR groups: optimiser group name -> model attribute
POINT_GROUPS = {"xyz": "xyz", "f_dc": "features_dc", "f_rest": "features_rest", "opacity": "opacity",
                "scaling": "scaling", "rotation": "rotation"}


class TrainingInterrupted(RuntimeError):
    """Raised by ``train(..., stop_after=k)`` after k iterations: a simulated crash for resume tests."""


@dataclass
class TrainConfig:
    """Training hyper-parameters (the method's presets fill every field; see ``method.py``)."""

    seed: int = 0
    n_init_points: int = 34650
    # "random" (original) | "frame" (first training target's projected colours); only visible when "shs" is not a
    # triplane attribute, since F_can's SH replace the free ones during the canonical stage
    color_init: str = "random"
    iterations_canonical: int = 7999
    iterations_deform: int = 10000
    batch_canonical: int = 1
    batch_deform: int = 32
    # learning rates (original values; see the module docstring for the spatial scale)
    lr_xyz_init: float = 1.6e-4
    lr_xyz_final: float = 1.6e-6
    lr_network_init: float = 1e-4
    lr_network_final: float = 1e-5
    lr_grid_init: float = 1.6e-3
    lr_grid_final: float = 1.6e-4
    lr_max_steps_canonical: int = 20000
    lr_max_steps_deform: int = 20000
    lr_f_dc: float = 2.5e-3
    lr_f_rest: float = 1.25e-4
    lr_opacity: float = 0.05
    lr_scaling: float = 5e-3
    lr_rotation: float = 1e-3
    network_lr_scale: float = 1.0  # × the network/grid LRs on top of the extent (1 = the original)
    # the original's cameras_extent (see the module docstring): "camera" = 1.1 × the largest distance of a training
    # camera centre from their mean (head frame, metres), "cloud" = the initial cloud's AABB diagonal
    extent: str = "camera"
    min_extent: float = 0.02  # metres: floor of the camera extent (a speaker who never moves has a zero spread)
    # "auto": the original feeds DeepSpeech logits raw, other features are standardised with training statistics
    audio_normalisation: str = "auto"
    sh_degree_interval: int = 1000
    # densification (canonical stage only)
    densify_from: int = 1000
    densify_until: int = 7000
    densify_interval: int = 100
    densify_grad_threshold: float = 1e-3
    percent_dense: float = 0.01
    max_gaussians: int = 50000  # densification runs only while fewer (a gate on the call, as the original's 50k)
    prune_from: int = 500
    prune_interval: int = 100
    prune_big_from: int = 3000
    min_opacity: float = 0.005
    max_screen_radius_px512: float = 20.0
    big_world_fraction: float = 0.1
    # loss weights
    lambda_l1: float = 0.8
    lambda_dssim: float = 0.2
    lambda_lip: float = 0.4
    lambda_vgg: float = 0.01
    # bookkeeping
    checkpoint_every: int = 500
    render_batch: int = 32
    backend: str = "auto"

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in names})


# ---------------------------------------------------------------------------------------------------- schedules
def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int) -> float:
    """Log-linear decay from ``lr_init`` (step 0) to ``lr_final`` (``max_steps`` and after) — graphdeco's
    ``get_expon_lr_func`` without the (unused) delay."""
    if lr_init == lr_final:
        return lr_init
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def batch_indices(seed: int, stage: str, iteration: int, batch: int, n_frames: int) -> np.ndarray:
    """Frames of ``iteration`` (1-based): consecutive slices of per-epoch random permutations, a pure function of
    (seed, stage, epoch) so that resumed runs draw the same batches."""
    out = []
    start = (iteration - 1) * batch
    for k in range(start, start + batch):
        epoch, pos = divmod(k, n_frames)
        perm = np.random.default_rng([seed, STAGES.index(stage), epoch]).permutation(n_frames)
        out.append(perm[pos])
    return np.asarray(out, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------- data
class FrameData:
    """A frame set's per-frame tensors on the training device (images kept as uint8 until a batch is drawn)."""

    def __init__(self, cell: CellData, which: str, device: torch.device, context: int):
        fs = getattr(cell, which)
        self.n = len(fs)
        self.width, self.height = cell.width, cell.height
        self.device = device
        self.backgrounds = torch.from_numpy(np.ascontiguousarray(fs.backgrounds)).to(device)  # [N, H, W, 3] u8
        self.targets = (torch.from_numpy(np.ascontiguousarray(fs.targets)).to(device) if which == "train"
                        else None)  # [N, H, W, 3] u8
        self.audio_ctx = torch.from_numpy(np.ascontiguousarray(fs.audio_context(context))).float().to(device)
        self.eye = torch.from_numpy(np.asarray(fs.eye, np.float32)).to(device)  # [N]
        self.mouth_boxes = torch.from_numpy(fs.mouth_boxes).to(device) if which == "train" else None  # [N, 4]
        self.cameras = [Camera.from_c2w_opengl(torch.from_numpy(np.asarray(m, np.float32)), cell.fx, cell.fy,
                                               cell.cx, cell.cy, cell.width, cell.height).to(device)
                        for m in fs.c2w]
        self.viewmats = torch.stack([c.viewmat for c in self.cameras]).float()  # [N, 4, 4]

    @staticmethod
    def image(u8: Tensor) -> Tensor:
        """[B, H, W, 3] uint8 → [B, 3, H, W] float in [0, 1]."""
        return u8.permute(0, 3, 1, 2).float() / 255.0


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


def _swap_point_params(opt: torch.optim.Adam, model: GaussianTalkerModel, fn) -> None:
    """Replace every per-point parameter ``p`` (model attribute ``attr``) by ``fn(attr, p, False)`` and its Adam
    moments ``m`` by ``fn(attr, m, True)`` (so ``fn`` can start new rows' moments at 0)."""
    for g in opt.param_groups:
        if g["name"] not in POINT_GROUPS:
            continue
        attr = POINT_GROUPS[g["name"]]
        old = g["params"][0]
        state = opt.state.pop(old, None)
        new = nn.Parameter(fn(attr, old.detach(), False))
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = fn(attr, state[key], True)
            opt.state[new] = state
        g["params"][0] = new
        setattr(model, attr, new)


# the smallest radius the rasterizer gives a splat: λmax ≥ 0.3 + √0.1 px² (its +0.3 px² dilation and the 0.1 floor
# of graphdeco's eigenvalue formula), radius = ⌈3·√λmax⌉ = 3 px
MIN_SPLAT_RADIUS_PX = math.ceil(3.0 * math.sqrt(LOWPASS_PX2 + math.sqrt(0.1)))


def screen_radius_limit(tc: TrainConfig, width: int) -> float:
    """The screen-radius prune threshold in pixels: the original's 20 px at 512 px scaled to ``width``, but never
    below twice the smallest radius a splat can have (at 48 px, 20·48/512 = 1.9 px would prune every Gaussian)."""
    return max(tc.max_screen_radius_px512 * width / 512.0, 2.0 * MIN_SPLAT_RADIUS_PX)


class Densifier:
    """Screen-space gradient statistics and the clone/split/prune operations of the canonical stage."""

    def __init__(self, n: int, device: torch.device):
        self.grad_accum = torch.zeros(n, device=device)
        self.denom = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    def state_dict(self) -> dict[str, Tensor]:
        return {"grad_accum": self.grad_accum, "denom": self.denom, "max_radii": self.max_radii}

    def load_state_dict(self, d: dict[str, Tensor]) -> None:
        self.grad_accum, self.denom, self.max_radii = d["grad_accum"], d["denom"], d["max_radii"]

    @torch.no_grad()
    def add_stats(self, outs: list, width: int, height: int) -> None:
        """Accumulate ‖∂L/∂means2d‖ in the original's NDC units (pixel grad × (W/2, H/2)), summed over the batch's
        views, for the Gaussians visible in any of them; track the largest screen radius."""
        grad = torch.zeros_like(self.grad_accum[:, None].expand(-1, 2)).clone()
        visible = torch.zeros_like(self.grad_accum, dtype=torch.bool)
        scale = torch.tensor([0.5 * width, 0.5 * height], device=grad.device)
        for out in outs:
            if out.means2d.grad is not None:
                grad += out.means2d.grad * scale
            vis = out.radii > 0
            visible |= vis
            self.max_radii[vis] = torch.maximum(self.max_radii[vis], out.radii[vis].to(self.max_radii))
        self.grad_accum[visible] += grad[visible].norm(dim=-1)
        self.denom[visible] += 1

    def _reset(self, n: int, device: torch.device) -> None:
        self.grad_accum = torch.zeros(n, device=device)
        self.denom = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    @torch.no_grad()
    def densify(self, model: GaussianTalkerModel, opt: torch.optim.Adam, tc: TrainConfig, log_scale: Tensor) -> int:
        """Clone/split by the accumulated gradient; ``log_scale`` [N, 3] = effective canonical log-scales.
        Returns the number of Gaussians added (net)."""
        n = model.n_points
        extent = float(model.scene_extent)
        grads = self.grad_accum / self.denom.clamp_min(1)
        grads[self.denom == 0] = 0
        big = log_scale.exp().max(dim=1).values > tc.percent_dense * extent
        candidates = grads >= tc.densify_grad_threshold
        if not bool(candidates.any()):
            self._reset(n, grads.device)
            return 0
        clone, split = candidates & ~big, candidates & big
        # clones: exact copies; split children: 2 samples from the parent Gaussian, scales / 1.6
        ci, si = clone.nonzero()[:, 0], split.nonzero()[:, 0]
        std = log_scale[si].exp().repeat(2, 1)
        samples = torch.normal(torch.zeros_like(std), std)
        from gt_core.render.torch_rasterizer import quat_to_rotmat

        rots = quat_to_rotmat(model.rotation[si]).repeat(2, 1, 1)
        new_xyz = torch.bmm(rots, samples[..., None])[..., 0] + model.xyz[si].repeat(2, 1)
        extra = {
            "xyz": torch.cat([model.xyz[ci], new_xyz]),
            "features_dc": torch.cat([model.features_dc[ci], model.features_dc[si].repeat(2, 1, 1)]),
            "features_rest": torch.cat([model.features_rest[ci], model.features_rest[si].repeat(2, 1, 1)]),
            "opacity": torch.cat([model.opacity[ci], model.opacity[si].repeat(2, 1)]),
            "scaling": torch.cat([model.scaling[ci], model.scaling[si].repeat(2, 1) - math.log(1.6)]),
            "rotation": torch.cat([model.rotation[ci], model.rotation[si].repeat(2, 1)]),
        }
        keep = torch.cat([~split, torch.ones(len(extra["xyz"]), dtype=torch.bool, device=split.device)])

        def grow(attr: str, t: Tensor, is_moment: bool) -> Tensor:
            new_rows = torch.zeros_like(extra[attr]) if is_moment else extra[attr].to(t)
            return torch.cat([t, new_rows])[keep]

        _swap_point_params(opt, model, grow)
        self._reset(model.n_points, grads.device)
        return model.n_points - n

    @torch.no_grad()
    def prune(self, model: GaussianTalkerModel, opt: torch.optim.Adam, tc: TrainConfig, canonical: GaussianState,
              big_too: bool, width: int) -> int:
        """Remove low-opacity Gaussians (and, with ``big_too``, huge ones on screen or in the world)."""
        extent = float(model.scene_extent)
        drop = canonical.opacities < tc.min_opacity
        if big_too:
            drop |= self.max_radii > screen_radius_limit(tc, width)
            drop |= canonical.scales.max(dim=1).values > tc.big_world_fraction * extent
        if bool(drop.all()):  # never prune everything: keep the most opaque
            drop[torch.argmax(canonical.opacities)] = False
        if not bool(drop.any()):
            return 0
        keep = ~drop
        _swap_point_params(opt, model, lambda _attr, t, _moment: t[keep])
        self.grad_accum, self.denom, self.max_radii = self.grad_accum[keep], self.denom[keep], self.max_radii[keep]
        return int(drop.sum())


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


def train_step(model: GaussianTalkerModel, opt: torch.optim.Adam, dens: "Densifier", data: FrameData,
               loss_fn: PhotometricLoss, tc: TrainConfig, stage: str, it: int, scales: LrScales, batch: int,
               latest: Path | None = None) -> tuple[float, dict[str, float], dict[str, float], int]:
    """One optimisation step of ``stage`` at iteration ``it`` (1-based), with densification in the canonical stage.
    Returns (loss, loss terms, learning rates, active SH degree); raises TrainingDiverged on a NaN/inf loss."""
    lrs = set_learning_rates(opt, tc, stage, it, scales)
    sh_deg = sh_degree_at(tc, stage, it)
    idx = batch_indices(tc.seed, stage, it, batch, data.n)
    pred, outs, _ = forward_batch(model, data, idx, stage, sh_deg, tc.backend)
    idx_t = torch.from_numpy(idx).to(data.device)
    loss, terms = compute_loss(loss_fn, pred, FrameData.image(data.targets[idx_t]), data.mouth_boxes[idx_t])
    if not bool(torch.isfinite(loss)):
        where = (f"the last good checkpoint {latest} is kept" if latest is not None and latest.exists()
                 else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"gaussiantalker: loss became {float(loss.detach())} at {stage} iteration {it} ({model.n_points} "
            f"Gaussians); {where} — lower the learning rates or check the cell's inputs")
    loss.backward()
    if stage == "canonical" and it < tc.densify_until:
        dens.add_stats(outs, data.width, data.height)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if stage == "canonical":
        densify_prune(model, opt, dens, tc, it, data.width)
    return float(loss.detach()), terms, lrs, sh_deg


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


def save_torch(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[GaussianTalkerModel, dict]:
    """Load ``checkpoint.pt`` (or ``ckpt_latest.pt``) → (model on ``device`` in eval mode, the whole record)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt.get("format") == FORMAT, f"{path} is not a {FORMAT} checkpoint"
    model = build_model(ckpt["record"], ckpt["model"], torch.device(device))
    model.eval()
    return model, ckpt


# ---------------------------------------------------------------------------------------------------------- log
class CsvLog:
    """``train_log.csv``; on resume, rows past the checkpoint's position are dropped first."""

    def __init__(self, path: Path, keep_until: tuple[int, int] | None):
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    pos = (STAGES.index(row["stage"]), int(row["iteration"]))
                    if pos <= keep_until:
                        rows.append(row)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)
        self.fh = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=LOG_FIELDS)

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


# -------------------------------------------------------------------------------------------------------- train
def camera_extent(c2w: np.ndarray) -> float:
    """The original's ``cameras_extent`` (graphdeco ``getNerfppNorm``): 1.1 × the largest distance of a camera
    centre ``c2w[:, :3, 3]`` [N, 3] from their mean, in world units (here the head frame, metres)."""
    centres = np.asarray(c2w, np.float64)[:, :3, 3]
    return float(1.1 * np.linalg.norm(centres - centres.mean(0), axis=1).max())


def cloud_diagonal(points: np.ndarray) -> float:
    """The AABB diagonal of ``points`` [P, 3] (``extent: cloud``)."""
    return float(np.linalg.norm(points.max(0) - points.min(0)))


def scene_extent(cell: CellData, points: np.ndarray, tc: TrainConfig) -> float:
    """The world size behind the LR scale and the densification thresholds (``extent``, see the module docstring)."""
    if tc.extent == "camera":
        return max(camera_extent(cell.train.c2w), tc.min_extent)
    if tc.extent == "cloud":
        return cloud_diagonal(points)
    raise InputError("method_params.gaussiantalker.extent", f"unknown value {tc.extent!r}", "use 'camera' or 'cloud'")


def standardises_audio(tc: TrainConfig, audio_feature: str) -> bool:
    """Whether the audio windows are standardised before the network (``audio_normalisation``)."""
    mode = tc.audio_normalisation
    if mode not in ("auto", "standardise", "none"):
        raise InputError("method_params.gaussiantalker.audio_normalisation", f"unknown value {mode!r}",
                         "use 'auto', 'standardise' or 'none'")
    return mode == "standardise" or (mode == "auto" and audio_feature != "deepspeech")


def init_model(cell: CellData, tc: TrainConfig, mcfg: ModelConfig, device: torch.device
               ) -> tuple[GaussianTalkerModel, dict[str, Any]]:
    """Initial Gaussians (module docstring of ``model.py``), tri-plane AABB (cloud bbox padded by 5 % per side),
    scene extent, audio statistics of the training frames (identity when the features are fed raw)."""
    train = cell.train
    k = min(8, len(train))
    idx = np.linspace(0, len(train) - 1, k).round().astype(int)
    intr = (cell.fx, cell.fy, cell.cx, cell.cy)
    pts, stats = initial_point_cloud(cell.canonical, train.labels[idx] == LABEL_HEAD, train.c2w[idx], intr,
                                     tc.n_init_points, tc.seed)
    if tc.color_init == "frame":
        colors = torch.from_numpy(point_colors(pts, train.targets[0], train.c2w[0], intr))
    elif tc.color_init == "random":
        colors = torch.rand(len(pts), 3)
    else:
        raise InputError("method_params.gaussiantalker.color_init", f"unknown value {tc.color_init!r}",
                         "use 'frame' or 'random'")
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.05 * (hi - lo)
    aabb = torch.tensor(np.stack([lo - pad, hi + pad]), dtype=torch.float32)
    extent = scene_extent(cell, pts, tc)
    model = GaussianTalkerModel(torch.from_numpy(pts), colors, train.audio.shape[-1], aabb, mcfg, extent)
    standardise = standardises_audio(tc, cell.audio_feature)
    if standardise:
        audio = train.audio.reshape(-1, train.audio.shape[-1]).astype(np.float64)
        model.audio_mean.copy_(torch.from_numpy(audio.mean(0)).float())
        model.audio_std.copy_(torch.from_numpy(audio.std(0) + 1e-5).float())
    stats.update(scene_extent=extent, extent_mode=tc.extent, camera_extent=camera_extent(train.c2w),
                 cloud_diagonal=cloud_diagonal(pts), audio_standardised=standardise)
    return model.to(device), stats


def sh_degree_at(tc: TrainConfig, stage: str, iteration: int) -> int:
    """Active SH degree: +1 every ``sh_degree_interval`` canonical its (max 3); the deformation stage keeps the
    degree the canonical stage reached (the original's ``oneupSHdegree`` state carries over)."""
    if stage == "canonical":
        return min(SH_DEGREE, (iteration - 1) // tc.sh_degree_interval)
    return min(SH_DEGREE, tc.iterations_canonical // tc.sh_degree_interval)


def train(cell: CellData, cfg: dict[str, Any], out_dir: str | Path, device: torch.device,
          stop_after: int | None = None) -> Path:
    """Train GaussianTalker on ``cell.train``; write ``checkpoint.pt`` in ``out_dir`` and return its path.

    Resumes from ``out_dir/ckpt_latest.pt`` when present. ``stop_after`` (tests) raises
    :class:`TrainingInterrupted` after that many iterations of this call.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    tc = TrainConfig.from_dict(cfg)
    mcfg = ModelConfig.from_dict(cfg)
    latest = out_dir / CKPT_LATEST
    data = FrameData(cell, "train", device, mcfg.audio_context)
    iters = {"canonical": tc.iterations_canonical, "deform": tc.iterations_deform}
    batch = {"canonical": tc.batch_canonical, "deform": tc.batch_deform}

    resumed = latest.exists()
    if resumed:
        ckpt = torch.load(latest, map_location="cpu", weights_only=False)
        assert ckpt.get("format") == FORMAT, f"{latest} is not a {FORMAT} checkpoint: delete it to start afresh"
        model = build_model(ckpt["record"], ckpt["model"], device)
        stage, done = ckpt["stage"], int(ckpt["iteration"])
        init_stats, elapsed = ckpt["init_stats"], float(ckpt["elapsed_s"])
        log.info("resuming %s from %s at %s iteration %d", out_dir, latest.name, stage, done)
    else:
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed)
        random.seed(tc.seed)
        model, init_stats = init_model(cell, tc, mcfg, device)
        stage, done, elapsed, ckpt = "canonical", 0, 0.0, None
    scales = LrScales.of(model, tc)
    loss_fn = PhotometricLoss(tc, device)
    log.info("gaussiantalker: %s", loss_fn.vgg_status)
    csv_log = CsvLog(out_dir / LOG_NAME, (STAGES.index(stage), done) if resumed else None)
    run_iters = 0

    def save_latest(stage_: str, it: int, opt: torch.optim.Adam, dens: Densifier) -> None:
        csv_log.flush()
        save_torch(latest, {
            "format": FORMAT, "stage": stage_, "iteration": it, "record": model_record(model),
            "model": model.state_dict(), "optimizer": opt.state_dict(), "densifier": dens.state_dict(),
            "rng": rng_state(), "train_config": asdict(tc), "init_stats": init_stats,
            "elapsed_s": elapsed, "vgg": loss_fn.vgg_status, "perceptual": loss_fn.perceptual,
        })

    try:
        for stage_name in STAGES[STAGES.index(stage):]:
            if stage_name == "deform" and not bool(model.baked):
                model.bake()
            opt = build_optimizer(model, tc)
            dens = Densifier(model.n_points, device)
            if ckpt is not None and ckpt["stage"] == stage_name:
                opt.load_state_dict(ckpt["optimizer"])
                dens.load_state_dict({k: v.to(device) for k, v in ckpt["densifier"].items()})
                set_rng_state(ckpt["rng"])
                start = int(ckpt["iteration"])
            else:
                start = 0
            ckpt = None
            model.train()
            bar = tqdm(range(start + 1, iters[stage_name] + 1), desc=f"gaussiantalker {stage_name}",
                       initial=start, total=iters[stage_name], leave=False)
            for it in bar:
                t0 = time.perf_counter()
                loss, terms, lrs, sh_deg = train_step(model, opt, dens, data, loss_fn, tc, stage_name, it, scales,
                                                      batch[stage_name], latest)
                step_s = time.perf_counter() - t0
                elapsed += step_s
                csv_log.write({"stage": stage_name, "iteration": it, "loss": loss, **terms,
                               "n_gaussians": model.n_points, "lr_xyz": lrs["xyz"], "lr_network": lrs["network"],
                               "lr_grid": lrs["grid"], "sh_degree": sh_deg, "seconds": step_s})
                bar.set_postfix(loss=f"{loss:.4f}", n=model.n_points)
                if it % tc.checkpoint_every == 0 or it == iters[stage_name]:
                    save_latest(stage_name, it, opt, dens)
                run_iters += 1
                if stop_after is not None and run_iters >= stop_after:
                    raise TrainingInterrupted(f"stopped after {run_iters} iterations (at {stage_name} {it})")
            bar.close()
            if stage_name == "canonical" and iters["canonical"] == 0:
                save_latest(stage_name, 0, opt, dens)
    finally:
        csv_log.close()

    if not bool(model.baked):  # no deformation iterations: still bake so rendering sees free parameters
        model.bake()
    final = out_dir / CKPT_FINAL
    save_torch(final, {
        "format": FORMAT, "stage": "done", "record": model_record(model), "model": model.state_dict(),
        "train_config": asdict(tc), "init_stats": init_stats, "train_seconds": elapsed,
        "vgg": loss_fn.vgg_status, "perceptual": loss_fn.perceptual, "cell": {"subject": cell.subject, "duration_s": cell.duration_s,
                                            "train_frame_ids": cell.train.frame_ids.tolist(),
                                            "width": cell.width, "height": cell.height},
    })
    log.info("gaussiantalker: %d Gaussians, %.1f s of training steps; %s", model.n_points, elapsed,
             loss_fn.vgg_status)
    return final


def densify_prune(model: GaussianTalkerModel, opt: torch.optim.Adam, dens: Densifier, tc: TrainConfig, it: int,
                  width: int) -> None:
    """The canonical stage's densification/pruning schedule at the end of iteration ``it`` (the original's: both
    only before ``densify_until``; densify after ``densify_from`` while fewer than ``max_gaussians``; prune after
    ``prune_from``). Densifying resets the screen radii, so — as in the original — the screen-radius prune can only
    fire once the Gaussian count has reached ``max_gaussians`` and densification has stopped."""
    if it >= tc.densify_until:
        return
    if it > tc.densify_from and it % tc.densify_interval == 0 and model.n_points < tc.max_gaussians:
        with torch.no_grad():
            log_scale = model.canonical().log_scale.detach()
        dens.densify(model, opt, tc, log_scale)
    if it > tc.prune_from and it % tc.prune_interval == 0:
        with torch.no_grad():
            canon = model.canonical()
            canon = GaussianState(*(t.detach() for t in (canon.xyz, canon.log_scale, canon.rotation,
                                                          canon.opacity_logit, canon.shs)))
        dens.prune(model, opt, tc, canon, it > tc.prune_big_from, width)
