"""A cell's dataset: one subject × one training duration, split into train frames and the common test tail.

``build_cell`` (the ``cell`` rule) writes ``results/{subject}/{D}s/cell/``:

- ``cell.json``: the split (train/test frame ranges), intrinsics, eye normalisation, paths to the subject's arrays;
- ``plate.png``: background plate fitted on this cell's training frames only (DESIGN.md §3, no leakage);
- ``canonical.npy``: the subject's canonical 3D landmark shape ``[478, 3]`` (head/world units), fitted on the
  frames every cell trains on (the shortest clip), used to initialise geometry;
- ``preview.png``: a contact sheet (frame, parsing, head-protocol background and target) to eyeball the split.

``load_cell`` returns a :class:`CellData` with a :class:`FrameSet` for ``train`` and ``test``. Per-frame arrays are
sliced from the subject's arrays; the ``head``-protocol background (ground-truth torso/neck over the plate) and
target (frame with its background replaced by the plate) are composed on load, so nothing is stored twice.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gt_core.config import SplitSpec
from gt_core.errors import InputError
from gt_core.io.atomic import atomic_path, save_json, save_npy

LABEL_BACKGROUND, LABEL_TORSO, LABEL_HEAD = 0, 1, 2
BLINK_CLOSED_RATIO = 0.4  # eye gap at 40 % of the training median counts as fully closed (blink value 1)


@dataclass
class FrameSet:
    """The frames of one side of a split, with everything a method needs per frame."""

    frame_ids: np.ndarray  # [N] int64, index into the subject's 25-fps frames
    frames: np.ndarray  # [N, H, W, 3] uint8, raw cropped frames (the `full` protocol's target)
    labels: np.ndarray  # [N, H, W] uint8, 0 background / 1 torso+neck / 2 head
    backgrounds: np.ndarray  # [N, H, W, 3] uint8, head protocol: ground-truth torso/neck over the plate
    targets: np.ndarray  # [N, H, W, 3] uint8, head protocol: frame with its background replaced by the plate
    c2w: np.ndarray  # [N, 4, 4] float32 camera-to-world, NeRF/3DGS (OpenGL) convention, world = head frame
    eye: np.ndarray  # [N] float32 blink value in [0, 1] (0 open, 1 closed; AU45-like)
    audio: np.ndarray  # [N, 16, C] float32 audio windows
    landmarks: np.ndarray  # [N, 478, 3] float32, pixels of the working frame
    expression: np.ndarray  # [N, 7] float32 brow and blink values (SyncTalk's upper-face control; preprocess.expression)
    c2w_stabilised: np.ndarray | None = None  # [N, 4, 4] like c2w, from the head-sync stabiliser (preprocess.stabilise)
    ave: np.ndarray | None = None  # [N, 512] float32 SyncTalk AVE audio features (the cell's `ave` rule), if built

    def __len__(self) -> int:
        return len(self.frame_ids)

    @property
    def face_boxes(self) -> np.ndarray:
        """``[N, 4]`` (x0, y0, x1, y1) bounding box of the 468 mesh points, pixels."""
        pts = self.landmarks[:, :468, :2]
        return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1).astype(np.float32)

    @property
    def mouth_boxes(self) -> np.ndarray:
        """``[N, 4]`` the lip-loss crop, pixels: the original's ``lips_rect`` — a square of side max(w, h) of the
        outer lip contour (iBUG 48–59; here the mediapipe outer-lip ring) around its bounding-box centre."""
        from gt_core.preprocess.landmarks import LIPS_OUTER

        lips = self.landmarks[:, LIPS_OUTER, :2]
        centre = 0.5 * (lips.min(axis=1) + lips.max(axis=1))
        half = 0.5 * (lips.max(axis=1) - lips.min(axis=1)).max(axis=1, keepdims=True)
        return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)

    @property
    def lower_face_boxes(self) -> np.ndarray:
        """``[N, 4]`` (x0, y0, x1, y1): SyncTalk's ``lowface_rect`` (provider.py:351-357) — from the nose tip
        (iBUG 30; mediapipe 1) down to the lowest mesh point, across the mesh's width."""
        from gt_core.preprocess.pose import NOSE_TIP

        boxes = self.face_boxes.copy()
        boxes[:, 1] = self.landmarks[:, NOSE_TIP, 1]
        return boxes

    def audio_context(self, k: int = 8) -> np.ndarray:
        """``[N, k, 16, C]``: each frame's audio window with its neighbours at offsets −k/2 … k/2−1 (zero-padded at
        the segment's ends, as the original GaussianTalker/ER-NeRF loaders do), for temporal smoothing."""
        return context_windows(self.audio, k)


def context_windows(windows: np.ndarray, k: int = 8) -> np.ndarray:
    """``windows [N, ...]`` per-frame audio inputs → ``[N, k, ...]``: each frame's with its neighbours at offsets
    −k/2 … k/2−1, zero-padded at the segment's ends (the original loaders' rule)."""
    n = len(windows)
    offsets = np.arange(k) - k // 2
    idx = np.arange(n)[:, None] + offsets[None]
    padded = np.concatenate([windows, np.zeros_like(windows[:1])])
    return padded[np.where((idx >= 0) & (idx < n), idx, n)]


@dataclass
class CellData:
    """Everything a method trains and renders from (one subject × one training duration)."""

    subject: str
    duration_s: float
    cell_dir: Path
    data_dir: Path  # the subject's preprocessing outputs
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    plate: np.ndarray  # [H, W, 3] uint8, background plate from the training frames
    canonical: np.ndarray  # [478, 3] float32, canonical landmark shape (world/head units)
    audio_feature: str
    train: FrameSet
    test: FrameSet
    meta: dict

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float32)


# ---------------------------------------------------------------------------------------------------------- build
def ave_features_path(cell_dir: str | Path) -> Path:
    """``results/{subject}/{D}s/ave/features.npy``: the cell's AVE audio features (the ``ave`` rule's output)."""
    return Path(cell_dir).parent / "ave" / "features.npy"


def _data_paths(data_dir: Path, audio_feature: str) -> dict[str, Path]:
    return {
        "frames": data_dir / "frames.npy", "labels": data_dir / "labels.npz", "landmarks": data_dir / "landmarks.npz",
        "eyes": data_dir / "eyes.npy", "pose": data_dir / "pose.npz", "audio": data_dir / f"audio_{audio_feature}.npy",
        "expression": data_dir / "expression.npy",
        "pose_stabilised": data_dir / "pose_stabilised.npz",  # the head-sync stabiliser's (rule stabilise)
    }


def blink_values(eye_openness: np.ndarray, train_ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """Map raw eye openness to an AU45-like blink value in [0, 1] with statistics of the training frames only."""
    open_ref = float(np.median(eye_openness[train_ids]))
    closed_ref = BLINK_CLOSED_RATIO * open_ref
    blink = np.clip((open_ref - eye_openness) / max(open_ref - closed_ref, 1e-6), 0.0, 1.0).astype(np.float32)
    return blink, {"open_median_train": open_ref, "closed_at": closed_ref}


def build_cell(data_dir: str | Path, duration_s: float, split: SplitSpec, out_dir: str | Path,
               audio_feature: str) -> Path:
    """Split one subject into a cell and fit the cell's training-only estimates (plate, eye normalisation)."""
    from gt_core.preprocess.background import background_plate
    from gt_core.preprocess.expression import normalise_expression
    from gt_core.preprocess.masks import load_labels
    from gt_core.preprocess.pose import HeadPose

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    paths = _data_paths(data_dir, audio_feature)
    for p in paths.values():
        if not p.exists():
            raise InputError(p, "preprocessing output missing", "run the preprocessing rules first (snakemake)")
    frames = np.load(paths["frames"], mmap_mode="r")
    n = len(frames)
    train, test = split.train_frames(duration_s, n), split.test_frames(n)
    if set(train) & set(test):
        raise InputError(f"durations/test of {data_dir}", "train and test frames overlap",
                         "raise test.gap_s or lower the durations")
    train_ids = np.arange(train.start, train.stop)
    labels = load_labels(paths["labels"])
    plate, seen = background_plate(np.asarray(frames), labels, train_ids)
    pose = HeadPose.load(paths["pose"])
    blink, eye_stats = blink_values(np.load(paths["eyes"]), train_ids)
    expression, expression_stats = normalise_expression(np.load(paths["expression"]), train_ids)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "plate.png") as tmp:
        import cv2

        cv2.imwrite(str(tmp), cv2.cvtColor(plate, cv2.COLOR_RGB2BGR))
    save_npy(out_dir / "canonical.npy", pose.canonical.astype(np.float32))
    save_npy(out_dir / "blink.npy", blink)
    save_npy(out_dir / "expression.npy", expression)
    _write_preview(out_dir / "preview.png", np.asarray(frames), labels, plate, [train.start, train.stop - 1,
                                                                                 test.start, test.stop - 1])
    meta = {
        "subject": data_dir.parent.name,
        "duration_s": float(duration_s),
        "n_frames_video": int(n),
        "train": [train.start, train.stop],
        "test": [test.start, test.stop],
        "split": {"gap_s": split.gap_s, "test_seconds": split.test_seconds, "mode": split.mode, "fps": split.fps},
        "plate_seen_fraction": float(seen.mean()),
        "eye": eye_stats,
        "expression": expression_stats,
        "intrinsics": {"fx": float(pose.focal), "fy": float(pose.focal), "cx": float(pose.cx), "cy": float(pose.cy),
                       "width": int(pose.width), "height": int(pose.height)},
        "audio_feature": audio_feature,
        "data_dir": os.path.relpath(data_dir.resolve(), out_dir.resolve()),  # relative to the cell dir
    }
    save_json(out_dir / "cell.json", meta)
    return out_dir / "cell.json"


def _write_preview(path: Path, frames: np.ndarray, labels: np.ndarray, plate: np.ndarray, ids: list[int]) -> None:
    from gt_core.preprocess.background import compose_head_protocol

    import cv2

    rows = []
    for i in ids:
        bg, tgt = compose_head_protocol(frames[i:i + 1], labels[i:i + 1], plate)
        parsing = np.stack([labels[i] == LABEL_HEAD, labels[i] == LABEL_TORSO, labels[i] == LABEL_BACKGROUND], -1)
        rows.append(np.concatenate([frames[i], (parsing * 255).astype(np.uint8), bg[0], tgt[0]], axis=1))
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


# ----------------------------------------------------------------------------------------------------------- load
def load_cell(cell_dir: str | Path) -> CellData:
    """Load a cell written by :func:`build_cell` (per-frame arrays sliced from the subject's data)."""
    from gt_core.preprocess.landmarks import Landmarks
    from gt_core.preprocess.masks import load_labels
    from gt_core.preprocess.pose import HeadPose

    import cv2

    cell_dir = Path(cell_dir)
    meta_path = cell_dir / "cell.json"
    if not meta_path.exists():
        raise InputError(meta_path, "cell not built", "run `snakemake <that file>` to build the cell first")
    meta = json.loads(meta_path.read_text())
    data_dir = (cell_dir / meta["data_dir"]).resolve()
    paths = _data_paths(data_dir, meta["audio_feature"])
    frames = np.load(paths["frames"], mmap_mode="r")
    labels = load_labels(paths["labels"])
    audio = np.load(paths["audio"], mmap_mode="r")
    lms = Landmarks.load(paths["landmarks"]).interpolated()
    c2w = HeadPose.load(paths["pose"]).c2w_opengl().astype(np.float32)
    if not paths["pose_stabilised"].exists():
        raise InputError(paths["pose_stabilised"], "stabilised head pose missing",
                         "run `snakemake <that file>` (rule stabilise), then reload the cell")
    c2w_stabilised = HeadPose.load(paths["pose_stabilised"]).c2w_opengl().astype(np.float32)  # [n_video, 4, 4]
    blink = np.load(cell_dir / "blink.npy")
    expression_path = cell_dir / "expression.npy"
    if not expression_path.exists():
        raise InputError(expression_path, "cell built before the expression values existed",
                         "delete the cell directory and re-run snakemake to rebuild it")
    expression = np.load(expression_path)
    ave_path = ave_features_path(cell_dir)
    ave = np.load(ave_path, mmap_mode="r") if ave_path.exists() else None  # [n_frames_video, 512]
    if ave is not None and (ave.ndim != 2 or len(ave) != len(frames)):
        raise InputError(ave_path, f"AVE features of shape {ave.shape} do not match the video's {len(frames)} frames",
                         "delete it and re-run snakemake to rebuild it")
    plate = cv2.cvtColor(cv2.imread(str(cell_dir / "plate.png")), cv2.COLOR_BGR2RGB)

    def frame_set(start: int, stop: int) -> FrameSet:
        from gt_core.preprocess.background import compose_head_protocol

        ids = np.arange(start, stop)
        fr, lb = np.asarray(frames[start:stop]), labels[start:stop]
        bg, tgt = compose_head_protocol(fr, lb, plate)
        au = np.asarray(audio[start:stop], dtype=np.float32)
        return FrameSet(ids, fr, lb, bg, tgt, c2w[start:stop], blink[start:stop], au, lms[start:stop].astype(np.float32),
                        expression[start:stop], c2w_stabilised=c2w_stabilised[start:stop],
                        ave=None if ave is None else np.asarray(ave[start:stop], np.float32))

    intr = meta["intrinsics"]
    return CellData(
        subject=meta["subject"], duration_s=meta["duration_s"], cell_dir=cell_dir, data_dir=data_dir,
        width=intr["width"], height=intr["height"], fx=intr["fx"], fy=intr["fy"], cx=intr["cx"], cy=intr["cy"],
        plate=plate, canonical=np.load(cell_dir / "canonical.npy"), audio_feature=meta["audio_feature"],
        train=frame_set(*meta["train"]), test=frame_set(*meta["test"]), meta=meta,
    )
