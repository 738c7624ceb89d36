"""Learning-rate schedules shared by the methods."""
from __future__ import annotations

import math


def expon_lr(step: int, lr_init: float, lr_final: float, max_steps: int) -> float:
    """Log-linear decay from ``lr_init`` (step 0) to ``lr_final`` (``max_steps`` and after) — graphdeco's
    ``get_expon_lr_func`` without the (unused) delay."""
    if lr_init == lr_final:
        return lr_init
    t = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return math.exp(math.log(lr_init) * (1 - t) + math.log(lr_final) * t)


def power_decay(step: int, factor: float, horizon: int) -> float:
    """The multiplier ``factor ** (step / horizon)`` (ER-NeRF's ``LambdaLR``: 0.5 over the head stage, 0.05 over
    the lip stage), not clamped: past the horizon it keeps decaying, as the original's."""
    return float(factor) ** (step / max(horizon, 1))
