"""LPIPS (Zhang et al. 2018) with the AlexNet trunk, strictly offline.

``lpips.LPIPS(net='alex')`` normally asks torchvision for ImageNet AlexNet weights, which downloads
``alexnet-owt-7be5be79.pth`` when it is not in the torch hub cache. A pipeline run must never download, so:

* the model is built with ``pnet_rand=True`` (torchvision builds an untrained AlexNet, nothing is fetched) and
  ``pretrained=True`` (the five linear calibration layers load from ``lpips/weights/v0.1/alex.pth``, shipped inside
  the lpips wheel);
* the trunk weights are then read from the hub-cache file ``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``
  by this module and copied into ``model.net`` (torchvision ``features.{i}`` -> lpips ``slice{k}.{i}``, see
  :data:`FEATURE_TO_SLICE`);
* before use the file's sha256 is checked against :data:`ALEXNET` (its first 8 hex digits,
  :data:`ALEXNET_SHA256_PREFIX`, torchvision's file-name convention): a file with the right key names but other
  weights (a fine-tuned or random AlexNet, a truncated download) would give plausible-looking numbers on another
  scale, so it is refused;
* when the file is missing, has the wrong digest or is unreadable the metric is *unavailable*: :func:`lpips_status`
  says why ("... checksum ..." for a wrong file), and :class:`LpipsMetric` returns NaN for every frame with that
  reason — never a number from an unverified trunk.

The file is fetched only by the explicit ``snakemake download_weights`` rule, from :data:`ALEXNET_URL`, and checked
with :func:`verify_alexnet_weights` (torchvision's convention: the file-name suffix is the first 8 hex digits of
its sha256, :data:`ALEXNET_SHA256_PREFIX`).

Inputs: uint8 ``[N, H, W, 3]`` (or float in [0, 1]), scaled to [-1, 1] as lpips expects (ER-NeRF/SyncTalk call
``LPIPS(net='alex')(pred, gt, normalize=True)`` on [0, 1] images, which is the same mapping).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from gt_core.io.download import ModelFile, file_digest, matches

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILENAME}"
ALEXNET_SHA256_PREFIX = "7be5be79"  # first 8 hex digits of the file's sha256 (torchvision's check_hash convention)
ALEXNET = ModelFile(ALEXNET_FILENAME, ALEXNET_URL, "sha256", ALEXNET_SHA256_PREFIX)

# torchvision AlexNet `features.{i}` conv layers -> the lpips `alexnet` slice that holds module `{i}`
# (lpips/pretrained_networks.py: slice1 = features[0:2], slice2 = [2:5], slice3 = [5:8], slice4 = [8:10],
# slice5 = [10:12]; the conv layers are 0, 3, 6, 8, 10 and keep their index as module name inside the slice).
FEATURE_TO_SLICE = {0: "slice1", 3: "slice2", 6: "slice3", 8: "slice4", 10: "slice5"}


def alexnet_weights_path() -> Path:
    """Where torchvision (and this module) expect the AlexNet file: ``<torch hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME


def verify_alexnet_weights(path: str | Path | None = None) -> bool:
    """True if the file's sha256 starts with :data:`ALEXNET_SHA256_PREFIX` (for the ``download_weights`` rule)."""
    return matches(path if path is not None else alexnet_weights_path(), ALEXNET)


def check_alexnet_file(path: str | Path) -> tuple[bool, str]:
    """(usable, reason) for an AlexNet trunk file: it must exist and its digest must match :data:`ALEXNET`.

    The reason of a wrong file names the file, both digests and the fix, e.g. ``"checksum mismatch: sha256 of
    <path> starts with 0123abcd, expected 7be5be79; delete it and run `snakemake download_weights`"``.
    """
    path = Path(path)
    if not path.is_file():
        return False, f"AlexNet backbone weights not found at {path}; run `snakemake download_weights` when online"
    expected = ALEXNET  # read at call time (tests substitute the expected digest)
    actual = file_digest(path, expected.algo)
    if not actual.startswith(expected.digest):
        return False, (f"checksum mismatch: {expected.algo} of {path} starts with {actual[:len(expected.digest)]}, "
                       f"expected {expected.digest}; delete it and run `snakemake download_weights`")
    return True, f"AlexNet backbone weights at {path} ({expected.algo} {actual[:len(expected.digest)]}, verified)"


def lpips_status() -> tuple[bool, str]:
    """(available, reason): LPIPS can run iff the hub-cache AlexNet file exists and its checksum matches."""
    return check_alexnet_file(alexnet_weights_path())


def trunk_state_dict(alexnet_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision AlexNet state dict (``features.{i}.weight|bias``) to lpips ``alexnet`` keys.

    Raises ``KeyError`` naming the missing key when the file is not an AlexNet state dict.
    """
    out = {}
    for idx, slice_name in FEATURE_TO_SLICE.items():
        for p in ("weight", "bias"):
            key = f"features.{idx}.{p}"
            if key not in alexnet_state:
                raise KeyError(f"{key} missing from the AlexNet state dict")
            out[f"{slice_name}.{idx}.{p}"] = alexnet_state[key]
    return out


class LpipsMetric:
    """Per-frame LPIPS (AlexNet, v0.1) on batches of frames; NaN + :attr:`reason` when unavailable.

    >>> metric = LpipsMetric(device="cpu")
    >>> values = metric(pred_frames, gt_frames)   # [N] float64, NaN if not metric.available
    """

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 8, weights_path: str | Path | None = None):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        assert self.batch_size >= 1
        self.weights_path = Path(weights_path) if weights_path is not None else alexnet_weights_path()
        self.model: torch.nn.Module | None = None
        ok, reason = check_alexnet_file(self.weights_path)
        if not ok:
            self.available, self.reason = False, reason
            return
        try:
            self.model = self._build()
            self.available, self.reason = True, reason
        except Exception as exc:  # unreadable / wrong file: report, never fall back to a random trunk
            self.model = None
            self.available = False
            self.reason = (f"AlexNet backbone weights at {self.weights_path} could not be loaded "
                           f"({type(exc).__name__}: {exc}); delete it and run `snakemake download_weights`")

    def _build(self) -> torch.nn.Module:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation warning inside lpips
            # pnet_rand=True: untrained trunk, torchvision fetches nothing; pretrained=True: linear layers from the wheel
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        model.net.load_state_dict(trunk_state_dict(state), strict=True)
        model.eval().requires_grad_(False)
        return model.to(self.device)

    @staticmethod
    def _to_tensor(frames: np.ndarray) -> torch.Tensor:
        """``[B, H, W, 3]`` uint8 or float [0, 1] -> ``[B, 3, H, W]`` float32 in [-1, 1]."""
        if frames.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0
        else:
            x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).clamp(0.0, 1.0)
        return x.permute(0, 3, 1, 2) * 2.0 - 1.0

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """Per-frame LPIPS distance: ``[N, H, W, 3] x2 -> [N]`` float64 (0 for identical frames; NaN if unavailable)."""
        assert pred.shape == gt.shape and pred.ndim == 4 and pred.shape[-1] == 3, (pred.shape, gt.shape)
        n = pred.shape[0]
        if not self.available or n == 0:
            return np.full(n, np.nan)
        out = np.empty(n, dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, n, self.batch_size):
                a = self._to_tensor(pred[s:s + self.batch_size]).to(self.device)
                b = self._to_tensor(gt[s:s + self.batch_size]).to(self.device)
                d = self.model(a, b, normalize=False)  # inputs already in [-1, 1]; [B, 1, 1, 1]
                out[s:s + len(a)] = d.reshape(-1).double().cpu().numpy()
        return out
