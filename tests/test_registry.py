"""The registry is the one list of methods: the config accepts exactly its methods (the schema holds no copy of the
list), Table 1's order, labels and figure styles come from it, and each registered method offers exactly the presets
the config schema allows and resolves each of them to a full hyper-parameter set (the smoke test that trains every
learned method's ``tiny`` preset and renders is ``test_smoke``, registry-driven too)."""
from __future__ import annotations

import pytest
import yaml

from gt_core.config import SCHEMA_PATH
from gt_core.methods import registry

SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
SCHEMA_PRESETS = set(SCHEMA["properties"]["preset"]["enum"])


def test_the_config_accepts_exactly_the_registered_methods(monkeypatch):
    """No second list: the schema's ``methods`` has no enum, and a method registered at run time is accepted at
    once while an unregistered name is refused in one line naming the registered ones."""
    from gt_core.config import validate_config
    from gt_core.errors import InputError

    assert "enum" not in SCHEMA["properties"]["methods"]["items"]
    base = {"subjects": {"demo": {"video": "x.mp4"}}}
    validate_config({**base, "methods": list(registry.METHODS)})
    with pytest.raises(InputError, match=r"key 'methods': unknown method 'nerfy'.*use one of retrieval"):
        validate_config({**base, "methods": ["retrieval", "nerfy"]})
    monkeypatch.setitem(registry.METHODS, "nerfy", registry.MethodEntry("x:Y", "Nerfy", "#000000"))
    validate_config({**base, "methods": ["retrieval", "nerfy"]})


def test_report_order_labels_and_styles_follow_the_registry(monkeypatch):
    from gt_core.report import collect, figures

    assert collect.order_methods(reversed(list(registry.METHODS))) == list(registry.METHODS)
    for name, entry in registry.METHODS.items():
        assert collect.method_label(name) == entry.label
        assert figures.method_style(name) == entry.style


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
