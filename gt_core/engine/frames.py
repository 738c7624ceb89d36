"""A frame set's per-frame tensors on the training device, shared by every learned method."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gt_core.data.cell import CellData
from gt_core.render.cameras import Camera


class FrameData:
    """``cell.train`` or ``cell.test`` on ``device``: head-protocol backgrounds and (train) targets as uint8 until a
    batch is drawn, the audio context windows, eye values, (train) lip boxes, cameras and their view matrices."""

    def __init__(self, cell: CellData, which: str, device: torch.device, context: int):
        assert which in ("train", "test"), which
        fs = getattr(cell, which)
        self.n = len(fs)
        self.width, self.height = cell.width, cell.height
        self.device = device
        self.backgrounds = torch.from_numpy(np.ascontiguousarray(fs.backgrounds)).to(device)  # [N, H, W, 3] u8
        self.targets = (torch.from_numpy(np.ascontiguousarray(fs.targets)).to(device) if which == "train"
                        else None)  # [N, H, W, 3] u8
        self.audio_ctx = torch.from_numpy(np.ascontiguousarray(fs.audio_context(context))).float().to(device)
        self.eye = torch.from_numpy(np.asarray(fs.eye, np.float32)).to(device)  # [N]
        self.mouth_boxes = torch.from_numpy(fs.mouth_boxes).to(device) if which == "train" else None  # [N, 4]
        self.c2w = torch.from_numpy(np.asarray(fs.c2w, np.float32)).to(device)  # [N, 4, 4] OpenGL camera-to-world
        self.cameras = [Camera.from_c2w_opengl(torch.from_numpy(np.asarray(m, np.float32)), cell.fx, cell.fy,
                                               cell.cx, cell.cy, cell.width, cell.height).to(device)
                        for m in fs.c2w]
        self.viewmats = torch.stack([c.viewmat for c in self.cameras]).float()  # [N, 4, 4] OpenCV world-to-camera

    @staticmethod
    def image(u8: Tensor) -> Tensor:
        """[B, H, W, 3] uint8 → [B, 3, H, W] float in [0, 1]."""
        return u8.permute(0, 3, 1, 2).float() / 255.0
