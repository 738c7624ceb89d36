"""One fixed square head crop per video (DESIGN.md §3), from landmarks detected on a subsample of the raw frames.

The framing imitates the 512² inputs of the original repositories (head, neck and shoulders; the face about 45 %
of the frame height): the box side is ``scale`` × the median face height (forehead top, mesh point 10, to chin,
point 152) and its centre is the median face centre moved down by ``down_shift`` × side, so the face sits in the
upper middle. The box is then shifted to lie inside the frame; if it is larger than the frame's short side it
becomes the short side. Offsets and side are even, because ffmpeg's ``crop`` filter rounds odd offsets of
chroma-subsampled video down (which would misalign the crop with the landmarks by a pixel).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gt_core.errors import InputError
from gt_core.preprocess.landmarks import FACE_OVAL, Landmarks

FOREHEAD_TOP, CHIN = 10, 152  # face-mesh points spanning the face height


@dataclass(frozen=True)
class CropBox:
    """Square crop in source-frame pixels: columns ``x0 .. x0+size``, rows ``y0 .. y0+size``."""

    x0: int
    y0: int
    size: int

    def as_tuple(self) -> tuple[int, int, int]:
        """``(x0, y0, size)``, the ``crop`` argument of :func:`gt_core.io.video.read_frames`."""
        return (self.x0, self.y0, self.size)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> "CropBox":
        try:
            d = json.loads(Path(path).read_text())
            return cls(int(d["x0"]), int(d["y0"]), int(d["size"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(path, f"not a crop-box json ({err})", "delete it and re-run the crop step") from err

    def map_points(self, points: np.ndarray, out_size: int | None = None) -> np.ndarray:
        """Source-frame landmarks ``[..., >=2]`` (x, y[, z]) -> coordinates in the cropped (and resized) frame.

        All coordinates are scaled by ``out_size / size`` (z too: landmark depth is in pixel units).
        """
        s = 1.0 if out_size is None else out_size / self.size
        out = np.array(points, dtype=np.float32, copy=True)
        out[..., 0] -= self.x0
        out[..., 1] -= self.y0
        return out * s


def head_crop_box(
    landmarks: Landmarks,
    out_size_hint: int | None = None,
    scale: float = 2.2,
    down_shift: float = 0.1,
    min_found_fraction: float = 0.5,
    what: str = "video",
) -> CropBox:
    """The fixed square head crop of a video from landmarks of (a subsample of) its raw frames.

    ``scale``: box side over the median face height; ``down_shift``: box centre below the median face centre, as
    a fraction of the side. ``out_size_hint``: the working resolution; a warning says when the box is smaller
    (the frames will be upsampled). Raises :class:`InputError` (naming ``what``) if fewer than
    ``min_found_fraction`` of the frames have a face.
    """
    n = len(landmarks)
    k = int(landmarks.found.sum())
    if n == 0 or k < max(1, min_found_fraction * n):
        raise InputError(what, f"no face found on most frames ({k} of {n} sampled frames have one)",
                         "use a video with one frontal face")
    w, h = landmarks.width, landmarks.height
    pts = landmarks.points[landmarks.found].astype(np.float64)  # [K, 478, 3]
    face_h = float(np.median(np.linalg.norm(pts[:, FOREHEAD_TOP, :2] - pts[:, CHIN, :2], axis=1)))
    centre = np.median(pts[:, FACE_OVAL, :2].mean(1), axis=0)  # [2] (x, y)
    short = min(w, h) - min(w, h) % 2
    side = min(int(round(scale * face_h / 2)) * 2, short)
    side = max(side, 2)
    cx, cy = centre[0], centre[1] + down_shift * side
    x0 = int(np.clip(round((cx - side / 2) / 2) * 2, 0, w - side))
    y0 = int(np.clip(round((cy - side / 2) / 2) * 2, 0, h - side))
    x0, y0 = x0 - x0 % 2, y0 - y0 % 2
    if out_size_hint is not None and side < out_size_hint:
        warnings.warn(f"{what}: the head crop is {side} px, smaller than the working resolution {out_size_hint} px; "
                      "frames will be upsampled", stacklevel=2)
    return CropBox(x0, y0, side)


def crop_box_for_video(
    path: str | Path,
    out_size_hint: int | None = None,
    sample_fps: float = 2.5,
    max_samples: int = 100,
    **kwargs,
) -> tuple[CropBox, Landmarks]:
    """Decode a subsample of ``path`` at source resolution (``sample_fps``, at most ``max_samples`` frames, spread
    over the whole video), detect landmarks on it and return :func:`head_crop_box` and those landmarks."""
    from gt_core.io.video import probe_video, read_frames
    from gt_core.preprocess.landmarks import detect_landmarks

    info = probe_video(path)
    fps = min(sample_fps, max_samples / max(info.duration, 1e-3))
    frames = read_frames(path, fps=fps, max_frames=max_samples)
    if len(frames) == 0:
        raise InputError(path, "no frames could be decoded", "re-encode the video")
    lm = detect_landmarks(frames, video_mode=False)
    return head_crop_box(lm, out_size_hint=out_size_hint, what=str(path), **kwargs), lm
