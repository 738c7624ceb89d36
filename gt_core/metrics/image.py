"""Pixel metrics: PSNR and SSIM (scikit-image), per frame, on float images in [0, 1].

Conventions (DESIGN.md §3):

* **PSNR** — ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=1)`` on the full ``H×W×3`` image, i.e.
  ``-10·log10(mean((pred - gt)²))`` exactly as the ER-NeRF/SyncTalk ``PSNRMeter``. Identical images give ``+inf``;
  the per-frame value stays ``inf``. Means over frames use :func:`cap_psnr` (values above
  :data:`PSNR_CAP_DB` = 100 dB are clipped to 100 dB, i.e. MSE floored at 1e-10) and report how many were capped.
  100 dB is above anything a real render reaches (a single uint8 step in one channel of one pixel is ~95 dB at 128²,
  ~107 dB at 512²), so the cap only acts on (near-)exact copies.
* **SSIM** — the standard definition (Wang et al. 2004) that NeRF papers compute:
  ``skimage.metrics.structural_similarity(gt, pred, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``, i.e. an 11×11 Gaussian window with σ = 1.5 (scikit-image truncates the Gaussian at
  3.5 σ: radius 5), population (biased) variances and covariance, K1 = 0.01, K2 = 0.03, data range 1; SSIM map
  averaged over the pixels whose whole window lies inside the image (5-pixel border cropped) and over the three
  RGB channels. Deviations: none in the formula; implementations that average the SSIM map over every pixel of a
  padded image (e.g. GaussianTalker's training SSIM, zero padding) or measure on grey give slightly different
  numbers. Until this was pinned, scikit-image's default (7×7 uniform window, sample covariance) was used.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP_DB = 100.0  # per-frame PSNR is clipped to this value before averaging (identical frames give +inf)
SSIM_SIGMA = 1.5  # Gaussian window σ; with scikit-image's truncate=3.5 the window is 11×11
SSIM_WINDOW = 11  # side of the Gaussian window (2 · round(3.5 σ) + 1); images must be at least this large
SSIM_K1, SSIM_K2 = 0.01, 0.03  # stabilising constants C1 = (K1·L)², C2 = (K2·L)², L = data range = 1


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


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM of one image pair ``[H, W, 3]`` (uint8 or float in [0, 1]); 1 when identical.

    The standard definition (module docstring): 11×11 Gaussian window, σ 1.5, population covariance, K1 0.01,
    K2 0.03, data range 1.
    """
    _check_pair(pred, gt, batched=False)
    assert min(pred.shape[:2]) >= SSIM_WINDOW, \
        f"image {pred.shape[:2]} smaller than the {SSIM_WINDOW}x{SSIM_WINDOW} SSIM window"
    return float(structural_similarity(to_float01(gt), to_float01(pred), data_range=1.0, channel_axis=-1,
                                       gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False,
                                       K1=SSIM_K1, K2=SSIM_K2))


def psnr_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame PSNR: ``[N, H, W, 3] x2 -> [N]`` float64 (``inf`` for identical frames)."""
    _check_pair(pred, gt, batched=True)
    return np.array([psnr(p, g) for p, g in zip(pred, gt)], dtype=np.float64)


def ssim_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame SSIM: ``[N, H, W, 3] x2 -> [N]`` float64."""
    _check_pair(pred, gt, batched=True)
    return np.array([ssim(p, g) for p, g in zip(pred, gt)], dtype=np.float64)


def cap_psnr(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Clip per-frame PSNR at :data:`PSNR_CAP_DB` for averaging; returns (capped values, number of values capped).

    NaN stays NaN (it is excluded from means by the caller).
    """
    values = np.asarray(values, dtype=np.float64)
    over = values > PSNR_CAP_DB  # NaN compares False
    return np.where(over, PSNR_CAP_DB, values), int(over.sum())
