"""Real-clip benchmark: the DAG on a folder of real talking-head clips, test metrics *and* self-reconstruction.

One subject per clip (``clips/*.mp4``), the common test tail of the ordinary protocol (``test.mode: tail``, gap 0,
``test_seconds`` long, after the longest training clip). :func:`run_benchmark`

1. writes ``WORKDIR/config.yaml`` and runs the real Snakemake DAG there up to every cell's ``metrics.json``
   (preprocessing, cell, train, render, evaluate — the same jobs as ``make all``);
2. renders every trained cell's **training** frames with the method's own ``render`` (a :class:`CellData` whose
   ``test`` side is the cell's training :class:`FrameSet`, so the method sees each training frame's own audio
   window, pose, eye value and background) and evaluates an evenly spaced sample of ``train_sample`` of them with
   the same metric code as the test frames (:func:`gt_core.metrics.evaluate.evaluate_cell`, head protocol) — low
   scores there mean the method *cannot fit*, low scores only on the test frames mean it *cannot generalise*.
   The whole (contiguous) training clip is rendered, not only the sample, because methods that smooth over
   neighbouring audio windows (GaussianTalker's audio context) need the true temporal neighbours; only the sample is
   scored (the face-mesh passes of the metrics are the expensive part). Blink agreement of the ``train`` rows is
   computed over *all* training frames, not the sample: a blink lasts 4–8 frames, which an evenly spaced sample of
   25 out of 150 frames cannot resolve (``n_blink_frames`` says over how many frames it was computed);
3. computes **blink agreement** (:func:`blink_agreement`): Pearson r between the eye openness of the renders and of
   the ground truth (lid gap over eye width, both eyes, :func:`gt_core.preprocess.landmarks.eye_openness`, from the
   same static-image mediapipe face mesh as LMD and ``mouth_sync``), NaN with a reason when the ground truth has
   no blink in the window (its openness never drops :data:`BLINK_MIN_DROP` below its median);
4. tabulates PSNR, SSIM, LMD, mouth_sync and blink r per method × duration × clip × split (``test`` = the held-out
   tail, ``train`` = the training sample) plus the mean over clips (``clip == "mean"``), as ``real_clips.csv`` and
   ``real_clips.md`` in the workdir;
5. writes one side-by-side video per cell (ground truth | render of the test segment, with its audio) under
   ``WORKDIR/videos/`` (:func:`gt_core.report.qualitative.side_by_side_video`).

Retrieval's training-frame renders are near copies by construction (a training frame's nearest audio window is
its own), so its ``train`` rows are a sanity check of the pipeline, not a result.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from gt_core.config import PROJECT_ROOT, duration_label
from gt_core.errors import InputError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
BLINK_MIN_DROP = 0.3  # GT has a blink when its eye openness falls this fraction below its median in the window
SPLITS = ("test", "train")
TABLE_METRICS = ("psnr", "ssim", "lmd", "mouth_sync", "blink_r")
TABLE_COLUMNS = ["method", "duration_s", "clip", "split", "n_frames", *TABLE_METRICS, "n_blink_frames", "blink_status",
                 "n_missed_faces"]


# ------------------------------------------------------------------------------------------------------ the config
def subject_names(clips: Sequence[Path]) -> dict[str, Path]:
    """Subject name per clip: HDTF ``WDA_BobMenendez_000.mp4 -> bobmenendez`` (the test suite's convention) when
    those names are unique and valid, else the file stem with every character outside ``[A-Za-z0-9_-]`` as ``_``."""
    def short(p: Path) -> str:
        parts = p.stem.split("_")
        return (parts[1] if len(parts) > 1 else parts[0]).lower()

    names = [short(p) for p in clips]
    if len(set(names)) < len(names) or not all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n) for n in names):
        names = [re.sub(r"[^A-Za-z0-9_-]", "_", p.stem).lstrip("_-") or f"clip{i}" for i, p in enumerate(clips)]
    return dict(zip(names, clips))


def find_clips(clips_dir: str | Path) -> list[Path]:
    """Videos directly in ``clips_dir``, sorted; a missing or empty folder is a one-line error."""
    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise InputError(clips_dir, "clips folder does not exist", "pass --clips DIR with the talking-head videos")
    clips = sorted(p for p in clips_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not clips:
        raise InputError(clips_dir, f"no videos ({'/'.join(VIDEO_SUFFIXES)}) in the clips folder",
                         "put one talking-head clip per subject there, or pass another --clips DIR")
    return clips


def benchmark_config(clips: Sequence[Path], methods: Sequence[str], durations: Sequence[float],
                     test_seconds: float = 1.5, preset: str = "demo", resolution: int = 128,
                     device: str = "cpu", method_params: dict | None = None, audio_features: str = "mel"
                     ) -> dict[str, Any]:
    """The Snakemake config (keys of config/schema/config.schema.yaml) for one subject per clip."""
    cfg = {
        "subjects": {name: {"video": str(Path(p).resolve())} for name, p in subject_names(clips).items()},
        "durations": [float(d) if float(d) != int(d) else int(d) for d in durations],
        "test": {"mode": "tail", "gap_s": 0.0, "seconds": float(test_seconds)},
        "resolution": int(resolution), "methods": list(methods), "preset": preset, "device": device,
        "audio_features": audio_features,
    }
    if method_params:
        cfg["method_params"] = method_params
    return cfg


def cell_targets(cfg: dict[str, Any]) -> list[str]:
    """``results/{subject}/{D}s/{method}/metrics.json`` of every cell of ``cfg``."""
    return [f"results/{s}/{duration_label(d)}/{m}/metrics.json"
            for s in cfg["subjects"] for d in cfg["durations"] for m in cfg["methods"]]


def run_dag(workdir: Path, cfg: dict[str, Any], cores: int = 2, timeout_s: float | None = None) -> None:
    """Write ``workdir/config.yaml`` and run Snakemake up to every cell's metrics.json; a failed DAG raises with the
    tail of snakemake's output and of the failed jobs' logs (its full output is ``workdir/snakemake.log``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    snakemake = [sys.executable, "-m", "snakemake"]
    cmd = [*snakemake, *cell_targets(cfg), "-s", str(PROJECT_ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", str(cores), "--rerun-incomplete"]
    log_path = workdir / "snakemake.log"
    with open(log_path, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, timeout=timeout_s)
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        logs = "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        raise RuntimeError(f"snakemake failed (exit {proc.returncode}); full output in {log_path}\n{tail}\n"
                           f"{logs[-5000:]}")


# --------------------------------------------------------------------------------------------------- blink metric
def eye_openness_of(frames: np.ndarray) -> np.ndarray:
    """Eye openness per frame from the static-image face mesh (LMD's detector): ``[N, H, W, 3] uint8 -> [N]``,
    NaN where no face is found."""
    from gt_core.preprocess.landmarks import detect_landmarks, eye_openness

    lms = detect_landmarks(np.ascontiguousarray(frames), video_mode=False)
    out = eye_openness(lms.points).astype(np.float64)
    out[~lms.found] = np.nan
    return out


def blink_agreement(render_open: np.ndarray, gt_open: np.ndarray, min_drop: float = BLINK_MIN_DROP) -> dict:
    """Pearson r of rendered vs ground-truth eye openness (``[N]`` each) over frames with a face in both.

    Returns ``{"r", "n", "gt_drop", "render_std", "gt_std"}`` (``gt_drop`` = 1 − min / median of the ground truth)
    and a ``status`` where ``r`` is NaN: fewer than 3 frames, no blink in the ground truth (``gt_drop <
    min_drop``: its openness only jitters, so a correlation would measure detector noise), or constant renders.
    """
    assert render_open.shape == gt_open.shape and render_open.ndim == 1, (render_open.shape, gt_open.shape)
    ok = np.isfinite(render_open) & np.isfinite(gt_open)
    a, b = render_open[ok], gt_open[ok]
    out: dict[str, Any] = {"r": math.nan, "n": int(ok.sum()), "gt_drop": math.nan,
                           "render_std": float(a.std()) if a.size else math.nan,
                           "gt_std": float(b.std()) if b.size else math.nan}
    if a.size < 3:
        out["status"] = "undefined: fewer than 3 frames with a face in both render and ground truth"
        return out
    med = float(np.median(b))
    out["gt_drop"] = float(1.0 - b.min() / med) if med > 0 else math.nan
    if not out["gt_drop"] >= min_drop:
        out["status"] = (f"undefined: no blink in the ground truth (eye openness drops at most "
                         f"{100 * out['gt_drop']:.0f}% below its median, < {100 * min_drop:.0f}%)")
    elif a.std() < 1e-9:
        out["status"] = "undefined: the rendered eye openness is constant"
    else:
        out["r"] = float(np.corrcoef(a, b)[0, 1])
    return out


# ------------------------------------------------------------------------------------------ self-reconstruction
def sample_rows(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced row indices of ``n`` frames (all when ``k >= n``): ``[min(k, n)]`` int64, endpoints kept."""
    if k <= 0:
        raise InputError(f"--train-sample {k}", "must be at least 1", "pass a positive number of training frames")
    return np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(np.int64))


def render_training_frames(method_name: str, method_dir: Path, cell, device) -> np.ndarray:
    """The method's renders of every training frame of ``cell``: ``[N_train, H, W, 3]`` uint8 (head protocol)."""
    from gt_core.methods.registry import get_method

    record = json.loads((method_dir / "train.json").read_text())
    as_test = dataclasses.replace(cell, test=cell.train)
    renders = get_method(method_name).render(method_dir / record["checkpoint"], as_test, device)
    assert np.array_equal(renders.frame_ids, cell.train.frame_ids), "renders must cover every training frame"
    return renders.head


def _row_from_summary(summary: dict, blink: dict, n: int) -> dict[str, Any]:
    head = summary["protocols"]["head"]

    def val(entry: dict | None) -> float:
        v = None if entry is None else entry.get("mean", entry.get("r"))
        return math.nan if v is None else float(v)

    return {"n_frames": n, "psnr": val(head["psnr"]), "ssim": val(head["ssim"]), "lmd": val(head["lmd"]),
            "mouth_sync": val(head.get("mouth_sync")), "blink_r": float(blink["r"]), "n_blink_frames": int(blink["n"]),
            "blink_status": blink.get("status", ""), "n_missed_faces": int(summary.get("n_missed_faces", 0))}


def evaluate_cell_splits(workdir: Path, subject: str, duration_s: float, method: str, train_sample: int,
                         device, lpips_metric=None, video_dir: Path | None = None) -> list[dict[str, Any]]:
    """The ``test`` and ``train`` rows of one cell (see the module docstring); writes the cell's video and
    ``train_sample_metrics.json`` next to its metrics.json."""
    from gt_core.data.cell import load_cell
    from gt_core.io.video import read_wav, write_wav
    from gt_core.methods.base import Renders
    from gt_core.metrics.evaluate import evaluate_cell, write_cell_metrics
    from gt_core.report.collect import method_label
    from gt_core.report.qualitative import side_by_side_video

    cell_root = workdir / "results" / subject / duration_label(duration_s)
    method_dir = cell_root / method
    cell = load_cell(cell_root / "cell")
    key = {"method": method, "duration_s": float(duration_s), "clip": subject}
    rows = []

    # test: the DAG's metrics.json, plus blink agreement on the DAG's renders
    summary = json.loads((method_dir / "metrics.json").read_text())
    renders = Renders.load(method_dir / "renders.npz")
    targets = np.ascontiguousarray(cell.test.targets)  # [N_test, H, W, 3]
    blink = blink_agreement(eye_openness_of(renders.head), eye_openness_of(targets))
    rows.append({**key, "split": "test", **_row_from_summary(summary, blink, len(renders.head))})

    # train: render every training frame, score an evenly spaced sample with the same metric code
    train_all = render_training_frames(method, method_dir, cell, device)  # [N_train, H, W, 3]
    idx = sample_rows(len(cell.train), train_sample)
    preds, gts = np.ascontiguousarray(train_all[idx]), np.ascontiguousarray(cell.train.targets[idx])
    frames_df, tsum = evaluate_cell(preds, gts, cell.train.face_boxes[idx], cell.train.frame_ids[idx],
                                    device="cpu", lpips_metric=lpips_metric)
    # blink over every training frame (contiguous), the sample is too sparse for 4-8-frame blinks
    tblink = blink_agreement(eye_openness_of(train_all), eye_openness_of(np.ascontiguousarray(cell.train.targets)))
    out_dir = method_dir / "train_sample"
    write_cell_metrics(out_dir, frames_df, tsum, {"subject": subject, "duration_s": float(duration_s),
                                                 "method": method, "blink": tblink,
                                                 "sampled_frames": cell.train.frame_ids[idx]})
    rows.append({**key, "split": "train", **_row_from_summary(tsum, tblink, len(idx))})

    if video_dir is not None:  # ground truth | render of the test segment, with its audio
        audio, rate = read_wav(cell.data_dir / "audio.wav")
        fps = cell.meta["split"]["fps"]
        start, stop = (int(round(i / fps * rate)) for i in cell.meta["test"])
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "test.wav"
            write_wav(wav, audio[start:stop], rate)
            side_by_side_video(targets, {f"{method_label(method)} {duration_label(duration_s)}": renders.head},
                               video_dir / f"{subject}_{duration_label(duration_s)}_{method}.mp4", fps=fps,
                               audio_wav=wav)
    return rows


# -------------------------------------------------------------------------------------------------------- table
def summarise(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-clip rows plus the mean over clips (``clip == "mean"``; NaN-skipping, ``blink_status`` says over how
    many clips blink r was defined) per method × duration × split: columns :data:`TABLE_COLUMNS`."""
    df = pd.DataFrame(rows)
    means = []
    for (m, d, s), g in df.groupby(["method", "duration_s", "split"], sort=False):
        n_blink = int(np.isfinite(g["blink_r"]).sum())
        means.append({"method": m, "duration_s": d, "clip": "mean", "split": s, "n_frames": int(g["n_frames"].sum()),
                      **{k: float(np.nanmean(g[k])) if np.isfinite(g[k]).any() else math.nan for k in TABLE_METRICS},
                      "n_blink_frames": int(g["n_blink_frames"].sum()),
                      "blink_status": f"blink r defined on {n_blink} of {len(g)} clips",
                      "n_missed_faces": int(g["n_missed_faces"].sum())})
    out = pd.concat([pd.DataFrame(means), df], ignore_index=True)[TABLE_COLUMNS]
    order = {s: i for i, s in enumerate(SPLITS)}
    out["_c"] = out["clip"] != "mean"
    out["_s"] = out["split"].map(order)
    return out.sort_values(["method", "duration_s", "_c", "clip", "_s"], kind="stable").drop(columns=["_c", "_s"]) \
        .reset_index(drop=True)


def table_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table of :func:`summarise`'s output (NaN as ``–``)."""
    fmt = {"psnr": "{:.2f}", "ssim": "{:.3f}", "lmd": "{:.2f}", "mouth_sync": "{:.2f}", "blink_r": "{:.2f}"}
    cols = ["method", "duration", "clip", "split", "n", "PSNR↑", "SSIM↑", "LMD↓", "mouth_sync↑", "blink r↑",
            "n blink", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.itertuples(index=False):
        vals = [fmt[k].format(getattr(r, k)) if np.isfinite(getattr(r, k)) else "–" for k in TABLE_METRICS]
        note = r.blink_status if r.clip == "mean" or not np.isfinite(r.blink_r) else ""
        if r.n_missed_faces:
            note = (note + "; " if note else "") + f"{r.n_missed_faces} renders without a face"
        lines.append("| " + " | ".join([r.method, duration_label(r.duration_s), r.clip, r.split, str(r.n_frames),
                                        *vals, str(r.n_blink_frames), note]) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, workdir: Path) -> tuple[Path, Path]:
    csv_path, md_path = workdir / "real_clips.csv", workdir / "real_clips.md"
    table.to_csv(csv_path, index=False, na_rep="nan")
    md_path.write_text("Real clips: head protocol; `test` = held-out tail (unseen audio), `train` = evenly spaced "
                       "sample of n training frames (self-reconstruction). blink r = Pearson r of rendered vs GT "
                       "eye openness over `n blink` frames (for `train`: all training frames).\n\n"
                       + table_markdown(table))
    return csv_path, md_path


# ------------------------------------------------------------------------------------------------------ the run
def run_benchmark(clips_dir: str | Path, workdir: str | Path, methods: Sequence[str] = ("retrieval",),
                  durations: Sequence[float] = (2, 4, 6), test_seconds: float = 1.5, preset: str = "demo",
                  resolution: int = 128, train_sample: int = 25, cores: int = 2, device: str = "cpu",
                  method_params: dict | None = None, videos: bool = True, audio_features: str = "mel"
                  ) -> pd.DataFrame:
    """Config → DAG → self-reconstruction + blink agreement → table (CSV + markdown) and videos in ``workdir``.
    Returns the table (:data:`TABLE_COLUMNS`)."""
    from gt_core.methods.run import resolve_device
    from gt_core.metrics.lpips_metric import LpipsMetric

    import torch

    workdir = Path(workdir).resolve()
    sample_rows(10, train_sample)  # a bad --train-sample fails before the DAG runs
    clips = find_clips(clips_dir)
    cfg = benchmark_config(clips, methods, durations, test_seconds, preset, resolution, device, method_params,
                           audio_features)
    start = time.perf_counter()
    run_dag(workdir, cfg, cores=cores)
    log.info("DAG done in %.0f s", time.perf_counter() - start)
    torch.set_num_threads(max(1, cores))
    dev = resolve_device(device)
    lp = LpipsMetric(device="cpu")
    rows = []
    for s in cfg["subjects"]:
        for d in cfg["durations"]:
            for m in cfg["methods"]:
                rows += evaluate_cell_splits(workdir, s, d, m, train_sample, dev, lpips_metric=lp,
                                             video_dir=workdir / "videos" if videos else None)
    table = summarise(rows)
    write_table(table, workdir)
    return table
