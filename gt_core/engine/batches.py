"""Frame batches that are a pure function of (seed, stage, epoch), so a resumed run draws the same batches."""
from __future__ import annotations

import numpy as np


def batch_indices(seed: int, stage_index: int, iteration: int, batch: int, n_frames: int) -> np.ndarray:
    """Frames of ``iteration`` (1-based) of stage number ``stage_index``: consecutive slices of per-epoch random
    permutations of ``range(n_frames)`` → ``[batch]`` int64."""
    out = []
    start = (iteration - 1) * batch
    for k in range(start, start + batch):
        epoch, pos = divmod(k, n_frames)
        perm = np.random.default_rng([seed, stage_index, epoch]).permutation(n_frames)
        out.append(perm[pos])
    return np.asarray(out, dtype=np.int64)
