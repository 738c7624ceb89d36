"""GaussianTalker's densification and pruning of the canonical Gaussians (original-methods.md §1.4).

**Densification** (canonical stage only, the original's schedule scaled by the preset's iteration counts): every
``densify_interval`` its in ``(densify_from, densify_until)``, while the count is below ``max_gaussians`` (a gate on
the call, as the original's 50k: one call may overshoot it), Gaussians whose mean screen-space gradient reaches
``densify_grad_threshold`` are cloned (max scale ≤ ``percent_dense``·extent) or split in two (samples from the
Gaussian, scales ÷ 1.6). The rasterizer gives ∂L/∂means2d in pixels; it is converted to the original's NDC
convention (× 0.5·W, × 0.5·H) before the norm. Pruning every ``prune_interval`` its in ``(prune_from,
densify_until)``: opacity < ``min_opacity``, and after ``prune_big_from`` also a screen radius >
``max_screen_radius_px512``·W/512 or a world scale > 0.1·extent. Densifying resets the accumulated statistics and
screen radii (the original's ``densification_postfix``) and runs just before pruning on the same iteration, so the
screen-radius test only bites once densification has stopped at the cap — exactly as in the original, where it
fires only after the cloud reached 50k Gaussians.
The optimiser step of an iteration runs before that iteration's densification (graphdeco runs it after, which
silently skips the per-point parameters' update on densification iterations).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gt_core.methods.gaussiantalker.config import TrainConfig
from gt_core.methods.gaussiantalker.model import GaussianState, GaussianTalkerModel
from gt_core.render.torch_rasterizer import LOWPASS_PX2, quat_to_rotmat

# the original's per-point LR groups: optimiser group name -> model attribute
POINT_GROUPS = {"xyz": "xyz", "f_dc": "features_dc", "f_rest": "features_rest", "opacity": "opacity",
                "scaling": "scaling", "rotation": "rotation"}


def swap_point_params(opt: torch.optim.Adam, model: GaussianTalkerModel, fn) -> None:
    """Replace every per-point parameter ``p`` (model attribute ``attr``) by ``fn(attr, p, False)`` and its Adam
    moments ``m`` by ``fn(attr, m, True)`` (so ``fn`` can start new rows' moments at 0)."""
    for g in opt.param_groups:
        if g["name"] not in POINT_GROUPS:
            continue
        attr = POINT_GROUPS[g["name"]]
        old = g["params"][0]
        state = opt.state.pop(old, None)
        new = nn.Parameter(fn(attr, old.detach(), False))
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = fn(attr, state[key], True)
            opt.state[new] = state
        g["params"][0] = new
        setattr(model, attr, new)


# the smallest radius the rasterizer gives a splat: λmax ≥ 0.3 + √0.1 px² (its +0.3 px² dilation and the 0.1 floor
# of graphdeco's eigenvalue formula), radius = ⌈3·√λmax⌉ = 3 px
MIN_SPLAT_RADIUS_PX = math.ceil(3.0 * math.sqrt(LOWPASS_PX2 + math.sqrt(0.1)))


def screen_radius_limit(tc: TrainConfig, width: int) -> float:
    """The screen-radius prune threshold in pixels: the original's 20 px at 512 px scaled to ``width``, but never
    below twice the smallest radius a splat can have (at 48 px, 20·48/512 = 1.9 px would prune every Gaussian)."""
    return max(tc.max_screen_radius_px512 * width / 512.0, 2.0 * MIN_SPLAT_RADIUS_PX)


class Densifier:
    """Screen-space gradient statistics and the clone/split/prune operations of the canonical stage."""

    def __init__(self, n: int, device: torch.device):
        self.grad_accum = torch.zeros(n, device=device)
        self.denom = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    def state_dict(self) -> dict[str, Tensor]:
        return {"grad_accum": self.grad_accum, "denom": self.denom, "max_radii": self.max_radii}

    def load_state_dict(self, d: dict[str, Tensor]) -> None:
        self.grad_accum, self.denom, self.max_radii = d["grad_accum"], d["denom"], d["max_radii"]

    @torch.no_grad()
    def add_stats(self, outs: list, width: int, height: int) -> None:
        """Accumulate ‖∂L/∂means2d‖ in the original's NDC units (pixel grad × (W/2, H/2)), summed over the batch's
        views, for the Gaussians visible in any of them; track the largest screen radius."""
        grad = torch.zeros_like(self.grad_accum[:, None].expand(-1, 2)).clone()
        visible = torch.zeros_like(self.grad_accum, dtype=torch.bool)
        scale = torch.tensor([0.5 * width, 0.5 * height], device=grad.device)
        for out in outs:
            if out.means2d.grad is not None:
                grad += out.means2d.grad * scale
            vis = out.radii > 0
            visible |= vis
            self.max_radii[vis] = torch.maximum(self.max_radii[vis], out.radii[vis].to(self.max_radii))
        self.grad_accum[visible] += grad[visible].norm(dim=-1)
        self.denom[visible] += 1

    def _reset(self, n: int, device: torch.device) -> None:
        self.grad_accum = torch.zeros(n, device=device)
        self.denom = torch.zeros(n, device=device)
        self.max_radii = torch.zeros(n, device=device)

    @torch.no_grad()
    def densify(self, model: GaussianTalkerModel, opt: torch.optim.Adam, tc: TrainConfig, log_scale: Tensor) -> int:
        """Clone/split by the accumulated gradient; ``log_scale`` [N, 3] = effective canonical log-scales.
        Returns the number of Gaussians added (net)."""
        n = model.n_points
        extent = float(model.scene_extent)
        grads = self.grad_accum / self.denom.clamp_min(1)
        grads[self.denom == 0] = 0
        big = log_scale.exp().max(dim=1).values > tc.percent_dense * extent
        candidates = grads >= tc.densify_grad_threshold
        if not bool(candidates.any()):
            self._reset(n, grads.device)
            return 0
        clone, split = candidates & ~big, candidates & big
        # clones: exact copies; split children: 2 samples from the parent Gaussian, scales / 1.6
        ci, si = clone.nonzero()[:, 0], split.nonzero()[:, 0]
        std = log_scale[si].exp().repeat(2, 1)
        samples = torch.normal(torch.zeros_like(std), std)
        rots = quat_to_rotmat(model.rotation[si]).repeat(2, 1, 1)
        new_xyz = torch.bmm(rots, samples[..., None])[..., 0] + model.xyz[si].repeat(2, 1)
        extra = {
            "xyz": torch.cat([model.xyz[ci], new_xyz]),
            "features_dc": torch.cat([model.features_dc[ci], model.features_dc[si].repeat(2, 1, 1)]),
            "features_rest": torch.cat([model.features_rest[ci], model.features_rest[si].repeat(2, 1, 1)]),
            "opacity": torch.cat([model.opacity[ci], model.opacity[si].repeat(2, 1)]),
            "scaling": torch.cat([model.scaling[ci], model.scaling[si].repeat(2, 1) - math.log(1.6)]),
            "rotation": torch.cat([model.rotation[ci], model.rotation[si].repeat(2, 1)]),
        }
        keep = torch.cat([~split, torch.ones(len(extra["xyz"]), dtype=torch.bool, device=split.device)])

        def grow(attr: str, t: Tensor, is_moment: bool) -> Tensor:
            new_rows = torch.zeros_like(extra[attr]) if is_moment else extra[attr].to(t)
            return torch.cat([t, new_rows])[keep]

        swap_point_params(opt, model, grow)
        self._reset(model.n_points, grads.device)
        return model.n_points - n

    @torch.no_grad()
    def prune(self, model: GaussianTalkerModel, opt: torch.optim.Adam, tc: TrainConfig, canonical: GaussianState,
              big_too: bool, width: int) -> int:
        """Remove low-opacity Gaussians (and, with ``big_too``, huge ones on screen or in the world)."""
        extent = float(model.scene_extent)
        drop = canonical.opacities < tc.min_opacity
        if big_too:
            drop |= self.max_radii > screen_radius_limit(tc, width)
            drop |= canonical.scales.max(dim=1).values > tc.big_world_fraction * extent
        if bool(drop.all()):  # never prune everything: keep the most opaque
            drop[torch.argmax(canonical.opacities)] = False
        if not bool(drop.any()):
            return 0
        keep = ~drop
        swap_point_params(opt, model, lambda _attr, t, _moment: t[keep])
        self.grad_accum, self.denom, self.max_radii = self.grad_accum[keep], self.denom[keep], self.max_radii[keep]
        return int(drop.sum())




def densify_prune(model: GaussianTalkerModel, opt: torch.optim.Adam, dens: Densifier, tc: TrainConfig, it: int,
                  width: int) -> None:
    """The canonical stage's densification/pruning schedule at the end of iteration ``it`` (the original's: both
    only before ``densify_until``; densify after ``densify_from`` while fewer than ``max_gaussians``; prune after
    ``prune_from``). Densifying resets the screen radii, so — as in the original — the screen-radius prune can only
    fire once the Gaussian count has reached ``max_gaussians`` and densification has stopped."""
    if it >= tc.densify_until:
        return
    if it > tc.densify_from and it % tc.densify_interval == 0 and model.n_points < tc.max_gaussians:
        with torch.no_grad():
            log_scale = model.canonical().log_scale.detach()
        dens.densify(model, opt, tc, log_scale)
    if it > tc.prune_from and it % tc.prune_interval == 0:
        with torch.no_grad():
            canon = model.canonical()
            canon = GaussianState(*(t.detach() for t in (canon.xyz, canon.log_scale, canon.rotation,
                                                          canon.opacity_logit, canon.shs)))
        dens.prune(model, opt, tc, canon, it > tc.prune_big_from, width)
