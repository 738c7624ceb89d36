"""DeepSpeech 0.1.0 character logits: the audio features of AD-NeRF, RAD-NeRF, ER-NeRF and GaussianTalker.

The originals run Mozilla's DeepSpeech 0.1.0 frozen TensorFlow graph (``deepspeech-0_1_0-b90017e8.pb`` from osmr's
``deepspeech_features`` release, sha1-checked) through ``tf.compat.v1`` and keep its 29 per-step character logits
(no softmax) as the audio representation. This module computes the same thing, step by step:

1. the 16 kHz signal as 16-bit sample values (the originals read the wav with scipy as int16);
2. 26 MFCCs with ``python_speech_features`` defaults (25 ms window, 10 ms step, 26 filters, 512-point FFT,
   pre-emphasis 0.97, lifter 22, c0 replaced by the log frame energy); every second frame kept → 50 Hz, the stride of
   DeepSpeech's bidirectional RNN;
3. each step's input is its 19-frame context (9 before, 9 after, zeros past the ends), flattened time-major →
   ``[S, 494]``, then standardised by the mean and standard deviation of the whole array (DeepSpeech's own
   per-utterance normalisation);
4. the graph: ``input_node [1, S, 494]``, ``input_lengths [1]`` → ``logits [S, 1, 29]`` (time-major);
5. step j stands for time j / 50 s (as in the originals) and is interpolated onto the pipeline's 50 Hz clock of
   ``ceil(T / 320)`` steps; :func:`gt_core.preprocess.audio_features.frame_windows` then cuts, for 25-fps frame i,
   steps 2i − 8 … 2i + 7 — the same steps as the originals' zero-padded, stride-2 windows of 16.

As in the originals the utterance is the whole video's audio: the two normalisation scalars and the bidirectional
RNN's context therefore span the train/test boundary (a ``gap_s`` second gap separates the two parts).

TensorFlow runs in a child process (:mod:`gt_core.preprocess.deepspeech_graph`): loaded next to torch it crashes
the process, see :mod:`gt_core.tensorflow_guard`. Nothing is downloaded here. The graph comes from the explicit
``download_deepspeech`` rule (or by hand) and lives at
``$TENSORFLOW_HOME/models/`` (default ``~/.tensorflow/models/``, where the originals keep it, so a copy a user
already has is reused). Only the 0.1.0 graph has these tensor names; newer DeepSpeech releases are refused with a
message saying so.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gt_core.errors import InputError
from gt_core.io.download import ModelFile
from gt_core.io.video import pcm16
from gt_core.preprocess.audio_features import FEATURE_RATE, SAMPLE_RATE, onto_feature_clock
from gt_core.preprocess.deepspeech_graph import INPUT_DIM, N_CHARS
from gt_core.tensorflow_guard import tensorflow_env

GRAPH_FILE = "deepspeech-0_1_0-b90017e8.pb"
DEEPSPEECH = ModelFile(
    name=GRAPH_FILE,
    url=f"https://github.com/osmr/deepspeech_features/releases/download/v0.0.1/{GRAPH_FILE}.zip",
    algo="sha1",
    digest="b90017e816572ddce84f5843f1fa21e6a377975e",
    zip_member=GRAPH_FILE,
)
N_CEPSTRUM = 26  # MFCCs per 10 ms frame
N_CONTEXT = 9  # frames of context on each side of a step
assert INPUT_DIM == N_CEPSTRUM * (2 * N_CONTEXT + 1)  # 494; N_CHARS = 29: a-z, space, apostrophe, CTC blank
GRAPH_RATE = 50  # Hz, one logit vector per two MFCC frames


def deepspeech_graph_path() -> Path:
    """Where the graph is read from (and where ``download_deepspeech`` puts it)."""
    home = os.environ.get("TENSORFLOW_HOME") or "~/.tensorflow"
    return Path(home).expanduser() / "models" / DEEPSPEECH.name


def deepspeech_input(pcm: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The graph's input: int16 samples ``[T]`` → standardised MFCC context windows ``[S, 494]`` at 50 Hz."""
    from python_speech_features import mfcc

    assert pcm.ndim == 1 and pcm.dtype == np.int16, (pcm.shape, pcm.dtype)
    cepstra = mfcc(pcm, samplerate=rate, numcep=N_CEPSTRUM)[::2]  # [S, 26]
    zeros = np.zeros((N_CONTEXT, N_CEPSTRUM), cepstra.dtype)
    padded = np.concatenate([zeros, cepstra, zeros])  # [S + 18, 26]
    context = np.lib.stride_tricks.sliding_window_view(padded, 2 * N_CONTEXT + 1, axis=0)  # [S, 26, 19]
    inputs = context.transpose(0, 2, 1).reshape(len(cepstra), INPUT_DIM)  # time-major: frame 0's 26, frame 1's 26, …
    return ((inputs - inputs.mean()) / inputs.std()).astype(np.float32)


def run_graph(inputs: np.ndarray, graph: Path) -> tuple[np.ndarray, dict]:
    """``[S, 494]`` → ``[S, 29]`` through the graph, in a child process (:mod:`gt_core.preprocess.deepspeech_graph`).

    Also returns the runner's report: the graph's sha1, load and run seconds.
    """
    if not graph.is_file():
        raise InputError(graph, "DeepSpeech 0.1.0 graph not found",
                         "run `snakemake download_deepspeech` on a machine that is online, or unzip "
                         f"{DEEPSPEECH.url} there by hand")
    with tempfile.TemporaryDirectory(prefix="deepspeech-") as tmp:
        np.save(Path(tmp) / "inputs.npy", inputs)
        cmd = [sys.executable, "-m", "gt_core.preprocess.deepspeech_graph", "--graph", str(graph),
               "--inputs", str(Path(tmp) / "inputs.npy"), "--out", str(Path(tmp) / "logits.npy")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=tensorflow_env())
        lines = proc.stdout.strip().splitlines()
        try:
            report = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise RuntimeError(f"the DeepSpeech runner failed (exit status {proc.returncode}):\n"
                               f"{proc.stderr[-3000:]}") from None
        if not report["ok"]:
            raise InputError(report["what"], report["problem"], report["fix"])
        logits = np.load(Path(tmp) / "logits.npy")
    logging.info("DeepSpeech graph %s: sha1 %s (%s the released 0.1.0 graph), loaded in %.1f s, ran %d steps in %.1f s",
                 graph, report["sha1"], "is" if report["sha1"] == DEEPSPEECH.digest else "is NOT",
                 report["load_s"], len(inputs), report["run_s"])
    assert logits.shape == (len(inputs), N_CHARS), logits.shape
    return logits, report


def deepspeech_logits(audio: np.ndarray, model: str | Path | None = None, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Float audio ``[T]`` at 16 kHz → DeepSpeech logits ``[ceil(T / 320), 29]`` on the pipeline's 50 Hz clock."""
    assert audio.ndim == 1 and rate == SAMPLE_RATE, (audio.shape, rate)
    graph = Path(model) if model is not None else deepspeech_graph_path()
    logits, _ = run_graph(deepspeech_input(pcm16(audio), rate), graph)  # [S, 29], step j at j / 50 s
    return onto_feature_clock(logits, np.arange(len(logits)) / GRAPH_RATE, len(audio), rate)


assert GRAPH_RATE == FEATURE_RATE  # the originals' step clock is the pipeline's
