"""Registry of methods: adding a method is one module and one line here.

Each entry names the class (imported lazily, so ``retrieval`` never pays for the torch-heavy imports of the others)
and the GPUs one of its train/render jobs asks a cluster for. The workflow reads :func:`method_gpus` for the rules'
``gpu`` resource, so a new method gets the right cluster resources from its line here and nothing else.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from gt_core.errors import InputError
from gt_core.methods.base import Method


@dataclass(frozen=True)
class MethodEntry:
    target: str  # "module:Class"
    gpus: int = 0  # GPUs per train/render job when the run may use CUDA (config `device` not `cpu`)
    learned: bool = True  # trained by optimisation (resume, learning tests); False for the non-learned floor


METHODS: dict[str, MethodEntry] = {
    "retrieval": MethodEntry("gt_core.methods.retrieval:RetrievalMethod", learned=False),
    "gaussiantalker": MethodEntry("gt_core.methods.gaussiantalker.method:GaussianTalkerMethod", gpus=1),
}


LEARNED_METHODS = [name for name, entry in METHODS.items() if entry.learned]


def _entry(name: str) -> MethodEntry:
    if name not in METHODS:
        raise InputError(f"methods: {name}", "unknown method", f"use one of {sorted(METHODS)}")
    return METHODS[name]


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
