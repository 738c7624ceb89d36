"""Photometric training losses shared by the Gaussian methods.

* :func:`l1_loss` — mean absolute error.
* :func:`ssim` — structural similarity with an 11×11 Gaussian window (σ 1.5), zero padding ("same" size) and
  the usual constants C1 = 0.01², C2 = 0.03² (graphdeco's ``loss_utils.ssim``, which GaussianTalker trains with);
  ``1 − ssim`` is the D-SSIM term.
* :func:`lip_l1` — L1 inside each frame's lip box (the original's ``lip_rect`` loss).
* :class:`VGGPerceptual` — L1 between VGG16 relu1_2/relu2_2/relu3_3/relu4_3 features at 224² (GaussianTalker's
  0.01-weighted perceptual term). Built by :func:`load_vgg16_perceptual` **only** when the torchvision VGG16
  ImageNet weights are already in the torch hub cache *and* their sha256 matches :data:`VGG16` (torchvision's
  file-name convention: the suffix is the first 8 hex digits); nothing is ever downloaded here (the explicit
  ``snakemake download_vgg16`` rule fetches it). Otherwise it returns ``None`` and a one-line reason that callers
  record ("vgg: unavailable (reason)").
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gt_core.io.download import ModelFile, matches

VGG16_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1 (528 MB)
VGG16 = ModelFile(VGG16_FILE, f"https://download.pytorch.org/models/{VGG16_FILE}", "sha256", "397923af")
VGG_LAYERS = (3, 8, 15, 22)  # indices of relu1_2, relu2_2, relu3_3, relu4_3 in vgg16().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    assert pred.shape == target.shape, (tuple(pred.shape), tuple(target.shape))
    return (pred - target).abs().mean()


@lru_cache(maxsize=8)
def _gaussian_window(size: int, sigma: float) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # [size, size]


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM of ``pred`` and ``target`` ([C, H, W] or [B, C, H, W], values in [0, 1])."""
    assert pred.shape == target.shape, (tuple(pred.shape), tuple(target.shape))
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    c = pred.shape[1]
    w = _gaussian_window(window, sigma).to(pred)[None, None].expand(c, 1, window, window)
    pad = window // 2

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, w, padding=pad, groups=c)

    mu1, mu2 = blur(pred), blur(target)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(pred * pred) - mu1_sq
    s2 = blur(target * target) - mu2_sq
    s12 = blur(pred * target) - mu12
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return ssim_map.mean()


def lip_l1(pred: Tensor, target: Tensor, boxes: Tensor) -> Tensor:
    """Mean over frames of the L1 inside each lip box.

    ``pred``/``target`` [B, 3, H, W]; ``boxes`` [B, 4] (x0, y0, x1, y1) pixels; the box is rounded outward to whole
    pixels and clipped to the image (a box that falls off the image contributes 0).
    """
    assert pred.shape == target.shape and pred.ndim == 4, (tuple(pred.shape), tuple(target.shape))
    assert boxes.shape == (pred.shape[0], 4), tuple(boxes.shape)
    h, w = pred.shape[-2:]
    terms = []
    for b, (x0, y0, x1, y1) in enumerate(boxes.detach().cpu().tolist()):
        c0, r0 = max(int(x0 // 1), 0), max(int(y0 // 1), 0)
        c1, r1 = min(int(-(-x1 // 1)), w), min(int(-(-y1 // 1)), h)
        if c1 > c0 and r1 > r0:
            terms.append((pred[b, :, r0:r1, c0:c1] - target[b, :, r0:r1, c0:c1]).abs().mean())
        else:
            terms.append(pred.new_zeros(()))
    return torch.stack(terms).mean()


class VGGPerceptual(nn.Module):
    """Sum over relu1_2/2_2/3_3/4_3 of the mean L1 between VGG16 features of the two images (ImageNet-normalised,
    resized to 224²). Frozen."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features[: VGG_LAYERS[-1] + 1].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None])
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None])

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """``pred``/``target`` [B, 3, H, W] in [0, 1]."""
        x = torch.cat([pred, target]).to(self.mean)
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        loss = x.new_zeros(())
        b = pred.shape[0]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG_LAYERS:
                loss = loss + (x[:b] - x[b:]).abs().mean()
        return loss


def vgg16_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def load_vgg16_perceptual(device: torch.device, path: str | Path | None = None) -> tuple[VGGPerceptual | None, str]:
    """The perceptual loss if the VGG16 weights are cached locally and verified, else ``(None, reason)``.
    Never downloads. ``path`` defaults to :func:`vgg16_weights_path`."""
    path = Path(path) if path is not None else vgg16_weights_path()
    if not path.exists():
        return None, (f"vgg: unavailable (no {VGG16_FILE} in {path.parent}; run `snakemake download_vgg16` when "
                      f"online)")
    if not matches(path, VGG16):
        return None, (f"vgg: unavailable (checksum: the sha256 of {path} does not start with {VGG16.digest}; delete "
                      f"it and run `snakemake download_vgg16`)")
    try:
        from torchvision.models import vgg16

        model = vgg16(weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a corrupt or incompatible file: train without the term, say why
        return None, f"vgg: unavailable (could not load {path}: {type(exc).__name__}: {exc})"
    return VGGPerceptual(model.features).to(device), f"vgg: {path}"
