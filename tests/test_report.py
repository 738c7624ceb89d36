"""Tests of gt_core.report: collecting metrics.json files, Table 1 (csv/md/tex), figures, qualitative grid, video.

The fixture ``tests/fixtures/report/cells.csv`` lists 2 subjects × 3 durations (2/4/6 s) × 3 methods with their
head-protocol means and frame stds; ER-NeRF has no LPIPS (weights "missing"). Each test writes the corresponding
``results/{subject}/{D}s/{method}/metrics.json`` tree into ``tmp_path`` and checks the report against values
computed here by hand from the csv.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gt_core.errors import InputError
from gt_core.io.video import read_frames
from gt_core.report.collect import LONG_COLUMNS, collect_metrics, find_metrics_files, load_metrics_record
from gt_core.report.figures import plot_metrics_vs_duration
from gt_core.report.qualitative import (
    choose_frames,
    compose_tile,
    load_renders,
    qualitative_grid,
    side_by_side_video,
)
from gt_core.report.table1 import (
    best_cells,
    read_table1_csv,
    table1_latex,
    table1_markdown,
    table1_wide,
    write_per_subject_tables,
    write_provenance_sidecar,
    write_table1_csv,
    write_table1_latex,
    write_table1_long_csv,
    write_table1_markdown,
    write_table1_outputs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "report"
METHODS = ["retrieval", "ernerf", "gaussiantalker"]  # registry order
DURATIONS = [2, 4, 6]
METRICS = ["psnr", "ssim", "lpips", "lmd"]
LPIPS_REASON = "AlexNet backbone weights not found at resources/weights/alexnet.pth; run `snakemake download_weights`"


def _fixture_rows() -> list[dict[str, str]]:
    with open(FIXTURES / "cells.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _record(row: dict[str, str]) -> dict:
    def entry(metric: str, offset: float = 0.0) -> dict:
        if row[metric] == "":
            return {"mean": None, "std": None, "n": 0}
        return {"mean": float(row[metric]) + offset, "std": float(row[f"{metric}_std"]), "n": 50}

    head = {m: entry(m) for m in METRICS}
    face = {m: entry(m, offset=-1.0 if m == "psnr" else 0.0) for m in METRICS}
    lpips_ok = row["lpips"] != ""
    return {
        "subject": row["subject"], "duration_s": int(row["duration_s"]), "method": row["method"],
        "n_frames": 50, "n_missed_faces": 1,
        "protocols": {"head": head, "face": face, "full": {"status": "not applicable: method renders only the head"}},
        "lpips": {"available": lpips_ok, "reason": None if lpips_ok else LPIPS_REASON},
        "provenance": {"config_hash": row["config_hash"], "code_version": "3cf8f88", "torch": "2.4.1",
                       "device": "cpu", "seed": 0, "wall_time_s": 1.5, "preset": "demo"},
    }


def _write_results(root: Path) -> list[Path]:
    paths = []
    for row in _fixture_rows():
        path = root / row["subject"] / f"{row['duration_s']}s" / row["method"] / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_record(row)))
        paths.append(path)
    return paths


def _hand_means() -> dict[tuple[str, str, int], float]:
    """(metric, method, duration) -> mean over subjects of the csv values (NaN if any subject lacks it)."""
    values: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for row in _fixture_rows():
        for metric in METRICS:
            v = float(row[metric]) if row[metric] != "" else float("nan")
            values[(metric, row["method"], int(row["duration_s"]))].append(v)
    return {key: sum(v) / len(v) for key, v in values.items()}


@pytest.fixture()
def long_df(tmp_path: Path) -> pd.DataFrame:
    return collect_metrics(_write_results(tmp_path / "results"))


# ------------------------------------------------------------------------------------------------------------ collect
def test_collect_long_table(long_df: pd.DataFrame, tmp_path: Path) -> None:
    assert list(long_df.columns) == list(LONG_COLUMNS)
    assert len(long_df) == 18 * 3 * 4  # cells × protocols × metrics
    assert list(dict.fromkeys(long_df["method"])) == METHODS  # registry order, not alphabetical
    one = long_df[(long_df.subject == "s1") & (long_df.duration_s == 4) & (long_df.method == "ernerf")]
    head = one[one.protocol == "head"].set_index("metric")
    assert list(head.index) == METRICS
    assert head.loc["psnr", "mean"] == pytest.approx(28.4) and head.loc["psnr", "std"] == pytest.approx(1.1)
    assert head.loc["psnr", "status"] == "ok" and head.loc["psnr", "n"] == 50 and head.loc["psnr", "n_frames"] == 50
    assert head.loc["psnr", "n_missed_faces"] == 1
    assert np.isnan(head.loc["lpips", "mean"]) and head.loc["lpips", "status"] == f"unavailable: {LPIPS_REASON}"
    full = one[one.protocol == "full"]
    assert len(full) == 4 and full["mean"].isna().all()
    assert (full["status"] == "not applicable: method renders only the head").all()
    assert set(long_df["config_hash"]) == {"ab12cd34", "ee99ff00"}
    assert find_metrics_files(tmp_path / "results") == sorted(long_df["source"].map(Path).unique())


def test_collect_contract_example(tmp_path: Path) -> None:
    path = tmp_path / "results" / "demo" / "10s" / "retrieval" / "metrics.json"
    path.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "metrics_contract_example.json", path)
    df = collect_metrics([path])
    head = df[df.protocol == "head"].set_index("metric")
    assert head.loc["lmd", "n"] == 247 and head.loc["lmd", "mean"] == pytest.approx(3.21)
    assert head.loc["lpips", "status"].startswith("unavailable: AlexNet backbone weights not found")
    assert (df.loc[df.protocol == "full", "status"] == "not applicable: method renders only the head").all()
    assert df["config_hash"].unique().tolist() == ["ab12cd34"]


def test_collect_record_written_by_the_evaluate_stage(tmp_path: Path) -> None:
    """A metrics.json as the evaluate stage writes it (4 frames), read by the report code.

    The fixture is generated by the real evaluation code; regenerate it after changing what metrics.json holds::

        .venv/bin/python tests/fixtures/report/make_metrics_evaluate_stage.py
    """
    path = tmp_path / "demo" / "10s" / "retrieval" / "metrics.json"
    path.parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "metrics_evaluate_stage.json", path)
    df = collect_metrics([path])
    # the face protocol's "crop" and the "mouth_sync" block are not metrics; lmd40 is a long-table-only metric
    assert set(df["metric"]) == set(METRICS) | {"lmd40"}
    assert len(df) == 2 * 5 + 4  # head and face: 5 metrics each; full: one "not applicable" row per Table-1 metric
    head = df[df.protocol == "head"].set_index("metric")
    assert head.loc["psnr", "status"] == "ok" and head.loc["lmd", "n"] == 4 and head.loc["lmd40", "status"] == "ok"
    assert head.loc["lpips", "status"].startswith("unavailable: AlexNet backbone weights not found at ~/.cache")
    assert not head.loc["lpips", "status"].startswith("unavailable: unavailable")
    assert head.loc["psnr", "wall_time_s"] == pytest.approx(3.2)  # provenance.train_wall_time_s
    assert (df["n_missed_faces"] == 0).all()
    wide = table1_wide(df)
    assert list(wide.columns) == [("retrieval", "10s")] and np.isnan(wide.loc["LPIPS", ("retrieval", "10s")])
    assert list(wide.index) == ["PSNR", "SSIM", "LPIPS", "LMD"]  # lmd40 is not a Table 1 row
    assert wide.loc["LMD", ("retrieval", "10s")] == head.loc["lmd", "mean"]


def test_evaluate_stage_fixture_is_current() -> None:
    """The fixture has what the evaluation code writes today (fails when it is stale: regenerate it with
    ``.venv/bin/python tests/fixtures/report/make_metrics_evaluate_stage.py``)."""
    from gt_core.metrics.evaluate import JSON_NOTE, METRIC_DEFINITIONS
    from gt_core.metrics.evaluate import METRICS as EVAL_METRICS

    doc = json.loads((FIXTURES / "metrics_evaluate_stage.json").read_text())
    assert doc["metric_definitions"] == METRIC_DEFINITIONS and doc["json_note"] == JSON_NOTE
    for protocol in ("head", "face"):
        block = doc["protocols"][protocol]
        assert set(EVAL_METRICS) | {"mouth_sync"} <= set(block), protocol
        assert {"n_missed_render", "n_missed_gt", "max_missed_fraction"} <= set(block["lmd"]), protocol
    assert set(doc) >= {"n_frames", "n_missed_faces", "frame_size", "lpips", "provenance", "hyperparameters"}


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="malformed.json.*malformed metrics.json"):
        collect_metrics([FIXTURES / "malformed.json"])
    bad = tmp_path / "missing_key.json"
    bad.write_text(json.dumps({"subject": "a", "duration_s": 2, "method": "retrieval"}))
    with pytest.raises(InputError, match="missing_key.json.*`protocols`"):
        load_metrics_record(bad)
    wrong = tmp_path / "results" / "s1" / "4s" / "ernerf" / "metrics.json"  # record of another cell at this path
    wrong.parent.mkdir(parents=True)
    wrong.write_text(json.dumps(_record(_fixture_rows()[0])))
    with pytest.raises(InputError, match="the path says"):
        load_metrics_record(wrong)
    not_number = tmp_path / "not_number.json"
    record = _record(_fixture_rows()[0])
    record["protocols"]["head"]["psnr"]["mean"] = "high"
    not_number.write_text(json.dumps(record))
    with pytest.raises(InputError, match="not_number.json.*protocols.head.psnr.mean"):
        collect_metrics([not_number])


def test_duplicate_cell_is_an_error(tmp_path: Path) -> None:
    paths = _write_results(tmp_path / "results")
    copy = tmp_path / "copy.json"
    shutil.copy(paths[0], copy)
    with pytest.raises(InputError, match="also described by"):
        collect_metrics([*paths, copy])


# -------------------------------------------------------------------------------------------------------------- table
def test_table1_layout_and_values(long_df: pd.DataFrame) -> None:
    wide = table1_wide(long_df)
    assert list(wide.index) == ["PSNR", "SSIM", "LPIPS", "LMD"]
    assert list(wide.columns) == [(m, f"{d}s") for m in METHODS for d in DURATIONS]
    assert wide.columns.names == ["method", "duration"]
    expected = _hand_means()
    for metric, label in zip(METRICS, wide.index):
        for m in METHODS:
            for d in DURATIONS:
                want, got = expected[(metric, m, d)], wide.loc[label, (m, f"{d}s")]
                if np.isnan(want):
                    assert np.isnan(got), (metric, m, d)
                else:
                    assert got == pytest.approx(want, abs=1e-12), (metric, m, d)
    assert wide.loc["PSNR", ("gaussiantalker", "6s")] == pytest.approx((29.3 + 27.1) / 2)
    assert wide.loc["LPIPS", "ernerf"].isna().all()  # unavailable: NaN, never a number
    assert wide.attrs["subjects"] == ["s1", "s2"]
    # the face protocol, a chosen method subset/order and config durations
    face = table1_wide(long_df, protocol="face", methods=["gaussiantalker", "retrieval", "synctalk"],
                       durations=[6, 2])
    assert list(face.columns) == [("gaussiantalker", "6s"), ("gaussiantalker", "2s"), ("retrieval", "6s"),
                                  ("retrieval", "2s")]
    assert face.loc["PSNR", ("retrieval", "2s")] == pytest.approx(expected[("psnr", "retrieval", 2)] - 1.0)
    # `full` is not applicable to any of them
    full = table1_wide(long_df, protocol="full")
    assert full.isna().all().all()
    assert set(full.attrs["reasons"].values()) == {"not applicable: method renders only the head"}


def test_table1_no_partial_average_over_subjects(long_df: pd.DataFrame) -> None:
    df = long_df.copy()
    drop = (df.subject == "s2") & (df.duration_s == 6) & (df.method == "retrieval")
    df.loc[drop & (df.metric == "lmd"), ["mean", "status"]] = [np.nan, "unavailable: no face in 50 of 50 renders"]
    wide = table1_wide(df[~(drop & (df.metric == "psnr"))])
    assert np.isnan(wide.loc["LMD", ("retrieval", "6s")])
    assert wide.attrs["reasons"][("LMD", "retrieval", "6s")] == "unavailable: no face in 50 of 50 renders"
    assert np.isnan(wide.loc["PSNR", ("retrieval", "6s")])
    assert wide.attrs["reasons"][("PSNR", "retrieval", "6s")] == "missing for subject(s) s2"
    assert np.isfinite(wide.loc["SSIM", ("retrieval", "6s")])


def test_table1_csv_layout_and_round_trip(long_df: pd.DataFrame, tmp_path: Path) -> None:
    wide = table1_wide(long_df)
    path = write_table1_csv(wide, tmp_path / "table1.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "metric," + ",".join(f"{m}_{d}s" for m in METHODS for d in DURATIONS)
    assert [line.split(",")[0] for line in lines[1:]] == ["PSNR", "SSIM", "LPIPS", "LMD"]
    lpips = lines[3].split(",")
    assert lpips[4:7] == ["", "", ""]  # ernerf: empty fields
    back = read_table1_csv(path)
    assert list(back.columns) == list(wide.columns) and list(back.index) == list(wide.index)
    np.testing.assert_array_equal(back.to_numpy(), wide.to_numpy())  # exact, NaN included

    long_path = write_table1_long_csv(long_df, tmp_path / "table1_long.csv")
    back_long = pd.read_csv(long_path)
    assert list(back_long.columns)[:8] == ["subject", "duration_s", "method", "protocol", "metric", "mean", "std",
                                           "n"]
    assert len(back_long) == len(long_df)
    np.testing.assert_allclose(back_long["mean"], long_df["mean"])


def _markdown_cells(text: str, row: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_markdown_bold_and_na(long_df: pd.DataFrame, tmp_path: Path) -> None:
    wide = table1_wide(long_df)
    text = write_table1_markdown(wide, tmp_path / "table1.md", caption="Test table").read_text()
    header = text.splitlines()[2]
    assert header == ("| Metric | " + " | ".join(f"{n} {d}s" for n in ("Retrieval", "ER-NeRF", "GaussianTalker")
                                                 for d in DURATIONS) + " |")
    # best per duration, by hand: PSNR 2s retrieval 26.40, 4s ER-NeRF 27.30, 6s GaussianTalker 28.20
    psnr = _markdown_cells(text, "PSNR↑")
    bold = [i for i, c in enumerate(psnr) if c.startswith("**")]
    cols = [(m, d) for m in METHODS for d in DURATIONS]
    assert [cols[i] for i in bold] == [("retrieval", 2), ("ernerf", 4), ("gaussiantalker", 6)]
    assert psnr[0] == "**26.40**" and psnr[4] == "**27.30**" and psnr[8] == "**28.20**"
    # lower is better: LMD 2s retrieval 3.60, 4s ER-NeRF 3.40, 6s GaussianTalker 3.145 -> "3.15" (2 dp; banker-free)
    lmd = _markdown_cells(text, "LMD↓")
    assert [cols[i] for i, c in enumerate(lmd) if c.startswith("**")] == [
        ("retrieval", 2), ("ernerf", 4), ("gaussiantalker", 6)]
    lpips = _markdown_cells(text, "LPIPS↓")
    assert lpips[3:6] == ["n/a", "n/a", "n/a"]
    assert [cols[i] for i, c in enumerate(lpips) if c.startswith("**")] == [
        ("gaussiantalker", 2), ("gaussiantalker", 4), ("gaussiantalker", 6)]
    assert lpips[6] == "**0.0635**" and _markdown_cells(text, "SSIM↑")[0] == "**0.865**"
    note = next(line for line in text.splitlines() if line.startswith("n/a"))
    assert "LPIPS (ER-NeRF 2s, 4s, 6s)" in note and LPIPS_REASON in note
    # renders without a face: every fixture cell reports 1 of 50 frames, summed over the 2 subjects
    assert _markdown_cells(text, "Missed faces") == ["2/100"] * 9
    assert any(line.startswith("Missed faces: test frames whose render has no detected face")
               for line in text.splitlines())
    assert "mean over 2 subjects (s1, s2)" in text


def test_latex_booktabs(long_df: pd.DataFrame, tmp_path: Path) -> None:
    wide = table1_wide(long_df)
    tex = write_table1_latex(wide, tmp_path / "table1.tex", caption="Few-shot 50% test", label="tab:t1").read_text()
    for token in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{l ccc ccc ccc}",
                  "\\multicolumn{3}{c}{ER-NeRF}", "\\cmidrule(lr){2-4}", "\\cmidrule(lr){8-10}",
                  "\\label{tab:t1}", "Few-shot 50\\% test", "PSNR$\\uparrow$", "LMD$\\downarrow$"):
        assert token in tex, token
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    psnr = next(line for line in tex.splitlines() if line.startswith("PSNR"))
    cells = [c.strip() for c in psnr.removesuffix("\\\\").split("&")][1:]
    assert cells == ["\\textbf{26.40}", "26.65", "26.75", "25.75", "\\textbf{27.30}", "27.60", "26.00", "27.00",
                     "\\textbf{28.20}"]
    lpips = next(line for line in tex.splitlines() if line.startswith("LPIPS"))
    assert lpips.count("n/a") == 3 and "\\textbf{0.0535}" in lpips
    ssim = next(line for line in tex.splitlines() if line.startswith("SSIM"))
    assert "\\textbf{0.865}" in ssim and "\\textbf{0.8875}" not in ssim  # 3 decimals
    assert "download\\_weights" in tex  # the footnote's reason, escaped


def test_portrait_row_is_shown_but_not_ranked(long_df: pd.DataFrame, monkeypatch) -> None:
    from gt_core.methods import registry

    assert registry.METHODS["synctalk-portrait"].derived_from == "synctalk"  # registered before GaussianTalker
    df = long_df.copy()
    portrait = df[df.method == "gaussiantalker"].copy()
    portrait["method"] = "synctalk-portrait"
    portrait["mean"] = portrait["mean"] + np.where(portrait["metric"].isin(["psnr", "ssim"]), 5.0, -0.01)
    wide = table1_wide(pd.concat([df, portrait]))
    assert list(dict.fromkeys(wide.columns.get_level_values("method"))) == [
        m for m in registry.METHODS if m in {"retrieval", "ernerf", "synctalk-portrait", "gaussiantalker"}]
    assert not any(m == "synctalk-portrait" for _, m, _ in best_cells(wide))
    md = table1_markdown(wide)
    assert "SyncTalk (portrait)† 2s" in md and "† pastes the ground-truth frame" in md
    assert "$^\\dagger$" in table1_latex(wide)


def test_per_subject_tables_and_sidecar(long_df: pd.DataFrame, tmp_path: Path) -> None:
    written = write_per_subject_tables(long_df, tmp_path / "per_subject")
    assert sorted(p.name for p in written) == ["s1.csv", "s1.md", "s2.csv", "s2.md"]
    s2 = read_table1_csv(tmp_path / "per_subject" / "s2.csv")
    assert s2.loc["PSNR", ("ernerf", "4s")] == pytest.approx(26.2)
    assert "26.20 ± 1.30" in (tmp_path / "per_subject" / "s2.md").read_text()

    summary = write_provenance_sidecar(long_df, tmp_path / "table1.provenance.json")
    on_disk = json.loads((tmp_path / "table1.provenance.json").read_text())
    assert on_disk["config_hashes"] == ["ab12cd34", "ee99ff00"] == summary["config_hashes"]
    assert on_disk["n_cells"] == 18 and on_disk["code_versions"] == ["3cf8f88"]
    assert "2 different configurations" in on_disk["warning"]
    assert {"generated_at", "subjects", "methods", "durations_s", "cells"} <= set(on_disk)
    assert write_provenance_sidecar(["ab12cd34"], tmp_path / "h.json")["config_hashes"] == ["ab12cd34"]

    paths = write_table1_outputs(long_df, tmp_path / "reports")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert (tmp_path / "reports" / "per_subject" / "s1.md").is_file()


# ------------------------------------------------------------------------------------------------------------ figures
def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_metrics_vs_duration_figure(long_df: pd.DataFrame, tmp_path: Path) -> None:
    fig = plot_metrics_vs_duration(long_df, tmp_path / "fig.png")
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == ["PSNR ↑", "SSIM ↑", "LPIPS ↓", "LMD ↓"]
    assert len(fig.axes[0].lines) >= 3  # one line per method (plus error-bar caps)
    w, h = _png_size(tmp_path / "fig.png")
    assert w > 1000 and h > 800
    texts = [t.get_text() for t in fig.axes[2].texts]
    assert texts == ["n/a: ER-NeRF"]  # LPIPS panel: the others are drawn
    assert any("over subjects" in t.get_text() for t in fig.texts)

    # one subject, no LPIPS at all: frame-std error bars and an "unavailable" panel
    one = long_df[(long_df.subject == "s1") & (long_df.method == "ernerf")]
    fig = plot_metrics_vs_duration(one, tmp_path / "fig1.png")
    panel = " ".join(t.get_text() for t in fig.axes[2].texts)
    assert panel.replace("\n", " ").startswith("unavailable: AlexNet backbone weights")
    assert len(fig.axes[2].lines) == 0
    assert any("over its test frames" in t.get_text() for t in fig.texts)
    assert (tmp_path / "fig1.png").stat().st_size > 10_000


# -------------------------------------------------------------------------------------------------------- qualitative
def test_choose_frames() -> None:
    picks = choose_frames(100, k=3, seed=0)
    assert picks == choose_frames(100, k=3, seed=0) and picks == sorted(picks) and len(set(picks)) == 3
    assert 0 <= picks[0] < 34 <= picks[1] < 67 <= picks[2] < 100
    assert choose_frames(2, k=3) == [0, 1]
    opening = np.zeros(100)
    opening[70:80] = np.sin(np.arange(10)) * 0.5 + 0.5  # the mouth moves only around frames 70-79
    picks = choose_frames(100, k=3, seed=0, opening=opening)
    assert len(picks) == 3 and any(68 <= p <= 81 for p in picks)
    with pytest.raises(ValueError):
        choose_frames(0)


def _synthetic_frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.float64)  # [S, S, 3] gradient
    frames = base[None] + rng.normal(0, 8, (n, size, size, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)  # [n, S, S, 3]


def test_qualitative_grid(tmp_path: Path) -> None:
    k, size = 3, 64
    gt = _synthetic_frames(k, size)
    renders = {(m, d): _synthetic_frames(k, size, seed=i + 1)
               for i, (m, d) in enumerate((m, d) for m in ["gaussiantalker", "ernerf"] for d in [4, 2])}
    del renders[("ernerf", 4)]  # a missing cell becomes an "n/a" tile
    boxes = np.array([[20, 40, 44, 52]] * k, dtype=float)  # [K, 4]
    fig = qualitative_grid(gt, renders, [101, 150, 190], boxes, tmp_path / "grid.png", title="Test grid")
    n_cols = 1 + 2 * 2
    assert len(fig.axes) == k * n_cols
    assert sum(1 for ax in fig.axes if ax.images) == k * (n_cols - 1)  # 3 n/a tiles without an image
    texts = [t.get_text() for t in fig.texts]
    assert texts.count("Ground truth") == 1 and "frame 150" in texts and "2 s of training video" in texts
    # column order: GT, then 2 s (ER-NeRF, GaussianTalker), then 4 s (ER-NeRF, GaussianTalker)
    heads = [t for t in fig.texts if t.get_text() in ("Ground truth", "ER-NeRF", "GaussianTalker")]
    assert [t.get_text() for t in sorted(heads, key=lambda t: t.get_position()[0])] == [
        "Ground truth", "ER-NeRF", "GaussianTalker", "ER-NeRF", "GaussianTalker"]
    w, h = _png_size(tmp_path / "grid.png")
    fw, fh = fig.get_size_inches() * 150
    assert (w, h) == (round(fw), round(fh)) and w > h

    tile = compose_tile(gt[0], boxes[0])
    assert tile.shape == (256, 256, 3) and tile.dtype == np.uint8
    assert compose_tile(gt[0], None).shape == (256, 256, 3)
    with pytest.raises(ValueError):
        qualitative_grid(gt, renders, [1, 2], boxes, None)


def test_load_renders(tmp_path: Path) -> None:
    frames = _synthetic_frames(5, 32)
    np.save(tmp_path / "renders.npy", frames)
    np.save(tmp_path / "frame_ids.npy", np.array([300, 301, 302, 303, 304]))
    picked = load_renders(tmp_path, [303, 300])
    np.testing.assert_array_equal(picked, frames[[3, 0]])
    with pytest.raises(InputError, match="were not rendered"):
        load_renders(tmp_path, [299])
    # the render stage's renders.npz (frame_ids, head, optional full) takes precedence
    cell = tmp_path / "cell"
    cell.mkdir()
    np.savez(cell / "renders.npz", frame_ids=np.arange(10, 15), head=frames, seconds=np.float64(0.5))
    np.testing.assert_array_equal(load_renders(cell, [14, 10]), frames[[4, 0]])
    with pytest.raises(InputError, match="no `full` renders"):
        load_renders(cell, [10], protocol="full")
    with pytest.raises(InputError, match="not found"):
        load_renders(tmp_path / "empty", [10])


def test_side_by_side_video(tmp_path: Path) -> None:
    n, size = 12, 64
    gt = _synthetic_frames(n, size)
    renders = {"ER-NeRF 2s": _synthetic_frames(n, size, 1), "GaussianTalker 2s": _synthetic_frames(n, 32, 2)}
    path = side_by_side_video(gt, renders, tmp_path / "sbs.mp4", fps=25)
    back = read_frames(path)
    assert back.shape[0] == n
    assert back.shape[2] == 3 * size + 2 * 2  # three panels and two separators (already even)
    assert back.shape[1] > size  # label strip on top
    plain = read_frames(side_by_side_video(gt, renders, tmp_path / "plain.mp4", labels=False))
    assert plain.shape[1:3] == (size, 3 * size + 4)
    with pytest.raises(ValueError):
        side_by_side_video(gt, {"short": gt[:5]}, tmp_path / "bad.mp4")


def test_markdown_of_wide_read_back_from_csv(long_df: pd.DataFrame, tmp_path: Path) -> None:
    """A table re-read from csv (no attrs) still renders, with a generic n/a note."""
    back = read_table1_csv(write_table1_csv(table1_wide(long_df), tmp_path / "t.csv"))
    text = table1_markdown(back)
    assert "n/a" in text and re.search(r"\*\*26\.40\*\*", text)
