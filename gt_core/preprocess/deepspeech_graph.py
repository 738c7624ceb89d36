"""Run the DeepSpeech 0.1.0 frozen graph on prepared inputs — in a process of its own, the only one that loads TF.

    python -m gt_core.preprocess.deepspeech_graph --graph G.pb --inputs in.npy --out logits.npy

``in.npy``: ``[S, 494]`` float32 (see :func:`gt_core.preprocess.deepspeech.deepspeech_input`); ``logits.npy``:
``[S, 29]`` float32. The last stdout line is one JSON object: ``{"ok": true, "sha1", "load_s", "run_s"}``, or
``{"ok": false, "what", "problem", "fix"}`` for a bad graph file (exit status 2). Why a separate process:
:mod:`gt_core.tensorflow_guard`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from gt_core.errors import InputError

INPUT_DIM, N_CHARS = 494, 29


class DeepSpeechGraph:
    """The frozen 0.1.0 graph in a ``tf.compat.v1`` session: ``[S, 494]`` inputs → ``[S, 29]`` logits."""

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            import tensorflow.compat.v1 as tf
        except ImportError as err:
            raise InputError("audio_features: deepspeech", f"TensorFlow cannot be imported ({err})",
                             "pip install -r envs/requirements.txt, or use audio_features: mel or wakeword") from err
        from google.protobuf.message import DecodeError

        graph_def = tf.GraphDef()
        try:
            graph_def.ParseFromString(path.read_bytes())
        except DecodeError as err:
            raise InputError(path, f"not a TensorFlow graph ({err})",
                             "delete it and run `snakemake download_deepspeech`") from err
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name="deepspeech")
        try:
            self.logits = self.graph.get_tensor_by_name("deepspeech/logits:0")
            self.input_node = self.graph.get_tensor_by_name("deepspeech/input_node:0")
            self.input_lengths = self.graph.get_tensor_by_name("deepspeech/input_lengths:0")
        except KeyError as err:
            raise InputError(path, f"not the DeepSpeech 0.1.0 graph ({err}); later releases changed the graph",
                             "delete it and run `snakemake download_deepspeech`") from err
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0)  # the job's threads under Snakemake; 0 = TF's choice
        config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
        self.session = tf.Session(graph=self.graph, config=config)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        assert inputs.ndim == 2 and inputs.shape[1] == INPUT_DIM, inputs.shape
        out = self.session.run(self.logits, {self.input_node: inputs[None], self.input_lengths: [len(inputs)]})
        if out.shape != (len(inputs), 1, N_CHARS):
            raise InputError("deepspeech/logits", f"has shape {out.shape}, expected [S, 1, 29]",
                             "use the DeepSpeech 0.1.0 graph (`snakemake download_deepspeech`)")
        return out[:, 0].astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    from gt_core.io.download import file_digest

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graph", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        t0 = time.perf_counter()
        graph = DeepSpeechGraph(args.graph)
        t1 = time.perf_counter()
        np.save(args.out, graph(np.load(args.inputs)))
        t2 = time.perf_counter()
    except InputError as err:
        print(json.dumps({"ok": False, "what": err.what, "problem": err.problem, "fix": err.fix}))
        return 2
    print(json.dumps({"ok": True, "sha1": file_digest(args.graph, "sha1"), "load_s": t1 - t0, "run_s": t2 - t1}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
