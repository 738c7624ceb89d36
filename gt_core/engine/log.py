"""``train_log.csv``: one row per iteration; on resume, rows past the checkpoint's position are dropped first."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from gt_core.io.atomic import atomic_path


class CsvLog:
    """Rows ``{"stage", "iteration", …}`` in ``fields`` order; ``keep_until`` = (stage index, iteration) of the
    checkpoint a run resumes from (None: start a new log)."""

    def __init__(self, path: Path, fields: Sequence[str], stages: Sequence[str],
                 keep_until: tuple[int, int] | None):
        self.path = path
        rows: list[dict[str, str]] = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as fh:
                for row in csv.DictReader(fh):
                    if row.get("stage") in stages and (stages.index(row["stage"]), int(row["iteration"])) <= keep_until:
                        rows.append(row)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self.fh = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=list(fields))

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
