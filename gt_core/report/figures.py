"""Figures of the study: metrics against training-clip length.

:func:`plot_metrics_vs_duration` draws a 2×2 figure (PSNR↑, SSIM↑, LPIPS↓, LMD↓), x = training duration in seconds,
one line per method with markers. The value at each point is the Table-1 value (mean over subjects of the per-subject
cell means); error bars are ±1 standard deviation over subjects, or — when only one subject was evaluated — ±1
standard deviation over that subject's test frames, drawn lighter and said so in the note under the figure.
A metric with no value at all (e.g. LPIPS without its weights) gets a panel that says why instead of lines.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global state, no display
needed) and returned so callers and tests can inspect them.
"""
from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gt_core.methods import registry
from gt_core.report.collect import METRICS, method_label, metric_label, order_methods

_EXTRA_COLORS = ("#009E73", "#56B4E9", "#F0E442", "#000000")
_EXTRA_MARKERS = ("X", "h", "*", "<")
METRIC_UNITS: dict[str, str] = {"psnr": "dB", "ssim": "", "lpips": "", "lmd": "px (512-px frame)"}
RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "savefig.dpi": 150,
}


def method_style(method: str, index: int = 0) -> dict[str, str]:
    """Colour, marker and line style of a method (a fixed style for registry methods, a spare one otherwise)."""
    if method in registry.METHODS:  # the registry's fixed style (Okabe–Ito colour-blind-safe): the same in every figure
        return dict(registry.METHODS[method].style)
    return {"color": _EXTRA_COLORS[index % len(_EXTRA_COLORS)], "marker": _EXTRA_MARKERS[index % len(_EXTRA_MARKERS)],
            "linestyle": "-"}


def _points(
    sub: pd.DataFrame, method: str, durations: list[float], subjects: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per duration: (value, error) of one method and metric; NaN where any subject lacks a valid value.

    value = mean over subjects of the cell means; error = std over subjects (ddof=1) with ≥2 subjects, else the
    frame std of the single subject.  Shapes: ``[len(durations)]`` each.
    """
    y = np.full(len(durations), np.nan)
    err = np.full(len(durations), np.nan)
    rows = sub[sub["method"] == method]
    for k, dur in enumerate(durations):
        cell = rows[rows["duration_s"] == dur]
        ok = cell[(cell["status"] == "ok") & np.isfinite(cell["mean"].to_numpy(dtype=float))]
        if len(ok) == 0 or set(ok["subject"]) != set(subjects):
            continue
        means = ok["mean"].to_numpy(dtype=float)  # [n_subjects]
        y[k] = means.mean()
        err[k] = means.std(ddof=1) if len(means) > 1 else float(ok["std"].iloc[0])
    return y, err


def _reason(sub: pd.DataFrame) -> str:
    """Most frequent non-ok status of a metric's rows (why the panel is empty)."""
    statuses = Counter(s for s in sub["status"] if s != "ok")
    if not statuses:
        return "unavailable: no results"
    status = statuses.most_common(1)[0][0]
    return status if ":" in status else f"unavailable: {status}"


def plot_metrics_vs_duration(
    long_df: pd.DataFrame,
    path: str | Path | None,
    protocol: str = "head",
    methods: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """2×2 panels of PSNR↑ SSIM↑ LPIPS↓ LMD↓ against training duration, one line per method; saved as PNG to
    ``path`` (when given, dpi 150) and returned.

    ``methods``/``durations`` filter and order what is drawn (defaults: all present, registry order, ascending).
    """
    sub_all = long_df[(long_df["protocol"] == protocol) & long_df["metric"].isin(METRICS)]
    present = list(dict.fromkeys(sub_all["method"]))
    method_list = order_methods(present) if methods is None else [m for m in dict.fromkeys(methods) if m in present]
    if durations is None:
        duration_list = sorted(float(d) for d in sub_all["duration_s"].unique())
    else:
        duration_list = [float(d) for d in durations]
    subjects = sorted(sub_all["subject"].unique())
    if not method_list or not duration_list:
        raise ValueError(f"plot_metrics_vs_duration: no metrics for protocol {protocol!r} in the given table")
    single = len(subjects) == 1
    x = np.asarray(duration_list, dtype=float)  # [D]
    span = float(x.max() - x.min()) if len(x) > 1 else 1.0
    # small horizontal dodge so error bars of different methods do not hide each other
    offsets = (np.arange(len(method_list)) - (len(method_list) - 1) / 2) * 0.018 * span

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8.0, 6.6), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 2, sharex=True)
        styles = {m: method_style(m, i) for i, m in enumerate(method_list)}
        for ax, metric in zip(axes.flat, METRICS):
            sub = sub_all[sub_all["metric"] == metric]
            ax.set_title(metric_label(metric, arrow=True).replace("↑", " ↑").replace("↓", " ↓"))
            if METRIC_UNITS.get(metric):
                ax.set_ylabel(METRIC_UNITS[metric])
            drawn, missing = 0, []
            for i, method in enumerate(method_list):
                y, err = _points(sub, method, duration_list, subjects)
                if not np.isfinite(y).any():
                    missing.append(method_label(method))
                    continue
                st = styles[method]
                ax.errorbar(
                    x + offsets[i], y, yerr=np.where(np.isfinite(err), err, 0.0),
                    color=st["color"], marker=st["marker"], linestyle=st["linestyle"], linewidth=1.6,
                    markersize=5.5, capsize=3, elinewidth=1.0,
                    ecolor=matplotlib.colors.to_rgba(st["color"], 0.35 if single else 0.9),
                )
                drawn += 1
            if drawn == 0:
                ax.set_xlim(x.min() - 0.1 * span, x.max() + 0.1 * span)
                ax.set_yticks([])
                ax.spines["left"].set_visible(False)
                ax.grid(False)
                ax.text(0.5, 0.5, textwrap.fill(_reason(sub), 40), transform=ax.transAxes, ha="center",
                        va="center", fontsize=9, color="0.35", style="italic", wrap=True,
                        bbox={"boxstyle": "round,pad=0.5", "facecolor": "0.96", "edgecolor": "0.8"})
            elif missing:
                ax.text(1.0, 1.01, "n/a: " + ", ".join(missing), transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=8, color="0.4", style="italic")  # above the plot area, right of the title
            ax.set_xticks(x)
            ax.set_xticklabels([f"{d:g}" for d in x])
        for ax in axes[-1]:
            ax.set_xlabel("training clip length (s)")
        handles = [
            Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"], linestyle=styles[m]["linestyle"],
                   linewidth=1.6, markersize=5.5, label=method_label(m))
            for m in method_list
        ]
        if handles:
            ncol = len(handles) if len(handles) <= 4 else -(-len(handles) // 2)  # at most two legend rows
            fig.legend(handles=handles, loc="outside upper center", ncol=ncol, frameon=False)
        if single:
            note = (f"Single subject ({subjects[0]}): light error bars = ±1 s.d. over its test frames "
                    "(not over subjects).")
        else:
            note = f"Mean over {len(subjects)} subjects; error bars = ±1 s.d. over subjects."
        note += f" Evaluation protocol “{protocol}”."
        fig.text(0.5, 0.0, textwrap.fill(note, 130),  ha="center", va="bottom", fontsize=8.5, color="0.3")
        fig.get_layout_engine().set(h_pad=0.06, rect=(0, 0.03, 1, 0.97))
        if title:
            fig.suptitle(title, fontsize=12, fontweight="bold")
        if path is not None:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=150, facecolor="white")
    return fig
