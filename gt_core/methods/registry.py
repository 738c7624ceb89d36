"""Registry of methods — the one list of methods: adding a method is one module and one line here.

Each entry names the class (imported lazily, so a job imports only its own method), its display label and figure
style, whether it is learned, and the GPUs one of its train/render jobs asks a cluster for. Everything that lists
methods follows this dict: the config's ``methods`` are checked against it (:func:`gt_core.config.validate_config`;
the schema has no copy of the list), Table 1's column order is its order and its labels are the entries' labels
(:mod:`gt_core.report.collect`), the figures' colours are the entries' styles, the workflow's ``gpu`` resource is
:func:`method_gpus`, and the tests (registry-driven smoke, resume, determinism and leakage tests) parametrise over it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from gt_core.errors import InputError
from gt_core.methods.base import Method


@dataclass(frozen=True)
class MethodEntry:
    target: str  # "module:Class"
    label: str  # display name in tables and figures
    color: str  # figure colour (Okabe–Ito colour-blind-safe palette)
    marker: str = "o"  # figure marker
    gpus: int = 0  # GPUs per train/render job when the run may use CUDA (config `device` not `cpu`)
    learned: bool = True  # trained by optimisation (resume, learning tests); False for the non-learned floor
    derived_from: str | None = None  # a row composed from another method's renders (no train/render jobs of its own)

    @property
    def style(self) -> dict[str, str]:
        return {"color": self.color, "marker": self.marker, "linestyle": "-"}


# Table 1's column order (DESIGN.md §3): the floor first, then the baselines, then GaussianTalker.
METHODS: dict[str, MethodEntry] = {
    "retrieval": MethodEntry("gt_core.methods.retrieval:RetrievalMethod", "Retrieval", "#7f7f7f", "o", learned=False),
    "ernerf": MethodEntry("gt_core.methods.ernerf.method:ERNeRFMethod", "ER-NeRF", "#0072B2", "s", gpus=1),
    "synctalk": MethodEntry("gt_core.methods.synctalk.method:SyncTalkMethod", "SyncTalk", "#009E73", "^", gpus=1),
    # SyncTalk's portrait evaluation copies ground-truth pixels outside the face: not comparable with the other rows
    "synctalk-portrait": MethodEntry("gt_core.methods.synctalk.portrait:SyncTalkPortrait",
                                     "SyncTalk (portrait)", "#CC79A7", "v",
                                     learned=False, derived_from="synctalk"),
    "gaussiantalker": MethodEntry("gt_core.methods.gaussiantalker.method:GaussianTalkerMethod", "GaussianTalker",
                                  "#D55E00", "D", gpus=1),
}


LEARNED_METHODS = [name for name, entry in METHODS.items() if entry.learned]
RENDERING_METHODS = [name for name, entry in METHODS.items() if entry.derived_from is None]  # train + render jobs
DERIVED_METHODS = [name for name, entry in METHODS.items() if entry.derived_from is not None]


def derived_from(name: str) -> str | None:
    """The method whose renders row ``name`` is composed from (None for a method with its own train/render)."""
    return _entry(name).derived_from


def _entry(name: str) -> MethodEntry:
    if name not in METHODS:
        raise InputError(f"methods: {name}", "unknown method", f"use one of {list(METHODS)}")
    return METHODS[name]


def check_methods(names: object, source: str = "config") -> None:
    """The config's ``methods``: every name registered (one-line error naming the key and the registered names)."""
    names = names if isinstance(names, list) else [names]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"{source}: key 'methods'", f"unknown method {unknown[0]!r}",
                         f"use one of {', '.join(METHODS)} (gt_core/methods/registry.py)")
    for n in names:
        src = METHODS[n].derived_from
        if src is not None and src not in names:
            raise InputError(f"{source}: key 'methods'", f"{n!r} is composed from {src!r}'s renders",
                             f"add {src!r} to methods (or drop {n!r})")


def get_method(name: str) -> Method:
    module, cls = _entry(name).target.split(":")
    return getattr(importlib.import_module(module), cls)()


def method_gpus(name: str, device: str) -> int:
    """GPUs a train/render job of method ``name`` requests; none when the config pins ``device: cpu``."""
    return 0 if device == "cpu" else _entry(name).gpus


def validate_method_params(config: dict) -> None:
    """Refuse, before any job runs, ``method_params`` for a method that does not exist and hyper-parameters the
    configured methods do not have (the train job would otherwise fail after all of preprocessing)."""
    params = config.get("method_params") or {}
    for name in params:
        if name not in METHODS:
            raise InputError(f"method_params.{name}", "unknown method", f"use one of {sorted(METHODS)}")
    for name in config["methods"]:
        get_method(name).resolve_config(config["preset"], params.get(name))
