"""The GaussianTalker model (Cho et al., ACM MM 2024): our own code, checked line by line against the released
source (KU-CVLAB/GaussianTalker at 8ec613b; ``reference/original-methods.md`` §1.2 summarises it).

Pieces, in the order data flows through them:

1. **Canonical Gaussians**: free per-point parameters ``xyz`` [N, 3], ``scaling`` [N, 3] (log), ``rotation`` [N, 4]
   (raw wxyz quaternion), ``opacity`` [N, 1] (logit), ``features_dc`` [N, 1, 3] + ``features_rest`` [N, 15, 3]
   (SH degree 3). Initialised by :func:`initial_point_cloud` on the subject's canonical face-mesh surface plus a
   head/hair extension, scale from the 3-NN distance, identity rotation, opacity logit(0.1).
2. **Tri-plane** f(μ) = :class:`~gt_core.encoders.triplane.TriPlaneEncoder` at the canonical means (64 dims).
3. **F_can** (:class:`CanonicalHeads`): trunk + one head per attribute. In the canonical stage the attributes named
   in ``triplane_attributes`` come from F_can: ``opacity`` and ``shs`` *replace* the free parameters (as the released
   code's ``replace_gaussian``); in the paper's variant ``scale`` and ``rotation`` are also predicted, as a residual
   on the free parameters (see *Deviations*). Before the deformation stage :meth:`GaussianTalkerModel.bake` writes
   F_can's outputs into the free parameters and F_can is not used again.
4. **Condition tokens** (:class:`ConditionTokens`): audio (AudioNet + AudioAttNet over the 8-frame context →
   ``audio_mlp``), eye (32-d sinusoidal encoding → ``eye_mlp``), viewpoint (flattened R (9) + T (3) → ``cam_mlp``),
   and a learnable null token: ``[B, 4, 64]``.
5. **Spatial-audio attention** (:class:`SpatialAudioAttention`): f(μ) as queries, the 4 tokens as keys/values,
   post-LN cross-attention + FFN layers; returns the attention weights ``[B, N, 4]`` (the paper's attention maps).
6. **Offset heads** (:class:`OffsetHeads`): Δμ, Δs, Δr, Δα, ΔSH added to the canonical attributes in
   pre-activation space; activations exp / normalize / sigmoid.

Deviations from the released code (each with its reason):

* Paper variant (``triplane_attributes`` with ``scale``/``rotation``): the released code never runs it, so there is
  no reference behaviour; predicting log-scales directly from a near-zero-initialised head would start every
  Gaussian at scale e⁰ = 1 world unit (a whole head in our metric units), so F_can's scale/rotation outputs are
  residuals on the free parameters (initialised to the 3-NN scales and the identity quaternion).
* Initial point cloud: the original uses the frame-mean of the tracked BFM vertices (34,650 points, a licensed
  model). We sample the mediapipe canonical face mesh (:attr:`CellData.canonical`) and extend it over hair and ears
  with points that project into the training frames' head masks (:func:`initial_point_cloud`), because the head
  protocol renders hair too and the face mesh stops at the forehead.
* The viewpoint token uses graphdeco's camera convention (R = transpose of the OpenCV world-to-camera rotation,
  T = its translation), as the original's ``viewpoint_cam.R/.T``; our world is the head's canonical frame.
* Δμ is the offset head's output × ``xyz_offset_unit`` = 0.1: the original's world unit is the face tracker's
  (BFM/1e5 ≈ decimetres; the head ≈ 1.6 units wide, 7 units from the camera), ours is the metre (the head ≈ 0.15
  wide). Without it the small-gain initial offsets (≈ 0.07 units) would move Gaussians by half a head at the start
  of the deformation stage instead of a few millimetres. Every other offset is in unit-free pre-activation space.
* ``offset_head_gain`` (0.1 = the released init; 0 in ``demo``): with gain 0.1 the untrained Δμ head moves every
  Gaussian by ~1 cm (0.1 units × 0.1 m, in the original's units too) at the first deformation step, a random
  displacement of the canonical reconstruction that the original's 320,000 frame samples have time to absorb.
  Zero-initialised heads start the deformation at the canonical Gaussians (the last layer gets gradients at once,
  the layers before it through it). On a real clip (Bob Menendez, 6 s, ``demo``): training-frame mouth_sync 0.45 →
  0.59, PSNR 31.0 → 31.8, and the lip Gaussians' separation follows the ground-truth gap at r = 0.58 instead of
  0.22 (``benchmarks/gaussiantalker_mouth.py``). Both runs end with a ~7 mm per-Gaussian constant Δμ (mostly along
  the viewing direction, which the image hardly constrains), so that part is learned, not left over from the init.
Read from the released code (``scene/deformation.py``, ``scene/transformer/``, ``scene/networks.py``) and followed:
the eye encoding multiplies the blink value by ``10000^(2⌊i/2⌋/32)`` (the code names the factor ``div_term`` but
multiplies by it, so the high channels oscillate thousands of times over [0, 1]); the q/k/v/o projections and both
FFN layers have biases; ``eye_mlp`` and ``cam_mlp`` are the same bias-free 2-layer MLP as ``audio_mlp`` (hidden 64);
the null token is ``randn`` (std 1); every Linear weight of the deformation network (F_can, condition encoders incl.
AudioNet/AudioAttNet, attention, offset heads) is Xavier-uniform with gain 1 and keeps PyTorch's default bias (the
original's ``initialize_weights`` re-initialises the weight where it meant the bias), then the heads' last layers are
Xavier gain 0.1 with zero bias; Conv1d layers keep PyTorch's default init; AudioAttNet is active from the first
iteration; no dropout on the attention probabilities (the original's dropouts sit on the attention output, inside
the FFN after the ReLU and on the FFN output), so the returned attention weights sum to 1; they are averaged over
the 2 heads, as the original's ``att.mean(dim=1)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gt_core.encoders.triplane import TriPlaneConfig, TriPlaneEncoder
from gt_core.encoders.audio import AudioEncoder
from gt_core.methods.base import known_fields
from gt_core.nn.attention import CrossAttentionLayer
from gt_core.nn.encodings import sinusoidal_encoding
from gt_core.nn.mlp import LAST_LAYER_GAIN, mlp, small_init_
from gt_core.render.cameras import project_points

SH_DEGREE = 3
SH_COEFFS = (SH_DEGREE + 1) ** 2  # 16
TRIPLANE_ATTRIBUTES = ("opacity", "shs", "scale", "rotation")


@dataclass
class ModelConfig:
    """Architecture hyper-parameters (defaults = the released ``64_dim_1_transformer`` config)."""

    triplane_resolution: int = 64
    triplane_multires: list[int] = field(default_factory=lambda: [1, 2])
    triplane_channels: int = 32
    fcan_width: int = 128
    d_model: int = 64  # = triplane_channels · len(triplane_multires)
    n_heads: int = 2
    n_layers: int = 1
    ffn_dim: int = 128
    dropout: float = 0.2
    ln_eps: float = 1e-12
    offset_width: int = 128
    dim_aud: int = 32
    audio_context: int = 8
    eye_enc_dim: int = 32
    xyz_offset_unit: float = 0.1  # metres per unit of the Δμ head's output (the original's tracker units: decimetres)
    offset_head_gain: float = LAST_LAYER_GAIN  # Xavier gain of the offset heads' last layers (released: 0.1)
    triplane_attributes: list[str] = field(default_factory=lambda: ["opacity", "shs"])

    def __post_init__(self) -> None:
        assert self.d_model == self.triplane_channels * len(self.triplane_multires), \
            f"d_model {self.d_model} must equal triplane_channels × len(triplane_multires)"
        bad = set(self.triplane_attributes) - set(TRIPLANE_ATTRIBUTES)
        assert not bad, f"unknown triplane_attributes {sorted(bad)}; choose from {TRIPLANE_ATTRIBUTES}"
        assert self.d_model % self.n_heads == 0, (self.d_model, self.n_heads)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ModelConfig":
        return cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in known_fields(cls, cfg).items()})

    @property
    def triplane(self) -> TriPlaneConfig:
        return TriPlaneConfig(self.triplane_resolution, list(self.triplane_multires), self.triplane_channels)


# ------------------------------------------------------------------------------------------------- building blocks
def init_like_released(modules: list[nn.Module], offset_gain: float = LAST_LAYER_GAIN) -> None:
    """The released code's init of its deformation network: Xavier-uniform (gain 1) on every Linear weight, biases at
    PyTorch's default, then Xavier gain 0.1 with zero bias on every attribute head's last layer (``mlp_init_zeros``);
    ``offset_gain`` replaces the 0.1 of the offset heads (0: the deformation starts at the canonical Gaussians)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, gain=1.0)
    for module in modules:
        for m in module.modules():
            if isinstance(m, (CanonicalHeads, OffsetHeads)):
                for h in m.heads.values():
                    small_init_(h[-1], offset_gain if isinstance(m, OffsetHeads) else LAST_LAYER_GAIN)


def head(d_in: int, width: int, d_out: int) -> nn.Sequential:
    """ReLU–Linear(d_in, width)–ReLU–Linear(width, d_out), last layer small-initialised."""
    return nn.Sequential(nn.ReLU(), nn.Linear(d_in, width), nn.ReLU(), small_init_(nn.Linear(width, d_out)))


class CanonicalHeads(nn.Module):
    """F_can: trunk Linear(64→W)–ReLU–Linear(W→W), then one head per attribute (scale 3, rotation 4, opacity 1,
    shs 48), each ReLU–Linear(W,W)–ReLU–Linear(W,k) with the last layer small-initialised."""

    DIMS = {"scale": 3, "rotation": 4, "opacity": 1, "shs": 3 * SH_COEFFS}

    def __init__(self, d_in: int = 64, width: int = 128):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width))
        self.heads = nn.ModuleDict({k: head(width, width, d) for k, d in self.DIMS.items()})

    def forward(self, features: Tensor, attributes: list[str]) -> dict[str, Tensor]:
        h = self.trunk(features)  # [N, W]
        return {k: self.heads[k](h) for k in attributes}


class ConditionTokens(nn.Module):
    """Audio, eye, viewpoint and null tokens ``[B, 4, d_model]``."""

    def __init__(self, audio_dim: int, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.audio = AudioEncoder(audio_dim, cfg.dim_aud, cfg.audio_context)
        self.audio_mlp = mlp(cfg.dim_aud, d, d)
        self.eye_enc_dim = cfg.eye_enc_dim
        self.eye_mlp = mlp(cfg.eye_enc_dim, d, d)
        self.cam_mlp = mlp(12, d, d)
        self.null = nn.Parameter(torch.randn(1, 1, d))  # the original's randn (std 1)

    def forward(self, audio_ctx: Tensor, eye: Tensor, viewmats: Tensor) -> Tensor:
        """``audio_ctx`` [B, 8, 16, C] (normalised), ``eye`` [B], ``viewmats`` [B, 4, 4] OpenCV w2c → [B, 4, d]."""
        b = audio_ctx.shape[0]
        assert eye.shape == (b,) and viewmats.shape == (b, 4, 4), (tuple(eye.shape), tuple(viewmats.shape))
        a = self.audio_mlp(self.audio(audio_ctx))  # [B, d]
        e = self.eye_mlp(sinusoidal_encoding(eye, self.eye_enc_dim))  # [B, d]
        rot = viewmats[:, :3, :3].transpose(1, 2).reshape(b, 9)  # graphdeco's R (c2w rotation, OpenCV axes)
        cam = self.cam_mlp(torch.cat([rot, viewmats[:, :3, 3]], dim=1))  # [B, d]
        return torch.stack([a, e, cam, self.null.expand(b, 1, -1)[:, 0]], dim=1)  # [B, 4, d]


class SpatialAudioAttention(nn.Module):
    """Stack of :class:`CrossAttentionLayer` (1 in the released config); returns the last layer's weights."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(CrossAttentionLayer(cfg.d_model, cfg.n_heads, cfg.ffn_dim, cfg.dropout,
                                                        cfg.ln_eps) for _ in range(cfg.n_layers))

    def forward(self, queries: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``queries`` [N, d] (shared by the batch) or [B, N, d]; ``tokens`` [B, T, d] → ([B, N, d], [B, N, T])."""
        x = queries[None] if queries.ndim == 2 else queries
        weights = None
        for layer in self.layers:
            x, weights = layer(x, tokens)
        return x, weights


class OffsetHeads(nn.Module):
    """Five heads ReLU–Linear(d, W)–ReLU–Linear(W, k): Δμ 3, Δs 3, Δr 4, Δα 1, ΔSH 48."""

    DIMS = {"xyz": 3, "scale": 3, "rotation": 4, "opacity": 1, "shs": 3 * SH_COEFFS}

    def __init__(self, d_model: int = 64, width: int = 128):
        super().__init__()
        self.heads = nn.ModuleDict({k: head(d_model, width, d) for k, d in self.DIMS.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {k: h(x) for k, h in self.heads.items()}  # each [B, N, k]


# -------------------------------------------------------------------------------------------------- gaussians
@dataclass
class GaussianState:
    """Pre-activation Gaussian attributes, canonical ``[N, ...]`` or per frame ``[B, N, ...]``."""

    xyz: Tensor  # [..., N, 3] world
    log_scale: Tensor  # [..., N, 3]
    rotation: Tensor  # [..., N, 4] raw wxyz
    opacity_logit: Tensor  # [..., N, 1]
    shs: Tensor  # [..., N, 16, 3]

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scale)

    @property
    def quats(self) -> Tensor:
        return F.normalize(self.rotation, dim=-1)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logit[..., 0])

    def frame(self, b: int) -> "GaussianState":
        return GaussianState(self.xyz[b], self.log_scale[b], self.rotation[b], self.opacity_logit[b], self.shs[b])


POINT_PARAMS = ("xyz", "features_dc", "features_rest", "scaling", "rotation", "opacity")


class GaussianTalkerModel(nn.Module):
    """Canonical Gaussians + tri-plane + F_can + conditions + spatial-audio attention + offset heads.

    Per-point parameters are the ``POINT_PARAMS`` attributes (``nn.Parameter``; densification replaces them).
    Buffers: ``audio_mean``/``audio_std`` [C] (training-frame statistics), ``baked`` (F_can written into the free
    parameters), ``scene_extent`` (world size used by the LR scale and the densification thresholds).
    """

    def __init__(self, points: Tensor, colors: Tensor | None, audio_dim: int, aabb: Tensor, cfg: ModelConfig,
                 scene_extent: float):
        super().__init__()
        self.cfg = cfg
        n = points.shape[0]
        assert points.shape == (n, 3), tuple(points.shape)
        self.audio_dim = audio_dim
        self.xyz = nn.Parameter(points.float().clone())
        dc = torch.zeros(n, 1, 3)
        if colors is not None:
            assert colors.shape == (n, 3), tuple(colors.shape)
            from gt_core.render.sh import rgb_to_sh0

            dc[:, 0] = rgb_to_sh0(colors.float())
        self.features_dc = nn.Parameter(dc)
        self.features_rest = nn.Parameter(torch.zeros(n, SH_COEFFS - 1, 3))
        self.scaling = nn.Parameter(knn_log_scales(points).float()[:, None].repeat(1, 3))
        rot = torch.zeros(n, 4)
        rot[:, 0] = 1.0
        self.rotation = nn.Parameter(rot)
        self.opacity = nn.Parameter(torch.full((n, 1), math.log(0.1 / 0.9)))

        self.triplane = TriPlaneEncoder(aabb, cfg.triplane)
        self.fcan = CanonicalHeads(cfg.d_model, cfg.fcan_width)
        self.conditions = ConditionTokens(audio_dim, cfg)
        self.attention = SpatialAudioAttention(cfg)
        self.offsets = OffsetHeads(cfg.d_model, cfg.offset_width)
        init_like_released(self.network_modules(), cfg.offset_head_gain)
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))
        self.register_buffer("baked", torch.tensor(False))
        self.register_buffer("scene_extent", torch.tensor(float(scene_extent)))

    # ------------------------------------------------------------------------------------------------ points
    @property
    def n_points(self) -> int:
        return int(self.xyz.shape[0])

    def resize_points(self, n: int) -> None:
        """Re-create the per-point parameters with ``n`` rows (before loading a state dict of that size)."""
        for name in POINT_PARAMS:
            old = getattr(self, name)
            setattr(self, name, nn.Parameter(old.new_zeros((n, *old.shape[1:]))))

    def network_modules(self) -> list[nn.Module]:
        """F_can, condition encoders, attention, offset heads: the original's deformation network less its grid."""
        return [self.fcan, self.conditions, self.attention, self.offsets]

    def network_parameters(self) -> list[nn.Parameter]:
        """Every MLP/attention/token parameter (the original's "deformation" LR group)."""
        return [p for m in self.network_modules() for p in m.parameters()]

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.triplane.parameters())

    # -------------------------------------------------------------------------------------------- canonical
    def features(self) -> Tensor:
        """f(μ) at the current canonical means: [N, d_model]."""
        return self.triplane(self.xyz)

    def canonical(self, features: Tensor | None = None) -> GaussianState:
        """Canonical pre-activation attributes; before :meth:`bake`, the ``triplane_attributes`` come from F_can."""
        n = self.n_points
        log_scale, rotation, opacity = self.scaling, self.rotation, self.opacity
        shs = torch.cat([self.features_dc, self.features_rest], dim=1)  # [N, 16, 3]
        attrs = self.cfg.triplane_attributes
        if not bool(self.baked) and attrs:
            out = self.fcan(self.features() if features is None else features, list(attrs))
            if "opacity" in out:
                opacity = out["opacity"]  # [N, 1]
            if "shs" in out:
                shs = out["shs"].view(n, SH_COEFFS, 3)
            if "scale" in out:
                log_scale = log_scale + out["scale"]
            if "rotation" in out:
                rotation = rotation + out["rotation"]
        return GaussianState(self.xyz, log_scale, rotation, opacity, shs)

    @torch.no_grad()
    def bake(self) -> None:
        """Write F_can's outputs into the free parameters (the end of the canonical stage)."""
        if bool(self.baked):
            return
        c = self.canonical()
        self.scaling.copy_(c.log_scale)
        self.rotation.copy_(c.rotation)
        self.opacity.copy_(c.opacity_logit)
        self.features_dc.copy_(c.shs[:, :1])
        self.features_rest.copy_(c.shs[:, 1:])
        self.baked.fill_(True)

    # ----------------------------------------------------------------------------------------------- deform
    def normalise_audio(self, audio_ctx: Tensor) -> Tensor:
        return (audio_ctx - self.audio_mean) / self.audio_std

    def deform(self, canonical: GaussianState, features: Tensor, audio_ctx: Tensor, eye: Tensor,
               viewmats: Tensor) -> tuple[GaussianState, Tensor]:
        """Per-frame Gaussians ``[B, N, ...]`` and attention weights ``[B, N, 4]``.

        Args: canonical [N, ...]; features f(μ) [N, d]; audio_ctx [B, 8, 16, C] raw features (normalised here);
        eye [B]; viewmats [B, 4, 4] OpenCV world-to-camera.
        """
        n = canonical.xyz.shape[0]
        assert features.shape == (n, self.cfg.d_model), (tuple(features.shape), n)
        assert audio_ctx.ndim == 4 and audio_ctx.shape[1:] == (self.cfg.audio_context, 16, self.audio_dim), \
            f"audio context must be [B, {self.cfg.audio_context}, 16, {self.audio_dim}], got {tuple(audio_ctx.shape)}"
        tokens = self.conditions(self.normalise_audio(audio_ctx), eye, viewmats)  # [B, 4, d]
        hidden, weights = self.attention(features, tokens)  # [B, N, d], [B, N, 4]
        d = self.offsets(hidden)
        b = tokens.shape[0]
        state = GaussianState(
            xyz=canonical.xyz + self.cfg.xyz_offset_unit * d["xyz"],
            log_scale=canonical.log_scale + d["scale"],
            rotation=canonical.rotation + d["rotation"],
            opacity_logit=canonical.opacity_logit + d["opacity"],
            shs=canonical.shs + d["shs"].view(b, n, SH_COEFFS, 3),
        )
        return state, weights


# ------------------------------------------------------------------------------------------------ initialisation
def knn_log_scales(points: Tensor, k: int = 3) -> Tensor:
    """log √(mean squared distance to the ``k`` nearest neighbours) per point [N] (the original's scale init)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    dist, _ = cKDTree(pts).query(pts, k=min(k + 1, len(pts)))
    d2 = np.maximum((dist[:, 1:] ** 2).mean(axis=1), 1e-7) if len(pts) > 1 else np.full(len(pts), 1e-7)
    return torch.from_numpy(np.log(np.sqrt(d2))).to(points.device)


@lru_cache(maxsize=1)
def face_mesh_triangles() -> np.ndarray:
    """[T, 3] vertex indices of the mediapipe face-mesh triangles (3-cliques of FACEMESH_TESSELATION's edges)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    nbrs: dict[int, set[int]] = {}
    for a, b in FACEMESH_TESSELATION:
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in FACEMESH_TESSELATION for c in nbrs[a] & nbrs[b]}
    return np.array(sorted(tris), dtype=np.int64)


def sample_triangles(vertices: np.ndarray, triangles: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly (area-weighted) on the surface of a triangle mesh → [n, 3]."""
    tri = vertices[triangles]  # [T, 3, 3]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    idx = rng.choice(len(tri), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[idx]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def _mask_votes(points: np.ndarray, masks: np.ndarray, c2ws: np.ndarray, intr: tuple[float, float, float, float]
                ) -> np.ndarray:
    """Fraction of the frames in whose ``masks`` [K, H, W] (bool) each point [P, 3] projects: [P]."""
    h, w = masks.shape[1:]
    votes = np.zeros(len(points))
    for mask, c2w in zip(masks, c2ws):
        uv = np.floor(project_points(points, c2w, *intr)).astype(np.int64)
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        votes[ok] += mask[uv[ok, 1], uv[ok, 0]]
    return votes / len(masks)


def _inside_footprint(xy: np.ndarray, tri_xy: np.ndarray) -> np.ndarray:
    """Whether 2D points [P, 2] fall in any triangle [T, 3, 2] (the face mesh seen from the front)."""
    inside = np.zeros(len(xy), bool)
    a, b, c = tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]
    for start in range(0, len(xy), 4096):
        p = xy[start:start + 4096, None]  # [p, 1, 2]

        def side(p0, p1):
            return (p1[..., 0] - p0[..., 0]) * (p[..., 1] - p0[..., 1]) - (p1[..., 1] - p0[..., 1]) * (p[..., 0] - p0[..., 0])

        s1, s2, s3 = side(a, b), side(b, c), side(c, a)
        inside[start:start + 4096] = (((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))).any(1)
    return inside


def initial_point_cloud(canonical: np.ndarray, head_masks: np.ndarray, c2ws: np.ndarray,
                        intr: tuple[float, float, float, float], n_points: int, seed: int,
                        min_votes: float = 0.6) -> tuple[np.ndarray, dict[str, Any]]:
    """Initial Gaussian centres [P, 3]: the face-mesh surface plus a head/hair extension (see the module docstring).

    * Face: area-weighted random points on the mediapipe triangles of ``canonical[:468]``.
    * Extension: candidates (x, y) in a box around the face (2.4 face widths wide, from half a face height below the
      chin to 0.8 above the forehead), outside the face mesh's frontal footprint, given a depth that continues the
      face surface backwards — the depth of the nearest face vertex minus half the (x, y) distance to it — and kept
      when they project into the head mask (label 2) of at least ``min_votes`` of the sampled training frames
      ``head_masks`` [K, H, W] (cameras ``c2ws`` [K, 4, 4], ``intr`` = fx, fy, cx, cy). So hair and ears get points
      wherever the training frames show head, and nothing is placed in front of the face.
    * The budget is split by area: the face-mesh surface area vs the kept extension area (× 1.3 for the slope of
      the extension surface), each side getting at least 20 %.

    Returns the points and a dict of statistics (counts, areas) for the training log.
    """
    rng = np.random.default_rng(seed)
    face = canonical[:468].astype(np.float64)
    tris = face_mesh_triangles()
    lo, hi = face.min(0), face.max(0)
    width, height = hi[0] - lo[0], hi[1] - lo[1]
    # extension candidates on a dense random set, to estimate its area and draw points from
    m = max(40000, 2 * n_points)
    box_lo = np.array([lo[0] - 0.7 * width, lo[1] - 0.5 * height])
    box_hi = np.array([hi[0] + 0.7 * width, hi[1] + 0.8 * height])
    xy = box_lo + rng.random((m, 2)) * (box_hi - box_lo)
    outside = ~_inside_footprint(xy, face[tris][..., :2])
    from scipy.spatial import cKDTree

    dist, nearest = cKDTree(face[:, :2]).query(xy)
    z = face[nearest, 2] - 0.5 * dist - 0.01 * rng.random(m)
    cand = np.concatenate([xy, z[:, None]], axis=1)
    keep = outside & (_mask_votes(cand, head_masks, c2ws, intr) >= min_votes)
    ext = cand[keep]
    tri = face[tris]
    face_area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    ext_area = 1.3 * keep.mean() * np.prod(box_hi - box_lo)
    frac = float(np.clip(ext_area / (face_area + ext_area), 0.2, 0.8)) if len(ext) else 0.0
    n_ext = int(round(frac * n_points))
    n_face = n_points - n_ext
    pts_face = sample_triangles(face, tris, n_face, rng)
    if n_ext:
        pick = rng.choice(len(ext), size=n_ext, replace=n_ext > len(ext))
        jitter = (rng.random((n_ext, 2)) - 0.5) * (box_hi - box_lo) / math.sqrt(m)  # within one candidate spacing
        pts_ext = ext[pick] + np.concatenate([jitter, np.zeros((n_ext, 1))], axis=1)
        points = np.concatenate([pts_face, pts_ext])
    else:
        points = pts_face
    stats = {"n_face": n_face, "n_extension": n_ext, "face_area": float(face_area), "extension_area": float(ext_area)}
    return points.astype(np.float32), stats


def point_colors(points: np.ndarray, image: np.ndarray, c2w: np.ndarray,
                 intr: tuple[float, float, float, float]) -> np.ndarray:
    """RGB in [0, 1] of ``image`` [H, W, 3] uint8 at the projections of ``points`` [P, 3] (nearest pixel, clamped)."""
    h, w = image.shape[:2]
    uv = np.floor(project_points(points.astype(np.float64), c2w, *intr)).astype(np.int64)
    u, v = np.clip(uv[:, 0], 0, w - 1), np.clip(uv[:, 1], 0, h - 1)
    return image[v, u].astype(np.float32) / 255.0
