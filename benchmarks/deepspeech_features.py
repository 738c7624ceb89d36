"""Benchmark: DeepSpeech feature extraction time per minute of audio, against the log-mel extractor, in one run.

    .venv/bin/python benchmarks/deepspeech_features.py [--seconds 20] [--threads N] [--graph PATH]

The real DeepSpeech 0.1.0 graph cannot be fetched here, so by default this writes a stand-in frozen graph of the same
size and structure — DeepSpeech 0.1.0's layers (n_hidden 2048): three clipped-ReLU layers 494 → 2048 → 2048 → 4096,
a bidirectional LSTM of 2048 cells per direction stepping over time in a while loop (each step multiplies
[x_t, h] by one [6144, 8192] matrix, as BasicLSTMCell does), a clipped-ReLU layer 4096 → 2048 and the 29 logits —
with random weights (123 M parameters, ~0.5 GB), and times :func:`extract_audio_features` on it: the same code
path as the `audio_features` rule (MFCC input here, the graph in a child process). ``--graph`` times a real graph
instead. The child's graph loading (once per job) is reported apart from running it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["GT_CORE_ALLOW_TENSORFLOW"] = "1"  # this script builds the stand-in graph itself (no torch here)

from gt_core.io.video import write_wav  # noqa: E402
from gt_core.preprocess.audio_features import extract_audio_features  # noqa: E402

N_INPUT, N_HIDDEN, N_CHARS, RELU_CLIP = 494, 2048, 29, 20.0


def write_standin_graph(path: Path, seed: int = 0) -> int:
    """DeepSpeech 0.1.0-sized graph with random weights; returns its parameter count."""
    import tensorflow.compat.v1 as tf

    tf.disable_eager_execution()
    rng = np.random.default_rng(seed)
    n_params = 0

    def const(*shape):
        nonlocal n_params
        n_params += int(np.prod(shape))
        return tf.constant((rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[0])).astype(np.float32))

    def dense(x, n_in, n_out):
        return tf.minimum(tf.nn.relu(tf.matmul(x, const(n_in, n_out)) + const(n_out)), RELU_CLIP)

    def lstm(inputs, n_in, reverse):  # inputs [S, n_in] -> [S, N_HIDDEN]
        kernel, bias = const(n_in + N_HIDDEN, 4 * N_HIDDEN), const(4 * N_HIDDEN)

        def step(state, x_t):
            c, h = state
            gates = tf.matmul(tf.concat([x_t[None], h], axis=1), kernel) + bias
            i, j, f, o = tf.split(gates, 4, axis=1)
            c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
            return c, tf.tanh(c) * tf.sigmoid(o)

        zeros = tf.zeros([1, N_HIDDEN])
        _, hs = tf.scan(step, inputs, initializer=(zeros, zeros), reverse=reverse)
        return hs[:, 0]

    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.placeholder(tf.float32, [1, None, N_INPUT], name="input_node")
        tf.placeholder(tf.int32, [1], name="input_lengths")
        x = inputs[0]
        h = dense(dense(dense(x, N_INPUT, N_HIDDEN), N_HIDDEN, N_HIDDEN), N_HIDDEN, 2 * N_HIDDEN)
        h = tf.concat([lstm(h, 2 * N_HIDDEN, reverse=False), lstm(h, 2 * N_HIDDEN, reverse=True)], axis=1)
        h = dense(h, 2 * N_HIDDEN, N_HIDDEN)
        logits = tf.matmul(h, const(N_HIDDEN, N_CHARS)) + const(N_CHARS)
        tf.identity(logits[:, None], name="logits")  # [S, 1, 29], time-major
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return n_params


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the audio to extract")
    ap.add_argument("--threads", type=int, default=None, help="TensorFlow threads (default: all cores)")
    ap.add_argument("--graph", type=Path, default=None, help="a real deepspeech-0_1_0-b90017e8.pb to time instead")
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        graph, n_params = args.graph, None
        if graph is None:
            graph = tmp / "standin.pb"
            t0 = time.perf_counter()
            n_params = write_standin_graph(graph)
            print(f"stand-in graph: {n_params / 1e6:.0f} M parameters, {graph.stat().st_size / 2**20:.0f} MiB, "
                  f"written in {time.perf_counter() - t0:.1f} s")
        rng = np.random.default_rng(0)
        t = np.arange(int(args.seconds * 16000)) / 16000
        audio = (0.05 * (1.2 + np.sin(2 * np.pi * 4 * t)) * rng.standard_normal(len(t))).astype(np.float32)
        write_wav(tmp / "a.wav", audio, 16000)
        n_frames = int(args.seconds * 25)
        from gt_core.io.video import pcm16
        from gt_core.preprocess.deepspeech import deepspeech_input, run_graph

        t0 = time.perf_counter()
        logits, report = run_graph(deepspeech_input(pcm16(audio)), graph)  # MFCC input + child process + graph
        ds_s = time.perf_counter() - t0
        load_s, run_s = report["load_s"], report["run_s"]
        t0 = time.perf_counter()
        extract_audio_features(tmp / "a.wav", "mel", n_frames)
        mel_s = time.perf_counter() - t0
    per_min = 60.0 / args.seconds
    result = {"seconds_audio": args.seconds, "graph_load_s": load_s, "graph_run_s": run_s,
              "deepspeech_s_per_min": ds_s * per_min,
              "mel_s_per_min": mel_s * per_min, "ratio": ds_s / mel_s, "params_m": n_params and n_params / 1e6}
    print(f"graph load: {load_s:.1f} s (once per job); graph run: {run_s:.1f} s for {args.seconds:.0f} s of audio")
    print(f"deepspeech: {ds_s:.1f} s for {args.seconds:.0f} s of audio = {ds_s * per_min:.0f} s per minute of audio "
          f"-> logits {logits.shape}")
    print(f"mel:        {mel_s:.2f} s for {args.seconds:.0f} s of audio = {mel_s * per_min:.1f} s per minute")
    print(f"ratio deepspeech / mel: {ds_s / mel_s:.0f}x")
    return result


if __name__ == "__main__":
    main()
