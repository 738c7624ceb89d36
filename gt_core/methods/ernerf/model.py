"""ER-NeRF's trainable state in one module: the head field and its occupancy grid, the torso field and its 2-D
occupancy, the audio statistics, and the renderer settings; built fresh from a cell or rebuilt from a record.

The field's box is a cube around the subject's canonical face mesh (:attr:`CellData.canonical`, head frame, metres):
centred on the mesh's bounding box, half side ``head_box_scale`` × its largest half extent, so hair, ears and the
back of the head fit (the mesh stops at the forehead and the ears); the occupancy grid spans the same cube.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gt_core.data.cell import CellData
from gt_core.encoders.audio import standardises_audio
from gt_core.errors import InputError
from gt_core.encoders.hashgrid import HashGridConfig
from gt_core.methods.base import known_fields
from gt_core.methods.ernerf.field import ERNeRFHead, HeadFieldConfig
from gt_core.methods.ernerf.torso import TorsoField, TorsoFieldConfig, TorsoOccupancy
from gt_core.render.volume import OccupancyGrid


AUDIO_SOURCES = ("cell", "ave")
# expression input -> (values per frame, the attention's output, its hidden width): ER-NeRF network.py:134 (1 value,
# sigmoid gate, 16 wide); SyncTalk network.py:210-214 (--bs_area upper: 7 values, no sigmoid, 64 wide)
EXPRESSIONS = {"blink": (1, "sigmoid", 16), "upper_face": (7, "linear", 64)}


@dataclass
class ModelConfig:
    """Architecture and renderer settings (defaults = the original's where it has one)."""

    head_box_scale: float = 1.6  # half side of the field's cube / the face mesh's largest half extent
    n_levels: int = 12
    base_resolution: int = 64
    finest_resolution: float = 512.0
    log2_hashmap_size: int = 14
    n_steps: int = 64  # lattice intervals per ray over the box chord (the original: ≤ 16 occupied samples)
    grid_res: int = 128  # occupancy grid side (the original's 128³)
    density_thresh: float = 10.0  # occupancy threshold min(mean σ, this)
    t_thresh: float = 1e-4  # early termination
    min_near: float = 0.0
    world_scale: float = 4.0  # ray distances in the original's NGP units: metres × its --scale 4 (the field's σ unit)
    torso_finest: float = 2048.0  # torso grid: 16 levels × 2, base 16, up to this, table 2^16 (tiled)
    torso_levels: int = 16
    torso_grid_res: int = 128
    audio_normalisation: str = "auto"
    audio_source: str = "cell"  # "cell": the cell's audio windows through AudioNet; "ave": SyncTalk's AVE features
    expression: str = "blink"  # "blink": ER-NeRF's one AU45-like value; "upper_face": SyncTalk's 7 brow/blink values

    def __post_init__(self) -> None:
        if self.audio_source not in AUDIO_SOURCES:
            raise InputError("audio_source", f"unknown value {self.audio_source!r}",
                             f"use one of {', '.join(AUDIO_SOURCES)}")
        if self.expression not in EXPRESSIONS:
            raise InputError("expression", f"unknown value {self.expression!r}", f"use one of {', '.join(EXPRESSIONS)}")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ModelConfig":
        return cls(**known_fields(cls, cfg))


def head_box(canonical: np.ndarray, scale: float) -> tuple[float, ...]:
    """The cube (xmin, ymin, zmin, xmax, ymax, zmax) around the face mesh ``canonical`` [478, 3]."""
    lo, hi = canonical.min(0), canonical.max(0)
    centre, half = 0.5 * (lo + hi), scale * 0.5 * float((hi - lo).max())
    return tuple(float(v) for v in np.concatenate([centre - half, centre + half]))


class ERNeRFModel(nn.Module):
    def __init__(self, mcfg: ModelConfig, aabb: tuple[float, ...], audio_dim: int, n_codes: int):
        super().__init__()
        self.mcfg, self.audio_dim, self.n_codes = mcfg, audio_dim, n_codes
        eye_dim, eye_gate, eye_hidden = EXPRESSIONS[mcfg.expression]
        self.head = ERNeRFHead(HeadFieldConfig(aabb=aabb, n_levels=mcfg.n_levels,
                                               base_resolution=mcfg.base_resolution,
                                               finest_resolution=mcfg.finest_resolution,
                                               log2_hashmap_size=mcfg.log2_hashmap_size, n_codes=n_codes,
                                               world_scale=mcfg.world_scale,
                                               audio_net="ave" if mcfg.audio_source == "ave" else "conv",
                                               eye_dim=eye_dim, eye_gate=eye_gate, eye_att_hidden=eye_hidden),
                               audio_dim)
        self.grid = OccupancyGrid(aabb, res=mcfg.grid_res, density_thresh=mcfg.density_thresh)
        torso_grid = HashGridConfig(n_dims=2, n_levels=mcfg.torso_levels, features_per_level=2, log2_hashmap_size=16,
                                    base_resolution=16, finest_resolution=mcfg.torso_finest, grid_type="tiled")
        self.torso = TorsoField(TorsoFieldConfig(n_codes=n_codes, grid=torso_grid))
        self.torso_grid = TorsoOccupancy(resolution=mcfg.torso_grid_res)
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))

    @property
    def n_steps(self) -> int:
        return self.mcfg.n_steps

    @property
    def t_thresh(self) -> float:
        return self.mcfg.t_thresh

    @property
    def min_near(self) -> float:
        return self.mcfg.min_near

    def audio_code(self, audio_ctx: Tensor) -> Tensor:
        """``[B, 8, W, C]`` raw audio context → ``[B, dim_aud]`` (normalised with the training statistics)."""
        return self.head.encode_audio((audio_ctx - self.audio_mean) / self.audio_std)


def model_record(model: ERNeRFModel) -> dict[str, Any]:
    return {"model_config": asdict(model.mcfg), "aabb": tuple(model.head.cfg.aabb), "audio_dim": model.audio_dim,
            "n_codes": model.n_codes}


def build_model(record: dict[str, Any], state_dict: dict[str, Tensor] | None, device: torch.device) -> ERNeRFModel:
    model = ERNeRFModel(ModelConfig(**record["model_config"]), tuple(record["aabb"]), int(record["audio_dim"]),
                        int(record["n_codes"]))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.to(device)


def new_model(cell: CellData, cfg: dict[str, Any], device: torch.device, train_audio: np.ndarray) -> ERNeRFModel:
    """A fresh model for ``cell`` (box from its canonical mesh, one individual code per training frame);
    ``train_audio [N, W, C]``: the training frames' audio inputs (the cell's windows or the AVE features)."""
    mcfg = ModelConfig.from_dict(cfg)
    train = cell.train
    model = ERNeRFModel(mcfg, head_box(np.asarray(cell.canonical, np.float64), mcfg.head_box_scale),
                        train_audio.shape[-1], max(1, len(train)))
    feature = "ave" if mcfg.audio_source == "ave" else cell.audio_feature
    if standardises_audio(mcfg.audio_normalisation, feature, "method_params.ernerf.audio_normalisation"):
        audio = train_audio.reshape(-1, train_audio.shape[-1]).astype(np.float64)
        model.audio_mean.copy_(torch.from_numpy(audio.mean(0)).float())
        model.audio_std.copy_(torch.from_numpy(audio.std(0) + 1e-5).float())
    return model.to(device)
