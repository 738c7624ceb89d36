"""The ``evaluate`` stage: a cell's renders against its test targets → ``metrics.json`` + ``metrics_frames.csv``."""
from __future__ import annotations

import json
import time
from pathlib import Path

from gt_core.data.cell import load_cell
from gt_core.methods.base import Renders
from gt_core.metrics.evaluate import evaluate_cell, write_cell_metrics


def evaluate_stage(cell_dir: str | Path, renders_npz: str | Path, train_json: str | Path, out_dir: str | Path,
                   device: str = "cpu") -> Path:
    start = time.perf_counter()
    cell = load_cell(cell_dir)
    renders = Renders.load(renders_npz)
    record = json.loads(Path(train_json).read_text())
    test = cell.test
    frames_df, summary = evaluate_cell(
        renders.head, test.targets, test.face_boxes, test.frame_ids,
        renders_full=renders.full, targets_full=test.frames if renders.full is not None else None,
        device=device,
    )
    extra = {
        "subject": cell.subject, "duration_s": cell.duration_s, "method": record["method"],
        "provenance": {**record["provenance"], "train_wall_time_s": record["train_wall_time_s"],
                       "render_seconds": renders.seconds, "render_fps": renders.fps,
                       "evaluate_wall_time_s": time.perf_counter() - start},
        "hyperparameters": record["hyperparameters"],
    }
    _, json_path = write_cell_metrics(out_dir, frames_df, summary, extra)
    return json_path
