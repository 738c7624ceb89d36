"""The registry is the one list of methods: each registered method offers exactly the presets the config schema
allows, and resolves each of them to a full hyper-parameter set (the smoke test that trains every method's ``tiny``
preset through the real loop is ``test_leakage``, registry-driven too)."""
from __future__ import annotations

import pytest
import yaml

from gt_core.config import SCHEMA_PATH
from gt_core.methods import registry

SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
SCHEMA_PRESETS = set(SCHEMA["properties"]["preset"]["enum"])
SCHEMA_METHODS = set(SCHEMA["properties"]["methods"]["items"]["enum"])


def test_schema_methods_are_the_registry():
    assert SCHEMA_METHODS == set(registry.METHODS)


@pytest.mark.parametrize("name", sorted(registry.METHODS))
def test_every_method_defines_every_schema_preset(name):
    method = registry.get_method(name)
    assert set(method.presets) == SCHEMA_PRESETS, f"{name}: presets {sorted(method.presets)} vs schema {SCHEMA_PRESETS}"
    for preset in SCHEMA_PRESETS:
        assert method.resolve_config(preset, None)


def test_method_params_are_checked_before_any_job():
    """A method_params entry for a method that does not exist, or a hyper-parameter a configured method does not have,
    is refused when the workflow is parsed (validate_method_params, called by common.smk), not in the train job."""
    from gt_core.errors import InputError

    registry.validate_method_params({"methods": ["gaussiantalker"], "preset": "demo",
                                     "method_params": {"gaussiantalker": {"iterations_canonical": 5}}})
    with pytest.raises(InputError, match="method_params.gaussiantalkr: unknown method"):
        registry.validate_method_params({"methods": ["gaussiantalker"], "preset": "demo",
                                         "method_params": {"gaussiantalkr": {"iterations_canonical": 5}}})
    with pytest.raises(InputError, match="did you mean `iterations_canonical`"):
        registry.validate_method_params({"methods": ["gaussiantalker"], "preset": "demo",
                                         "method_params": {"gaussiantalker": {"iterations_canonicall": 5}}})
