"""The ``evaluate`` stage: a cell's renders against its test targets → ``metrics.json`` + ``metrics_frames.csv``.

Before any metric is computed the renders are checked to belong to this cell: their frame ids must equal the cell's
test frame ids (same frames, same order) and their frames must have the cell's size. A renders file of another cell
(another subject, another test split, a stale render after the split changed) is refused with a one-line
:class:`~gt_core.errors.InputError` naming the file, instead of being scored against the wrong targets.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gt_core.data.cell import load_cell
from gt_core.errors import InputError
from gt_core.methods.base import Renders
from gt_core.metrics.evaluate import evaluate_cell, write_cell_metrics

RERENDER_FIX = "re-render this cell (delete the renders file; snakemake re-creates it)"


def _describe_ids(ids: np.ndarray) -> str:
    """``[N]`` frame ids -> ``"250 frames 525..774"`` (for one-line errors)."""
    ids = np.asarray(ids)
    return f"{len(ids)} frames {int(ids[0])}..{int(ids[-1])}" if len(ids) else "0 frames"


def check_renders_match_cell(renders: Renders, test_frame_ids: np.ndarray, frame_hw: tuple[int, int],
                             renders_path: str | Path) -> None:
    """Raise a one-line :class:`InputError` unless ``renders`` cover exactly ``test_frame_ids`` (``[N]``, in order)
    at ``frame_hw`` = (H, W)."""
    ids = np.asarray(renders.frame_ids)
    want = np.asarray(test_frame_ids)
    if ids.shape != want.shape or not np.array_equal(ids, want):
        raise InputError(renders_path, f"renders cover {_describe_ids(ids)} but this cell's test segment is "
                         f"{_describe_ids(want)} (renders of another cell or of an older split)", RERENDER_FIX)
    hw = tuple(int(v) for v in renders.head.shape[1:3])
    if hw != tuple(frame_hw):
        raise InputError(renders_path, f"renders are {hw[0]}x{hw[1]} px but this cell's frames are "
                         f"{frame_hw[0]}x{frame_hw[1]} px", RERENDER_FIX)


def cell_metrics_extra(subject: str, duration_s: float, train_record: dict[str, Any], render_seconds: float,
                       render_fps: float, evaluate_wall_time_s: float) -> dict[str, Any]:
    """The identity and provenance keys ``metrics.json`` carries next to the metric summary."""
    return {
        "subject": subject, "duration_s": duration_s, "method": train_record["method"],
        "provenance": {**train_record["provenance"], "train_wall_time_s": train_record["train_wall_time_s"],
                       "render_seconds": render_seconds, "render_fps": render_fps,
                       "evaluate_wall_time_s": evaluate_wall_time_s},
        "hyperparameters": train_record["hyperparameters"],
    }


def evaluate_stage(cell_dir: str | Path, renders_npz: str | Path, train_json: str | Path, out_dir: str | Path,
                   device: str = "cpu") -> Path:
    start = time.perf_counter()
    cell = load_cell(cell_dir)
    renders = Renders.load(renders_npz)
    test = cell.test
    check_renders_match_cell(renders, test.frame_ids, test.targets.shape[1:3], renders_npz)
    record = json.loads(Path(train_json).read_text())
    frames_df, summary = evaluate_cell(
        renders.head, test.targets, test.face_boxes, test.frame_ids,
        renders_full=renders.full, targets_full=test.frames if renders.full is not None else None,
        device=device,
    )
    extra = cell_metrics_extra(cell.subject, cell.duration_s, record, renders.seconds, renders.fps,
                               time.perf_counter() - start)
    _, json_path = write_cell_metrics(out_dir, frames_df, summary, extra)
    return json_path
