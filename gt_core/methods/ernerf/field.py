"""ER-NeRF's audio-conditioned head field: world point + view direction + audio + eye → (σ, rgb, side outputs).

For a point ``x`` the field reads a 36-d spatial feature ``f = TriPlaneHash(x)`` (three 2-D hash planes xy/yz/xz,
12 levels × 1 feature each, concatenated). Two small nets on ``f`` form the *region attention*: a per-channel
weight vector ``att = A(f)`` (linear output, may be negative) that scales the frame's 32-d audio code, and an eye
gate ``g = sigmoid(E(f))`` that scales the scalar eye-blink value. The sigma net maps
``cat[f, code_aud ⊙ att, eye · g]`` (69-d) to ``h``; ``σ = exp(h_0)`` and ``h_1..64`` is a geometry feature. The
colour net maps ``cat[SH16(d), geo, individual code]`` (84-d) to ``sigmoid(·) · 1.002 − 0.001``. A separate head
predicts a per-point uncertainty from the *detached* ``f``. ``‖att‖₂`` and ``g`` are returned as the "ambient"
outputs that the losses keep small away from the face.

Checked against Fictionarry/ER-NeRF @0cf72d8 (``git show HEAD:<file>``):

- nerf_triplane/network.py:69-90 (bias-free MLP, ReLU between layers), 125-131 (three plane encoders, 12×1, base
  64, 2^14, finest 512·bound), 134-148 (eye_att 36→1 hidden 16 ×2; sigma 69→65 hidden 64 ×3; colour 84→3 hidden 64
  ×2 on SH degree 4 = 16 dims; unc 36→1 hidden 32 ×2; aud_ch_att 36→32 hidden 64 ×2), 204-219 (plane split and
  concatenation), 222-237 (AudioNet per context frame, then AudioAttNet), 240-246 and 274-275 (uncertainty:
  ``unc_net(f.detach())``, zeros when testing or ``--unc_loss 0``, then ``log(1 + exp(u))``), 249-308 (forward /
  density: ``enc_a ⊙ aud_ch_att``, ``e · sigmoid(eye_att)``, ``σ = exp(h[0])``, ``rgb = sigmoid·(1 + 2·0.001) − 0.001``,
  ``ambient_aud = ‖att‖``, ``ambient_eye = sigmoid``), 311-354 (``get_params``).
- nerf_triplane/renderer.py:91-96 (codes ``randn(ind_num, ind_dim) · 0.1``), 197-204 (training: ``codes[index]``;
  otherwise ``codes[0]``); main.py:91-92 (ind_dim 4, ind_num 10000), 29-30 (lr 1e-2 grids, 1e-3 nets), 216
  (AdamW, betas (0, 0.99)); shencoder/src/shencoder.cu (SH basis order and signs, checked equal to
  gt_core.render.sh's for unit directions).

SyncTalk's field (ZiqiaoPeng/SyncTalk nerf_triplane/network.py) is this one with two switches, checked there:
``audio_net="ave"`` — the per-frame audio net is ``AudioNet_ave`` (:120-137, an MLP 512→256→128→32 on the AVE
feature) instead of AudioNet (:188 ``asr_model == 'ave'``); ``eye_dim=7, eye_gate="linear", eye_att_hidden=64`` —
``--bs_area upper`` gives ``eye_att_net = MLP(36, 7, 64, 2)`` (:213-216) and ``density`` multiplies the 7 values by
its output without a sigmoid (:377-378), returning ``‖eye_att‖`` as ``ambient_eye`` (:393; for ER-NeRF's one
sigmoid value the norm is the value itself, so one formula serves both). The rest (planes, sigma/colour/unc/att
nets, codes, groups) is ER-NeRF's unchanged.

Deviations (and why):

1. World points (metres, our camera frame) are mapped into the tri-plane through ``cfg.aabb``; the original hashes
   its NGP world (axes permuted, translation ×4) over the cube ``[-bound, bound]^3`` and samples rays only inside
   ``[-1, -0.5, -1, 1, 0.5, 1]``. We have no NGP world. A non-cubic box gives anisotropic cells; pass a cube around
   the head to keep the original's isotropic cells. Its *distances* are kept, though: the original's poses are the
   face tracker's translations / 10 (``data_utils/process.py``; ~metres: a face ~0.19 wide at ~0.7) times ``--scale``
   4 (main.py; provider.py ``nerf_matrix_to_ngp``), so its σ is a density per quarter metre. The renderer composites
   with ``δ · world_scale`` (:func:`~gt_core.methods.ernerf.render.render_head_rays`), so ``σ = exp(h)`` means what it
   means in the original, and ``density_thresh`` 10 with it. Compositing in metres (as before 12-02) needs σ four
   times larger for the same opacity, the bias-free sigma net's output shifted by ln 4; on the demo 10 s cell the fix
   moved LMD 2.46 → 2.20, mouth_sync 0.82 → 0.90, PSNR 29.84 → 30.11 and train time 336 → 302 s (``method.py``).
2. The hash encoder is gt_core's pure-torch one (any device; out-of-box points are clamped onto the box where the
   CUDA kernel returns zeros; see gt_core/encoders/hashgrid.py).
3. Which individual code to use is the caller's choice (``code_index``; ``None`` → code 0, the original's eval rule)
   instead of being tied to ``self.training``, so validation on training frames can pick either rule.
4. The uncertainty head is gated by ``nn.Module.training`` and ``use_uncertainty`` instead of the separate
   ``model.testing`` flag and ``--unc_loss``: the original still runs it during in-training validation. Only the
   uncertainty output changes; σ and rgb do not. Softplus is ``F.softplus`` (overflow-safe) instead of
   ``log(1 + exp(u))``, which becomes inf for u > 88.
5. With ``use_eye=False`` ``ambient_eye`` is zeros; the original's ``density`` would hit an unbound ``eye_att`` when
   it gets no eye value. As in the original, ``eye_att_net`` is built (and in ``param_groups``) either way.
6. The audio encoder is batched over frames ([B, 8, 16, C]); the original encodes one frame per call. ``--emb``,
   ``--smooth_lips``, ``--train_camera`` and the torso model are not part of this block.
7. The encoder groups carry an explicit ``weight_decay`` 0.01, the value AdamW gives them implicitly in the
   original (their groups have no key), so the groups mean the same under any optimizer.
8. Outputs are flat ``[P]`` (the original returns ``[N, 1]`` ambient values and ``[N, 1, 1]`` uncertainty in
   training, ``[N, 36, 1]`` when testing).
9. The SH basis is computed in torch from gt_core.render.sh's constants (graphdeco's polynomials). It equals the
   shencoder kernel's for unit directions; the two differ for non-unit ones, so unit directions are asserted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gt_core.encoders.audio import AudioEncoder
from gt_core.encoders.hashgrid import HashGridConfig, TriPlaneHash, TriPlaneHashConfig
from gt_core.nn.mlp import mlp
from gt_core.render.sh import SH_C0, SH_C1, SH_C2, SH_C3

RGB_SCALE = 1.0 + 2 * 0.001  # network.py:272
RGB_SHIFT = 0.001  # network.py:272
CODE_INIT_STD = 0.1  # renderer.py:96
LOG2 = math.log(2.0)  # softplus(0): the uncertainty when the head is off (network.py:241-242, 275)
ATT_LR_FACTOR = 5.0  # network.py:341
ATT_WEIGHT_DECAY = 1e-4  # network.py:341
NET_WEIGHT_DECAY = 0.0  # get_params(wd=0), network.py:312
ADAMW_DEFAULT_WEIGHT_DECAY = 0.01  # torch.optim.AdamW default; the encoder groups have no key (network.py:332-334)
DEFAULT_LR_GRID = 1e-2  # main.py:29
DEFAULT_LR_NET = 1e-3  # main.py:30
UNIT_DIR_TOL = 1e-2
EYE_GATES = ("sigmoid", "linear")
AUDIO_NETS = ("conv", "ave")


@dataclass
class HeadFieldConfig:
    """Hyper-parameters of :class:`ERNeRFHead`; defaults are the original's (network.py:125-148, main.py:87-92)."""

    aabb: tuple[float, float, float, float, float, float]  # world box: xmin ymin zmin xmax ymax zmax
    n_levels: int = 12
    features_per_level: int = 1
    base_resolution: int = 64
    finest_resolution: float = 512.0
    log2_hashmap_size: int = 14
    dim_aud: int = 32
    audio_context: int = 8
    audio_net: str = "conv"  # per-frame audio net: "conv" (AudioNet on [16, C] windows) or "ave" (SyncTalk's MLP)
    use_eye: bool = True
    eye_dim: int = 1  # expression values per frame (1: ER-NeRF's AU45 blink; 7: SyncTalk's brows and blinks)
    eye_gate: str = "sigmoid"  # the expression attention's output: "sigmoid" (ER-NeRF) or "linear" (SyncTalk)
    n_codes: int = 10000  # ind_num; must cover the training frames
    code_dim: int = 4
    sigma_hidden: int = 64
    sigma_layers: int = 3
    geo_dim: int = 64
    color_hidden: int = 64
    color_layers: int = 2
    att_hidden: int = 64
    eye_att_hidden: int = 16
    unc_hidden: int = 32
    sh_bands: int = 16
    world_scale: float = 4.0  # NGP units per metre (main.py --scale 4): σ is a density per NGP unit

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"HeadFieldConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        try:
            box = tuple(float(v) for v in self.aabb)
        except (TypeError, ValueError):
            box = ()
        if len(box) != 6 or not all(math.isfinite(v) for v in box) or not all(box[i] < box[i + 3] for i in range(3)):
            fail("aabb", "6 finite numbers (min xyz, max xyz) with min < max")
        self.aabb = box  # type: ignore[assignment]
        positive = ("n_levels", "features_per_level", "base_resolution", "log2_hashmap_size", "dim_aud",
                    "audio_context", "n_codes", "code_dim", "sigma_hidden", "sigma_layers", "geo_dim",
                    "color_hidden", "color_layers", "att_hidden", "eye_att_hidden", "unc_hidden", "eye_dim")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(name, "an int >= 1")
        finest = self.finest_resolution
        if not isinstance(finest, (int, float)) or not math.isfinite(finest) or finest < self.base_resolution:
            fail("finest_resolution", "a finite number >= base_resolution")
        if not isinstance(self.use_eye, bool):
            fail("use_eye", "a bool")
        if self.eye_gate not in EYE_GATES:
            fail("eye_gate", f"one of {EYE_GATES}")
        if self.audio_net not in AUDIO_NETS:
            fail("audio_net", f"one of {AUDIO_NETS}")
        if not isinstance(self.world_scale, (int, float)) or not 0 < self.world_scale < math.inf:
            fail("world_scale", "a finite number > 0")
        if self.sh_bands not in (1, 4, 9, 16):
            fail("sh_bands", "one of 1, 4, 9, 16 (SH degree 0..3)")

    def triplane_config(self) -> TriPlaneHashConfig:
        grid = HashGridConfig(n_dims=2, n_levels=self.n_levels, features_per_level=self.features_per_level,
                              log2_hashmap_size=self.log2_hashmap_size, base_resolution=self.base_resolution,
                              finest_resolution=float(self.finest_resolution))
        return TriPlaneHashConfig(aabb=self.aabb, grid=grid)


class FieldOutput(NamedTuple):
    sigma: Tensor  # [P] density, > 0
    rgb: Tensor  # [P, 3] in [-0.001, 1.001]
    ambient_aud: Tensor  # [P] ‖audio attention‖₂
    ambient_eye: Tensor  # [P] ‖expression attention‖₂ (the sigmoid gate for one value; zeros without the branch)
    uncertainty: Tensor  # [P] softplus(unc) or log 2 when off


def sh_basis(dirs: Tensor, n_bands: int = 16) -> Tensor:
    """``dirs [P, 3]`` unit → ``[P, n_bands]`` real SH basis values, gt_core.render.sh's constants, order and signs."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if n_bands > 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if n_bands > 4:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if n_bands > 9:
        out += [SH_C3[0] * y * (3.0 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4.0 * zz - xx - yy),
                SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy), SH_C3[4] * x * (4.0 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3.0 * yy)]
    return torch.stack(out, dim=-1)


class ERNeRFHead(nn.Module):
    """The head field (see the module docstring). ``audio_dim``: channels C of the audio features."""

    def __init__(self, cfg: HeadFieldConfig, audio_dim: int):
        super().__init__()
        if not isinstance(audio_dim, int) or isinstance(audio_dim, bool) or audio_dim < 1:
            raise ValueError(f"audio_dim must be an int >= 1, got {audio_dim!r}")
        self.cfg, self.audio_dim = cfg, audio_dim
        self.audio = AudioEncoder(audio_dim, cfg.dim_aud, cfg.audio_context, net=cfg.audio_net)  # .net, .att
        self.encoder = TriPlaneHash(cfg.triplane_config())
        f = self.feat_dim = self.encoder.out_dim  # 36 by default
        eye_dim = cfg.eye_dim if cfg.use_eye else 0
        self.aud_ch_att_net = mlp(f, cfg.dim_aud, cfg.att_hidden, 2)
        self.eye_att_net = mlp(f, cfg.eye_dim, cfg.eye_att_hidden, 2)
        self.sigma_net = mlp(f + cfg.dim_aud + eye_dim, 1 + cfg.geo_dim, cfg.sigma_hidden, cfg.sigma_layers)
        self.color_net = mlp(cfg.sh_bands + cfg.geo_dim + cfg.code_dim, 3, cfg.color_hidden, cfg.color_layers)
        self.unc_net = mlp(f, 1, cfg.unc_hidden, 2)
        self.individual_codes = nn.Parameter(torch.randn(cfg.n_codes, cfg.code_dim) * CODE_INIT_STD)

    # -- pieces ---------------------------------------------------------------------------------------------------
    def encode_audio(self, audio_ctx: Tensor) -> Tensor:
        """``[B, audio_context, W, C]`` feature windows (W = 16 for ``conv``, 1 for ``ave``) → ``[B, dim_aud]``."""
        cfg = self.cfg
        expected = f"[B, {cfg.audio_context}, W, {self.audio_dim}]"
        assert audio_ctx.ndim == 4 and audio_ctx.shape[1] == cfg.audio_context and \
            audio_ctx.shape[3] == self.audio_dim, f"audio_ctx must be {expected}, got {tuple(audio_ctx.shape)}"
        code = self.audio(audio_ctx)  # [B, dim_aud]
        assert code.shape == (audio_ctx.shape[0], cfg.dim_aud)
        return code

    def encode_points(self, points: Tensor) -> Tensor:
        """``points [P, 3]`` world → ``[P, 36]`` tri-plane feature."""
        assert points.ndim == 2 and points.shape[1] == 3, f"points must be [P, 3], got {tuple(points.shape)}"
        return self.encoder(points)  # [P, 36]

    def region_attention(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """``feat [P, 36]`` → audio channel weights ``[P, dim_aud]`` (linear) and expression attention
        ``[P, eye_dim]`` (sigmoid for ER-NeRF's gate, linear for SyncTalk's)."""
        assert feat.ndim == 2 and feat.shape[1] == self.feat_dim, tuple(feat.shape)
        att = self.aud_ch_att_net(feat)  # [P, dim_aud]
        eye_att = self.eye_att_net(feat)  # [P, eye_dim]
        if self.cfg.eye_gate == "sigmoid":
            eye_att = torch.sigmoid(eye_att)
        return att, eye_att

    def individual_code(self, code_index: int | Tensor | None) -> Tensor:
        """``[code_dim]``: code ``code_index``; ``None`` → code 0 (the original's rule for unseen frames); an ``[P]``
        long tensor of indices → ``[P, code_dim]``."""
        if isinstance(code_index, Tensor) and code_index.ndim == 1:
            assert code_index.dtype == torch.long, code_index.dtype
            if code_index.numel() and not (0 <= int(code_index.min()) and int(code_index.max()) < self.cfg.n_codes):
                raise IndexError(f"code indices out of range [0, {self.cfg.n_codes})")
            return self.individual_codes[code_index]
        index = 0 if code_index is None else int(code_index)
        if not 0 <= index < self.cfg.n_codes:
            raise IndexError(f"code_index {code_index} out of range [0, {self.cfg.n_codes})")
        return self.individual_codes[index]

    def _per_point(self, value: Tensor, n_points: int, width: int, name: str) -> Tensor:
        """``[width]`` (shared) or ``[P, width]`` → ``[P, width]``."""
        if value.ndim == 1 and value.shape[0] == width:
            return value.expand(n_points, width)
        assert value.shape == (n_points, width), f"{name} must be [{width}] or [{n_points}, {width}], got " \
                                                 f"{tuple(value.shape)}"
        return value

    def _geometry(self, feat: Tensor, audio_code: Tensor, eye: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """σ [P], geo [P, geo_dim], ambient_aud [P], ambient_eye [P] from the spatial feature."""
        cfg, p = self.cfg, feat.shape[0]
        code = self._per_point(audio_code, p, cfg.dim_aud, "audio_code")  # [P, dim_aud]
        att, eye_att = self.region_attention(feat)  # [P, dim_aud], [P, eye_dim]
        parts = [feat, code * att]
        if cfg.use_eye:
            if eye is None:
                raise ValueError("eye is required when HeadFieldConfig.use_eye is True")
            k = cfg.eye_dim
            eye = torch.as_tensor(eye, dtype=feat.dtype, device=feat.device)
            if k == 1:  # [] or [P]
                assert eye.ndim == 0 or eye.shape == (p,), f"eye must be [] or [{p}], got {tuple(eye.shape)}"
            else:  # [eye_dim] or [P, eye_dim]
                assert eye.shape in ((k,), (p, k)), f"eye must be [{k}] or [{p}, {k}], got {tuple(eye.shape)}"
            e = eye.reshape(-1, k).expand(p, k)  # [P, eye_dim]
            parts.append(e * eye_att)
            ambient_eye = eye_att.norm(dim=-1)  # [P] (= the gate itself for one sigmoid value)
        else:
            ambient_eye = feat.new_zeros(p)
        h = self.sigma_net(torch.cat(parts, dim=-1))  # [P, 1 + geo_dim]
        sigma = torch.exp(h[:, 0])  # [P]
        return sigma, h[:, 1:], att.norm(dim=-1), ambient_eye

    # -- public ---------------------------------------------------------------------------------------------------
    def forward(self, points: Tensor, dirs: Tensor, audio_code: Tensor, eye: Tensor | None,
                code_index: int | Tensor | None, use_uncertainty: bool = True) -> FieldOutput:
        """Query P points. ``dirs [P, 3]`` unit; ``audio_code [dim_aud]`` or ``[P, dim_aud]``; ``eye []`` or ``[P]``
        (ignored without the eye branch); ``code_index`` selects the individual code (None → 0)."""
        feat = self.encode_points(points)  # [P, 36]
        p = feat.shape[0]
        assert dirs.shape == (p, 3), f"dirs must be [{p}, 3], got {tuple(dirs.shape)}"
        if p:
            assert (dirs.detach().norm(dim=-1) - 1).abs().max() <= UNIT_DIR_TOL, "dirs must be unit vectors"
        sigma, geo, ambient_aud, ambient_eye = self._geometry(feat, audio_code, eye)
        code = self.individual_code(code_index).to(feat).expand(p, self.cfg.code_dim)  # [P, code_dim]
        h = torch.cat([sh_basis(dirs.to(feat), self.cfg.sh_bands), geo, code], dim=-1)  # [P, 16 + 64 + 4]
        rgb = torch.sigmoid(self.color_net(h)) * RGB_SCALE - RGB_SHIFT  # [P, 3]
        if self.training and use_uncertainty:
            uncertainty = F.softplus(self.unc_net(feat.detach())[:, 0])  # [P]
        else:
            uncertainty = torch.full((p,), LOG2, dtype=feat.dtype, device=feat.device)
        out = FieldOutput(sigma, rgb, ambient_aud, ambient_eye, uncertainty)
        assert rgb.shape == (p, 3) and all(t.shape == (p,) for i, t in enumerate(out) if i != 1)
        return out

    def density(self, points: Tensor, audio_code: Tensor, eye: Tensor | None) -> Tensor:
        """σ ``[P]`` only (occupancy-grid updates; no colour, no uncertainty)."""
        sigma = self._geometry(self.encode_points(points), audio_code, eye)[0]
        assert sigma.shape == (points.shape[0],)
        return sigma

    def param_groups(self, lr_grid: float = DEFAULT_LR_GRID, lr_net: float = DEFAULT_LR_NET,
                     lr_att: float | None = None) -> list[dict]:
        """Optimizer groups in the original's order (network.py:329-354, defaults --att 2, no --emb/--train_camera):

        ======================  =====================  ==========================================
        name                    lr                     weight_decay
        ======================  =====================  ==========================================
        audio_net               lr_net                 0
        encoder_xy/_yz/_xz      lr_grid                0.01 (AdamW default; no key in the original)
        sigma_net, color_net    lr_net                 0
        audio_att_net           lr_att (= 5 · lr_net)  1e-4
        individual_codes        lr_net                 0
        aud_ch_att_net          lr_net                 0
        unc_net, eye_att_net    lr_net                 0
        ======================  =====================  ==========================================

        The original's optimizer is AdamW(betas=(0, 0.99), eps=1e-8) with lr 1e-2 / 1e-3 (main.py:29-30, 216).
        """
        lr_att = ATT_LR_FACTOR * lr_net if lr_att is None else lr_att
        planes = self.encoder.planes

        def group(name: str, params, lr: float, wd: float) -> dict:
            return {"name": name, "params": list(params), "lr": lr, "weight_decay": wd}

        grid_wd = ADAMW_DEFAULT_WEIGHT_DECAY
        return [
            group("audio_net", self.audio.net.parameters(), lr_net, NET_WEIGHT_DECAY),
            group("encoder_xy", planes["xy"].parameters(), lr_grid, grid_wd),
            group("encoder_yz", planes["yz"].parameters(), lr_grid, grid_wd),
            group("encoder_xz", planes["xz"].parameters(), lr_grid, grid_wd),
            group("sigma_net", self.sigma_net.parameters(), lr_net, NET_WEIGHT_DECAY),
            group("color_net", self.color_net.parameters(), lr_net, NET_WEIGHT_DECAY),
            group("audio_att_net", self.audio.att.parameters(), lr_att, ATT_WEIGHT_DECAY),
            group("individual_codes", [self.individual_codes], lr_net, NET_WEIGHT_DECAY),
            group("aud_ch_att_net", self.aud_ch_att_net.parameters(), lr_net, NET_WEIGHT_DECAY),
            group("unc_net", self.unc_net.parameters(), lr_net, NET_WEIGHT_DECAY),
            group("eye_att_net", self.eye_att_net.parameters(), lr_net, NET_WEIGHT_DECAY),
        ]
