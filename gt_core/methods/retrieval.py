"""``retrieval``: the non-learned floor every learned method must beat.

For each test frame: pick the training frame whose audio window is nearest (cosine similarity of the windows,
standardised with training statistics), re-pose its head to the test frame's tracked pose (a 2D similarity fitted
between the canonical face shape projected with the training pose and with the test pose — pose only, never the
test frame's pixels or mouth landmarks), and compose it over the test frame's head-protocol background.

Fitting is storing: the "checkpoint" holds the standardised training audio windows and the training frame ids.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gt_core.data.cell import LABEL_HEAD, CellData
from gt_core.io.atomic import atomic_path
from gt_core.methods.base import Method, Renders
from gt_core.render.cameras import project_points


def standardise(windows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``[N, 16, C]`` → unit-norm rows ``[N, 16·C]`` after per-channel standardisation (for cosine similarity)."""
    flat = ((windows - mean) / std).reshape(len(windows), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-8)


class RetrievalMethod(Method):
    name = "retrieval"
    presets = {
        "tiny": {"feather_px": 1.0},
        "small": {"feather_px": 1.0},
        "demo": {"feather_px": 1.5},
        "paper": {"feather_px": 3.0},
    }
    supports_full = False

    def train(self, cell: CellData, cfg: dict[str, Any], out_dir: Path, device=None, stop_after=None) -> Path:
        audio = cell.train.audio  # [N, 16, C]
        mean = audio.mean(axis=(0, 1), keepdims=True)[0]
        std = audio.std(axis=(0, 1), keepdims=True)[0] + 1e-6
        ckpt = Path(out_dir) / "checkpoint.npz"
        with atomic_path(ckpt) as tmp:
            np.savez(tmp, features=standardise(audio, mean, std).astype(np.float32), mean=mean, std=std,
                     frame_ids=cell.train.frame_ids, feather_px=np.float32(cfg["feather_px"]))
        return ckpt

    def render(self, checkpoint: Path, cell: CellData, device=None) -> Renders:
        with np.load(checkpoint) as z:
            bank, mean, std, feather = z["features"], z["mean"], z["std"], float(z["feather_px"])
            train_ids = z["frame_ids"]
        assert np.array_equal(train_ids, cell.train.frame_ids), "checkpoint was fitted on another cell"
        start = time.perf_counter()
        test, train = cell.test, cell.train
        nearest = np.argmax(standardise(test.audio, mean, std) @ bank.T, axis=1)  # [N_test]
        shape = cell.canonical[:468].astype(np.float64)
        out = np.empty_like(test.backgrounds)
        for j, i in enumerate(nearest):
            src = project_points(shape, train.c2w[i], cell.fx, cell.fy, cell.cx, cell.cy)
            dst = project_points(shape, test.c2w[j], cell.fx, cell.fy, cell.cx, cell.cy)
            warp, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
            if warp is None:
                warp = np.eye(2, 3)
            size = (cell.width, cell.height)
            head = cv2.warpAffine(train.frames[i], warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            mask = cv2.warpAffine((train.labels[i] == LABEL_HEAD).astype(np.float32), warp, size, flags=cv2.INTER_LINEAR)
            if feather > 0:
                mask = cv2.GaussianBlur(mask, (0, 0), feather)
            alpha = mask[..., None]
            out[j] = np.clip(alpha * head + (1 - alpha) * test.backgrounds[j], 0, 255).round().astype(np.uint8)
        return Renders(test.frame_ids, out, None, time.perf_counter() - start,
                       {"nearest_train_frame": train.frame_ids[nearest].tolist()})
