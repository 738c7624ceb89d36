"""Table 1 of the study — PSNR↑ SSIM↑ LPIPS↓ LMD↓ × (method, training duration), mean over subjects.

In memory (:func:`table1_wide`) the table is a DataFrame::

    index   "metric": PSNR, SSIM, LPIPS, LMD                        (always these four, in this order)
    columns MultiIndex (method, duration): ("retrieval", "10s"), ("retrieval", "15s"), ..., ("gaussiantalker", "20s")
            methods in registry order (:data:`gt_core.methods.registry.METHODS`), durations in config order
    values  mean over subjects of each subject's cell mean; NaN when the metric is unavailable / not applicable for
            any subject of that cell, or when a subject lacks the cell — never a partial average
    attrs   "protocol", "subjects", "statistic", "reasons" {(metric label, method, duration label): why NaN},
            "missed_faces" {(method, duration label): (renders without a face, test frames), summed over subjects,
            or None when a subject does not report them}

CSV layout (:func:`write_table1_csv`, matches the seed study's table)::

    metric,retrieval_10s,retrieval_15s,retrieval_20s,gaussiantalker_10s,...
    PSNR,24.1,25.3,26.0,...
    SSIM,0.81,...
    LPIPS,,,,...          <- unavailable: empty field, never a number
    LMD,3.2,...

First column ``metric`` holds the plain names PSNR, SSIM, LPIPS, LMD (no arrows: higher is better for PSNR and
SSIM, lower for LPIPS and LMD); then one column per method × duration named ``{method}_{D}s`` (method names use
``-``, never ``_``, so the split is unambiguous); values at full precision. :func:`read_table1_csv` reads it back.

The long CSV (:func:`write_table1_long_csv`) has one row per (subject, duration_s, method, protocol, metric) with
mean, std, n (frames measured), n_frames, n_missed_faces and status (also ``lmd40``, which is not a Table 1 row).
The markdown adds a row "Missed faces" (renders without a detected face / test frames, summed over subjects; a
cell's LMD is n/a when more than 10% are missed). Markdown and LaTeX show the arrows, format
PSNR with 2 decimals, SSIM 3, LPIPS 4, LMD 2, print "n/a" for missing values with a footnote giving the reason, and
set the best value of each metric within each duration in bold. ``synctalk-portrait`` copies ground truth into its
prediction (DESIGN.md §3), so it is shown for reference (marked †) but not ranked.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from gt_core.methods import registry
from gt_core.metrics.lmd import MAX_MISSED_FRACTION
from gt_core.report.collect import (
    HIGHER_IS_BETTER,
    METRIC_LABELS,
    METRICS,
    cell_provenance,
    duration_label,
    method_label,
    metric_label,
    order_methods,
)

DECIMALS: dict[str, int] = {"psnr": 2, "ssim": 3, "lpips": 4, "lmd": 2}
# rows derived from another method's renders (SyncTalk's portrait pastes ground truth outside the face): shown, never bold
NOT_RANKED: tuple[str, ...] = tuple(registry.DERIVED_METHODS)
NOT_RANKED_NOTE = ("† pastes the ground-truth frame outside a blurred face mask (SyncTalk's portrait evaluation); "
                   "shown for reference, not ranked.")
LONG_CSV_COLUMNS: tuple[str, ...] = (
    "subject", "duration_s", "method", "protocol", "metric", "mean", "std", "n", "n_frames", "n_missed_faces", "status",
)
MISSED_FACES_NOTE = ("Missed faces: test frames whose render has no detected face / test frames, summed over "
                     "subjects (n_missed_faces); such frames have no LMD, and a cell with more than "
                     f"{MAX_MISSED_FRACTION:.0%} missed reports LMD as n/a.")
DEFAULT_CAPTION = ("Few-shot self-driven reconstruction on the held-out test segment, by training-clip length "
                   "(mean over subjects).")
_LABEL_TO_METRIC = {label: key for key, label in METRIC_LABELS.items()}


# ----------------------------------------------------------------------------------------------------------- building
def _durations(sub: pd.DataFrame, durations: Sequence[float] | None) -> list[float]:
    if durations is not None:
        return [float(d) for d in durations]
    return sorted(float(d) for d in sub["duration_s"].unique())


def table1_wide(
    long_df: pd.DataFrame,
    protocol: str = "head",
    methods: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    statistic: Literal["mean", "std"] = "mean",
) -> pd.DataFrame:
    """Table 1 as a wide DataFrame (layout in the module docstring) from :func:`collect_metrics`'s long table.

    ``methods`` filters and orders the methods (default: those present, in registry order); methods absent from the
    data are left out. ``durations`` gives the duration columns (default: those present, ascending); a duration
    with no data for a method gives a NaN column with the reason "no results". ``statistic="std"`` averages the
    per-cell frame standard deviations instead of the means (used for the per-subject tables).
    """
    sub = long_df[(long_df["protocol"] == protocol) & long_df["metric"].isin(METRICS)]
    present = list(dict.fromkeys(long_df.loc[long_df["protocol"] == protocol, "method"]))
    if methods is None:
        method_list = order_methods(present)
    else:
        method_list = [m for m in dict.fromkeys(methods) if m in present]
    duration_list = _durations(sub, durations)
    subjects = sorted(sub["subject"].unique())

    # per (method, duration, metric): the rows of each subject
    groups = {key: g for key, g in sub.groupby(["method", "duration_s", "metric"], sort=False)}
    values = np.full((len(METRICS), len(method_list) * len(duration_list)), np.nan)
    reasons: dict[tuple[str, str, str], str] = {}
    columns: list[tuple[str, str]] = []
    for j, (method, dur) in enumerate((m, d) for m in method_list for d in duration_list):
        columns.append((method, duration_label(dur)))
        for i, metric in enumerate(METRICS):
            key = (metric_label(metric), method, duration_label(dur))
            rows = groups.get((method, dur, metric))
            if rows is None or rows.empty:
                reasons[key] = "no results for this cell"
                continue
            missing_subjects = sorted(set(subjects) - set(rows["subject"]))
            bad = rows[(rows["status"] != "ok") | ~np.isfinite(rows[statistic].to_numpy(dtype=float))]
            if not bad.empty:
                statuses = [s if s != "ok" else f"{statistic} not reported" for s in dict.fromkeys(bad["status"])]
                reasons[key] = "; ".join(statuses)
            elif missing_subjects:
                reasons[key] = f"missing for subject(s) {', '.join(missing_subjects)}"
            else:
                values[i, j] = float(rows[statistic].mean())  # mean over subjects of per-subject cell values
    wide = pd.DataFrame(
        values,
        index=pd.Index([metric_label(m) for m in METRICS], name="metric"),
        columns=pd.MultiIndex.from_tuples(columns, names=["method", "duration"]),
    )
    wide.attrs.update(protocol=protocol, subjects=subjects, statistic=statistic, reasons=reasons,
                      missed_faces=_missed_faces(sub, columns, subjects))
    return wide


def _missed_faces(sub: pd.DataFrame, columns: list[tuple[str, str]], subjects: list[str]
                  ) -> dict[tuple[str, str], tuple[int, int] | None]:
    """(method, duration label) -> (renders without a face, test frames) summed over subjects, from the LMD rows."""
    lmd = sub[sub["metric"] == "lmd"]
    by_cell = {(m, duration_label(d)): g for (m, d), g in lmd.groupby(["method", "duration_s"], sort=False)}
    out: dict[tuple[str, str], tuple[int, int] | None] = {}
    for key in columns:
        rows = by_cell.get(key)
        if rows is None or sorted(rows["subject"]) != subjects:
            out[key] = None
            continue
        missed = pd.to_numeric(rows["n_missed_faces"], errors="coerce").astype("float64")
        frames = pd.to_numeric(rows["n_frames"], errors="coerce").astype("float64")
        ok = missed.notna().all() and frames.notna().all()
        out[key] = (int(missed.sum()), int(frames.sum())) if ok else None
    return out


def best_cells(wide: pd.DataFrame, exclude: Iterable[str] = NOT_RANKED) -> set[tuple[str, str, str]]:
    """(metric label, method, duration) of the best value of each metric within each duration.

    Higher is better for PSNR/SSIM, lower for LPIPS/LMD; values are compared at their displayed precision, so ties
    on screen are all bold. Nothing is bold in a duration where fewer than two ranked methods have a value.
    """
    exclude = set(exclude)
    best: set[tuple[str, str, str]] = set()
    for label in wide.index:
        metric = _LABEL_TO_METRIC.get(label)
        if metric is None:
            continue
        for dur in dict.fromkeys(wide.columns.get_level_values("duration")):
            cands = {
                m: round(float(wide.loc[label, (m, dur)]), DECIMALS[metric])
                for m in dict.fromkeys(wide.columns.get_level_values("method"))
                if (m, dur) in wide.columns and m not in exclude and np.isfinite(wide.loc[label, (m, dur)])
            }
            if len(cands) < 2:
                continue
            target = max(cands.values()) if HIGHER_IS_BETTER[metric] else min(cands.values())
            best.update((label, m, dur) for m, v in cands.items() if v == target)
    return best


def format_value(metric_or_label: str, value: float) -> str:
    """Fixed-decimal string of a value (PSNR 2, SSIM 3, LPIPS 4, LMD 2 decimals); ``"n/a"`` for NaN."""
    metric = _LABEL_TO_METRIC.get(metric_or_label, metric_or_label)
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{DECIMALS.get(metric, 3)}f}"


def unavailable_notes(wide: pd.DataFrame) -> list[str]:
    """One line per (metric, reason) explaining the "n/a" cells, e.g. ``"LPIPS (all cells): unavailable: ..."``."""
    reasons: dict[tuple[str, str, str], str] = wide.attrs.get("reasons", {})
    by_reason: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for label in wide.index:
        for method, dur in wide.columns:
            if not np.isfinite(wide.loc[label, (method, dur)]):
                by_reason[(label, reasons.get((label, method, dur), "unavailable"))].append((method, dur))
    lines = []
    for (label, reason), cells in by_reason.items():
        if len(cells) == wide.shape[1]:
            where = "all cells"
        else:
            per_method: dict[str, list[str]] = defaultdict(list)
            for method, dur in cells:
                per_method[method].append(dur)
            where = "; ".join(f"{method_label(m)} {', '.join(ds)}" for m, ds in per_method.items())
        lines.append(f"{label} ({where}): {reason}")
    return lines


def _subjects_note(wide: pd.DataFrame) -> str:
    subjects = wide.attrs.get("subjects")
    protocol = wide.attrs.get("protocol")
    if not subjects or not protocol:  # e.g. a table read back from csv
        return "Mean over subjects."
    noun = "subject" if len(subjects) == 1 else "subjects"
    return f"Protocol `{protocol}`; mean over {len(subjects)} {noun} ({', '.join(subjects)})."


# ------------------------------------------------------------------------------------------------------------ writers
def write_table1_csv(wide: pd.DataFrame, path: str | Path) -> Path:
    """Write the wide table as csv: ``metric,{method}_{D}s,...`` (layout in the module docstring); NaN -> empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = wide.copy()
    flat.columns = [f"{method}_{dur}" for method, dur in wide.columns]
    flat.index.name = "metric"
    flat.to_csv(path, na_rep="", lineterminator="\n")
    return path


def read_table1_csv(path: str | Path) -> pd.DataFrame:
    """Read a csv written by :func:`write_table1_csv` back into the wide layout (MultiIndex columns)."""
    flat = pd.read_csv(path, index_col="metric", float_precision="round_trip")
    tuples = []
    for col in flat.columns:
        method, _, dur = str(col).rpartition("_")
        tuples.append((method, dur))
    flat.columns = pd.MultiIndex.from_tuples(tuples, names=["method", "duration"])
    return flat.astype("float64")


def write_table1_long_csv(long_df: pd.DataFrame, path: str | Path, protocol: str | None = None) -> Path:
    """Write the long tidy csv (columns :data:`LONG_CSV_COLUMNS`), optionally only one protocol."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = long_df if protocol is None else long_df[long_df["protocol"] == protocol]
    df.loc[:, list(LONG_CSV_COLUMNS)].to_csv(path, index=False, na_rep="", lineterminator="\n")
    return path


def _header_method(method: str, exclude: Iterable[str]) -> str:
    return method_label(method) + ("†" if method in set(exclude) else "")


def table1_markdown(
    wide: pd.DataFrame,
    caption: str = DEFAULT_CAPTION,
    std: pd.DataFrame | None = None,
    exclude: Iterable[str] = NOT_RANKED,
    heading: str = "Table 1.",
) -> str:
    """Markdown text of the table (see :func:`write_table1_markdown`); ``std`` adds "± std" to each value."""
    exclude = tuple(exclude)
    best = best_cells(wide, exclude)
    header = ["Metric"] + [f"{_header_method(m, exclude)} {d}" for m, d in wide.columns]
    lines = [f"**{heading}** {caption}", "", "| " + " | ".join(header) + " |",
             "| :-- | " + " | ".join("--:" for _ in wide.columns) + " |"]
    for label in wide.index:
        metric = _LABEL_TO_METRIC.get(label, label)
        cells = [metric_label(metric, arrow=True)]
        for method, dur in wide.columns:
            value = float(wide.loc[label, (method, dur)])
            text = format_value(metric, value)
            if std is not None and text != "n/a" and np.isfinite(std.loc[label, (method, dur)]):
                text += f" ± {format_value(metric, float(std.loc[label, (method, dur)]))}"
            cells.append(f"**{text}**" if (label, method, dur) in best else text)
        lines.append("| " + " | ".join(cells) + " |")
    missed = wide.attrs.get("missed_faces")
    if missed:  # not a metric: no arrow, never bold; absent for a table read back from csv
        cells = [f"{m[0]}/{m[1]}" if (m := missed.get(col)) is not None else "n/a" for col in wide.columns]
        lines.append("| Missed faces | " + " | ".join(cells) + " |")
    lines += ["", _subjects_note(wide) + " **Bold**: best per training duration (↑ higher / ↓ lower is better)."]
    if missed:
        lines.append(MISSED_FACES_NOTE)
    if any(m in exclude for m in wide.columns.get_level_values("method")):
        lines.append(NOT_RANKED_NOTE)
    notes = unavailable_notes(wide)
    if notes:
        lines.append("n/a — " + " · ".join(n.replace("|", "\\|") for n in notes))
    return "\n".join(lines) + "\n"


def write_table1_markdown(wide: pd.DataFrame, path: str | Path, caption: str = DEFAULT_CAPTION) -> Path:
    """Write Table 1 as a GitHub-flavoured markdown table.

    One column per method × duration ("GaussianTalker 10s"), metric rows with arrows, best value per metric within
    each duration in **bold**, "n/a" for missing values, and footnote lines: protocol and subjects, and the reason
    of every "n/a".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table1_markdown(wide, caption))
    return path


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "`": "'",
                  "†": r"$^\dagger$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "·": r"$\cdot$", "—": "---"}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and map †, ↑, ↓ to math symbols)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def table1_latex(
    wide: pd.DataFrame,
    caption: str = DEFAULT_CAPTION,
    label: str = "tab:table1",
    exclude: Iterable[str] = NOT_RANKED,
) -> str:
    """LaTeX source of the table (see :func:`write_table1_latex`)."""
    exclude = tuple(exclude)
    best = best_cells(wide, exclude)
    methods = list(dict.fromkeys(wide.columns.get_level_values("method")))
    spans = [sum(1 for m, _ in wide.columns if m == method) for method in methods]
    n_cols = wide.shape[1]
    env = "table*" if n_cols > 9 else "table"
    col_spec = "l" + "".join(" " + "c" * s for s in spans)
    out = [
        "% Requires \\usepackage{booktabs} (and graphicx for \\resizebox).",
        f"\\begin{{{env}}}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\resizebox{\\linewidth}{!}{%" if n_cols > 9 else "{%",
        f"\\begin{{tabular}}{{{col_spec}}}",
        "\\toprule",
    ]
    heads, rules, start = [], [], 2
    for method, span in zip(methods, spans):
        heads.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(_header_method(method, exclude))}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    out.append(" & " + " & ".join(heads) + " \\\\")
    out.append(" ".join(rules))
    out.append("Metric & " + " & ".join(latex_escape(d) for _, d in wide.columns) + " \\\\")
    out.append("\\midrule")
    for row_label in wide.index:
        metric = _LABEL_TO_METRIC.get(row_label, row_label)
        cells = [latex_escape(metric_label(metric, arrow=True))]
        for method, dur in wide.columns:
            text = format_value(metric, float(wide.loc[row_label, (method, dur)]))
            cells.append(f"\\textbf{{{text}}}" if (row_label, method, dur) in best else text)
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "}"]
    notes = [_subjects_note(wide) + " Bold: best per training duration."]
    if any(m in exclude for m in methods):
        notes.append(NOT_RANKED_NOTE)
    notes += [f"n/a --- {n}" for n in unavailable_notes(wide)]
    out.append("\\par\\smallskip{\\footnotesize " + " \\\\\n".join(latex_escape(n) for n in notes) + "}")
    out.append(f"\\end{{{env}}}")
    return "\n".join(out) + "\n"


def write_table1_latex(
    wide: pd.DataFrame, path: str | Path, caption: str = DEFAULT_CAPTION, label: str = "tab:table1"
) -> Path:
    """Write Table 1 as a booktabs LaTeX table.

    ``\\toprule``/``\\midrule``/``\\bottomrule``, one ``\\multicolumn`` header per method with a ``\\cmidrule`` under
    it and the durations below, metric rows with arrows, PSNR/SSIM/LPIPS/LMD at 2/3/4/2 decimals, the best value
    per metric within each duration in ``\\textbf``, "n/a" for missing values with the reasons as a footnote.
    Wider than 9 value columns it becomes a ``table*`` scaled to the line width.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table1_latex(wide, caption, label))
    return path


def write_per_subject_tables(
    long_df: pd.DataFrame,
    out_dir: str | Path,
    protocol: str = "head",
    methods: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
) -> list[Path]:
    """One ``{subject}.csv`` (Table-1 csv layout, cell means) and ``{subject}.md`` (mean ± std over test frames)
    per subject under ``out_dir``; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if durations is None:
        durations = sorted(float(d) for d in long_df.loc[long_df["protocol"] == protocol, "duration_s"].unique())
    written: list[Path] = []
    for subject in sorted(long_df["subject"].unique()):
        one = long_df[long_df["subject"] == subject]
        wide = table1_wide(one, protocol, methods, durations)
        std = table1_wide(one, protocol, methods, durations, statistic="std")
        written.append(write_table1_csv(wide, out_dir / f"{subject}.csv"))
        caption = f"Subject `{subject}`: mean ± std over the test frames."
        md = out_dir / f"{subject}.md"
        md.write_text(table1_markdown(wide, caption, std=std, heading="Per-subject table."))
        written.append(md)
    return written


def provenance_summary(source: pd.DataFrame | Iterable[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What went into a table: config hashes, code versions, presets, devices, one entry per cell, generation time.

    ``source`` is a long table from :func:`collect_metrics` or just an iterable of config hashes.
    """
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    summary: dict[str, Any] = {"generated_at": now, "generator": "gt_core.report.table1"}

    def uniq(values: Iterable[Any]) -> list[Any]:
        return sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})

    if isinstance(source, pd.DataFrame):
        cells = cell_provenance(source)
        summary.update(
            n_cells=int(len(cells)),
            subjects=uniq(cells["subject"]),
            methods=order_methods(cells["method"]),
            durations_s=sorted({float(d) for d in cells["duration_s"]}),
            config_hashes=uniq(cells.get("config_hash", [])),
            code_versions=uniq(cells.get("code_version", [])),
            presets=uniq(cells.get("preset", [])),
            devices=uniq(cells.get("device", [])),
            torch_versions=uniq(cells.get("torch", [])),
            cells=json.loads(cells.to_json(orient="records")),
        )
    else:
        hashes = uniq(source)
        summary.update(config_hashes=hashes)
    if len(summary["config_hashes"]) > 1:
        summary["warning"] = (f"the cells come from {len(summary['config_hashes'])} different configurations; "
                              "re-run the stale cells before comparing them")
    summary.update(extra or {})
    return summary


def write_provenance_sidecar(
    source: pd.DataFrame | Iterable[str], path: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write :func:`provenance_summary` as JSON next to a table (e.g. ``reports/table1.provenance.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = provenance_summary(source, extra)
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def write_table1_outputs(
    long_df: pd.DataFrame,
    out_dir: str | Path,
    protocol: str = "head",
    methods: Sequence[str] | None = None,
    durations: Sequence[float] | None = None,
    caption: str = DEFAULT_CAPTION,
    label: str = "tab:table1",
) -> dict[str, Path]:
    """Everything table-shaped in one call, under ``out_dir``: ``table1.csv``, ``table1.md``, ``table1.tex``,
    ``table1_long.csv`` (all protocols), ``table1.provenance.json`` and ``per_subject/{subject}.{csv,md}``."""
    out_dir = Path(out_dir)
    wide = table1_wide(long_df, protocol, methods, durations)
    paths = {
        "csv": write_table1_csv(wide, out_dir / "table1.csv"),
        "md": write_table1_markdown(wide, out_dir / "table1.md", caption),
        "tex": write_table1_latex(wide, out_dir / "table1.tex", caption, label),
        "long_csv": write_table1_long_csv(long_df, out_dir / "table1_long.csv"),
        "provenance": out_dir / "table1.provenance.json",
    }
    write_provenance_sidecar(long_df, paths["provenance"], extra={"protocol": protocol})
    write_per_subject_tables(long_df, out_dir / "per_subject", protocol, methods, durations)
    return paths
