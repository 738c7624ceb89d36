"""ER-NeRF head-stage loss terms as pure tensor functions (no model inside).

Refs are to Fictionarry/ER-NeRF @0cf72d8: U = nerf_triplane/utils.py (``Trainer.train_step``, U:723-878),
M = main.py, RM = raymarching/src/raymarching.cu. ``sf`` = step factor ``min(global_step / iters, 1)`` (U:760).

The original's head loss per step, in order (the caller assembles it from these pieces):

1. per ray ``mse = mean_rgb((pred − gt)²)`` (M:172, U:763); with ``--unc_loss`` (and not in the lip stage) the
   uncertainty reweighting and β terms of :func:`uncertainty_photometric` (U:775-792); LPIPS terms (U:795-823);
   then the mean over rays (U:829);
2. ``+ ENTROPY_WEIGHT · alpha_entropy(weights_sum)`` (U:840-842);
3. ``+`` both terms of :func:`ambient_penalties` (U:845-857);
4. every ``JITTER_INTERVAL`` steps (not in the lip stage): ``+ JITTER_WEIGHT · sf · jitter_smoothness(...)``
   (U:860-876).

The ambient inputs of (3) are per-ray *unweighted* sums over the ray's samples (RM:1942-1943; :func:`ray_sums`);
the uncertainty input of (1) is the usual weight-composited per-ray value.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

UNC_FLOOR = 0.2  # ``alpha`` of U:776: the weight never drops below 0.2 (and the rest is scaled by 1 − 0.2)
UNC_WEIGHT_MAX = 10.0  # clamp(·, 0, 10), U:782
UNC_BETA_OFFSET = 1.0  # β = u + 1, U:778, 785
UNC_STATIC_WEIGHT = 1e-3  # uncertainty pushed down off the face, U:792
ALPHA_CLAMP = 1e-5  # weights_sum clamped to [1e-5, 1 − 1e-5], U:840
ENTROPY_WEIGHT = 1e-4  # U:842
LAMBDA_AMB = 1e-4  # --lambda_amb, M:45; scaled by sf, U:849
MAX_STEPS = 16  # --max_steps, M:34; divides the eye sum, U:854
JITTER_EPS = 1e-3  # points jittered by U(−1e-3, 1e-3), U:862 (metres here; the original: NGP units, 1/4 m)
JITTER_WEIGHT = 1e-5  # times sf, U:867
JITTER_INTERVAL = 16  # applied when global_step % 16 == 0, U:860
JITTER_TERMS = ("uncertainty", "ambient_aud", "ambient_eye")  # U:869-874 (each behind its loss flag, all on by default)
CRITERIA = ("mse", "l1")


def step_factor(global_step: int, iters: int) -> float:
    """``min(global_step / iters, 1)`` (U:760): ramps the uncertainty, ambient and jitter terms in."""
    assert iters > 0, iters
    return min(global_step / iters, 1.0)


def _check_rays(name: str, value: Tensor, n_rays: int) -> None:
    assert value.shape == (n_rays,), f"{name} must be [{n_rays}], got {tuple(value.shape)}"


def _check_factor(sf: float) -> None:
    assert 0.0 <= float(sf) <= 1.0, f"step_factor must be in [0, 1], got {sf}"


def photometric(pred: Tensor, target: Tensor, criterion: str = "mse") -> Tensor:
    """Per-ray photometric error ``[R]``: the mean over RGB of ``(pred − target)²`` (ER-NeRF's MSELoss, M:172) or
    ``|pred − target|`` (SyncTalk's L1Loss, its main.py:172)."""
    assert criterion in CRITERIA, criterion
    diff = pred - target
    return (diff ** 2 if criterion == "mse" else diff.abs()).mean(dim=-1)


def uncertainty_photometric(pred: Tensor, target: Tensor, uncertainty: Tensor, face_mask: Tensor,
                            step_factor: float, criterion: str = "mse", beta_weight: float = 1.0,
                            static_weight: float = UNC_STATIC_WEIGHT) -> Tensor:
    """Per-ray photometric loss with ER-NeRF's uncertainty terms (U:763, 775-792); returns ``[R]`` (not averaged).

    With ``e = photometric(pred, target, criterion)``, ``u = uncertainty``, ``β = u + 1``, ``w = softmax(u) · R``
    (over the rays, detached)::

        loss = e · (0.2 + 0.8 · clamp((1 − sf) + sf · w, 0, 10))
             + beta_weight · sf · (‖pred − target‖₂.detach() / (2 β²) + (log β)² / 2) · face
             + static_weight · sf · u · (not face)

    ER-NeRF: MSE, ``beta_weight`` 1, ``static_weight`` 1e-3; SyncTalk (its utils.py:816-833): L1, 0.01 and 0.01.
    Only the β terms and the static term send gradient into ``u``; the reweighting is a constant.
    """
    assert pred.ndim == 2 and pred.shape[1] == 3 and target.shape == pred.shape, (tuple(pred.shape),
                                                                                    tuple(target.shape))
    n_rays = pred.shape[0]
    _check_rays("uncertainty", uncertainty, n_rays)
    _check_rays("face_mask", face_mask, n_rays)
    assert face_mask.dtype == torch.bool, face_mask.dtype
    _check_factor(step_factor)
    sf = float(step_factor)
    err_c = photometric(pred, target, criterion)  # [R]
    w = (torch.softmax(uncertainty, dim=-1) * n_rays).detach()  # [R]
    reweight = UNC_FLOOR + (1.0 - UNC_FLOOR) * ((1.0 - sf) + sf * w).clamp(0.0, UNC_WEIGHT_MAX)  # [R]
    beta = uncertainty + UNC_BETA_OFFSET  # [R]
    err = torch.norm(pred - target, dim=-1).detach()  # [R]
    face = face_mask.to(pred.dtype)
    loss_beta = (err / (2.0 * beta ** 2) + torch.log(beta) ** 2 / 2.0) * face  # [R]
    loss_static = uncertainty * (1.0 - face)  # [R]
    return err_c * reweight + beta_weight * sf * loss_beta + static_weight * sf * loss_static


def alpha_entropy(alpha: Tensor) -> Tensor:
    """Mean binary entropy (bits) of the accumulated opacity, clamped to [1e-5, 1 − 1e-5] (U:840-841); ``[]``.

    The original adds it with weight :data:`ENTROPY_WEIGHT` (U:842).
    """
    assert alpha.ndim == 1, f"alpha must be [R], got {tuple(alpha.shape)}"
    a = alpha.clamp(ALPHA_CLAMP, 1.0 - ALPHA_CLAMP)
    return (-a * torch.log2(a) - (1.0 - a) * torch.log2(1.0 - a)).mean()


def ambient_penalties(amb_aud: Tensor, amb_eye: Tensor, face_mask: Tensor, step_factor: float,
                      max_steps: int = MAX_STEPS, lambda_amb: float = LAMBDA_AMB) -> tuple[Tensor, Tensor]:
    """The two region-attention penalties (U:845-857), already weighted; each ``[]``.

    ``amb_aud``, ``amb_eye`` are per-ray unweighted sums over samples (:func:`ray_sums`). With ``λ = sf · lambda_amb``::

        aud_term = λ · mean(amb_aud · (not face))                       # audio must not move the non-face regions
        eye_term = λ · mean((amb_eye / max_steps) · amb_aud.detach() · face)   # discourage regions driven by both

    ``max_steps`` is the per-ray sample cap (--max_steps 16) that makes the eye sum a mean-like quantity.
    """
    n_rays = amb_aud.shape[0]
    _check_rays("amb_aud", amb_aud, n_rays)
    _check_rays("amb_eye", amb_eye, n_rays)
    _check_rays("face_mask", face_mask, n_rays)
    assert face_mask.dtype == torch.bool, face_mask.dtype
    assert max_steps >= 1, max_steps
    _check_factor(step_factor)
    lam = float(step_factor) * lambda_amb
    face = face_mask.to(amb_aud.dtype)
    aud_term = lam * (amb_aud * (1.0 - face)).mean()
    eye_term = lam * ((amb_eye / max_steps) * amb_aud.detach() * face).mean()
    return aud_term, eye_term


def lower_face_penalties(amb_aud: Tensor, amb_eye: Tensor, lower_face: Tensor, step_factor: float,
                         lambda_amb: float = LAMBDA_AMB) -> tuple[Tensor, Tensor]:
    """SyncTalk's masked attention penalties (its utils.py:882-897), already weighted; each ``[]``::

        aud_term = λ · mean(amb_aud · (not lower_face))   # audio must not move anything above / beside the lower face
        eye_term = λ · mean(amb_eye · lower_face)         # the expression must not move the lower face

    with ``λ = sf · lambda_amb`` and ``lower_face`` the rays inside the frame's lower-face box (from the nose tip
    down to the chin, across the face). ER-NeRF's version is :func:`ambient_penalties`.
    """
    n_rays = amb_aud.shape[0]
    for name, value in (("amb_aud", amb_aud), ("amb_eye", amb_eye), ("lower_face", lower_face)):
        _check_rays(name, value, n_rays)
    assert lower_face.dtype == torch.bool, lower_face.dtype
    _check_factor(step_factor)
    lam = float(step_factor) * lambda_amb
    low = lower_face.to(amb_aud.dtype)
    return lam * (amb_aud * (1.0 - low)).mean(), lam * (amb_eye * low).mean()


def ray_sums(values: Tensor, ray_ids: Tensor, n_rays: int) -> Tensor:
    """Unweighted per-ray sums of packed per-sample values: ``out[r] = Σ_{s: ray_ids[s] = r} values[s]`` → ``[R]``.

    This is how the original composites the ambient outputs (RM:1942-1943, 2212-2213): plain sums, no ``w``, over
    the samples up to the ray's termination (the caller masks the others; ``render_head_rays``).
    """
    assert values.ndim == 1 and ray_ids.shape == values.shape, (tuple(values.shape), tuple(ray_ids.shape))
    assert ray_ids.dtype == torch.int64, ray_ids.dtype
    if ray_ids.numel():
        assert 0 <= int(ray_ids.min()) and int(ray_ids.max()) < n_rays, "ray_ids out of range"
    out = values.new_zeros(n_rays)
    return out.index_add(0, ray_ids, values)


def jitter_smoothness(field_fn: Callable[[Tensor], object], points: Tensor, eps: float = JITTER_EPS,
                      generator: torch.Generator | None = None, terms: tuple[str, ...] = JITTER_TERMS,
                      criterion: str = "mse") -> Tensor:
    """Spatial smoothness of the side outputs (U:860-876); ``[]``, unweighted.

    ``field_fn(points [P, 3])`` returns an object with ``[P]`` attributes ``uncertainty``, ``ambient_aud``,
    ``ambient_eye`` (e.g. a bound :class:`~gt_core.methods.ernerf.field.ERNeRFHead` call with the step's
    directions, *detached* audio code and individual code, and eye value, as the original). It is run once at
    ``points`` without gradient and once at ``points + U(−eps, eps)``; the result is the sum over ``terms`` of the
    errors (the method's criterion: MSE for ER-NeRF, L1 for SyncTalk, U:865-874) between the two. The original adds ``JITTER_WEIGHT · sf ·`` this every ``JITTER_INTERVAL`` steps.
    """
    assert points.ndim == 2 and points.shape[1] == 3, f"points must be [P, 3], got {tuple(points.shape)}"
    unknown = set(terms) - set(JITTER_TERMS)
    assert not unknown, f"unknown jitter terms {sorted(unknown)}"
    noise = torch.rand(points.shape, generator=generator, dtype=points.dtype, device=points.device)
    delta = (noise * 2.0 - 1.0) * eps  # [P, 3]
    with torch.no_grad():
        ref = field_fn(points)
    jit = field_fn(points + delta)
    total = points.new_zeros(())
    for name in terms:
        a, b = getattr(ref, name), getattr(jit, name)
        assert a.shape == b.shape == (points.shape[0],), (name, tuple(a.shape), tuple(b.shape))
        total = total + ((a - b) ** 2 if criterion == "mse" else (a - b).abs()).mean()
    return total
