"""Keep TensorFlow out of pipeline processes; only the DeepSpeech graph runner may load it.

TensorFlow is in the environment for one job: running the DeepSpeech 0.1.0 graph
(:mod:`gt_core.preprocess.deepspeech_graph`). Loaded anywhere else it does harm:

* mediapipe 0.10.21 imports all of TensorFlow whenever it is installed, only for documentation decorators
  (``mediapipe/tasks/python/core/optional_dependencies.py``), costing seconds and hundreds of MB per job;
* TensorFlow loaded next to torch crashes the process (segmentation fault) when torch later imports triton —
  measured here: every GaussianTalker training job died with exit status 139.

So importing :mod:`gt_core` installs an import hook that answers ``import tensorflow`` with ``ModuleNotFoundError``
(mediapipe then falls back to its own stand-in decorators). A process started with ``GT_CORE_ALLOW_TENSORFLOW=1``
— the DeepSpeech runner, or a user's own script that needs both — is left alone.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

ALLOW_ENV = "GT_CORE_ALLOW_TENSORFLOW"


class _RefuseTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``tensorflow`` (a spec without origin, so ``find_spec`` probes such as torch._dynamo's pass) and fails
    its import with ``ModuleNotFoundError``, which optional importers like mediapipe catch."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise ModuleNotFoundError(f"gt_core keeps TensorFlow out of this process (set {ALLOW_ENV}=1 to allow it; "
                                  "see gt_core/tensorflow_guard.py)", name=module.__name__)


def keep_tensorflow_out() -> None:
    """Refuse later ``import tensorflow`` in this process unless ``GT_CORE_ALLOW_TENSORFLOW=1``."""
    if os.environ.get(ALLOW_ENV) == "1" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _RefuseTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _RefuseTensorFlow())


def tensorflow_env() -> dict[str, str]:
    """The environment of a child process that may load TensorFlow (quietly)."""
    return {**os.environ, ALLOW_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}


def tensorflow_installed() -> bool:
    """Whether TensorFlow could be imported by a process that allows it (looks on disk, imports nothing)."""
    return importlib.machinery.PathFinder.find_spec("tensorflow") is not None
