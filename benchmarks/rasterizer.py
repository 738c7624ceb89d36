"""Benchmark: forward+backward time of the "torch" Gaussian rasterizer vs the dense test reference.

    .venv/bin/python benchmarks/rasterizer.py [--n 5000] [--size 128] [--runs 15] [--ref-runs 3] [--threads 2]

Scene: ``n`` random Gaussians in front of an identity OpenCV camera (fx = fy = size, centred), means with view depth
in [2, 4] spread over the whole field of view, log-uniform scales in [e^-4.5, e^-2.5] (≈ 0.5–3.5 px σ on screen),
random rotations, opacities sigmoid(N(0, 1)), RGB colours, a per-pixel background. The loss is a random weighting
of colour, alpha and depth; backward reaches means, quats, scales, opacities, colours and the background.
Timings are medians after warm-up, float32, on the CPU unless ``--device cuda``.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.render.cameras import Camera  # noqa: E402
from gt_core.render.gaussians import rasterize_torch  # noqa: E402


def _load_reference():
    spec = importlib.util.spec_from_file_location("render_reference", ROOT / "tests" / "render_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_scene(n: int, size: int, device: str, seed: int = 0, dtype=torch.float32):
    """Random Gaussians filling the view of a centred ``size × size`` camera at the origin looking along +z."""
    g = torch.Generator().manual_seed(seed)
    cam = Camera(size, size, float(size), float(size), size / 2, size / 2, torch.eye(4, dtype=dtype)).to(device)
    z = 2 + 2 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * 1.1 * z[:, None]  # fov is ±0.5·z at fx = size
    means = torch.cat([xy, z[:, None]], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(-4.5 + 2 * torch.rand(n, 3, generator=g))
    opacities = torch.sigmoid(torch.randn(n, generator=g))
    colors = torch.rand(n, 3, generator=g)
    background = torch.rand(3, size, size, generator=g)
    weights = [torch.randn(3, size, size, generator=g), torch.randn(1, size, size, generator=g),
               torch.randn(1, size, size, generator=g)]
    to = dict(device=device, dtype=dtype)
    return cam, [t.to(**to) for t in (means, quats, scales, opacities, colors, background)], [w.to(**to) for w in weights]


def time_fwd_bwd(render, params, weights, runs: int, warmup: int, device: str) -> list[float]:
    times = []
    for i in range(warmup + runs):
        leaves = [p.detach().requires_grad_() for p in params]
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        color, alpha, depth = render(leaves)
        loss = (color * weights[0]).sum() + (alpha * weights[1]).sum() + (depth * weights[2]).sum()
        loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--ref-runs", type=int, default=3, help="dense reference runs (0 = skip it)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cam, params, weights = make_scene(args.n, args.size, args.device, args.seed)

    def ours(leaves):
        out = rasterize_torch(*leaves[:5], cam, leaves[5])
        return out.color, out.alpha, out.depth

    _, plan = rasterize_torch(*params[:5], cam, params[5], return_plan=True)
    entries = plan.n_intersections * plan.block ** 2
    print(f"scene: {args.n} Gaussians, {args.size}x{args.size}, {args.device}, {torch.get_num_threads()} threads; "
          f"{plan.n_intersections} (Gaussian, {plan.block}x{plan.block} block) intersections = {entries} pixel "
          f"entries in {len(plan.chunks)} chunk(s)")
    t_ours = time_fwd_bwd(ours, params, weights, args.runs, warmup=3, device=args.device)
    med_ours = statistics.median(t_ours)
    print(f"torch backend   fwd+bwd: median {med_ours:8.1f} ms  (min {min(t_ours):.1f}, {args.runs} runs)")
    result = {"torch_ms": med_ours}
    if args.ref_runs > 0:
        ref = _load_reference()

        def dense(leaves):
            out = ref.render_dense_camera(*leaves[:5], cam, leaves[5])
            return out["color"], out["alpha"], out["depth"]

        t_ref = time_fwd_bwd(dense, params, weights, args.ref_runs, warmup=1, device=args.device)
        med_ref = statistics.median(t_ref)
        print(f"dense reference fwd+bwd: median {med_ref:8.1f} ms  (min {min(t_ref):.1f}, {args.ref_runs} runs)")
        print(f"speed-up (dense / torch backend): {med_ref / med_ours:.1f}x")
        result.update(dense_ms=med_ref, ratio=med_ref / med_ours)
    return result


if __name__ == "__main__":
    main()
