"""ER-NeRF's torso model: a 2-D image-space field (pixel + head pose + per-frame code → torso rgb and alpha).

The torso is not part of the head's radiance field. Each pixel coordinate ``p`` in ``[-1, 1]^2`` is shrunk
(``x = 0.8 · p``) and warped by a small deformation net conditioned on the head pose, and a 2-D multi-level
``tiled`` grid is read at the warped point. The head pose enters through the *adaptive pose encoding*: three
learnable homogeneous anchor points, taken into the frame's camera and perspective-projected, give 6 numbers that
are frequency-encoded. ``α`` and rgb are ``sigmoid(·) · 1.002 − 0.001``. A 128² occupancy grid over pixel space
(:class:`TorsoOccupancy`) skips pixels where no training pose ever produced torso alpha.

Shapes: deform net ``cat[enc(x) 34, enc(pose) 42, code 8] = 84 → 2`` (hidden 32, 3 layers); grid 16 levels × 2
features (base 16, finest 2048, 2^16 rows, ``tiled``) → 32; torso net ``cat[grid 32, the deform net's 84-d input]
= 116 → 4`` (hidden 32, 3 layers). All MLPs are bias-free (:func:`gt_core.nn.mlp.mlp`).

Checked against Fictionarry/ER-NeRF @0cf72d8 (``git show HEAD:<file>``):

- nerf_triplane/network.py:152-163 (anchors ``[[.01,.01,.1,1], [-.1,-.1,.1,1], [.1,-.1,.1,1]]``; frequency encoders
  multires 8 on 2-D and 3 on 6-D; ``tiledgrid`` 16×2, base 16, log2 16, desired 2048; deform net 84→2 and torso
  net 116→4, hidden 32, 3 layers), 166-201 (``forward_torso``: ``x · torso_shrink``, anchors ``@ poses^T.inverse()``
  = ``inverse(pose) @ anchor``, ``(xy / w) / z`` flattened anchor-major, ``x = clamp(x + dx, -1, 1)``, grid with
  bound 1, torso net on ``cat[grid, h]``; returns ``alpha, color, dx``), 315-327 (torso ``get_params``).
- nerf_triplane/renderer.py:98-101 (torso codes ``randn(ind_num, 8) · 0.1``), 119-123 (128² grid, mean 0),
  294-352 (``run_torso``: ``codes[index]`` when training else ``codes[0]``; occupancy ``grid_sample(...,
  align_corners=True) > min(density_thresh_torso, mean)``; α = rgb = 0 off the mask; ``rgb·α + bg·(1 − α)``),
  487-528 (update: cells ``c`` in ij order, ``(2c/127 − 1)(1 − 1/128) + U(±1/128)``, stored at
  ``[c_1, c_0]`` (row = second coordinate), 5×5 max-pool stride 1 pad 2, ``max(grid · 0.95, new)``, mean after).
- nerf_triplane/utils.py:240-245 (``get_bg_coords``: ``[row, col]``, each ``2·i/(n − 1) − 1``, row-major),
  765-768 (torso loss ``mse.mean() + mean((1 − anchor_w)²)``, then return, so the torso α-entropy at 833-837 never
  runs), 1237-1241 (extra-state update at ``global_step % 16 == 0`` *before* the step, so also at step 0).
- main.py:29-30, 56, 63, 68, 94, 216 (lr 1e-2 / 1e-3, shrink 0.8, scale 4, thresh 0.01, code dim 8, AdamW
  betas (0, 0.99)); provider.py:19-26 (``nerf_matrix_to_ngp``: world axes → (y, z, x), camera y, z negated,
  translation × scale); data_utils/process.py:276 (translations /10: tracker decimetres → metres).
- gridencoder/grid.py:96-117 and src/gridencoder.cu:55-72 (``tiled``: see gt_core/encoders/hashgrid.py);
  freqencoder/src/freqencoder.cu:30-58 (``[x, sin 2^k x, cos 2^k x]`` blocks, k = 0 … multires − 1).

Frames. The original's pose is camera-to-NGP-world: NGP ``(x, y, z) = 4 · (y, z, x)`` of the tracker's head frame
(metres after /10; BFM axes: x the subject's left, y up, z out of the face), camera axes OpenCV. Our ``c2w`` is
OpenGL camera-to-head in metres with the same head axes (gt_core/preprocess/pose.py). The parameter ``anchors``
holds the original's NGP numbers (same init, so Adam and the anchor loss act exactly as there); the head-frame
anchors are ``xyz_head = anchor_scale · (z, x, y)_ngp``, ``w`` unchanged. ``anchor_scale = 0.25 = 1 / --scale``
puts them at the same place relative to the head (≤ 4.4 cm from its centre). Projected in OpenCV axes,
``u = x_cv / (w · z_cv)``, ``v = y_cv / (w · z_cv)`` — the same 6 numbers as the original's for the same
camera, because the common factor 4 cancels. ``z_cv`` is the depth (> 0.5 m for our 0.6–2 m cameras).

Pixel coordinates keep the original's order: ``coords[:, 0]`` is the **row** (−1 = top row's centre, +1 = bottom
row's), ``coords[:, 1]`` the **column** (:func:`torso_pixel_coords`). The architecture treats both axes alike, so
this only matters for matching the original and the occupancy grid (which follows the same order internally).

Deviations (and why):

1. The grid is gt_core's pure-torch ``tiled`` HashGrid (any device); its x-derivative equals the kernel's
   ``dy_dx``, through which the deform net learns. Its clamp to [0, 1] never acts: the warp is already clamped.
2. Our head frame and OpenGL c2w replace the NGP world (mapping above). The projection is unguarded like the
   original's (``w → 0`` or an anchor at the camera's depth ``z_cv ≈ 0`` would blow it up; the anchor loss keeps
   ``w`` near 1).
3. The frequency encoder's empty parameter group is omitted; the grid group's weight decay 0.01 (AdamW's default,
   which the original gets by giving no key) is written out, so use AdamW(betas (0, 0.99), eps 1e-8) to match.
4. ``code_index`` is the caller's (``None`` → code 0, the original's eval rule) instead of ``self.training``.
5. :class:`TorsoOccupancy` thresholds with the grid's current mean; the original keeps a Python float that is not
   checkpointed (0 after reloading until the next update). Which training pose/code to update with is the caller's
   (the original draws one training frame uniformly, renderer.py:492-499): ``update`` takes an alpha function.
6. The unreachable torso α-entropy term is not implemented; ``anchor_loss`` is the anchor term alone.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gt_core.encoders.hashgrid import HashGrid, HashGridConfig
from gt_core.nn.encodings import frequency_encoding, frequency_encoding_dim
from gt_core.nn.mlp import mlp

ANCHORS_NGP_INIT = ((0.01, 0.01, 0.1, 1.0), (-0.1, -0.1, 0.1, 1.0), (0.1, -0.1, 0.1, 1.0))  # network.py:155
NGP_TO_HEAD_AXES = (2, 0, 1)  # head (x, y, z) = NGP (z, x, y) / scale (provider.py:19-26)
OUTPUT_MARGIN = 0.001  # sigmoid · (1 + 2·0.001) − 0.001 (network.py:198-199)
DEFAULT_LR_GRID = 1e-2  # main.py:29
DEFAULT_LR_NET = 1e-3  # main.py:30
ADAMW_DEFAULT_WEIGHT_DECAY = 0.01  # torso_encoder group has no weight_decay key (network.py:317)
NET_WEIGHT_DECAY = 0.0  # get_params(wd=0), network.py:312


def torso_grid_config() -> HashGridConfig:
    """The torso encoder (network.py:162): 2-D tiled, 16 levels × 2, base 16, finest 2048, 2^16 rows → 32 dims."""
    return HashGridConfig(n_dims=2, n_levels=16, features_per_level=2, log2_hashmap_size=16, base_resolution=16,
                          finest_resolution=2048.0, grid_type="tiled")


@dataclass
class TorsoFieldConfig:
    """:class:`TorsoField` hyper-parameters; defaults = the original's (``--torso``, ``-O``)."""

    shrink: float = 0.8  # --torso_shrink: pixel coords × 0.8 before the warp
    anchor_scale: float = 0.25  # NGP units → metres: 1 / --scale (see the module docstring)
    pose_multires: int = 3  # 6 projected numbers → 6 · 7 = 42
    coord_multires: int = 8  # 2 coords → 2 · 17 = 34
    code_dim: int = 8  # --ind_dim_torso (0 = no code)
    n_codes: int = 10000  # --ind_num; must exceed the number of training frames
    code_init_std: float = 0.1
    deform_hidden: int = 32
    deform_layers: int = 3
    net_hidden: int = 32
    net_layers: int = 3
    grid: HashGridConfig = field(default_factory=torso_grid_config)

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"TorsoFieldConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("shrink", "anchor_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v < math.inf:
                fail(name, "a finite number > 0")
        for name, lo in (("pose_multires", 0), ("coord_multires", 0), ("code_dim", 0), ("n_codes", 1),
                         ("deform_hidden", 1), ("deform_layers", 1), ("net_hidden", 1), ("net_layers", 1)):
            if not is_int(getattr(self, name)) or getattr(self, name) < lo:
                fail(name, f"an int >= {lo}")
        if not isinstance(self.code_init_std, (int, float)) or not 0 <= self.code_init_std < math.inf:
            fail("code_init_std", "a finite number >= 0")
        if not isinstance(self.grid, HashGridConfig) or self.grid.n_dims != 2:
            fail("grid", "a 2-D HashGridConfig")

    @property
    def pose_dim(self) -> int:
        return frequency_encoding_dim(6, self.pose_multires)

    @property
    def coord_dim(self) -> int:
        return frequency_encoding_dim(2, self.coord_multires)

    @property
    def deform_in_dim(self) -> int:
        return self.coord_dim + self.pose_dim + self.code_dim

    @property
    def net_in_dim(self) -> int:
        return self.grid.out_dim + self.deform_in_dim


class TorsoOutput(NamedTuple):
    rgb: Tensor  # [R, 3] in (−0.001, 1.001)
    alpha: Tensor  # [R] in (−0.001, 1.001)
    deform: Tensor  # [R, 2] the deform net's raw offset dx (the original's returned ``deform``)
    warped: Tensor  # [R, 2] clamp(shrink · coords + dx, −1, 1): where the grid is read


def torso_pixel_coords(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """``[H·W, 2]`` row-major pixel coordinates ``(row, col)``, each ``2·i/(n − 1) − 1`` (utils.py:240-245)."""
    assert height >= 2 and width >= 2, (height, width)
    rows = torch.arange(height, device=device, dtype=torch.float32) / (height - 1) * 2 - 1
    cols = torch.arange(width, device=device, dtype=torch.float32) / (width - 1) * 2 - 1
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], dim=-1)


def _activate(h: Tensor) -> Tensor:
    return torch.sigmoid(h) * (1 + 2 * OUTPUT_MARGIN) - OUTPUT_MARGIN


class TorsoField(nn.Module):
    """``(coords [R, 2], c2w [4, 4], code_index)`` → :class:`TorsoOutput` (see the module docstring)."""

    def __init__(self, cfg: TorsoFieldConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TorsoFieldConfig()
        self.anchors = nn.Parameter(torch.tensor(ANCHORS_NGP_INIT))  # [3, 4] NGP units (x, y, z, w)
        self.deform_net = mlp(cfg.deform_in_dim, 2, cfg.deform_hidden, cfg.deform_layers)
        self.grid = HashGrid(cfg.grid, generator)
        self.net = mlp(cfg.net_in_dim, 4, cfg.net_hidden, cfg.net_layers)
        codes = torch.randn(cfg.n_codes, cfg.code_dim, generator=generator) * cfg.code_init_std
        self.codes = nn.Parameter(codes)  # [n_codes, code_dim]

    def anchors_head(self) -> Tensor:
        """``[3, 4]`` homogeneous anchors in our head frame (metres): ``(scale · (z, x, y)_ngp, w)``."""
        xyz = self.anchors[:, list(NGP_TO_HEAD_AXES)] * self.cfg.anchor_scale
        return torch.cat([xyz, self.anchors[:, 3:]], dim=-1)

    def anchor_projection(self, c2w: Tensor) -> Tensor:
        """``[6]``: ``(u, v)`` per anchor, ``u = x_cv / (w · z_cv)``, ``v = y_cv / (w · z_cv)`` (OpenCV camera axes)."""
        assert c2w.shape == (4, 4), f"c2w must be [4, 4], got {tuple(c2w.shape)}"
        anchors = self.anchors_head()  # [3, 4]
        w2c = torch.linalg.inv(c2w.to(anchors))  # OpenGL world → camera
        cam = anchors @ w2c.T  # [3, 4]: (x, y, z, w) with y up, z backwards
        x_cv, y_cv, z_cv, w = cam[:, 0], -cam[:, 1], -cam[:, 2], cam[:, 3]
        uv = torch.stack([x_cv / w / z_cv, y_cv / w / z_cv], dim=-1)  # [3, 2]
        return uv.reshape(6)  # anchor-major, as the original's view(1, -1)

    def pose_encoding(self, c2w: Tensor) -> Tensor:
        """``[pose_dim]`` (42): frequency encoding of :meth:`anchor_projection`."""
        return frequency_encoding(self.anchor_projection(c2w), self.cfg.pose_multires)

    def code(self, code_index: int | None) -> Tensor:
        """``[code_dim]``: ``codes[code_index]``; ``None`` → code 0 (the original's rule outside training)."""
        i = 0 if code_index is None else operator.index(code_index)
        if not 0 <= i < self.cfg.n_codes:
            raise IndexError(f"code_index {i} out of range [0, {self.cfg.n_codes})")
        return self.codes[i]

    def forward(self, coords: Tensor, c2w: Tensor, code_index: int | None = None) -> TorsoOutput:
        assert coords.ndim == 2 and coords.shape[1] == 2, f"coords must be [R, 2], got {tuple(coords.shape)}"
        n = coords.shape[0]
        x = coords.to(self.anchors.dtype) * self.cfg.shrink  # [R, 2]
        enc_pose = self.pose_encoding(c2w)  # [42]
        h = torch.cat([frequency_encoding(x, self.cfg.coord_multires),  # [R, 34]
                       enc_pose.expand(n, -1), self.code(code_index).expand(n, -1)], dim=-1)  # [R, 84]
        dx = self.deform_net(h)  # [R, 2]
        warped = (x + dx).clamp(-1.0, 1.0)
        feat = self.grid((warped + 1.0) / 2.0)  # [R, 32]; bound 1: [-1, 1] → [0, 1]
        out = _activate(self.net(torch.cat([feat, h], dim=-1)))  # [R, 4]
        alpha, rgb = out[:, 0], out[:, 1:]
        assert rgb.shape == (n, 3) and alpha.shape == (n,) and dx.shape == (n, 2)
        return TorsoOutput(rgb=rgb, alpha=alpha, deform=dx, warped=warped)

    def param_groups(self, lr_grid: float = DEFAULT_LR_GRID, lr_net: float = DEFAULT_LR_NET) -> list[dict]:
        """Optimizer groups in the original's order (network.py:315-327):

        ================  =======  ==========================================
        name              lr       weight_decay
        ================  =======  ==========================================
        torso_grid        lr_grid  0.01 (AdamW default; no key in the original)
        torso_net         lr_net   0
        torso_deform_net  lr_net   0
        anchors           lr_net   0
        torso_codes       lr_net   0 (only when code_dim > 0)
        ================  =======  ==========================================
        """
        def group(name: str, params, lr: float, wd: float) -> dict:
            return {"name": name, "params": list(params), "lr": lr, "weight_decay": wd}

        groups = [group("torso_grid", self.grid.parameters(), lr_grid, ADAMW_DEFAULT_WEIGHT_DECAY),
                  group("torso_net", self.net.parameters(), lr_net, NET_WEIGHT_DECAY),
                  group("torso_deform_net", self.deform_net.parameters(), lr_net, NET_WEIGHT_DECAY),
                  group("anchors", [self.anchors], lr_net, NET_WEIGHT_DECAY)]
        if self.cfg.code_dim > 0:
            groups.append(group("torso_codes", [self.codes], lr_net, NET_WEIGHT_DECAY))
        return groups


def anchor_loss(field: TorsoField) -> Tensor:
    """``[]``: ``mean_k (1 − w_k)²`` over the 3 anchors' homogeneous weights (utils.py:767), weight 1."""
    return ((1.0 - field.anchors[:, 3]) ** 2).mean()


class TorsoOccupancy(nn.Module):
    """The 2-D torso occupancy grid over pixel coordinates (renderer.py:119-123, 324-327, 487-528).

    Buffer ``grid [res, res]`` (saved): ``grid[j_1, j_0]`` holds the cell whose first coordinate has index ``j_0``.
    """

    def __init__(self, resolution: int = 128, decay: float = 0.95, interval: int = 16, threshold: float = 0.01,
                 dilation: int = 5):
        super().__init__()
        assert resolution >= 2 and interval >= 1 and dilation % 2 == 1 and 0 <= decay <= 1, \
            (resolution, interval, dilation, decay)
        self.resolution, self.decay, self.interval = resolution, decay, interval
        self.threshold, self.dilation = threshold, dilation
        self.register_buffer("grid", torch.zeros(resolution, resolution))

    @torch.no_grad()
    def update(self, alpha_fn: Callable[[Tensor], Tensor], step: int, force: bool = False,
               generator: torch.Generator | None = None) -> bool:
        """At ``step % interval == 0`` (or ``force``): ``grid = max(grid · decay, maxpool(α at the cells))``.

        ``alpha_fn``: ``[M, 2]`` coords → ``[M]`` torso alpha of one (random training) pose and code, e.g.
        ``lambda xy: field(xy, c2w, i).alpha``. Returns whether it updated.
        """
        if not force and step % self.interval != 0:
            return False
        n, dev = self.resolution, self.grid.device
        j0, j1 = torch.meshgrid(torch.arange(n, device=dev), torch.arange(n, device=dev), indexing="ij")
        cells = torch.stack([j0.reshape(-1), j1.reshape(-1)], dim=-1)  # [n², 2]
        half = 1.0 / n
        jitter = torch.rand(cells.shape, generator=generator,
                            device=dev if generator is None else generator.device).to(dev)
        xy = (2.0 * cells.float() / (n - 1) - 1.0) * (1.0 - half) + (jitter * 2.0 - 1.0) * half  # [n², 2]
        alpha = alpha_fn(xy).reshape(-1).float()
        assert alpha.shape == (n * n,), f"alpha_fn must return [{n * n}], got {tuple(alpha.shape)}"
        fresh = torch.zeros_like(self.grid)
        fresh[cells[:, 1], cells[:, 0]] = alpha  # row = second coordinate (renderer.py:510)
        pad = self.dilation // 2
        fresh = F.max_pool2d(fresh[None, None], kernel_size=self.dilation, stride=1, padding=pad)[0, 0]
        self.grid.copy_(torch.maximum(self.grid * self.decay, fresh))
        return True

    def mask(self, coords: Tensor) -> Tensor:
        """``[R]`` bool: the bilinear occupancy at ``coords [R, 2]`` exceeds ``min(threshold, mean(grid))``."""
        assert coords.ndim == 2 and coords.shape[1] == 2, f"coords must be [R, 2], got {tuple(coords.shape)}"
        occ = F.grid_sample(self.grid[None, None], coords.to(self.grid).view(1, -1, 1, 2),
                            align_corners=True).view(-1)  # [R]
        return occ > min(self.threshold, float(self.grid.mean()))


def render_torso(field: TorsoField, occupancy: TorsoOccupancy | None, coords: Tensor, c2w: Tensor,
                 code_index: int | None, bg: Tensor) -> tuple[Tensor, Tensor]:
    """``run_torso`` (renderer.py:324-343): torso over ``bg [R, 3]`` → (rgb ``[R, 3]``, alpha ``[R]``).

    Off the occupancy mask the field is not queried and α = rgb = 0. This is the torso stage's prediction; the
    original's torso loss is ``mse(rgb, gt torso over bc) + anchor_loss``.
    """
    n = coords.shape[0]
    assert bg.shape == (n, 3), f"bg must be [{n}, 3], got {tuple(bg.shape)}"
    mask = torch.ones(n, dtype=torch.bool, device=coords.device) if occupancy is None else occupancy.mask(coords)
    alpha = torch.zeros(n, dtype=bg.dtype, device=bg.device)
    rgb = torch.zeros(n, 3, dtype=bg.dtype, device=bg.device)
    if bool(mask.any()):
        out = field(coords[mask], c2w, code_index)
        alpha = alpha.index_put((mask,), out.alpha.to(bg.dtype))
        rgb = rgb.index_put((mask,), out.rgb.to(bg.dtype))
    return rgb * alpha[:, None] + bg * (1.0 - alpha[:, None]), alpha
