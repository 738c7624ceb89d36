"""gt_core: the library behind the few-shot talking-head pipeline (data, preprocess, render, methods, metrics, report).

Importing it keeps TensorFlow out of the process (see :mod:`gt_core.tensorflow_guard`): TensorFlow is installed only
for the DeepSpeech features, which run it in a child process of their own.
"""
from gt_core.tensorflow_guard import keep_tensorflow_out

keep_tensorflow_out()
