"""Report stages: the rules' glue between per-cell results and the paper-style outputs in ``reports/``."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from gt_core.config import duration_label
from gt_core.data.cell import load_cell
from gt_core.io.video import read_wav, write_wav
from gt_core.preprocess.landmarks import mouth_opening
from gt_core.report.collect import collect_metrics, method_label
from gt_core.report.figures import plot_metrics_vs_duration
from gt_core.report.qualitative import choose_frames, load_renders, qualitative_grid, side_by_side_video
from gt_core.report.table1 import table1_wide, write_table1_csv, write_table1_markdown, write_table1_outputs


def tables_stage(metrics: Sequence[str | Path], out_dir: str | Path, methods: Sequence[str],
                 durations: Sequence[float]) -> None:
    """Table 1 (``head`` protocol) in csv/md/tex + long csv + provenance sidecar + per-subject tables, and the same
    table for the ``face`` protocol (``table1_face.csv``/``.md``)."""
    out_dir = Path(out_dir)
    long_df = collect_metrics(metrics)
    write_table1_outputs(long_df, out_dir, "head", methods, durations)
    face = table1_wide(long_df, "face", methods, durations)
    write_table1_csv(face, out_dir / "table1_face.csv")
    write_table1_markdown(face, out_dir / "table1_face.md",
                          caption="Few-shot results, face protocol (metrics inside the ground-truth face box).")


def figure_stage(metrics: Sequence[str | Path], out_png: str | Path, methods: Sequence[str],
                 durations: Sequence[float]) -> None:
    import matplotlib.pyplot as plt

    fig = plot_metrics_vs_duration(collect_metrics(metrics), out_png, "head", methods, durations)
    plt.close(fig)


def qualitative_stage(results_dir: str | Path, subject: str, methods: Sequence[str], durations: Sequence[float],
                      out_png: str | Path, out_mp4: str | Path, k: int = 3) -> None:
    """Figure-2-style grid (GT and every method × duration on the same test frames, mouth insets) and a
    side-by-side video of the whole test segment with its audio."""
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir) / subject
    cell = load_cell(results_dir / duration_label(max(durations)) / "cell")
    test = cell.test
    rows = choose_frames(len(test), k=k, seed=0, opening=mouth_opening(test.landmarks))
    frame_ids = test.frame_ids[rows]
    grid, video = {}, {}
    for d in sorted(durations):
        for m in methods:
            cell_dir = results_dir / duration_label(d) / m
            grid[(m, d)] = load_renders(cell_dir, frame_ids)
            video[f"{method_label(m)} {duration_label(d)}"] = load_renders(cell_dir, test.frame_ids)
    fig = qualitative_grid(test.targets[rows], grid, frame_ids.tolist(), test.mouth_boxes[rows], out_png,
                           title=f"{subject}: test frames (unseen audio), head protocol")
    plt.close(fig)
    audio, rate = read_wav(cell.data_dir / "audio.wav")
    start, stop = (int(round(i / cell.meta["split"]["fps"] * rate)) for i in cell.meta["test"])
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "test.wav"
        write_wav(wav, audio[start:stop], rate)
        side_by_side_video(np.asarray(test.targets), video, out_mp4, fps=cell.meta["split"]["fps"], audio_wav=wav)
