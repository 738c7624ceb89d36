"""A frame set's per-frame tensors on the training device, shared by every learned method."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gt_core.data.cell import CellData, context_windows
from gt_core.render.cameras import Camera


HEAD_POSES = ("tracker", "stabilised")


class FrameData:
    """``cell.train`` or ``cell.test`` on ``device``: head-protocol backgrounds and (train) targets as uint8 until a
    batch is drawn, the audio context windows, eye values, (train) lip boxes, cameras and their view matrices."""

    def __init__(self, cell: CellData, which: str, device: torch.device, context: int,
                 audio: np.ndarray | None = None, head_pose: str = "tracker"):
        """``audio [N, W, C]``: per-frame audio inputs replacing the cell's windows (e.g. SyncTalk's AVE features
        as ``[N, 1, 512]``); ``head_pose``: ``tracker`` (the cell's ``c2w``) or ``stabilised``
        (``c2w_stabilised``, the head-sync stabiliser's)."""
        assert which in ("train", "test"), which
        if head_pose not in HEAD_POSES:
            raise ValueError(f"head_pose must be one of {HEAD_POSES}, got {head_pose!r}")
        fs = getattr(cell, which)
        self.n = len(fs)
        self.width, self.height = cell.width, cell.height
        self.device = device
        self.backgrounds = torch.from_numpy(np.ascontiguousarray(fs.backgrounds)).to(device)  # [N, H, W, 3] u8
        self.targets = (torch.from_numpy(np.ascontiguousarray(fs.targets)).to(device) if which == "train"
                        else None)  # [N, H, W, 3] u8
        if audio is not None:
            assert audio.ndim == 3 and len(audio) == self.n, f"audio must be [{self.n}, W, C], got {audio.shape}"
        ctx = fs.audio_context(context) if audio is None else context_windows(np.asarray(audio, np.float32), context)
        self.audio_ctx = torch.from_numpy(np.ascontiguousarray(ctx)).float().to(device)  # [N, k, W, C]
        self.eye = torch.from_numpy(np.asarray(fs.eye, np.float32)).to(device)  # [N]
        self.expression = torch.from_numpy(np.asarray(fs.expression, np.float32)).to(device)  # [N, 7]
        self.mouth_boxes = torch.from_numpy(fs.mouth_boxes).to(device) if which == "train" else None  # [N, 4]
        c2w = fs.c2w if head_pose == "tracker" else fs.c2w_stabilised
        if c2w is None:
            from gt_core.errors import InputError

            path = Path(cell.data_dir) / "pose_stabilised.npz"
            raise InputError(path, "stabilised head pose missing (head_pose: stabilised)",
                             f"run `snakemake {path}` (rule stabilise), or set head_pose: tracker")
        self.c2w = torch.from_numpy(np.asarray(c2w, np.float32)).to(device)  # [N, 4, 4] OpenGL camera-to-world
        self.cameras = [Camera.from_c2w_opengl(torch.from_numpy(np.asarray(m, np.float32)), cell.fx, cell.fy,
                                               cell.cx, cell.cy, cell.width, cell.height).to(device)
                        for m in c2w]
        self.viewmats = torch.stack([c.viewmat for c in self.cameras]).float()  # [N, 4, 4] OpenCV world-to-camera

    @staticmethod
    def image(u8: Tensor) -> Tensor:
        """[B, H, W, 3] uint8 → [B, 3, H, W] float in [0, 1]."""
        return u8.permute(0, 3, 1, 2).float() / 255.0
