"""Pinhole cameras for the Gaussian rasterizer.

Convention (the one every backend receives): **OpenCV** camera axes — x right, y down, z forward — and a
world-to-camera matrix ``viewmat`` ([4, 4], ``x_cam = viewmat @ x_world``). Intrinsics are in pixels with the
gsplat/OpenCV pixel convention: a camera-space point ``(x, y, z)`` lands at ``u = fx·x/z + cx``, ``v = fy·y/z + cy``
and pixel ``(i, j)`` (column, row) covers ``[i, i+1) × [j, j+1)``, i.e. its centre is at ``(i + 0.5, j + 0.5)``.
A centred camera has ``cx = W/2``, ``cy = H/2``. (graphdeco's rasterizer puts pixel centres at integers: its
screen-space positions are ours minus 0.5.)

NeRF / 3DGS ``transforms.json`` files store camera-to-world matrices in the **OpenGL** convention (x right, y up,
z backward); :meth:`Camera.from_c2w_opengl` converts them by flipping the camera's y and z axes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

def project_points(points: np.ndarray, c2w: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """World points ``[P, 3]`` → pixels ``[P, 2]`` through an **OpenGL** camera-to-world ``[4, 4]`` (the cells'
    ``c2w``), with this module's pixel convention (pixel centres at ``i + 0.5``); depth clamped at 1 µm."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]  # OpenGL camera axes: x right, y up, z backward
    z = np.maximum(-cam[:, 2], 1e-6)
    return np.stack([fx * cam[:, 0] / z + cx, -fy * cam[:, 1] / z + cy], axis=1)


# OpenGL camera axes (x right, y up, z back) -> OpenCV (x right, y down, z forward): negate y and z.
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def _check_pose(m: Tensor, name: str) -> Tensor:
    assert isinstance(m, Tensor), f"{name} must be a torch.Tensor, got {type(m).__name__}"
    assert m.shape == (4, 4), f"{name} must be [4, 4], got {tuple(m.shape)}"
    assert m.is_floating_point(), f"{name} must be floating point, got {m.dtype}"
    assert bool(torch.isfinite(m).all()), f"{name} has NaN/inf"
    return m


@dataclass(frozen=True, eq=False)
class Camera:
    """One pinhole camera: image size, intrinsics (pixels) and an OpenCV world-to-camera matrix.

    Attributes:
        width, height: image size in pixels.
        fx, fy: focal lengths in pixels; cx, cy: principal point in pixels (centred camera: ``W/2, H/2``).
        viewmat: [4, 4] world-to-camera transform, OpenCV axes (x right, y down, z forward). Its device and dtype are
            the camera's; the rasterizer moves it to the Gaussians' device/dtype as needed.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    viewmat: Tensor  # [4, 4] world -> camera (OpenCV)

    def __post_init__(self) -> None:
        assert int(self.width) == self.width and self.width > 0, f"width must be a positive int, got {self.width}"
        assert int(self.height) == self.height and self.height > 0, f"height must be a positive int, got {self.height}"
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            assert math.isfinite(v), f"{name} must be finite, got {v}"
            object.__setattr__(self, name, v)
        assert self.fx > 0 and self.fy > 0, f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}"
        _check_pose(self.viewmat, "viewmat")
        last = self.viewmat[3].detach().to(torch.float64).cpu()
        assert torch.allclose(last, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)), \
            f"viewmat's last row must be [0, 0, 0, 1], got {last.tolist()}"

    # ----------------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_c2w_opencv(cls, c2w: Tensor, fx: float, fy: float, cx: float, cy: float, width: int,
                        height: int) -> "Camera":
        """From a camera-to-world matrix [4, 4] whose camera axes are OpenCV (x right, y down, z forward)."""
        _check_pose(c2w, "c2w")
        viewmat = torch.linalg.inv(c2w.to(torch.float64)).to(c2w.dtype)
        viewmat[3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=c2w.dtype, device=c2w.device)
        return cls(width, height, fx, fy, cx, cy, viewmat)

    @classmethod
    def from_c2w_opengl(cls, c2w: Tensor, fx: float, fy: float, cx: float, cy: float, width: int,
                        height: int) -> "Camera":
        """From a NeRF/3DGS ``transforms.json`` camera-to-world matrix [4, 4] (OpenGL axes: x right, y up, z back).

        The camera's y and z axes are negated (``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)``), exactly as graphdeco's
        ``readCamerasFromTransforms`` does, then inverted to a world-to-camera matrix.
        """
        _check_pose(c2w, "c2w")
        c2w_cv = c2w.to(torch.float64) @ _GL_TO_CV.to(c2w.device)
        return cls.from_c2w_opencv(c2w_cv.to(c2w.dtype), fx, fy, cx, cy, width, height)

    @classmethod
    def look_at(cls, eye: Tensor, target: Tensor, up: Tensor, fx: float, fy: float, width: int, height: int,
                cx: float | None = None, cy: float | None = None) -> "Camera":
        """A camera at ``eye`` [3] looking at ``target`` [3]; ``up`` [3] is the world direction that appears up.

        Principal point defaults to the image centre.
        """
        for name, v in (("eye", eye), ("target", target), ("up", up)):
            assert v.shape == (3,), f"{name} must be [3], got {tuple(v.shape)}"
        eye, target, up = (v.to(torch.float64) for v in (eye, target, up))
        z = target - eye
        z = z / z.norm()
        x = torch.linalg.cross(z, up)  # OpenCV: x = y × z with y = -up, i.e. x = z × up
        assert x.norm() > 1e-9, "up is parallel to the viewing direction"
        x = x / x.norm()
        y = torch.linalg.cross(z, x)
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
        return cls.from_c2w_opencv(c2w, fx, fy, width / 2 if cx is None else cx, height / 2 if cy is None else cy,
                                   width, height)

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.viewmat.device

    @property
    def dtype(self) -> torch.dtype:
        return self.viewmat.dtype

    @property
    def K(self) -> Tensor:
        """[3, 3] intrinsic matrix (pixels), on the camera's device/dtype."""
        return torch.tensor([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
                            dtype=self.dtype, device=self.device)

    @property
    def c2w(self) -> Tensor:
        """[4, 4] camera-to-world matrix (OpenCV axes)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        out = torch.eye(4, dtype=self.dtype, device=self.device)
        out[:3, :3] = R.T
        out[:3, 3] = -R.T @ t
        return out

    @property
    def campos(self) -> Tensor:
        """[3] camera centre in world coordinates (``-Rᵀ t``)."""
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t

    @property
    def tanfovx(self) -> float:
        """tan(fov_x / 2) = W / (2 fx) (graphdeco's ``tanfovx``)."""
        return 0.5 * self.width / self.fx

    @property
    def tanfovy(self) -> float:
        """tan(fov_y / 2) = H / (2 fy)."""
        return 0.5 * self.height / self.fy

    # -------------------------------------------------------------------------------------------------- methods
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Camera":
        """The same camera with ``viewmat`` on ``device`` (and/or cast to ``dtype``)."""
        return replace(self, viewmat=self.viewmat.to(device=device, dtype=dtype))

    def resized(self, width: int, height: int) -> "Camera":
        """The same camera rendering a ``width × height`` image: fx, cx scale by ``width / W``, fy, cy by ``height / H``.

        Principal points scale with the image, so a centred camera stays centred (pixel-edge convention).
        """
        sx, sy = width / self.width, height / self.height
        return replace(self, width=int(width), height=int(height), fx=self.fx * sx, cx=self.cx * sx,
                       fy=self.fy * sy, cy=self.cy * sy)

    def __repr__(self) -> str:  # the tensor repr is long; keep it short
        return (f"Camera({self.width}x{self.height}, fx={self.fx:.2f}, fy={self.fy:.2f}, cx={self.cx:.2f}, "
                f"cy={self.cy:.2f}, campos={[round(v, 4) for v in self.campos.detach().cpu().tolist()]})")
