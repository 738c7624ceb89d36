"""Collect per-cell ``metrics.json`` records into one long tidy table.

Every evaluated cell (subject, training duration D, method) writes
``results/{subject}/{D}s/{method}/metrics.json`` (see DESIGN.md §3)::

    {"subject": "demo", "duration_s": 10, "method": "retrieval", "n_frames": 250, "n_missed_faces": 0,
     "protocols": {"head": {"psnr": {"mean": 24.1, "std": 1.2, "n": 250}, ..., "lpips": {"mean": null, ...}},
                   "face": {...},
                   "full": {"status": "not applicable: method renders only the head"}},
     "lpips": {"available": false, "reason": "AlexNet backbone weights not found at ..."},
     "provenance": {"config_hash": "ab12cd34", "code_version": "...", "torch": "2.14.1", "device": "cpu",
                    "seed": 0, "wall_time_s": 12.3, "preset": "demo"}}

:func:`collect_metrics` turns any number of those into a long table with one row per
(subject, duration_s, method, protocol, metric)::

    subject  duration_s  method  protocol  metric  mean  std  n  n_frames  n_missed_faces  status
    config_hash  code_version  preset  device  torch  seed  wall_time_s  source

``status`` says why a value is missing, never leaving a NaN unexplained:

* ``"ok"`` — ``mean`` is a number;
* ``"unavailable: <reason>"`` — the metric was not computed (e.g. LPIPS without its AlexNet weights; the reason comes
  from the record's ``lpips.reason`` or the metric's own ``reason``/``status``);
* the protocol's own ``status`` (e.g. ``"not applicable: method renders only the head"``) when the whole protocol
  does not apply to the method.

Keys of a protocol block that are not metric objects (e.g. the face protocol's ``crop`` description) are skipped;
metric objects beyond the four Table-1 metrics (``lmd40``) become rows of the long table only. ``n_missed_faces`` is
the protocol's own count of renders without a face (``protocols.<p>.lmd.n_missed_render``) where the record has it
(the ``full`` protocol has its own renders), else the record's top-level ``n_missed_faces``.
``wall_time_s`` is the provenance's ``train_wall_time_s`` (as the evaluate stage writes it) or ``wall_time_s``.
The provenance columns repeat the cell's ``provenance`` block on each of its rows so that the sidecar writer
(:func:`gt_core.report.table1.write_provenance_sidecar`) can list every config hash and code version that went
into a table.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from gt_core.errors import InputError
from gt_core.methods import registry

# Row order of Table 1 and the display name / better direction of each metric.
METRICS: tuple[str, ...] = ("psnr", "ssim", "lpips", "lmd")
METRIC_LABELS: dict[str, str] = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "lmd": "LMD"}
HIGHER_IS_BETTER: dict[str, bool] = {"psnr": True, "ssim": True, "lpips": False, "lmd": False}
PROTOCOLS: tuple[str, ...] = ("head", "face", "full")

# Column order of Table 1 and the display names are the method registry's, read when used (DESIGN.md §3). Methods
# not registered (an old results folder) follow in alphabetical order under their own names.

LONG_COLUMNS: tuple[str, ...] = (
    "subject", "duration_s", "method", "protocol", "metric", "mean", "std", "n", "n_frames", "n_missed_faces",
    "status", "config_hash", "code_version", "preset", "device", "torch", "seed", "wall_time_s", "source",
)
_PROVENANCE_KEYS: tuple[str, ...] = ("config_hash", "code_version", "preset", "device", "torch", "seed", "wall_time_s")

# results/{subject}/{D}s/{method}/metrics.json
_CELL_PATH = re.compile(r"(?P<subject>[^/]+)/(?P<duration>\d+(?:\.\d+)?)s/(?P<method>[^/]+)/metrics\.json$")
_FIX = "delete the file and re-run the evaluation of that cell (snakemake re-creates it)"


def method_label(method: str) -> str:
    """Display name of a method (``"ernerf" -> "ER-NeRF"``); unknown names are returned unchanged."""
    return registry.METHODS[method].label if method in registry.METHODS else method


def metric_label(metric: str, arrow: bool = False) -> str:
    """Display name of a metric, optionally with its better-direction arrow (``"lpips" -> "LPIPS↓"``)."""
    label = METRIC_LABELS.get(metric, metric.upper())
    if arrow and metric in HIGHER_IS_BETTER:
        label += "↑" if HIGHER_IS_BETTER[metric] else "↓"
    return label


def duration_label(duration_s: float) -> str:
    """Column label of a training duration: ``10 -> "10s"``, ``2.5 -> "2.5s"``."""
    return f"{float(duration_s):g}s"


def order_methods(present: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """Methods of ``present`` in ``order`` (default: the registry's), unknown ones after it alphabetically."""
    present = list(dict.fromkeys(present))
    order = list(order) if order is not None else list(registry.METHODS)
    known = [m for m in order if m in present]
    return known + sorted(m for m in present if m not in order)


def find_metrics_files(results_dir: str | Path) -> list[Path]:
    """Every ``{subject}/{D}s/{method}/metrics.json`` under ``results_dir``, sorted."""
    return sorted(p for p in Path(results_dir).glob("*/*s/*/metrics.json") if p.is_file())


def _number(value: Any, path: Path, key: str) -> float:
    """JSON number or null -> float (NaN for null); anything else is a malformed record."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"malformed metrics.json: `{key}` is {value!r}, expected a number or null", _FIX)
    return float(value)


def _duration(value: Any, path: Path) -> int | float:
    d = _number(value, path, "duration_s")
    if not math.isfinite(d) or d <= 0:
        raise InputError(path, f"malformed metrics.json: `duration_s` is {value!r}", _FIX)
    return int(d) if d.is_integer() else d


def load_metrics_record(path: str | Path) -> dict[str, Any]:
    """Read and validate one ``metrics.json``; raises :class:`InputError` naming the file when it is malformed.

    When the file sits at ``.../{subject}/{D}s/{method}/metrics.json`` its identity fields must agree with the
    path (a copied or stale record would otherwise land in the wrong table cell).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InputError(path, "metrics.json not found", "run the evaluation of that cell first") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"malformed metrics.json ({err})", _FIX) from err
    if not isinstance(record, dict):
        raise InputError(path, "malformed metrics.json: top level is not an object", _FIX)
    for key in ("subject", "duration_s", "method", "protocols"):
        if key not in record:
            raise InputError(path, f"malformed metrics.json: missing key `{key}`", _FIX)
    if not isinstance(record["protocols"], dict) or not record["protocols"]:
        raise InputError(path, "malformed metrics.json: `protocols` is not a non-empty object", _FIX)
    record["duration_s"] = _duration(record["duration_s"], path)
    match = _CELL_PATH.search(path.as_posix())
    if match is not None:
        from_path = (match["subject"], float(match["duration"]), match["method"])
        from_json = (str(record["subject"]), float(record["duration_s"]), str(record["method"]))
        if from_path != from_json:
            raise InputError(
                path,
                f"record says subject/duration/method = {from_json} but the path says {from_path}",
                _FIX,
            )
    return record


def _unavailable_reason(metric: str, entry: dict[str, Any], record: dict[str, Any]) -> str:
    """Why ``metric`` has no value in this record (text after ``"unavailable: "``)."""
    for key in ("status", "reason"):
        text = entry.get(key)
        if isinstance(text, str) and text:
            return text.removeprefix("unavailable: ")
    block = record.get(metric)  # e.g. record["lpips"] = {"available": false, "reason": "..."}
    if isinstance(block, dict) and block.get("reason"):
        return str(block["reason"])
    return "not computed"


def record_rows(record: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The long-table rows of one validated record (one per protocol × metric; see the module docstring)."""
    provenance = record.get("provenance") or {}
    base = {
        "subject": str(record["subject"]),
        "duration_s": record["duration_s"],
        "method": str(record["method"]),
        "n_frames": _number(record.get("n_frames"), path, "n_frames"),
        "n_missed_faces": _number(record.get("n_missed_faces"), path, "n_missed_faces"),
        **{key: provenance.get(key) for key in _PROVENANCE_KEYS},
        # the evaluate stage records the training time as train_wall_time_s; older/simpler records as wall_time_s
        "wall_time_s": provenance.get("train_wall_time_s", provenance.get("wall_time_s")),
        "source": str(path),
    }
    rows: list[dict[str, Any]] = []
    for protocol, block in record["protocols"].items():
        if not isinstance(block, dict):
            raise InputError(path, f"malformed metrics.json: protocol `{protocol}` is not an object", _FIX)
        # metric entries are the objects with a "mean" (plus the Table-1 metrics, which must be objects); other
        # keys (e.g. the face protocol's "crop" description) are descriptive and skipped
        metric_keys = [k for k, v in block.items() if k in METRICS or (isinstance(v, dict) and "mean" in v)]
        lmd_entry = block.get("lmd")
        missed = base["n_missed_faces"]
        if isinstance(lmd_entry, dict) and "n_missed_render" in lmd_entry:
            missed = _number(lmd_entry["n_missed_render"], path, f"protocols.{protocol}.lmd.n_missed_render")
        if not metric_keys:  # the whole protocol does not apply (or was not run): one row per Table-1 metric
            status = str(block.get("status") or "unavailable: protocol not computed")
            for metric in METRICS:
                rows.append({**base, "protocol": protocol, "metric": metric, "mean": math.nan, "std": math.nan,
                             "n": 0.0, "status": status})
            continue
        for metric in metric_keys:
            entry = block[metric]
            if not isinstance(entry, dict):
                raise InputError(path, f"malformed metrics.json: `protocols.{protocol}.{metric}` is not an object",
                                 _FIX)
            where = f"protocols.{protocol}.{metric}"
            mean = _number(entry.get("mean"), path, f"{where}.mean")
            std = _number(entry.get("std"), path, f"{where}.std")
            n = _number(entry.get("n"), path, f"{where}.n")
            status = "ok" if math.isfinite(mean) else f"unavailable: {_unavailable_reason(metric, entry, record)}"
            rows.append({**base, "protocol": protocol, "metric": metric, "mean": mean, "std": std, "n": n,
                         "status": status, "n_missed_faces": missed})
    return rows


def collect_metrics(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Long tidy table of every cell in ``paths`` (columns :data:`LONG_COLUMNS`, see the module docstring).

    Rows are sorted by subject, duration, method (registry order), protocol and metric (Table-1 order).
    Raises :class:`InputError` naming the file for a malformed record, and when two files describe the same cell.
    """
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[str, float, str], Path] = {}
    for path in map(Path, paths):
        record = load_metrics_record(path)
        cell = (str(record["subject"]), float(record["duration_s"]), str(record["method"]))
        if cell in seen:
            raise InputError(path, f"cell {cell} is also described by {seen[cell]}", "pass each cell's file once")
        seen[cell] = path
        rows.extend(record_rows(record, path))
    df = pd.DataFrame(rows, columns=list(LONG_COLUMNS))
    if df.empty:
        return df
    df["duration_s"] = pd.to_numeric(df["duration_s"])
    for col in ("mean", "std", "wall_time_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("n", "n_frames", "n_missed_faces"):  # counts: nullable integers (<NA> where not reported)
        values = pd.to_numeric(df[col], errors="coerce").astype("float64")
        finite = values.dropna()
        df[col] = values.astype("Int64") if (finite == finite.round()).all() else values
    method_rank = {m: i for i, m in enumerate(order_methods(df["method"]))}
    metric_rank = {m: i for i, m in enumerate(METRICS)}
    protocol_rank = {p: i for i, p in enumerate(PROTOCOLS)}
    key = pd.DataFrame({
        "subject": df["subject"],
        "duration_s": df["duration_s"],
        "method": df["method"].map(method_rank),
        "protocol": df["protocol"].map(protocol_rank).fillna(len(PROTOCOLS)),
        "protocol_name": df["protocol"],
        "metric": df["metric"].map(metric_rank).fillna(len(METRICS)),
        "metric_name": df["metric"],
    })
    order = key.sort_values(list(key.columns), kind="stable").index
    return df.loc[order].reset_index(drop=True)


def cell_provenance(long_df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (subject, duration_s, method) with its provenance columns, from a long table."""
    cols = ["subject", "duration_s", "method", *_PROVENANCE_KEYS, "n_frames", "n_missed_faces", "source"]
    present = [c for c in cols if c in long_df.columns]
    return long_df[present].drop_duplicates(subset=["subject", "duration_s", "method"]).reset_index(drop=True)
