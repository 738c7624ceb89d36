"""Registry of methods: adding a method is one module and one line here."""
from __future__ import annotations

import importlib

from gt_core.errors import InputError
from gt_core.methods.base import Method

# name -> "module:Class", imported lazily so `retrieval` never pays for torch-heavy imports of the others.
METHODS: dict[str, str] = {
    "retrieval": "gt_core.methods.retrieval:RetrievalMethod",
    "gaussiantalker": "gt_core.methods.gaussiantalker.method:GaussianTalkerMethod",
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise InputError(f"methods: {name}", "unknown method", f"use one of {sorted(METHODS)}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
