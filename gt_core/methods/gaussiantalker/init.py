"""GaussianTalker's initial state: the point cloud and colours, the tri-plane box, the scene extent behind the LR
scale and densification thresholds, and the audio statistics (see :mod:`.train`'s docstring for the extent rule)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gt_core.data.cell import LABEL_HEAD, CellData
from gt_core.encoders.audio import standardises_audio as audio_standardised
from gt_core.errors import InputError
from gt_core.methods.gaussiantalker.config import TrainConfig
from gt_core.methods.gaussiantalker.model import GaussianTalkerModel, ModelConfig, initial_point_cloud, point_colors


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
    return audio_standardised(tc.audio_normalisation, audio_feature, "method_params.gaussiantalker.audio_normalisation")


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
