"""The one interface every talking-head method implements, so the DAG treats them alike.

A method is a class with a ``name``, a ``presets`` dict of hyper-parameter sets (``demo``, ``paper``, ``tiny``), and

- ``train(cell, cfg, out_dir, device) -> Path``: fit on ``cell.train`` and write a checkpoint (plus ``train_log.csv``)
  under ``out_dir``; must resume from the last periodic checkpoint in ``out_dir`` when one exists;
- ``render(checkpoint, cell, device) -> Renders``: render every frame of ``cell.test`` from its audio window,
  tracked pose and eye value — never from the test frame's pixels or mouth landmarks.

``cell`` is a :class:`gt_core.data.cell.CellData`. Renders follow the ``head`` protocol (DESIGN.md §3): the method
draws the head over ``cell.test.backgrounds`` (ground-truth torso over the training plate). ``full`` renders
(the method's own torso and background) are optional.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gt_core.errors import InputError
from gt_core.io.atomic import atomic_path

if TYPE_CHECKING:
    import torch

    from gt_core.data.cell import CellData


@dataclass
class Renders:
    """A method's renders of a cell's test frames."""

    frame_ids: np.ndarray  # [N] int64 video frame indices (= cell.test.frame_ids)
    head: np.ndarray  # [N, H, W, 3] uint8, head protocol (over the given background)
    full: np.ndarray | None = None  # [N, H, W, 3] uint8, everything the method learned; None = not supported
    seconds: float = 0.0  # wall time spent rendering (excludes I/O)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.head.ndim == 4 and self.head.shape[-1] == 3 and self.head.dtype == np.uint8, self.head.shape
        assert self.frame_ids.shape == (len(self.head),), (self.frame_ids.shape, self.head.shape)
        if self.full is not None:
            assert self.full.shape == self.head.shape, (self.full.shape, self.head.shape)

    @property
    def fps(self) -> float:
        return len(self.head) / self.seconds if self.seconds > 0 else float("nan")

    def save(self, path: str | Path) -> None:
        arrays = {"frame_ids": self.frame_ids, "head": self.head, "seconds": np.float64(self.seconds)}
        if self.full is not None:
            arrays["full"] = self.full
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "Renders":
        with np.load(path) as z:
            return cls(z["frame_ids"], z["head"], z["full"] if "full" in z else None, float(z["seconds"]))


class Method:
    """Base class: subclasses set ``name``, ``presets`` and implement ``train`` and ``render``."""

    name: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]]
    supports_full: ClassVar[bool] = False
    # the train_log.csv column that measures the fit to the targets (tests check it falls); a method whose total
    # loss carries regularisers ramped up during training names its photometric term here
    fit_column: ClassVar[str] = "loss"

    def train(self, cell: "CellData", cfg: dict[str, Any], out_dir: Path, device: "torch.device",
              stop_after: int | None = None) -> Path:
        """``stop_after`` (tests): raise :class:`gt_core.engine.loop.TrainingInterrupted` after that many steps."""
        raise NotImplementedError

    def stage_iterations(self, cfg: dict[str, Any]) -> dict[str, int]:
        """Training stages in order with their iteration counts under hyper-parameters ``cfg`` (the engine's
        stages; a non-learned method has none)."""
        return {}

    def weight_files(self) -> list[Path]:
        """Pretrained files training reads when they are present (never downloads them; a download rule does).
        The train rule lists the present ones as inputs, so fetching one later re-trains. Default: none."""
        return []

    def cell_inputs(self, cfg: dict[str, Any]) -> list[str]:
        """Files beyond the cell that training and rendering read under hyper-parameters ``cfg``, relative to the
        cell's parent ``results/{subject}/{D}s`` (the train/render rules list them as inputs). Default: none."""
        return []

    def train_info(self, checkpoint: Path) -> dict[str, Any]:
        """Facts of a finished training run that a reader of ``train.json`` must see (e.g. which loss terms were
        active and why); recorded in ``train.json`` and its provenance. Default: none."""
        return {}

    def render(self, checkpoint: Path, cell: "CellData", device: "torch.device") -> Renders:
        raise NotImplementedError

    @classmethod
    def resolve_config(cls, preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The preset's hyper-parameters with ``overrides`` applied; unknown keys are a one-line error."""
        import difflib

        if preset not in cls.presets:
            raise InputError(f"preset: {preset}", f"method {cls.name} has no such preset",
                             f"use one of {sorted(cls.presets)}")
        cfg = dict(cls.presets[preset])
        if not isinstance(overrides or {}, dict):
            raise InputError(f"method_params.{cls.name}", f"must be a mapping of hyper-parameters, got {overrides!r}",
                             f"write e.g. `method_params: {{{cls.name}: {{{sorted(cfg)[0]}: ...}}}}`")
        unknown = [key for key in (overrides or {}) if key not in cfg]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, list(cfg), n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            raise InputError(f"method_params.{cls.name}.{key}",
                             f"unknown hyper-parameter of {cls.name}" + (f" (also unknown: {unknown[1:]})"
                                                                         if unknown[1:] else ""),
                             f"{hint}valid ones: {', '.join(sorted(cfg))}")
        cfg.update(overrides or {})
        return cfg


def with_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A preset: ``cfg`` (every hyper-parameter) with ``overrides`` applied; a key ``cfg`` lacks is a bug."""
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"unknown preset keys {sorted(unknown)}"
    return {**cfg, **overrides}


def known_fields(cls: type, cfg: dict[str, Any]) -> dict[str, Any]:
    """The entries of the flat hyper-parameter dict ``cfg`` that are fields of the config dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in cfg.items() if k in names}


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
