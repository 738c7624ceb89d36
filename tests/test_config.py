"""Config validation and the split arithmetic."""
import copy

import pytest
import yaml

from gt_core.config import SCHEMA_PATH, SplitSpec, config_hash, duration_label, validate_config
from gt_core.errors import InputError


@pytest.fixture
def default_config(root):
    return yaml.safe_load((root / "config" / "config.yaml").read_text())


def test_default_config_validates_and_fills_defaults(default_config):
    cfg = validate_config(copy.deepcopy(default_config))
    assert cfg["preprocess"]["max_missing_faces"] == 0
    assert cfg["durations"] == [10, 15, 20]


def test_unknown_key_is_one_line_naming_it(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["resolutoin"] = 256
    with pytest.raises(InputError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "resolutoin" in msg and "fix:" in msg and "\n" not in msg


def test_bad_value_names_the_key(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["test"]["mode"] = "random"
    with pytest.raises(InputError, match="test/mode"):
        validate_config(cfg)


def test_split_has_no_overlap_and_common_tail():
    split = SplitSpec(durations=(10, 15, 20), gap_s=1.0, test_seconds=10.0)
    n = 44 * 25
    test = split.test_frames(n)
    assert (test.start, test.stop) == (525, 775)
    for d in split.durations:
        train = split.train_frames(d, n)
        assert train.start == 0 and train.stop == d * 25
        assert not set(train) & set(test)
    assert split.required_seconds() == 31.0
    assert SplitSpec((10,), 1.0, 10.0, mode="rest").test_frames(n) == range(275, n)
    assert split.canonical_frames(n) == range(0, 250)


def test_labels_and_hash():
    assert duration_label(10) == "10s" and duration_label(2.5) == "2.5s"
    assert config_hash({"a": 1}) == config_hash({"a": 1}) != config_hash({"a": 2})


def test_hubert_is_refused_at_validation_naming_the_key_and_alternatives(default_config):
    """`hubert` used to pass validation and fail mid-DAG in the feature extractor; now the config is refused."""
    cfg = copy.deepcopy(default_config)
    cfg["audio_features"] = "hubert"
    with pytest.raises(InputError) as err:
        validate_config(cfg, source="my.yaml")
    msg = str(err.value)
    assert msg.startswith("my.yaml: key 'audio_features': 'hubert' is not available") and "\n" not in msg
    assert "not implemented" in msg and "fix: set audio_features to one of mel, wakeword, deepspeech" in msg
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert "hubert" not in schema["properties"]["audio_features"]["enum"]  # the schema no longer offers it
    for ok in ("mel", "wakeword", "deepspeech"):
        cfg["audio_features"] = ok
        assert validate_config(copy.deepcopy(cfg))["audio_features"] == ok
    cfg["audio_features"] = "wav2vec"  # any other unknown value: the schema's one-line error names the key
    with pytest.raises(InputError, match="key 'audio_features'"):
        validate_config(cfg)
