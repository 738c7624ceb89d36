"""ER-NeRF's renders from the shared volume renderer: head rays with the side outputs the losses need, the torso
layer, and whole frames in chunks.

The head is composited as the original: ``colour = Σ w·c + (1 − Σ w)·background`` with the per-pixel background
(the ground-truth torso over the plate in the head protocol and in head training; the method's own torso over the
plate in the ``full`` protocol), the uncertainty riding along as a w-weighted channel over a zero background, the
ambient outputs as *unweighted* per-ray sums of the samples (the original's kernels sum them without weights).
The torso layer (``torso·α + plate·(1 − α)``, ``run_torso``) is :func:`gt_core.methods.ernerf.torso.render_torso`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gt_core.methods.ernerf.field import ERNeRFHead
from gt_core.methods.ernerf.losses import ray_sums
from gt_core.render.rays import ray_aabb
from gt_core.render.volume import OccupancyGrid, composite, live_samples, sample_along_rays


class HeadRays(NamedTuple):
    rgb: Tensor  # [R, 3] composited over the background
    alpha: Tensor  # [R] head opacity Σ w
    uncertainty: Tensor  # [R] w-weighted
    ambient_aud: Tensor  # [R] unweighted sum over the ray's samples up to its termination
    ambient_eye: Tensor  # [R] unweighted sum over the ray's samples up to its termination
    points: Tensor  # [S, 3] the samples (for the jitter regulariser)
    sample_dirs: Tensor  # [S, 3]


def render_head_rays(head: ERNeRFHead, origins: Tensor, dirs: Tensor, background: Tensor, audio_code: Tensor,
                     eye: Tensor, code_index: int | Tensor | None, n_steps: int, grid: OccupancyGrid | None,
                     jitter: bool, t_thresh: float = 1e-4, min_near: float = 0.0,
                     use_uncertainty: bool = True) -> HeadRays:
    """Rays ``origins``/``dirs`` [R, 3] (unit dirs) over ``background`` [R, 3] through the head field.

    ``audio_code`` is ``[dim_aud]`` (all rays) or ``[R, dim_aud]``; ``eye`` ``[]`` or ``[R]`` (``[eye_dim]`` or ``[R, eye_dim]`` for
    several expression values); ``code_index`` an int,
    None, or an ``[R]`` long tensor: per-ray values are handed to each ray's samples.
    The ambient sums run over each ray's samples up to its termination, as the original's training kernel sums them
    (``kernel_composite_rays_train_uncertainty_forward``: ``amb += ambient`` inside the loop that breaks once
    ``T < T_thresh``)."""
    r = origins.shape[0]
    assert dirs.shape == (r, 3) and background.shape == (r, 3), (tuple(dirs.shape), tuple(background.shape))
    aabb = head.cfg.aabb  # world box of the tri-plane
    near, far, _ = ray_aabb(origins, dirs, aabb, min_near=min_near)
    s = sample_along_rays(near, far, n_steps, grid, jitter, origins=origins, dirs=dirs)
    sample_dirs = dirs[s.ray_ids]  # [S, 3]
    code = _to_samples(audio_code, 2, r, s.ray_ids)  # [dim_aud] or [S, dim_aud]
    eye_ndim = 1 if head.cfg.eye_dim == 1 else 2  # a per-ray eye value is [R] (one value) or [R, eye_dim]
    out = head(s.points, sample_dirs, code, _to_samples(eye, eye_ndim, r, s.ray_ids),
               _to_samples(code_index, 1, r, s.ray_ids), use_uncertainty)
    channels = torch.cat([out.rgb, out.uncertainty[:, None]], dim=1)  # [S, 4]
    bg = torch.cat([background, background.new_zeros(r, 1)], dim=1)  # [R, 4]
    deltas = (s.deltas * head.cfg.world_scale).to(channels.dtype)  # metres -> the original's NGP units (σ's unit)
    comp = composite(out.sigma, channels, deltas, s.ray_ids, bg.to(channels.dtype), t_thresh, ts=s.t)
    live = live_samples(out.sigma.detach(), deltas, s.ray_ids, r, t_thresh).to(out.ambient_aud.dtype)  # [S]
    return HeadRays(comp.colour[:, :3], comp.alpha, comp.colour[:, 3], ray_sums(out.ambient_aud * live, s.ray_ids, r),
                    ray_sums(out.ambient_eye * live, s.ray_ids, r), s.points, sample_dirs)


def _to_samples(value, per_ray_ndim: int, n_rays: int, ray_ids: Tensor):
    """A per-ray tensor (``per_ray_ndim`` dims, first = rays) → its value at each sample; anything else as is."""
    if isinstance(value, Tensor) and value.ndim == per_ray_ndim:
        assert value.shape[0] == n_rays, f"a per-ray value must have {n_rays} rows, got {tuple(value.shape)}"
        return value[ray_ids]
    return value


@torch.no_grad()
def render_head_image(head: ERNeRFHead, origins: Tensor, dirs: Tensor, audio_code: Tensor, eye: Tensor,
                      n_steps: int, grid: OccupancyGrid | None, chunk: int, t_thresh: float,
                      min_near: float) -> tuple[Tensor, Tensor]:
    """All rays of one frame in chunks (test time: code 0, no jitter, no uncertainty) → the head's premultiplied
    colour ``Σ w·c`` [R, 3] and opacity ``Σ w`` [R]: one pass serves every background (:func:`over`)."""
    colours, alphas = [], []
    for lo in range(0, origins.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        zero = origins.new_zeros(origins[sl].shape)
        out = render_head_rays(head, origins[sl], dirs[sl], zero, audio_code, eye, None, n_steps, grid, False,
                               t_thresh, min_near, use_uncertainty=False)
        colours.append(out.rgb)
        alphas.append(out.alpha)
    return torch.cat(colours), torch.cat(alphas)


def over(premultiplied: Tensor, alpha: Tensor, background: Tensor) -> Tensor:
    """``Σ w·c + (1 − Σ w)·background`` clamped to [0, 1] → [R, 3] (:func:`render_head_rays`' compositing rule)."""
    return (premultiplied + (1.0 - alpha[:, None]) * background).clamp(0.0, 1.0)
