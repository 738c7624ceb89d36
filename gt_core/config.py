"""The pipeline configuration: validated once against ``config/schema/config.schema.yaml``.

The Snakefile validates with ``snakemake.utils.validate`` (which also fills defaults) through
:func:`validate_config`, so a bad key fails before any job starts, in one line naming the key and the fix.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gt_core.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = PROJECT_ROOT / "config" / "schema" / "config.schema.yaml"


def duration_label(seconds: float) -> str:
    """``10 -> "10s"``, ``2.5 -> "2.5s"``: the directory name of a training duration."""
    return f"{float(seconds):g}s"


def _one_line(err: Exception) -> str:
    """The first informative line of a jsonschema / snakemake validation error."""
    message = getattr(err, "message", None)  # jsonschema's ValidationError: the one-line reason
    if message:
        return str(message)
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else repr(err)


# Values a user may know from the originals but that this pipeline does not implement: refused before the schema
# check, with the reason, so a run never starts and then fails in the middle of the DAG.
NOT_IMPLEMENTED: dict[tuple[str, str], str] = {
    ("audio_features", "hubert"): "HuBERT features are not implemented (they need transformers and the HuBERT-large "
                                  "weights)",
}


def _refuse_not_implemented(config: dict, source: str, schema_path: Path) -> None:
    """One-line :class:`InputError` naming the key, why, and the schema's alternatives, for a NOT_IMPLEMENTED value."""
    for (key, value), why in NOT_IMPLEMENTED.items():
        if config.get(key) == value:
            schema = yaml.safe_load(Path(schema_path).read_text())
            allowed = schema.get("properties", {}).get(key, {}).get("enum", [])
            raise InputError(f"{source}: key '{key}'", f"'{value}' is not available: {why}",
                             f"set {key} to one of {', '.join(map(str, allowed))} (see config/README.md)")


def validate_config(config: dict, source: str = "config", schema_path: Path = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (defaults filled) or raise a one-line :class:`InputError`."""
    _refuse_not_implemented(config, source, schema_path)
    try:
        from snakemake.utils import validate
    except ImportError:  # pragma: no cover - snakemake is a dependency; jsonschema fallback for library use
        validate = None
    try:
        if validate is not None:
            validate(config, str(schema_path), set_default=True)
        else:  # pragma: no cover
            import jsonschema

            jsonschema.validate(config, yaml.safe_load(schema_path.read_text()))
    except Exception as err:  # snakemake raises WorkflowError wrapping jsonschema's ValidationError
        cause = err.__cause__ or err.__context__ or err
        path = "/".join(str(p) for p in getattr(cause, "absolute_path", []) or [])
        where = f"{source}: key '{path}'" if path else source
        raise InputError(where, f"invalid configuration ({_one_line(cause)})",
                         "see config/README.md for the allowed keys and values") from None
    from gt_core.methods.registry import check_methods

    check_methods(config.get("methods", []), source)
    return config


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found", "pass an existing file with --configfile")
    return validate_config(yaml.safe_load(path.read_text()) or {}, source=str(path))


def config_hash(config: dict) -> str:
    """Short stable hash of the whole (validated) config: recorded in every metrics.json and Table 1's sidecar."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class SplitSpec:
    """How a subject's video is cut into train clips and the common held-out test tail (DESIGN.md §3)."""

    durations: tuple[float, ...]
    gap_s: float = 1.0
    test_seconds: float = 10.0
    mode: str = "tail"  # tail | rest
    fps: int = 25

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "SplitSpec":
        test = config.get("test", {})
        return cls(tuple(float(d) for d in config["durations"]), float(test.get("gap_s", 1.0)),
                   float(test.get("seconds", 10.0)), str(test.get("mode", "tail")), int(config.get("fps", 25)))

    @property
    def test_start_s(self) -> float:
        return max(self.durations) + self.gap_s

    def required_seconds(self) -> float:
        """Shortest video this split accepts: the longest train clip, the gap and a full test tail."""
        return self.test_start_s + self.test_seconds if self.mode == "tail" else self.test_start_s + 1.0

    def train_frames(self, duration_s: float, n_frames: int) -> range:
        """Frame indices of the first ``duration_s`` seconds."""
        end = int(round(duration_s * self.fps))
        assert end <= n_frames, (duration_s, n_frames)
        return range(0, end)

    def test_frames(self, n_frames: int) -> range:
        """Frame indices of the common test tail, identical for every duration of a subject."""
        start = int(round(self.test_start_s * self.fps))
        end = n_frames if self.mode == "rest" else min(n_frames, start + int(round(self.test_seconds * self.fps)))
        assert start < end, (start, end, n_frames)
        return range(start, end)

    def canonical_frames(self, n_frames: int) -> range:
        """Frames every cell trains on (the shortest clip): what per-subject canonical estimates may look at."""
        return self.train_frames(min(self.durations), n_frames)
