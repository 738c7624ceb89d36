"""Benchmark: forward+backward time of the "torch" Gaussian rasterizer vs the dense test reference.

    .venv/bin/python benchmarks/rasterizer.py [--n 5000] [--size 128] [--runs 15] [--ref-runs 3] [--threads 1,2]
                                              [--tune-malloc]

Scene: ``n`` random Gaussians in front of an identity OpenCV camera (fx = fy = size, centred), means with view depth
in [2, 4] spread over the whole field of view, log-uniform scales in [e^-4.5, e^-2.5] (σ ≈ 0.4–5 px on screen),
random rotations, opacities sigmoid(N(0, 1)), RGB colours, a per-pixel background. The loss is a random weighting
of colour, alpha and depth; backward reaches means, quats, scales, opacities, colours and the background.
Timings are medians after warm-up, float32, on the CPU unless ``--device cuda``.

The torch backend is timed with 1 intra-op thread and with torch's default (the core count): on a shared machine
the multi-threaded number swings with whatever else runs (every parallel op waits for the busy core), the
single-threaded one does not.

``--tune-malloc`` (Linux/glibc only) raises glibc's mmap/trim thresholds with ``mallopt`` before timing, so freed
tensor memory is reused instead of being returned to the OS and page-faulted back in on the next allocation (a few
per cent on this VM; jemalloc/tcmalloc via LD_PRELOAD do the same). It changes nothing in the rasterizer; the
library never touches the allocator itself.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gt_core.render.cameras import Camera  # noqa: E402
from gt_core.render.gaussians import rasterize_torch  # noqa: E402


def tune_glibc_malloc() -> bool:
    """Keep freed heap memory for reuse (mmap threshold 32 MiB, trim threshold 1 GiB). True if glibc accepted it."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


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
    ap.add_argument("--threads", default=None,
                    help="comma-separated intra-op thread counts to time the torch backend with "
                         "(default: 1 and torch's default, i.e. the core count)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-malloc", action="store_true", help="raise glibc's mmap/trim thresholds (see above)")
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else sorted({1, default_threads}))
    if args.tune_malloc and not tune_glibc_malloc():
        print("warning: mallopt not available; --tune-malloc ignored")
    cam, params, weights = make_scene(args.n, args.size, args.device, args.seed)

    def ours(leaves):
        out = rasterize_torch(*leaves[:5], cam, leaves[5])
        return out.color, out.alpha, out.depth

    _, plan = rasterize_torch(*params[:5], cam, params[5], return_plan=True)
    entries = plan.n_intersections * plan.block ** 2
    print(f"scene: {args.n} Gaussians, {args.size}x{args.size}, {args.device}, float32"
          f"{', tuned malloc' if args.tune_malloc else ''}; {plan.n_intersections} (Gaussian, {plan.block}x"
          f"{plan.block} block) intersections = {entries} pixel entries in {len(plan.chunks)} chunk(s); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    result: dict = {}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        t = time_fwd_bwd(ours, params, weights, args.runs, warmup=3, device=args.device)
        result[f"torch_ms_{n_threads}t"] = statistics.median(t)
        print(f"torch backend   fwd+bwd, {n_threads} thread(s): median {statistics.median(t):8.1f} ms  "
              f"(min {min(t):.1f}, {args.runs} runs)")
    best = min(result.values())
    result["torch_ms"] = best
    if args.ref_runs > 0:
        torch.set_num_threads(default_threads)
        ref = _load_reference()

        def dense(leaves):
            out = ref.render_dense_camera(*leaves[:5], cam, leaves[5])
            return out["color"], out["alpha"], out["depth"]

        t_ref = time_fwd_bwd(dense, params, weights, args.ref_runs, warmup=1, device=args.device)
        med_ref = statistics.median(t_ref)
        print(f"dense reference fwd+bwd, {default_threads} thread(s): median {med_ref:8.1f} ms  "
              f"(min {min(t_ref):.1f}, {args.ref_runs} runs)")
        print(f"speed-up (dense reference / best torch backend): {med_ref / best:.1f}x")
        result.update(dense_ms=med_ref, ratio=med_ref / best)
    torch.set_num_threads(default_threads)
    return result


if __name__ == "__main__":
    main()
