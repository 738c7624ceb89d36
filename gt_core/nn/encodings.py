"""Positional encodings shared by the methods.

* :func:`sinusoidal_encoding` — GaussianTalker's eye (blink) encoding of a scalar.
* :func:`frequency_encoding` — the NeRF frequency encoding with the input included (ER-NeRF's ``freqencoder``, used
  by its torso): ``[x, sin(2⁰x), cos(2⁰x), sin(2¹x), cos(2¹x), …]``, each block ``D`` wide → ``D·(1 + 2·n_freqs)``.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_encoding(x: Tensor, dim: int) -> Tensor:
    """``x`` [B] scalars → [B, dim]: sin at even, cos at odd channels of ``x · 10000^(2⌊i/2⌋/dim)`` (the released
    ``eye_encoding``: the factor multiplies, so channel i has angular frequency 10000^(2⌊i/2⌋/dim))."""
    assert x.ndim == 1, tuple(x.shape)
    i = torch.arange(dim, device=x.device, dtype=x.dtype)
    freq = torch.pow(torch.tensor(10000.0, device=x.device, dtype=x.dtype), 2 * torch.div(i, 2, rounding_mode="floor") / dim)
    ang = x[:, None] * freq
    return torch.where(i.long() % 2 == 0, torch.sin(ang), torch.cos(ang))


def frequency_encoding(x: Tensor, n_freqs: int) -> Tensor:
    """``x`` [..., D] → [..., D·(1 + 2·n_freqs)]: the input, then sin and cos of ``2^k·x`` for k = 0 … n_freqs − 1
    (the original CUDA kernel's layout: the cos block is the sin block shifted by π/2)."""
    out = [x]
    for k in range(n_freqs):
        out += [torch.sin(x * 2.0 ** k), torch.cos(x * 2.0 ** k)]
    return torch.cat(out, dim=-1)


def frequency_encoding_dim(d_in: int, n_freqs: int) -> int:
    return d_in * (1 + 2 * n_freqs)
