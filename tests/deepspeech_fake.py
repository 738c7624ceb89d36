"""A stand-in for the DeepSpeech 0.1.0 frozen graph, for tests (the real 0.4 GB file cannot be fetched offline).

It has the real graph's interface — placeholders ``input_node [1, S, 494]`` (float) and ``input_lengths [1]`` (int),
output ``logits [S, 1, 29]`` (time-major) — and computes a known affine map of each step's input, masked past
``input_lengths``, so a test can predict every number the extractor must produce. Channel 0 reads the centre frame's
log energy (python_speech_features puts it in cepstrum 0), so it rises where the audio is loud.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

INPUT_DIM, N_CHARS, N_CEPSTRUM, N_CONTEXT = 494, 29, 26, 9
CENTRE_ENERGY = N_CONTEXT * N_CEPSTRUM  # input index of the centre frame's cepstrum 0


def fake_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = (0.05 * rng.standard_normal((INPUT_DIM, N_CHARS))).astype(np.float32)
    weight[:, 0] = 0.0
    weight[CENTRE_ENERGY, 0] = 1.0
    bias = rng.standard_normal(N_CHARS).astype(np.float32)
    return weight, bias


def write_fake_graph(path: str | Path, seed: int = 0, kind: str = "deepspeech") -> tuple[np.ndarray, np.ndarray]:
    """Write the stand-in graph (``kind="other"``: a graph without DeepSpeech's tensors); return (weight, bias).

    TensorFlow runs in a child process, as in the pipeline (gt_core keeps it out of this one).
    """
    from gt_core.tensorflow_guard import tensorflow_env

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, __file__, str(path), str(seed), kind], capture_output=True, text=True,
                          env=tensorflow_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return fake_weights(seed)


def _build(path: Path, seed: int, kind: str) -> None:
    import tensorflow.compat.v1 as tf

    weight, bias = fake_weights(seed)
    graph = tf.Graph()
    with graph.as_default():
        if kind == "other":
            tf.constant(1.0, name="something_else")
        else:
            inputs = tf.placeholder(tf.float32, [1, None, INPUT_DIM], name="input_node")
            lengths = tf.placeholder(tf.int32, [1], name="input_lengths")
            batch_major = tf.tensordot(inputs, tf.constant(weight), axes=1) + tf.constant(bias)  # [1, S, 29]
            mask = tf.cast(tf.sequence_mask(lengths, tf.shape(inputs)[1]), tf.float32)[..., None]  # [1, S, 1]
            tf.transpose(batch_major * mask, [1, 0, 2], name="logits")  # [S, 1, 29]
    path.write_bytes(graph.as_graph_def().SerializeToString())


if __name__ == "__main__":
    _build(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
