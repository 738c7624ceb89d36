"""``gaussiantalker``: GaussianTalker (Cho et al., ACM MM 2024) behind the :class:`~gt_core.methods.base.Method`
interface — canonical 3D Gaussians with tri-plane features, deformed per frame by a spatial-audio attention module.

Architecture: :mod:`.model`; training (two stages, densification, schedules, checkpoints): :mod:`.train`.

**Rendering** (``render``): every test frame is rendered from its own audio context (8 windows around it), eye
(blink) value and tracked camera, over ``cell.test.backgrounds`` — the head protocol, exactly how the original
evaluates: its rasterizer's per-pixel background is the ground-truth torso composited over the background plate
(``bg_w_torso``), so the Gaussians draw only the head and hair. The tri-plane features and canonical attributes are
computed once (the original's ``only_infer`` cache); frames are deformed and rasterized in batches of
``render_batch``. ``Renders.seconds`` covers deformation + rasterization + conversion to 8 bit on the device (not
loading, not the copy back to the host), like the original's FPS (frames / time inside ``render_from_batch``).

``supports_full = False``: the released model of the default (head) branch learns only head and hair — the torso
and background are never modelled (its ``torso`` branch is a different training run with bc.jpg as background), so
there is no "full" render of what it learned.

Presets (every schedule number scaled by the preset's iteration counts, see :func:`make_preset`):

* ``paper`` — the released code's numbers: 7,999 canonical + 10,000 deformation its, batch 1 / 32, 34,650 initial
  points, cap 50k, tri-plane 64 × [1, 2] × 32 channels, 1 attention layer, opacity + SH from the tri-plane; meant
  for 512 px cells on CUDA (with gsplat or diff-gaussian-rasterization as the rasterizer backend).
* ``demo`` — the same architecture at 128 px on 2 CPU cores in a few minutes: 400 + 1,400 its, batch 1 / 1,
  3,000 initial points, cap 6,000. The network and tri-plane LRs are × ``network_lr_scale`` = 2.5 on top of the
  original's extent scale (extent / 0.1 m: × 2.03 on the demo subject, whose camera extent is 0.203 m), i.e. ≈ 5×
  the original's effective LRs there: with ≈ 1/200 of the original's deformation-stage frame samples (1,400 vs
  320,000) the original LRs leave the audio path untrained (test renders driven by a fixed audio window were as good
  as by the real audio); × 5 makes the audio matter (mouth-box L1 0.0208 with real vs 0.0236 with fixed audio on
  the demo subject). Deformation batches are single frames: at the same CPU time, 1,400 steps of 1 frame fit the
  mouth better than 700 steps of 2 (demo 20 s cell: rendered mouth-opening amplitude 0.068 vs 0.060 against the
  ground truth's 0.086, LMD 1.76 vs 2.02, PSNR 33.2 vs 33.2); the canonical stage's last 100 its (loss 0.0228 →
  0.0224) pay for the extra steps. The offset heads start at zero (``offset_head_gain = 0``; the released init, Xavier
  gain 0.1, moves every Gaussian by ~1 cm at the first deformation step): see the model's *Deviations* (Bob
  Menendez 6 s: training-frame mouth_sync 0.45 → 0.59).
* ``small`` — the smallest budget that learns (the end-to-end test's learning checks; ~3 min a 128-px cell at 1
  thread, 181 s of steps): 100 + 600 its, batch 1 / 1, 1,000 initial points, cap 2,000, the densification threshold
  and cloud extent of ``tiny``, network/grid LRs × 6 on top of the extent scale. On the demo subject's 4 s cell (1
  thread, seed 0, the 4-px neck fill of :mod:`gt_core.preprocess.background`): test PSNR 32.1, LMD 2.00, mouth_sync
  0.73 (rendered opening std 0.80 × the real one); 400 deformation its gave 0.63 at 1 thread but 0.26 in the 2-thread
  DAG run and −0.16 at seed 1 — at this budget the mouth's fate is decided by small differences of the trajectory
  (seed 1 with 600 its: 0.10; its canonical stage ends with 2,064 Gaussians against seed 0's 3,393). With network LRs
  × 3 the mouth did not follow (mouth_sync 0.26), and ``tiny``'s 30 its reach only PSNR 17.3 (the screen-radius prune
  and the released init both cost it at that budget: 21.9 without the prune, 19.3 with PyTorch's default init).
* ``tiny`` — tests: 20 + 10 its, 400 initial points, cap 1,000, a lower densification threshold so that 20
  canonical its densify, and the initial cloud's diagonal as the extent (``extent: cloud``, network/grid LRs × 3 on
  top, ≈ × 10 the original's): 400 points make Gaussians ~3× the demo's size, which the world-scale prune at
  0.1 × the camera extent would remove (the synthetic test head's camera extent is 3.4 cm).
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gt_core.data.cell import CellData
from gt_core.engine.state import check_fits_cell, synchronize
from gt_core.methods.base import Method, Renders, with_overrides
from gt_core.methods.gaussiantalker import train as T
from gt_core.methods.gaussiantalker.model import ModelConfig

PAPER_CANONICAL_ITERS = 7999
PAPER_DEFORM_ITERS = 10000


def make_preset(iterations_canonical: int, iterations_deform: int, **overrides: Any) -> dict[str, Any]:
    """A full hyper-parameter set: the paper's values with every schedule number scaled by the iteration counts
    (canonical-stage numbers by ``iterations_canonical / 7999``, the deformation LR horizon by
    ``iterations_deform / 10000``), then ``overrides``."""
    rc = iterations_canonical / PAPER_CANONICAL_ITERS
    rd = iterations_deform / PAPER_DEFORM_ITERS
    cfg: dict[str, Any] = {**asdict(T.TrainConfig()), **asdict(ModelConfig())}
    cfg.pop("seed")  # the run's seed comes from the pipeline config
    cfg.update(
        iterations_canonical=iterations_canonical,
        iterations_deform=iterations_deform,
        lr_max_steps_canonical=max(1, round(20000 * rc)),
        lr_max_steps_deform=max(1, round(20000 * rd)),
        sh_degree_interval=max(1, round(1000 * rc)),
        densify_from=round(1000 * rc),
        densify_until=round(7000 * rc),
        densify_interval=max(1, round(100 * rc)),
        prune_from=round(500 * rc),
        prune_interval=max(1, round(100 * rc)),
        prune_big_from=round(3000 * rc),
    )
    return with_overrides(cfg, overrides)


class GaussianTalkerMethod(Method):
    """See the module docstring."""

    name = "gaussiantalker"
    presets = {
        "tiny": make_preset(20, 10, batch_deform=2, n_init_points=400, max_gaussians=1000, color_init="frame",
                            checkpoint_every=5, render_batch=4, densify_grad_threshold=2e-4, extent="cloud",
                            network_lr_scale=3.0),
        "small": make_preset(100, 600, batch_deform=1, n_init_points=1000, max_gaussians=2000, color_init="frame",
                             densify_grad_threshold=2e-4, extent="cloud", network_lr_scale=6.0, checkpoint_every=50,
                             render_batch=8),
        "demo": make_preset(400, 1400, batch_deform=1, n_init_points=3000, max_gaussians=6000, color_init="frame",
                            network_lr_scale=2.5, offset_head_gain=0.0, checkpoint_every=100, render_batch=8),
        "paper": make_preset(PAPER_CANONICAL_ITERS, PAPER_DEFORM_ITERS, batch_deform=32, n_init_points=34650,
                             max_gaussians=50000, color_init="random", checkpoint_every=500, render_batch=32),
    }
    supports_full = False

    def train(self, cell: CellData, cfg: dict[str, Any], out_dir: Path, device: torch.device,
              stop_after: int | None = None) -> Path:
        return T.train(cell, cfg, out_dir, device, stop_after)

    def stage_iterations(self, cfg: dict[str, Any]) -> dict[str, int]:
        return {"canonical": int(cfg["iterations_canonical"]), "deform": int(cfg["iterations_deform"])}

    def weight_files(self) -> list[Path]:
        """The VGG16 backbone of the 0.01·perceptual term (``snakemake download_vgg16``)."""
        from gt_core.nn.losses import vgg16_weights_path

        return [vgg16_weights_path()]

    def train_info(self, checkpoint: Path) -> dict[str, Any]:
        """The perceptual term's state (active or why not), the extent and the audio normalisation used."""
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        stats = ckpt.get("init_stats", {})
        keys = ("scene_extent", "extent_mode", "camera_extent", "cloud_diagonal", "audio_standardised")
        return {"perceptual_loss": ckpt.get("perceptual", {}), "n_gaussians": int(ckpt["record"]["n_points"]),
                **{k: stats[k] for k in keys if k in stats}}

    def render(self, checkpoint: Path, cell: CellData, device: torch.device | None = None) -> Renders:
        device = torch.device(device or "cpu")
        model, ckpt = T.load_checkpoint(checkpoint, device)
        check_fits_cell(checkpoint, ckpt, model.audio_dim, cell)
        tc = T.TrainConfig.from_dict(ckpt["train_config"])
        data = T.FrameData(cell, "test", device, model.cfg.audio_context, head_pose=tc.head_pose)
        sh_degree = T.sh_degree_at(tc, "deform", 1)

        synchronize(device)
        start = time.perf_counter()
        frames, attention = T.render_frames(model, data, sh_degree, tc.render_batch, tc.backend)
        synchronize(device)
        seconds = time.perf_counter() - start
        head = frames.cpu().numpy()
        attention = attention.cpu().numpy()  # [N, 4] mean attention per token
        info = {"n_gaussians": model.n_points, "sh_degree": sh_degree, "backend": tc.backend,
                "attention_tokens": ["audio", "eye", "viewpoint", "null"],
                "attention_mean": attention.mean(0).tolist(), "attention_per_frame": attention.tolist(),
                "vgg": ckpt.get("vgg", "")}
        return Renders(np.asarray(cell.test.frame_ids), np.ascontiguousarray(head), None, seconds, info)
