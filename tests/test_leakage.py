"""No leakage from the test frames: what a method renders and what a cell fits must not depend on them.

A small synthetic subject (the scene of ``test_gaussiantalker.synthetic_cell``) is written as a real subject data
directory (``frames.npy``, ``labels.npz``, ``landmarks.npz``, ``eyes.npy``, ``pose.npz``, ``audio_mel.npy``), split
into a cell by :func:`gt_core.data.cell.build_cell` and loaded back with :func:`~gt_core.data.cell.load_cell`, exactly
as the ``cell`` rule and the train/render jobs do. Then:

- the test frames' pixels (everything but the ground-truth torso, which the head protocol hands every method as
  part of its background) and landmarks are replaced by noise, keeping poses, eye values, audio and labels: every
  registered method, trained and rendered on the corrupted cell, must render byte-identical frames;
- the background plate and the blink normalisation must change when, and only when, the training frames change.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gt_core.config import SplitSpec
from gt_core.data.cell import LABEL_TORSO, ave_features_path, build_cell, load_cell
from gt_core.io.atomic import save_npy
from gt_core.methods import registry
from gt_core.preprocess.landmarks import Landmarks
from gt_core.preprocess.masks import save_labels
from gt_core.preprocess.pose import HeadPose

N_TRAIN, N_TEST = 8, 4
FPS = 25
CPU = torch.device("cpu")
ALL_METHODS = sorted(registry.RENDERING_METHODS)  # a derived row (synctalk-portrait) has no renders of its own


def write_subject(data_dir: Path, seed: int = 0) -> None:
    """The synthetic scene as a subject's preprocessing outputs (the file formats the stages write)."""
    from test_gaussiantalker import synthetic_cell

    c = synthetic_cell(n_train=N_TRAIN, n_test=N_TEST, seed=seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    cat = lambda name: np.concatenate([getattr(c.train, name), getattr(c.test, name)])  # noqa: E731
    c2w = cat("c2w").astype(np.float64)
    r = np.transpose(c2w[:, :3, :3] @ np.diag([1.0, -1.0, -1.0]), (0, 2, 1))  # OpenGL c2w -> OpenCV head->camera
    t = -np.einsum("nij,nj->ni", r, c2w[:, :3, 3])
    n = len(c2w)
    pose = HeadPose(r, t, c.fx, c.cx, c.cy, c.width, c.height, c.canonical.astype(np.float64), np.zeros(n),
                    np.ones(n, bool))
    np.testing.assert_allclose(pose.c2w_opengl(), c2w, atol=1e-6)
    pose.save(data_dir / "pose.npz")
    pose.save(data_dir / "pose_stabilised.npz")  # the stabilise rule's output (same format; unused by these tests)
    brows = np.sin(np.arange(n)[:, None] * 0.7 + np.arange(5)[None])  # raw brow measures (the pose stage's output)
    openness = (0.2 + 0.2 * (1 - cat("eye")))[:, None].repeat(2, 1)
    np.save(data_dir / "expression.npy", np.concatenate([brows, openness], 1).astype(np.float64))
    np.save(data_dir / "frames.npy", cat("frames"))
    save_labels(data_dir / "labels.npz", cat("labels"))
    Landmarks(cat("landmarks").astype(np.float32), np.ones(n, bool), c.width, c.height).save(data_dir / "landmarks.npz")
    np.save(data_dir / "eyes.npy", (0.2 + 0.2 * (1 - cat("eye"))).astype(np.float32))  # raw openness
    np.save(data_dir / "audio_mel.npy", cat("audio"))


SPLIT = SplitSpec(durations=(N_TRAIN / FPS,), gap_s=0.0, test_seconds=N_TEST / FPS, mode="tail", fps=FPS)


def make_cell(data_dir: Path, out_dir: Path) -> Path:
    build_cell(data_dir, N_TRAIN / FPS, SPLIT, out_dir, "mel")
    # stand-in AVE features (the `ave` rule's output, from the audio alone): a fixed projection of the audio windows
    audio = np.load(data_dir / "audio_mel.npy")
    proj = np.random.default_rng(7).normal(size=(audio[0].size, 512)) / np.sqrt(audio[0].size)
    save_npy(ave_features_path(out_dir), np.maximum(audio.reshape(len(audio), -1) @ proj, 0).astype(np.float32))
    return out_dir


def copy_subject(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def corrupt_test_frames(data_dir: Path, torso_too: bool = False, seed: int = 1) -> None:
    """Noise over the test frames' pixels (all but the torso unless ``torso_too``) and landmarks, in place."""
    rng = np.random.default_rng(seed)
    frames = np.load(data_dir / "frames.npy")
    with np.load(data_dir / "labels.npz") as z:
        labels = z["labels"]
    test = slice(N_TRAIN, N_TRAIN + N_TEST)
    replace = np.ones_like(labels[test], bool) if torso_too else labels[test] != LABEL_TORSO
    noise = rng.integers(0, 256, frames[test].shape, dtype=np.uint8)
    frames[test] = np.where(replace[..., None], noise, frames[test])
    np.save(data_dir / "frames.npy", frames)
    lms = Landmarks.load(data_dir / "landmarks.npz")
    lms.points[test] = rng.uniform(0, lms.width, lms.points[test].shape).astype(np.float32)
    lms.save(data_dir / "landmarks.npz")


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    """(clean cell dir, corrupted cell dir): the same subject, test pixels/landmarks replaced by noise in the second."""
    root = tmp_path_factory.mktemp("leak")
    clean = root / "clean" / "data"
    write_subject(clean)
    bad = copy_subject(clean, root / "corrupted" / "data")
    corrupt_test_frames(bad)
    return make_cell(clean, root / "clean" / "cell"), make_cell(bad, root / "corrupted" / "cell")


def test_corruption_reaches_the_cell_but_not_the_method_inputs(subjects):
    """The corrupted cell really differs in the test targets, frames and landmarks, and not in what a method may
    use (head-protocol backgrounds, poses, eye values, audio, plate, canonical shape) — else the next test is
    vacuous or unfair."""
    a, b = load_cell(subjects[0]), load_cell(subjects[1])
    assert not np.array_equal(a.test.targets, b.test.targets)
    assert not np.array_equal(a.test.frames, b.test.frames)
    assert np.abs(a.test.landmarks - b.test.landmarks).mean() > 5
    for name in ("backgrounds", "c2w", "eye", "audio", "labels", "expression", "ave"):
        assert np.array_equal(getattr(a.test, name), getattr(b.test, name)), name
    for name in ("frames", "targets", "backgrounds", "landmarks", "eye", "audio", "expression"):
        assert np.array_equal(getattr(a.train, name), getattr(b.train, name)), name
    assert np.array_equal(a.plate, b.plate) and np.array_equal(a.canonical, b.canonical)


@pytest.mark.parametrize("method_name", ALL_METHODS)
def test_renders_ignore_test_pixels_and_landmarks(method_name, subjects, tmp_path):
    method = registry.get_method(method_name)
    cfg = {**method.resolve_config("tiny", {}), "seed": 0}
    renders = {}
    for tag, cell_dir in zip(("clean", "corrupted"), subjects):
        cell = load_cell(cell_dir)
        torch.manual_seed(0)
        np.random.seed(0)
        ckpt = method.train(cell, cfg, tmp_path / tag, CPU)
        renders[tag] = method.render(ckpt, cell, CPU).head
        if tag == "clean":
            clean_ckpt = ckpt
    # the clean checkpoint on the corrupted cell: render-time reads of the test frames show up here
    renders["clean ckpt, corrupted cell"] = method.render(clean_ckpt, load_cell(subjects[1]), CPU).head
    ref = renders["clean"]
    assert ref.shape == (N_TEST, *load_cell(subjects[0]).test.frames.shape[1:])
    for tag, head in renders.items():
        diff = np.abs(head.astype(int) - ref).max()
        assert np.array_equal(head, ref), (f"{method_name}: renders changed ({tag}, max |diff| {diff}) when only the "
                                           "test frames' pixels and landmarks changed: the method reads them")


def _fitted(cell_dir: Path) -> tuple[np.ndarray, dict, np.ndarray]:
    plate = cv2.imread(str(cell_dir / "plate.png"))
    meta = json.loads((cell_dir / "cell.json").read_text())
    blink = np.load(cell_dir / "blink.npy")
    return plate, meta["eye"], blink


def test_plate_and_blink_change_only_with_training_frames(tmp_path):
    clean = tmp_path / "clean" / "data"
    write_subject(clean)
    plate, eye, blink = _fitted(make_cell(clean, tmp_path / "clean" / "cell"))

    # test frames: every pixel (background and torso too), landmarks and eye openness replaced -> nothing fitted moves
    bad = copy_subject(clean, tmp_path / "test_changed" / "data")
    corrupt_test_frames(bad, torso_too=True)
    eyes = np.load(bad / "eyes.npy")
    eyes[N_TRAIN:] = np.random.default_rng(2).uniform(0.01, 0.5, N_TEST).astype(np.float32)
    np.save(bad / "eyes.npy", eyes)
    plate_t, eye_t, blink_t = _fitted(make_cell(bad, tmp_path / "test_changed" / "cell"))
    assert np.array_equal(plate_t, plate), "the plate changed with the test frames: it was fitted on them"
    assert eye_t == eye, f"the eye normalisation changed with the test frames: {eye_t} vs {eye}"
    assert np.array_equal(blink_t[:N_TRAIN], blink[:N_TRAIN])

    # training frames' background brighter -> the plate follows
    brighter = copy_subject(clean, tmp_path / "train_pixels" / "data")
    frames = np.load(brighter / "frames.npy")
    with np.load(brighter / "labels.npz") as z:
        background = z["labels"][:N_TRAIN] == 0
    frames[:N_TRAIN][background] = np.clip(frames[:N_TRAIN][background].astype(int) + 40, 0, 255).astype(np.uint8)
    np.save(brighter / "frames.npy", frames)
    plate_b, eye_b, _ = _fitted(make_cell(brighter, tmp_path / "train_pixels" / "cell"))
    assert np.abs(plate_b.astype(int) - plate).mean() > 10, "the plate ignored a change of the training frames"
    assert eye_b == eye

    # training frames' eyes more open -> the eye normalisation follows
    wider = copy_subject(clean, tmp_path / "train_eyes" / "data")
    eyes = np.load(wider / "eyes.npy")
    eyes[:N_TRAIN] *= 1.5
    np.save(wider / "eyes.npy", eyes)
    plate_e, eye_e, _ = _fitted(make_cell(wider, tmp_path / "train_eyes" / "cell"))
    assert np.array_equal(plate_e, plate)
    assert eye_e["open_median_train"] == pytest.approx(1.5 * eye["open_median_train"], rel=1e-5)
