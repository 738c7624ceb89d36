"""GaussianTalker's training hyper-parameters (every field is filled by the method's presets, see ``method.py``;
the meaning of each group is in :mod:`.train` and :mod:`.densify`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gt_core.methods.base import known_fields


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
    head_pose: str = "tracker"  # cameras: "tracker" (the pose rule's) or "stabilised" (SyncTalk's head-sync stabiliser)
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
        return cls(**known_fields(cls, cfg))
