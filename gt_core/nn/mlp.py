"""MLP blocks shared by the methods.

* :func:`mlp` — the AD-NeRF family's bias-free MLP (ER-NeRF ``nerf_triplane/network.py`` ``MLP``, reused by
  GaussianTalker's condition encoders): Linear–ReLU–…–Linear, every Linear without bias, no activation after the
  last layer.
* :func:`small_init_` — Xavier-uniform with a small gain and zero bias (GaussianTalker's init of every attribute
  head's last layer).
"""
from __future__ import annotations

from torch import nn

LAST_LAYER_GAIN = 0.1


def mlp(d_in: int, d_out: int, d_hidden: int, n_layers: int = 2) -> nn.Sequential:
    """Bias-free Linear–ReLU–…–Linear with ``n_layers`` Linear layers (no activation after the last)."""
    assert n_layers >= 1, n_layers
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers.append(nn.Linear(d_in if i == 0 else d_hidden, d_out if i == n_layers - 1 else d_hidden, bias=False))
        if i < n_layers - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def small_init_(linear: nn.Linear, gain: float = LAST_LAYER_GAIN) -> nn.Linear:
    """Xavier-uniform with a small gain and zero bias, in place; returns ``linear``."""
    nn.init.xavier_uniform_(linear.weight, gain=gain)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear
