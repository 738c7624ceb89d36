"""``gt-core``: the command line the Snakemake rules call (one sub-command per stage).

Bad input ends the command with one line on stderr (``error: <file or key>: <problem> — fix: <fix>``) and exit
status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable

from gt_core.errors import InputError, TrainingDiverged

COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], Callable[[argparse.ArgumentParser], None], str]] = {}


def arg(*flags: str, **kwargs) -> tuple[tuple[str, ...], dict]:
    """One ``add_argument`` call, declared: ``arg("--out", required=True)``."""
    return flags, kwargs


def command(name: str, help: str, *args: tuple[tuple[str, ...], dict]):
    """Register ``fn(args)`` as the sub-command ``name`` taking the declared ``args``."""
    def deco(fn):
        def add_args(parser: argparse.ArgumentParser) -> None:
            for flags, kwargs in args:
                parser.add_argument(*flags, **kwargs)

        COMMANDS[name] = (fn, add_args, help)
        return fn
    return deco


# ----------------------------------------------------------------------------------------------- data + preprocess
@command("demo", "generate the built-in demo subject (video with speech + ground-truth curves)",
         arg("--out", required=True), arg("--truth", required=True),
         arg("--seed", type=int, default=0), arg("--duration", type=float, default=44.0),
         arg("--size", type=int, default=512))
def _demo(args):
    from gt_core.data.demo import DemoSpec, generate_demo

    summary = generate_demo(args.out, args.truth, DemoSpec(seed=args.seed, duration_s=args.duration, size=args.size))
    logging.info("demo: %s", summary)


@command("probe", "probe a subject's video and check it is long enough for the split",
         arg("--video", required=True), arg("--out", required=True),
         arg("--required-seconds", type=float, required=True),
         arg("--fps", type=int, default=25))
def _probe(args):
    from gt_core.preprocess.stages import probe_stage

    probe_stage(args.video, args.out, args.required_seconds, args.fps)


@command("crop", "fix the square head crop of a video from landmarks on sampled frames",
         arg("--video", required=True), arg("--probe", required=True),
         arg("--out", required=True))
def _crop(args):
    from gt_core.preprocess.stages import crop_stage

    crop_stage(args.video, args.probe, args.out)


@command("frames", "decode cropped, resized frames at 25 fps",
         arg("--video", required=True), arg("--probe", required=True),
         arg("--crop", required=True), arg("--out", required=True),
         arg("--resolution", type=int, required=True), arg("--fps", type=int, default=25))
def _frames(args):
    from gt_core.preprocess.stages import frames_stage

    frames_stage(args.video, args.probe, args.crop, args.out, args.resolution, args.fps)


@command("audio", "extract 16 kHz mono audio aligned to the frames",
         arg("--video", required=True), arg("--probe", required=True),
         arg("--out", required=True))
def _audio(args):
    from gt_core.preprocess.stages import audio_stage

    audio_stage(args.video, args.probe, args.out)


@command("landmarks", "face-mesh landmarks and eye openness per frame",
         arg("--frames", required=True), arg("--out", required=True),
         arg("--eyes", required=True), arg("--max-missing", type=int, default=0),
         arg("--source", default=None))
def _landmarks(args):
    from gt_core.preprocess.stages import landmarks_stage

    landmarks_stage(args.frames, args.out, args.eyes, args.max_missing, args.source)


@command("pose", "rigid head pose per frame + focal search; transforms.json",
         arg("--landmarks", required=True), arg("--out", required=True),
         arg("--transforms", required=True),
         arg("--expression", required=True, help="the raw brow/blink measures per frame (SyncTalk's input)"),
         arg("--canonical-frames", type=int, required=True,
                              help="the first K frames (shortest training clip) define the canonical shape"))
def _pose(args):
    from gt_core.preprocess.stages import pose_stage

    pose_stage(args.landmarks, args.out, args.transforms, range(0, args.canonical_frames), args.expression)


@command("stabilise", "SyncTalk's head-sync stabiliser: face keypoint tracks + bundle adjustment of the head pose",
         arg("--frames", required=True), arg("--landmarks", required=True), arg("--pose", required=True),
         arg("--out", required=True), arg("--transforms", required=True),
         arg("--stats", required=True, help="JSON: tracks kept, losses, errors and jitter before/after"),
         arg("--canonical-frames", type=int, required=True,
             help="the first K frames (shortest training clip): the only frames the 3-D points are fitted on"),
         arg("--preset", default="fast", help="fast (the rule's) | original (SyncTalk's 8,000 BA iterations)"))
def _stabilise(args):
    from gt_core.preprocess.stages import stabilise_stage

    stabilise_stage(args.frames, args.landmarks, args.pose, args.out, args.transforms, args.stats,
                    args.canonical_frames, args.preset)

@command("masks", "parse frames into background / torso / head",
         arg("--frames", required=True), arg("--landmarks", required=True),
         arg("--out", required=True))
def _masks(args):
    from gt_core.preprocess.stages import masks_stage

    masks_stage(args.frames, args.landmarks, args.out)


@command("audio-features", "audio windows [n_frames, 16, C] for one extractor",
         arg("--wav", required=True), arg("--probe", required=True),
         arg("--name", required=True), arg("--out", required=True),
         arg("--model", default=None, help="the extractor's model file (deepspeech: the graph); default: its "
                                           "download location"))
def _audio_features(args):
    from gt_core.preprocess.stages import audio_features_stage

    audio_features_stage(args.wav, args.probe, args.name, args.out, model=args.model)


@command("cell", "split a subject into one cell (train = first D s, test = common tail) + plate",
         arg("--data", required=True, help="the subject's data directory"),
         arg("--duration", type=float, required=True), arg("--out", required=True),
         arg("--audio-features", required=True), arg("--config", required=True,
                                                                                  help="split settings as JSON"))
def _cell(args):
    import json

    from gt_core.config import SplitSpec
    from gt_core.data.cell import build_cell

    settings = json.loads(args.config)
    split = SplitSpec(**{**settings, "durations": tuple(settings["durations"])})
    build_cell(args.data, args.duration, split, args.out, args.audio_features)


# ------------------------------------------------------------------------------------------ methods + evaluation
METHOD_ARGS = (arg("--cell", required=True, help="the cell directory (results/{subject}/{D}s/cell)"),
         arg("--device", default="auto"), arg("--seed", type=int, default=0))


@command("train", "train one method on one cell (resumes from its periodic checkpoint)",
         *METHOD_ARGS, arg("--method", required=True), arg("--preset", required=True),
         arg("--params", default="{}", help="hyper-parameter overrides as JSON"),
         arg("--out", required=True, help="the method's cell directory"),
         arg("--config-hash", default=""))
def _train(args):
    import json

    from gt_core.methods.run import train_stage

    train_stage(args.cell, args.method, args.preset, json.loads(args.params), args.out, args.device, args.seed,
                args.config_hash)


@command("render", "render a cell's test frames with a trained method",
         *METHOD_ARGS, arg("--train", required=True, help="the method's train.json"),
         arg("--out", required=True))
def _render(args):
    from gt_core.methods.run import render_stage

    render_stage(args.cell, args.train, args.out, args.device, args.seed)


@command("derive", "compose a derived row's renders from its source method's (e.g. synctalk-portrait)",
         arg("--cell", required=True), arg("--method", required=True),
         arg("--source-train", required=True, help="the source method's train.json"),
         arg("--source-renders", required=True, help="the source method's renders.npz"),
         arg("--out", required=True, help="the derived row's cell directory"),
         arg("--preset", default="demo"), arg("--params", default="{}", help="hyper-parameter overrides as JSON"))
def _derive(args):
    import json

    from gt_core.methods.run import derive_stage

    derive_stage(args.cell, args.method, args.source_train, args.source_renders, args.out, args.preset,
                 json.loads(args.params))


@command("evaluate", "PSNR/SSIM/LPIPS/LMD of a cell's renders for every protocol",
         arg("--cell", required=True), arg("--renders", required=True),
         arg("--train", required=True), arg("--out", required=True),
         arg("--device", default="cpu"))
def _evaluate(args):
    from gt_core.metrics.cell_stage import evaluate_stage

    evaluate_stage(args.cell, args.renders, args.train, args.out, args.device)


@command("download-weights", "fetch a model file, checksum-verified (the only command that downloads; needs network)",
         arg("--model", choices=["alexnet", "vgg16", "deepspeech", "synctalk-ave"], default="alexnet",
             help="alexnet: the LPIPS backbone; vgg16: GaussianTalker's perceptual-loss backbone; "
                  "deepspeech: the DeepSpeech 0.1.0 graph; synctalk-ave: SyncTalk's audio-visual encoder"),
         arg("--out", default=None, help="default: where the pipeline reads it (torch hub / $TENSORFLOW_HOME/models)"))
def _download_weights(args):
    from gt_core.io.download import download_model

    if args.model == "alexnet":
        from gt_core.metrics.lpips_metric import ALEXNET as model, alexnet_weights_path as default_path
    elif args.model == "vgg16":
        from gt_core.nn.losses import VGG16 as model, vgg16_weights_path as default_path
    elif args.model == "synctalk-ave":
        from gt_core.encoders.ave import SYNCTALK_AVE as model, synctalk_ave_path as default_path
    else:
        from gt_core.preprocess.deepspeech import DEEPSPEECH as model, deepspeech_graph_path as default_path
    download_model(model, args.out or default_path())


# -------------------------------------------------------------------------------------------------------- reports
GRID_ARGS = (arg("--methods", nargs="+", required=True), arg("--durations", nargs="+", type=float, required=True))


@command("tables", "Table 1 (csv, md, tex; head and face protocols), long csv, per-subject tables",
         *GRID_ARGS, arg("--metrics", nargs="+", required=True),
         arg("--out-dir", required=True))
def _tables(args):
    from gt_core.report.build import tables_stage

    tables_stage(args.metrics, args.out_dir, args.methods, args.durations)


@command("figure", "metrics vs training duration, one panel per metric",
         *GRID_ARGS, arg("--metrics", nargs="+", required=True),
         arg("--out", required=True))
def _figure(args):
    from gt_core.report.build import figure_stage

    figure_stage(args.metrics, args.out, args.methods, args.durations)


@command("qualitative", "Figure-2-style grid and side-by-side video of one subject's test frames",
         *GRID_ARGS, arg("--subject", required=True), arg("--results", default="results"),
         arg("--out-png", required=True), arg("--out-mp4", required=True))
def _qualitative(args):
    from gt_core.report.build import qualitative_stage

    qualitative_stage(args.results, args.subject, args.methods, args.durations, args.out_png, args.out_mp4)


@command("ave", "SyncTalk's audio-visual encoder for one cell: train it on the cell's training frames (or load the "
                "authors' audio tower), score held-out sync, write per-frame 512-d features",
         arg("--cell", required=True, help="the cell directory (results/{subject}/{D}s/cell)"),
         arg("--out", required=True, help="results/{subject}/{D}s/ave: features.npy, ave.json, ave.pt"),
         arg("--preset", default="demo", help="tiny | small | demo | paper"),
         arg("--weights", default=None, help="the authors' audio_visual_encoder.pth (rule download_synctalk_ave); "
                                             "default: train the AVE in the pipeline"),
         arg("--seed", type=int, default=None, help="default: the preset's"))
def _ave(args):
    from gt_core.preprocess.ave_train import ave_stage

    ave_stage(args.cell, args.out, args.preset, args.weights, args.seed)


# ---------------------------------------------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gt-core", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, add_args, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    logging.info("gt-core %s done in %.1f s", args.command, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
