# Helpers, input functions, wildcard constraints and target lists. Rules hold no Python logic.
import json
import re
import sys
from pathlib import Path

from gt_core.config import SplitSpec, config_hash, duration_label, validate_config

validate_config(config, source="config")

GT = f'"{sys.executable}" -m gt_core.cli'
SPLIT = SplitSpec.from_config(config)
SUBJECTS = list(config["subjects"])
DURATIONS = [duration_label(d) for d in config["durations"]]
CONFIG_HASH = config_hash(config)


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    duration="|".join(re.escape(d) for d in DURATIONS),
    feature="mel|wakeword|deepspeech|hubert",


def subject_video(wildcards):
    """The subject's video when it exists; when it is missing the probe job runs anyway and fails with a one-line
    error naming the file (so `--keep-going` still finishes the other subjects)."""
    video = config["subjects"][wildcards.subject]["video"]
    return [video] if Path(video).exists() or video == DEMO_VIDEO else []


def video_path(wildcards):
    return config["subjects"][wildcards.subject]["video"]


def duration_seconds(wildcards):
    return float(wildcards.duration.rstrip("s"))


DEMO_VIDEO = "resources/videos/demo.mp4"


def cell_targets():
    return expand("results/{subject}/{duration}/cell/cell.json", subject=SUBJECTS, duration=DURATIONS)


def all_targets():
    return cell_targets()
