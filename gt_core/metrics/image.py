"""Pixel metrics: PSNR and SSIM (scikit-image), per frame, on float images in [0, 1].

Conventions (DESIGN.md §3):

* **PSNR** — ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=1)`` on the full ``H×W×3`` image, i.e.
  ``-10·log10(mean((pred - gt)²))`` exactly as the ER-NeRF/SyncTalk ``PSNRMeter``. Identical images give ``+inf``;
  the per-frame value stays ``inf``. Means over frames use :func:`cap_psnr` (values above
  :data:`PSNR_CAP_DB` = 100 dB are clipped to 100 dB, i.e. MSE floored at 1e-10) and report how many were capped.
  100 dB is above anything a real render reaches (a single uint8 step in one channel of one pixel is ~95 dB at 128²,
  ~107 dB at 512²), so the cap only acts on (near-)exact copies.
* **SSIM** — ``skimage.metrics.structural_similarity(gt, pred, data_range=1, channel_axis=-1)`` with scikit-image's
  defaults: 7×7 uniform window, ``gaussian_weights=False``, K1=0.01, K2=0.03, sample covariance; mean SSIM over
  pixels and channels. None of the three original repositories ships an evaluation SSIM (GaussianTalker trains with an
  11×11 Gaussian SSIM, σ=1.5; ER-NeRF/SyncTalk compute none), so the library default is used; ``gaussian_weights=True``
  switches to the 11×11 Gaussian (σ 1.5) variant of Wang et al. for comparison.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP_DB = 100.0  # per-frame PSNR is clipped to this value before averaging (identical frames give +inf)


def to_float01(images: np.ndarray) -> np.ndarray:
    """uint8 ``[..., 3]`` -> float64 in [0, 1]; float input is checked to lie in [0, 1] and returned as float64."""
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0
    assert np.issubdtype(images.dtype, np.floating), images.dtype
    out = images.astype(np.float64, copy=False)
    finite = out[np.isfinite(out)]
    assert finite.size == out.size, "images contain NaN/inf"
    assert finite.size == 0 or (finite.min() >= -1e-6 and finite.max() <= 1 + 1e-6), (finite.min(), finite.max())
    return np.clip(out, 0.0, 1.0)


def _check_pair(pred: np.ndarray, gt: np.ndarray, batched: bool) -> None:
    nd = 4 if batched else 3
    assert pred.shape == gt.shape, (pred.shape, gt.shape)
    assert pred.ndim == nd and pred.shape[-1] == 3, pred.shape


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of one image pair ``[H, W, 3]`` (uint8 or float in [0, 1]); ``inf`` when identical."""
    _check_pair(pred, gt, batched=False)
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(to_float01(gt), to_float01(pred), data_range=1.0))


def ssim(pred: np.ndarray, gt: np.ndarray, gaussian_weights: bool = False) -> float:
    """Mean SSIM of one image pair ``[H, W, 3]`` (uint8 or float in [0, 1]); 1 when identical.

    Default: scikit-image's 7×7 uniform window. ``gaussian_weights=True``: 11×11 Gaussian window, σ=1.5, population
    covariance (Wang et al. 2004), as in ``skimage``'s documented "match the paper" setting.
    """
    _check_pair(pred, gt, batched=False)
    assert min(pred.shape[:2]) >= (11 if gaussian_weights else 7), f"image {pred.shape[:2]} smaller than the SSIM window"
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False) if gaussian_weights else {}
    return float(structural_similarity(to_float01(gt), to_float01(pred), data_range=1.0, channel_axis=-1, **kwargs))


def psnr_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame PSNR: ``[N, H, W, 3] x2 -> [N]`` float64 (``inf`` for identical frames)."""
    _check_pair(pred, gt, batched=True)
    return np.array([psnr(p, g) for p, g in zip(pred, gt)], dtype=np.float64)


def ssim_batch(pred: np.ndarray, gt: np.ndarray, gaussian_weights: bool = False) -> np.ndarray:
    """Per-frame SSIM: ``[N, H, W, 3] x2 -> [N]`` float64."""
    _check_pair(pred, gt, batched=True)
    return np.array([ssim(p, g, gaussian_weights) for p, g in zip(pred, gt)], dtype=np.float64)


def cap_psnr(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Clip per-frame PSNR at :data:`PSNR_CAP_DB` for averaging; returns (capped values, number of values capped).

    NaN stays NaN (it is excluded from means by the caller).
    """
    values = np.asarray(values, dtype=np.float64)
    over = values > PSNR_CAP_DB  # NaN compares False
    return np.where(over, PSNR_CAP_DB, values), int(over.sum())
