# Helpers, input functions, wildcard constraints and target lists. Rules hold no Python logic.
import json
import os
import re
import sys
from pathlib import Path

import yaml

from gt_core.metrics.lpips_metric import alexnet_weights_path
from gt_core.preprocess.audio_features import AUDIO_FEATURES
from gt_core.preprocess.deepspeech import deepspeech_graph_path
from gt_core.config import SplitSpec, config_hash, duration_label, validate_config
from gt_core.nn.losses import vgg16_weights_path
from gt_core.methods.registry import derived_from, get_method, method_gpus as registry_method_gpus, validate_method_params

# A --configfile that names its own subjects replaces the demo subject instead of being merged with it.
for _path in reversed(getattr(workflow, "overwrite_configfiles", None) or []):
    _user = yaml.safe_load(Path(_path).read_text()) or {}
    if "subjects" in _user:
        config["subjects"] = _user["subjects"]
        break

validate_config(config, source="config")
validate_method_params(config)

envvars:
    "PATH",


# Rules call the `gt-core` CLI of the environment Snakemake runs in (also when .venv is not activated).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
SPLIT = SplitSpec.from_config(config)
SUBJECTS = list(config["subjects"])
DURATIONS = [duration_label(d) for d in config["durations"]]
CONFIG_HASH = config_hash(config)


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    duration="|".join(re.escape(d) for d in DURATIONS),
    feature="mel|wakeword|deepspeech",
    method="|".join(re.escape(m) for m in config["methods"]),


def subject_video(wildcards):
    """The subject's video when it exists; when it is missing the probe job runs anyway and fails with a one-line
    error naming the file (so `--keep-going` still finishes the other subjects)."""
    video = config["subjects"][wildcards.subject]["video"]
    return [video] if Path(video).exists() or video == DEMO_VIDEO else []


def video_path(wildcards):
    return config["subjects"][wildcards.subject]["video"]


def audio_model_file(wildcards):
    """The model file an audio feature extractor reads (an input, so its download rule runs first), or none."""
    default_path = AUDIO_FEATURES[wildcards.feature].model
    return [str(default_path())] if default_path else []


def audio_threads(wildcards):
    """Extractors that run a network get the model threads; the others are single-threaded numpy."""
    return MODEL_THREADS if AUDIO_FEATURES[wildcards.feature].model else 1


def method_weight_files(wildcards):
    """The pretrained files the method's training reads that are present (fetching one later re-trains the cell)."""
    return [str(p) for p in get_method(wildcards.method).weight_files() if p.exists()]


def lpips_weights(wildcards):
    """The LPIPS AlexNet trunk when it is on disk: an input of `evaluate`, so fetching it later (`download_weights`)
    re-runs evaluation; without it evaluation still runs and reports LPIPS as unavailable with the reason."""
    return [ALEXNET_WEIGHTS] if Path(ALEXNET_WEIGHTS).is_file() else []


def duration_seconds(wildcards):
    return float(wildcards.duration.rstrip("s"))


DEMO_VIDEO = "resources/videos/demo.mp4"
ALEXNET_WEIGHTS = str(alexnet_weights_path())  # LPIPS backbone, in the torch hub cache (rule download_weights)
VGG16_WEIGHTS = str(vgg16_weights_path())  # GaussianTalker's perceptual loss, torch hub cache (rule download_vgg16)
DEEPSPEECH_GRAPH = str(deepspeech_graph_path())  # DeepSpeech 0.1.0, $TENSORFLOW_HOME/models (rule download_deepspeech)


METHODS = list(config["methods"])
NEVER = "(?!x)x"  # a regex that matches nothing (no method of that kind configured)
RENDERING_RE = "|".join(re.escape(m) for m in METHODS if derived_from(m) is None) or NEVER  # train + render jobs
DERIVED_RE = "|".join(re.escape(m) for m in METHODS if derived_from(m) is not None) or NEVER  # rule derive


def method_cell_inputs(wildcards):
    """Files beyond the cell that the method's train/render jobs read (e.g. SyncTalk's AVE features)."""
    method = get_method(wildcards.method)
    cfg = method.resolve_config(config["preset"], config["method_params"].get(wildcards.method))
    return [f"results/{wildcards.subject}/{wildcards.duration}/{rel}" for rel in method.cell_inputs(cfg)]


def derived_source(name):
    """Input function: the file `name` of the method a derived row is composed from, in the same cell."""
    def source(wildcards):
        return f"results/{wildcards.subject}/{wildcards.duration}/{derived_from(wildcards.method)}/{name}"

    return source


# Threads of the torch-heavy jobs (train, render, evaluate). Snakemake exports a job's `threads` as OMP_NUM_THREADS
# (torch's intra-op thread count), so without a `threads:` directive training would run single-threaded; locally it is
# capped at --cores, on a cluster it becomes cpus-per-task.
MODEL_THREADS = 8


def method_params_json(wildcards):
    """The method's hyper-parameter overrides: a rule param, so changing them re-runs only that method's cells."""
    return json.dumps(config["method_params"].get(wildcards.method, {}), sort_keys=True)


def method_gpus(wildcards):
    """The `gpu` resource of a train/render job (a cluster executor turns it into e.g. SLURM's --gpus)."""
    return registry_method_gpus(wildcards.method, config["device"])


def cell_targets():
    return expand("results/{subject}/{duration}/cell/cell.json", subject=SUBJECTS, duration=DURATIONS)


def metrics_targets():
    return expand(
        "results/{subject}/{duration}/{method}/metrics.json",
        subject=SUBJECTS,
        duration=DURATIONS,
        method=METHODS,
    )


def subject_renders(wildcards):
    return expand("results/{subject}/{duration}/{method}/renders.npz", subject=wildcards.subject,
                  duration=DURATIONS, method=METHODS)


def subject_cells(wildcards):
    return expand("results/{subject}/{duration}/cell/cell.json", subject=wildcards.subject, duration=DURATIONS)


def report_targets():
    return [
        "reports/table1.csv",
        "reports/figures/metrics_vs_duration.png",
        *expand("reports/figures/qualitative_{subject}.png", subject=SUBJECTS),
    ]


def ave_targets():
    """SyncTalk's per-cell AVE (its held-out sync accuracy is reported per cell) whenever synctalk is configured,
    also when its preset reads the cell's log-mel windows instead of the AVE features."""
    if "synctalk" not in METHODS:
        return []
    return expand("results/{subject}/{duration}/ave/ave.json", subject=SUBJECTS, duration=DURATIONS)


def all_targets():
    return cell_targets() + metrics_targets() + ave_targets() + report_targets()


# SyncTalk's audio-visual encoder (rule ave): the authors' audio tower when its file is on disk, else trained per cell.
from gt_core.encoders.ave import synctalk_ave_path

SYNCTALK_AVE_WEIGHTS = str(synctalk_ave_path())  # resources/weights/synctalk/ (rule download_synctalk_ave)


def ave_weight_files(wildcards):
    """The authors' AVE file when present: an input of `ave` (fetching it later re-runs the cells' AVE, which then
    verifies its checksum and uses it instead of training one)."""
    return [SYNCTALK_AVE_WEIGHTS] if Path(SYNCTALK_AVE_WEIGHTS).is_file() else []


def ave_weights_arg(wildcards):
    return f"--weights {SYNCTALK_AVE_WEIGHTS}" if Path(SYNCTALK_AVE_WEIGHTS).is_file() else ""
