"""Benchmark: GaussianTalker and ER-NeRF ms per training step (every stage) and render FPS, at a preset, in one run.

    .venv/bin/python benchmarks/train_step.py [--preset demo] [--size 128] [--steps 20] [--threads 2]
                                              [--cell results/demo/10s/cell] [--device cpu]

Cell: a synthetic ``size``² cell (the test suite's coloured-Gaussian head, 24 train / 16 test frames) unless
``--cell`` names a built cell. The model is initialised exactly as training does, with the preset's
``n_init_points``; steps are timed (median after 3 warm-up steps) with the real engine step
(:class:`~gt_core.methods.gaussiantalker.train.GaussianTalkerProgram` ``forward`` + ``update``):

* canonical at the initial Gaussian count, and at the preset's ``max_gaussians`` cap (the cloud is grown to the cap
  by jittered copies, as densification would), with densification switched off so the count stays fixed;
* deformation (batch ``batch_deform``) at the cap;
* rendering of the test frames (deform + rasterize, batches of ``render_batch``) at the cap → FPS.

It prints the projected training time of one cell = ``iterations_canonical`` × mean(canonical ms at the initial
count, at the cap) + ``iterations_deform`` × deformation ms, and its ratio to the demo target of 4 minutes.
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

from gt_core.methods.gaussiantalker import train as T  # noqa: E402
from gt_core.methods.gaussiantalker.densify import swap_point_params  # noqa: E402
from gt_core.methods.gaussiantalker.method import GaussianTalkerMethod  # noqa: E402

TARGET_S = 240.0  # the demo preset's budget: one cell in at most 4 minutes on 2 CPU cores


def synthetic_cell(size: int):
    spec = importlib.util.spec_from_file_location("test_gaussiantalker", ROOT / "tests" / "test_gaussiantalker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.synthetic_cell(n_train=24, n_test=16, size=size)


def grow_to(model, opt, n_target: int, seed: int = 0) -> None:
    """Append jittered copies of random Gaussians until the model has ``n_target`` (optimiser kept in sync)."""
    n = model.n_points
    if n_target <= n:
        return
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (n_target - n,), generator=g)

    def grow(_attr, t, is_state):
        extra = torch.zeros_like(t[src]) if is_state else t[src].clone()
        return torch.cat([t, extra])

    swap_point_params(opt, model, grow)
    with torch.no_grad():
        model.xyz[n:] += torch.randn(n_target - n, 3, generator=g).to(model.xyz) * model.scaling[n:].exp()


def time_steps(program, stage: str, steps: int, device, parity: int | None = None, skip_refresh: int = 0) -> float:
    """Median ms of one engine step (``forward`` + ``update``) of ``program`` in ``stage``, after 3 warm-up steps;
    ``parity`` 0 / 1: only the even / odd steps count (ER-NeRF's lip stage alternates patches and lip squares);
    ``skip_refresh`` k > 0: steps ``it`` with ``(it - 1) % k == 0`` (ER-NeRF's grid refreshes) are not timed."""
    times = []
    for it in range(1, steps + 4):
        if skip_refresh and (it - 1) % skip_refresh == 0:
            program.forward(stage, it)  # the refresh step: run, not timed
            continue
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        loss, _ = program.forward(stage, it)
        program.update(stage, it, loss)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if it > 3 and (parity is None or it % 2 == parity):
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="demo", choices=sorted(GaussianTalkerMethod.presets))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cell", type=Path, default=None, help="a built cell directory instead of the synthetic cell")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ernerf-checkpoint", type=Path, default=None,
                    help="a trained ER-NeRF checkpoint.pt of --cell: time its steps at the trained density")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    if args.cell is not None:
        from gt_core.data.cell import load_cell

        cell = load_cell(args.cell)
    else:
        cell = synthetic_cell(args.size)
    cfg = {**GaussianTalkerMethod.presets[args.preset], "seed": 0}
    program = T.GaussianTalkerProgram(cell, cfg, device)
    tc = program.tc
    # fixed Gaussian counts while timing: no densification / pruning
    tc.densify_until, tc.prune_from = 0, 10 ** 9
    torch.manual_seed(0)
    program.start()
    model = program.model
    test = T.FrameData(cell, "test", device, model.cfg.audio_context)
    n0 = model.n_points
    program.begin_stage("canonical", None)
    ms_c0 = time_steps(program, "canonical", args.steps, device)
    grow_to(model, program.opt, tc.max_gaussians)
    program.dens = T.Densifier(model.n_points, device)
    ms_c1 = time_steps(program, "canonical", args.steps, device)
    program.begin_stage("deform", None)  # bakes F_can and rebuilds the optimiser, as training does
    ms_d = time_steps(program, "deform", args.steps, device)

    sh = T.sh_degree_at(tc, "deform", 1)
    T.render_frames(model, test, sh, tc.render_batch, tc.backend)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    T.render_frames(model, test, sh, tc.render_batch, tc.backend)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    fps = test.n / (time.perf_counter() - t0)

    projected = tc.iterations_canonical * 0.5 * (ms_c0 + ms_c1) / 1000 + tc.iterations_deform * ms_d / 1000
    where = f"cell {args.cell}" if args.cell else f"synthetic {args.size}x{args.size} cell"
    print(f"gaussiantalker preset {args.preset}: {where}, {device} ({args.threads} threads), "
          f"median of {args.steps} steps after 3 warm-up")
    print(f"canonical step  @ {n0:6d} Gaussians: {ms_c0:8.1f} ms")
    print(f"canonical step  @ {model.n_points:6d} Gaussians: {ms_c1:8.1f} ms   (ratio to {n0}: {ms_c1 / ms_c0:.2f}x)")
    print(f"deform step b={tc.batch_deform:<2d} @ {model.n_points:6d} Gaussians: {ms_d:8.1f} ms   "
          f"(ratio to canonical: {ms_d / ms_c1:.2f}x)")
    print(f"render           @ {model.n_points:6d} Gaussians: {fps:8.1f} FPS  (batch {tc.render_batch}, "
          f"{1000 / fps:.1f} ms/frame)")
    ernerf_section(cell, args.preset, args.steps, device, ms_d, fps, args.ernerf_checkpoint)
    print(f"gaussiantalker projected train time: {tc.iterations_canonical} x {0.5 * (ms_c0 + ms_c1):.1f} ms + "
          f"{tc.iterations_deform} x {ms_d:.1f} ms = {projected:.0f} s; "
          f"ratio to the {TARGET_S:.0f} s demo target: {projected / TARGET_S:.2f}")


def ernerf_section(cell, preset: str, steps: int, device, gt_deform_ms: float, gt_fps: float,
                   checkpoint: Path | None = None) -> None:
    """ER-NeRF's engine step per stage (head, lips — alternating lip square / patches — and torso) and its render
    FPS (head + torso, every test pixel), at ``preset``, on the same cell; from ``checkpoint`` (trained) if given."""
    from gt_core.methods.ernerf import train as ET
    from gt_core.methods.ernerf.method import ERNeRFMethod

    cfg = {**ERNeRFMethod.presets[preset], "seed": 0}
    program = ET.ERNeRFProgram(cell, cfg, device)
    torch.manual_seed(0)
    if checkpoint is None:
        program.start()
    else:
        program.restore(torch.load(checkpoint, map_location=device, weights_only=False))
    kinds = {"head": ("head", None), "lip square": ("lips", 1), "lip patches": ("lips", 0), "torso": ("torso", None)}
    ms = {}
    for kind, (stage, parity) in kinds.items():
        program.begin_stage(stage, None)
        ms[kind] = time_steps(program, stage, steps, device, parity, skip_refresh=program.tc.extra_interval)
    refresh = []
    for _ in range(3):
        t0 = time.perf_counter()
        program._refresh_grids("head")
        refresh.append(1000 * (time.perf_counter() - t0))
    refresh_ms = statistics.median(refresh)
    program.model.eval()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        torch.save({"format": ET.FORMAT, "record": ET.model_record(program.model), "model": program.model.state_dict(),
                    "train_config": cfg}, path)
        renders = ERNeRFMethod().render(path, cell, device)
    tc = program.tc
    its = {kind: program.iterations(stage) / (1 if parity is None else 2) for kind, (stage, parity) in kinds.items()}
    n_refresh = sum(-(-program.iterations(s) // tc.extra_interval) for s in ("head", "lips"))  # its 1, 17, 33, …
    projected = (sum(ms[kind] * its[kind] for kind in kinds) + n_refresh * refresh_ms) / 1000
    print(f"ernerf preset {preset}: {tc.num_rays} rays/step, {program.model.n_steps} lattice steps/ray, "
          f"grid {program.model.mcfg.grid_res}^3")
    print(f"ernerf weights: {checkpoint or 'initial (untrained)'}")
    for kind in kinds:
        print(f"{kind:11s} step: {ms[kind]:8.1f} ms   (ratio to gaussiantalker's deform step: "
              f"{ms[kind] / gt_deform_ms:.2f}x)")
    print(f"grid refresh ({program.model.mcfg.grid_res}^3 density queries, every {program.tc.extra_interval} head / "
          f"lip steps): {refresh_ms:8.1f} ms = {n_refresh * refresh_ms / 1000:.0f} s of a cell "
          f"({n_refresh * refresh_ms / 1000 / projected:.0%} of the projected train time)")
    print(f"render (head + full, {cell.width}x{cell.height}): {renders.fps:8.2f} FPS   (ratio to gaussiantalker's: "
          f"{renders.fps / gt_fps:.3f}x)")
    print(f"projected train time: {projected:.0f} s; ratio to the 360 s demo target: {projected / 360:.2f}")


if __name__ == "__main__":
    main()
