""""The table is the metrics": every number of the report equals the mean in its cell's ``metrics.json``.

Real ``metrics.json`` files are made for 2 subjects × 2 durations × 2 methods by the evaluation code itself
(:func:`gt_core.metrics.evaluate.evaluate_cell` on small face images, :func:`gt_core.metrics.cell_stage.
cell_metrics_extra`, :func:`gt_core.metrics.evaluate.write_cell_metrics`), then the ``tables`` rule's own command
(``gt-core tables``, through :func:`gt_core.cli.main`) builds ``reports/``. The test reads the JSON with plain
``json`` and the tables with plain ``csv`` and compares every field:

* ``table1.csv`` / ``table1_face.csv``: the mean over subjects of the cells' ``protocols.<p>.<metric>.mean``, or an
  empty field when any subject's value is null — and LPIPS is empty exactly when a subject's ``lpips.available``
  is false, LMD exactly when a subject has more than 10% renders without a face;
* ``per_subject/<s>.csv``: the cell's value itself; ``table1_long.csv``: every row's mean, std and n_missed_faces;
* ``table1.md``: every displayed value is the JSON mean at the table's decimals, "n/a" where the CSV is empty,
  the LPIPS / LMD reasons are written under the table and the "Missed faces" row counts the renders without a face.

LPIPS runs on a random AlexNet trunk (``features.*`` of an untrained torchvision AlexNet, saved to a tmp file) whose
digest is made the expected one; two cells get an unusable trunk instead (a missing file, a file with the wrong
checksum), so their LPIPS is unavailable with a reason. One cell has a grey render without a face (1 of 4 frames,
25% > 10%), so its LMD is unavailable.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gt_core.cli import main as cli_main
from gt_core.io.download import ModelFile, file_digest
from gt_core.metrics import lpips_metric as lpm
from gt_core.metrics.cell_stage import cell_metrics_extra
from gt_core.metrics.evaluate import evaluate_cell, face_boxes_from_points, write_cell_metrics
from gt_core.metrics.lmd import lip_points
from gt_core.preprocess.landmarks import detect_landmarks
from gt_core.report.table1 import DECIMALS

SUBJECTS = ["s1", "s2"]
DURATIONS = [2, 4]
METHODS = ["retrieval", "gaussiantalker"]
TABLE_METRICS = {"PSNR": "psnr", "SSIM": "ssim", "LPIPS": "lpips", "LMD": "lmd"}
N_FRAMES = 4
NO_LPIPS = {("s2", 2, "gaussiantalker"): "wrong_checksum", ("s2", 4, "gaussiantalker"): "missing"}
NO_FACE = ("s1", 4, "retrieval")  # one grey render of 4: LMD unavailable


def _trunk_file(path: Path, seed: int) -> Path:
    """``features.*`` of a randomly initialised torchvision AlexNet (the keys the LPIPS trunk reads), ~10 MB."""
    import torchvision

    torch.manual_seed(seed)
    state = torchvision.models.alexnet(weights=None).state_dict()
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, path)
    return path


def _renders(face: np.ndarray, k: int, grey_frame: bool) -> np.ndarray:
    """4 renders of cell number ``k``, each a different degradation of ``face``: ``[4, H, W, 3]`` uint8."""
    rng = np.random.default_rng(100 + k)
    out = []
    for i in range(N_FRAMES):
        noisy = face.astype(int) + rng.integers(-(6 + 2 * k), 7 + 2 * k, face.shape) + (k - 4) * (i - 1)
        out.append(np.roll(np.clip(noisy, 0, 255).astype(np.uint8), (k + i) % 3, axis=1))
    if grey_frame:
        out[-1] = np.full_like(face, 128)
    return np.stack(out)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[Path, dict]:
    """(reports dir, {(subject, duration, method): metrics.json document})."""
    from skimage.data import astronaut

    root = tmp_path_factory.mktemp("table_is_metrics")
    face = cv2.resize(astronaut()[0:256, 97:353], (128, 128), interpolation=cv2.INTER_AREA)
    trusted = _trunk_file(root / "trunk.pth", seed=0)
    wrong = _trunk_file(root / "other_trunk.pth", seed=1)
    lm = detect_landmarks(face[None], video_mode=False)
    assert lm.found[0]
    gt_lips = np.repeat(lip_points(lm), N_FRAMES, axis=0)  # [4, 40, 2]
    boxes = np.repeat(face_boxes_from_points(lm.points), N_FRAMES, axis=0)  # [4, 4]
    targets = np.repeat(face[None], N_FRAMES, axis=0)
    record = {"provenance": {"config_hash": "ab12cd34", "code_version": "test", "preset": "tiny", "seed": 0,
                             "device": "cpu", "torch": torch.__version__},
              "train_wall_time_s": 1.0, "hyperparameters": {}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lpm, "ALEXNET", ModelFile(lpm.ALEXNET.name, lpm.ALEXNET.url, "sha256",
                                             file_digest(trusted, "sha256")[:8]))
        metrics = {"ok": lpm.LpipsMetric(weights_path=trusted), "wrong_checksum": lpm.LpipsMetric(weights_path=wrong),
                   "missing": lpm.LpipsMetric(weights_path=root / "absent" / lpm.ALEXNET_FILENAME)}
        assert metrics["ok"].available and not metrics["wrong_checksum"].available
        assert "checksum" in metrics["wrong_checksum"].reason and "not found" in metrics["missing"].reason
        paths, docs = [], {}
        cells = [(s, d, m) for s in SUBJECTS for d in DURATIONS for m in METHODS]
        for k, (s, d, m) in enumerate(cells):
            renders = _renders(face, k, grey_frame=(s, d, m) == NO_FACE)
            df, summary = evaluate_cell(renders, targets, boxes, np.arange(100, 100 + N_FRAMES),
                                        gt_lip_points=gt_lips, lpips_metric=metrics[NO_LPIPS.get((s, d, m), "ok")])
            extra = cell_metrics_extra(s, d, {**record, "method": m}, 0.1, 40.0, 1.0)
            _, path = write_cell_metrics(root / "results" / s / f"{d}s" / m, df, summary, extra)
            paths.append(str(path))
            docs[(s, d, m)] = json.loads(path.read_text())
    out = root / "reports"
    argv = ["tables", "--metrics", *paths, "--out-dir", str(out), "--methods", *METHODS,
            "--durations", *map(str, DURATIONS)]
    assert cli_main(argv) == 0
    return out, docs


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    """Wide csv -> {metric label: {column: raw field}}."""
    with open(path, newline="") as fh:
        return {row.pop("metric"): row for row in csv.DictReader(fh)}


def _cell_mean(doc: dict, protocol: str, metric: str) -> float | None:
    return doc["protocols"][protocol][metric]["mean"]


def _expected(docs: dict, protocol: str, metric: str, d: int, m: str) -> float | None:
    """Mean over subjects of the cells' JSON means, computed here by hand; None if any subject has none."""
    values = [_cell_mean(docs[(s, d, m)], protocol, metric) for s in SUBJECTS]
    return None if any(v is None for v in values) else sum(values) / len(values)


def _assert_field(field: str, want: float | None, what: str, exact: bool = False) -> None:
    if want is None:
        assert field == "", f"{what}: expected an empty field, got {field!r}"
        return
    assert field != "", f"{what}: expected {want!r}, got an empty field"
    got = float(field)
    if exact:
        assert got == want, f"{what}: {got!r} != {want!r}"
    else:  # a mean over subjects: summation order may differ in the last bit
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0), f"{what}: {got!r} != {want!r}"


@pytest.mark.parametrize("protocol,name", [("head", "table1.csv"), ("face", "table1_face.csv")])
def test_every_table1_number_is_the_mean_of_its_cells_metrics_json(reports, protocol, name):
    out, docs = reports
    table = _read_csv(out / name)
    assert list(table) == list(TABLE_METRICS)
    columns = [f"{m}_{d}s" for m in METHODS for d in DURATIONS]
    n_numbers = 0
    for label, metric in TABLE_METRICS.items():
        assert list(table[label]) == columns
        for m in METHODS:
            for d in DURATIONS:
                want = _expected(docs, protocol, metric, d, m)
                _assert_field(table[label][f"{m}_{d}s"], want, f"{name} {label} {m}_{d}s")
                n_numbers += want is not None
    assert n_numbers == 16 - 2 - 1  # 16 fields; LPIPS of gaussiantalker 2s/4s and LMD of retrieval 4s are empty


def test_per_subject_and_long_tables_are_the_cell_values(reports):
    out, docs = reports
    for s in SUBJECTS:
        table = _read_csv(out / "per_subject" / f"{s}.csv")
        for label, metric in TABLE_METRICS.items():
            for m in METHODS:
                for d in DURATIONS:
                    want = _cell_mean(docs[(s, d, m)], "head", metric)
                    _assert_field(table[label][f"{m}_{d}s"], want, f"{s}.csv {label} {m}_{d}s", exact=True)
    with open(out / "table1_long.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    seen = set()
    for row in rows:
        doc = docs[(row["subject"], int(float(row["duration_s"])), row["method"])]
        block = doc["protocols"][row["protocol"]]
        where = f"long {row['subject']} {row['duration_s']} {row['method']} {row['protocol']} {row['metric']}"
        if "status" in block and row["metric"] not in block:  # the `full` protocol: not applicable
            assert row["mean"] == "" and row["status"] == block["status"], where
            continue
        entry = block[row["metric"]]
        _assert_field(row["mean"], entry["mean"], where, exact=True)
        _assert_field(row["std"], entry["std"], where + " std", exact=True)
        assert int(row["n_missed_faces"]) == entry.get("n_missed_render", doc["n_missed_faces"]), where
        assert (row["status"] == "ok") == (entry["mean"] is not None), where
        seen.add((row["subject"], row["duration_s"], row["method"], row["protocol"], row["metric"]))
    assert len(seen) == len(docs) * 2 * 5  # head and face × psnr, ssim, lpips, lmd, lmd40 for every cell
    assert {key[-1] for key in seen} == {"psnr", "ssim", "lpips", "lmd", "lmd40"}


def test_lpips_is_empty_exactly_when_unavailable_with_the_reason_in_the_markdown(reports):
    out, docs = reports
    table = _read_csv(out / "table1.csv")
    md = (out / "table1.md").read_text()
    for m in METHODS:
        for d in DURATIONS:
            unavailable = [docs[(s, d, m)]["lpips"] for s in SUBJECTS if not docs[(s, d, m)]["lpips"]["available"]]
            assert (table["LPIPS"][f"{m}_{d}s"] == "") == bool(unavailable), (m, d)
            for lp in unavailable:
                assert lp["reason"] in md.replace("\\|", "|"), lp["reason"]
    assert sum(not doc["lpips"]["available"] for doc in docs.values()) == 2
    assert "checksum mismatch" in md and "not found" in md


def _md_row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip().strip("*") for c in line.strip().strip("|").split("|")][1:]


def test_markdown_shows_the_same_numbers_the_missed_faces_and_the_lmd_reason(reports):
    out, docs = reports
    md = (out / "table1.md").read_text()
    columns = [(m, d) for m in METHODS for d in DURATIONS]
    for label, metric in TABLE_METRICS.items():
        arrow = "↑" if metric in ("psnr", "ssim") else "↓"
        cells = _md_row(md, label + arrow)
        for (m, d), text in zip(columns, cells):
            want = _expected(docs, "head", metric, d, m)
            assert text == ("n/a" if want is None else f"{want:.{DECIMALS[metric]}f}"), (label, m, d, text)
    missed = _md_row(md, "Missed faces")
    for (m, d), text in zip(columns, missed):
        n_missed = sum(docs[(s, d, m)]["n_missed_faces"] for s in SUBJECTS)
        assert text == f"{n_missed}/{N_FRAMES * len(SUBJECTS)}", (m, d, text)
    assert docs[NO_FACE]["n_missed_faces"] == 1 and _md_row(md, "Missed faces")[1] == "1/8"
    lmd_note = "LMD (Retrieval 4s): unavailable: no face found in 1 of 4 renders (25% > 10% allowed)"
    assert lmd_note in md
