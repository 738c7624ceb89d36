"""Which pixels an ER-NeRF step trains on, and their rays, targets and backgrounds (``nerf_triplane/utils.py``
``get_rays``: uniform random pixels with replacement; the lip square; random patches)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gt_core.data.cell import LABEL_HEAD, CellData
from gt_core.engine.frames import FrameData
from gt_core.methods.ernerf.torso import torso_pixel_coords
from gt_core.render.rays import camera_rays


class FrameRays:
    """Flat pixel indices ``k = row·W + col`` of a frame set → rays, targets, backgrounds, face-box flags."""

    def __init__(self, data: FrameData, cell: CellData, which: str = "train"):
        self.data, self.width, self.height = data, data.width, data.height
        self.device = data.device
        fs = getattr(cell, which)
        self.face_boxes = torch.from_numpy(fs.face_boxes).to(self.device)  # [N, 4] x0 y0 x1 y1
        self.mouth_boxes = torch.from_numpy(fs.mouth_boxes).to(self.device)  # [N, 4]
        self.lower_face_boxes = torch.from_numpy(fs.lower_face_boxes).to(self.device)  # [N, 4]
        self.head_masks = torch.from_numpy(np.ascontiguousarray(fs.labels == LABEL_HEAD)).to(self.device)  # [N,H,W]
        self.coords = torso_pixel_coords(self.height, self.width, self.device)  # [H·W, 2] (row, col) in [-1, 1]
        self.plate_px = torch.from_numpy(np.ascontiguousarray(cell.plate)).to(self.device).reshape(-1, 3)  # u8

    def random_pixels(self, n: int) -> Tensor:
        return torch.randint(0, self.width * self.height, (n,), device=self.device)  # [n]

    def _box_pixels(self, x0: int, y0: int, x1: int, y1: int) -> tuple[Tensor, tuple[int, int, int]]:
        rows = torch.arange(y0, y1, device=self.device)
        cols = torch.arange(x0, x1, device=self.device)
        idx = (rows[:, None] * self.width + cols[None, :]).reshape(-1)
        return idx, (1, y1 - y0, x1 - x0)

    def lip_square(self, i: int) -> tuple[Tensor, tuple[int, int, int]]:
        """Every pixel of frame ``i``'s lip square (clipped to the image), row-major, and its (1, h, w)."""
        x0, y0, x1, y1 = self.mouth_boxes[i].tolist()
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(self.width, max(x0 + 1, int(np.ceil(x1)))), min(self.height, max(y0 + 1, int(np.ceil(y1))))
        return self._box_pixels(x0, y0, x1, y1)

    def lip_square_sample(self, i: int, n: int) -> Tensor:
        """``n`` uniform random pixels of frame ``i``'s lip square, with replacement (as ``random_pixels``)."""
        idx, _ = self.lip_square(i)
        return idx[torch.randint(0, idx.shape[0], (n,), device=self.device)]  # [n]

    def patches(self, n_rays: int, patch_px512: int) -> tuple[Tensor, tuple[int, int, int]]:
        """``n_rays / p²`` random ``p × p`` patches (p = ``patch_px512`` scaled to the width, ≥ 4)."""
        p = max(4, min(self.width, self.height, round(patch_px512 * self.width / 512)))
        n = max(1, n_rays // (p * p))
        y0 = torch.randint(0, self.height - p + 1, (n,), device=self.device)
        x0 = torch.randint(0, self.width - p + 1, (n,), device=self.device)
        off = torch.arange(p, device=self.device)
        rows = y0[:, None, None] + off[None, :, None]  # [n, p, 1]
        cols = x0[:, None, None] + off[None, None, :]  # [n, 1, p]
        return (rows * self.width + cols).reshape(-1), (n, p, p)

    def rays(self, i: int, idx: Tensor) -> tuple[Tensor, Tensor]:
        pixels = torch.stack([idx % self.width, idx // self.width], dim=-1)  # [n, 2] (col, row)
        return camera_rays(self.data.cameras[i], pixels)

    def _take(self, images_u8: Tensor, i: int, idx: Tensor) -> Tensor:
        return images_u8[i].reshape(-1, 3)[idx].float() / 255.0  # [n, 3]

    def background(self, i: int, idx: Tensor) -> Tensor:
        return self._take(self.data.backgrounds, i, idx)

    def target(self, i: int, idx: Tensor) -> Tensor:
        return self._take(self.data.targets, i, idx)

    def head_mask(self, i: int, idx: Tensor) -> Tensor:
        """``[n]`` float: 1 where the pixel is the head's (the segmentation's head label), else 0."""
        return self.head_masks[i].reshape(-1)[idx].float()

    def plate(self, idx: Tensor) -> Tensor:
        return self.plate_px[idx].float() / 255.0

    def in_face_box(self, i: int, idx: Tensor) -> Tensor:
        return self._in_box(self.face_boxes[i], idx)

    def in_lower_face_box(self, i: int, idx: Tensor) -> Tensor:
        return self._in_box(self.lower_face_boxes[i], idx)

    def _in_box(self, box: Tensor, idx: Tensor) -> Tensor:
        x0, y0, x1, y1 = box
        col, row = (idx % self.width).float() + 0.5, (idx // self.width).float() + 0.5
        return (col >= x0) & (col <= x1) & (row >= y0) & (row <= y1)

    def torso_coords(self, idx: Tensor) -> Tensor:
        return self.coords[idx]
