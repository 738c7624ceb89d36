"""The built-in demo subject: the generated video must be measurable against its own ground truth.

One short clip is generated for the module (12 s at 512², a few seconds on 2 cores) and checked with the same
landmark detector the pipeline uses: frame/audio lengths, face found, mouth opening vs ``jaw_open``, head rotation
recovered by a rigid fit vs the applied rotation, blinks. Determinism and the train/tail script split are checked
without encoding a video.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from gt_core.data.demo import (
    TAIL_SENTENCES,
    TRAIN_SENTENCES,
    DemoSpec,
    build_script,
    generate_demo,
    load_truth,
    plan_demo,
    prepare_scene,
    render_frame,
)
from gt_core.data.speech import synthesize
from gt_core.data.visemes import phoneme_target, viseme_curves
from gt_core.io.video import extract_audio, probe_video, read_frames, read_wav
from gt_core.preprocess.landmarks import detect_landmarks, eye_openness, mouth_opening

CLIP = DemoSpec(seed=0, duration_s=12.0, size=512)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Generate the short clip once: (video path, truth, frames [N, H, W, 3], landmarks)."""
    out = tmp_path_factory.mktemp("demo")
    video, truth_path = out / "demo.mp4", out / "demo_truth.npz"
    summary = generate_demo(video, truth_path, CLIP, progress=False)
    assert summary["n_frames"] == CLIP.n_frames
    frames = read_frames(video)
    lm = detect_landmarks(frames, video_mode=True)
    return video, load_truth(truth_path), frames, lm


def _stable_points(source_points: np.ndarray) -> list[int]:
    """Upper-face mesh points (above the nose base) away from lips and eyelids: they move only with the head."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    def ids(conns) -> set[int]:
        return set(itertools.chain(*conns))

    eyes = np.array(sorted(ids(fmc.FACEMESH_LEFT_EYE) | ids(fmc.FACEMESH_RIGHT_EYE)))
    excluded = ids(fmc.FACEMESH_LIPS) | set(eyes.tolist())
    pts = source_points[:468]
    eye_h = float(np.linalg.norm(pts[159, :2] - pts[145, :2]))
    dist_eye = np.min(np.linalg.norm(pts[:, None, :2] - pts[None, eyes, :2], axis=2), axis=1)
    return [k for k in range(468) if pts[k, 1] < pts[2, 1] and k not in excluded and dist_eye[k] > 2.5 * eye_h]


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation ``R`` [3, 3] minimising ``|R (a - mean a) - (b - mean b)|`` for point sets ``[P, 3]``."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1.0, 1.0, d]) @ u.T


def _angle_deg(r: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))


# --------------------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------------------

def test_speech_has_audio_and_phoneme_events():
    clip = synthesize("Hello there, how are you today?")
    assert clip.sample_rate == 22050
    assert clip.audio.dtype == np.float32 and 1.0 < clip.duration < 4.0
    assert np.abs(clip.audio).max() > 0.1
    assert len(clip.phonemes) >= 15 and len(clip.words) == 6
    times = [t for t, _ in clip.phonemes]
    assert times == sorted(times) and times[-1] <= clip.duration + 1e-3
    again = synthesize("Hello there, how are you today?")
    np.testing.assert_array_equal(clip.audio, again.audio)  # deterministic


def test_breathy_voice_is_the_same_in_every_process():
    """The demo's voice (en-us+f3) adds breath noise from espeak-ng's generator, which espeak_Initialize seeds with
    time(NULL): two processes started in different seconds must still produce the same samples."""
    import subprocess
    import sys
    import time

    code = ("import hashlib; from gt_core.data.demo import VOICE; from gt_core.data.speech import synthesize; "
            "print(hashlib.sha256(synthesize('The view of the Earth is breathtaking.', voice=VOICE).audio"
            ".tobytes()).hexdigest())")
    digests = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        digests.append(out.stdout.strip())
        time.sleep(1.1)
    assert digests[0] == digests[1] and len(digests[0]) == 64


def test_viseme_targets_and_curves():
    assert phoneme_target("p")[0] == 0.0 and phoneme_target("'A:")[0] > 0.8  # closed vs open
    assert phoneme_target("u:")[2] > 0.8 and phoneme_target("i:")[1] > 0.5  # rounded vs spread
    assert phoneme_target("_:") == (0.0, 0.0, 0.0)
    phonemes = [(0.0, "_"), (0.2, "m"), (0.3, "'A:"), (0.5, "p"), (0.6, "_")]
    curves = viseme_curves(phonemes, duration_s=1.0, fps=25)
    assert curves.jaw_open.shape == (25,)
    assert curves.jaw_open.max() > 0.6 and curves.jaw_open[0] < 0.05 and curves.jaw_open[-1] < 0.05
    assert np.abs(np.diff(curves.jaw_open)).max() < 0.5  # smooth at 25 fps


# --------------------------------------------------------------------------------------------------------------
# script
# --------------------------------------------------------------------------------------------------------------

def test_tail_sentences_differ_from_train_part():
    spec = DemoSpec()
    script = build_script(spec)
    train = [s for s in script.sentences if s.part == "train-part"]
    tail = [s for s in script.sentences if s.part == "tail"]
    assert len(train) >= 3 and len(tail) >= 3
    assert all(s.end <= spec.train_part_s for s in train)
    assert all(s.start >= spec.train_part_s for s in tail)
    assert {s.text for s in train}.isdisjoint({s.text for s in tail})
    assert set(TRAIN_SENTENCES).isdisjoint(TAIL_SENTENCES)
    assert script.sentences[-1].end <= spec.duration_s
    gaps = [b.start - a.end for a, b in zip(script.sentences[:-1], script.sentences[1:])]
    assert min(gaps) >= 0.3 and max(gaps) < 2.5
    assert len(script.audio) == round(spec.duration_s * script.sample_rate)


def test_same_seed_same_output_other_seed_other_script():
    spec = DemoSpec(seed=3, duration_s=8.0, size=256)
    a, b = plan_demo(spec), plan_demo(spec)
    for name in ("jaw_open", "lip_width", "lip_round", "blink", "yaw_deg", "pitch_deg", "roll_deg", "R",
                 "translation_px"):
        np.testing.assert_array_equal(getattr(a.truth, name), getattr(b.truth, name), err_msg=name)
    assert a.truth.sentences == b.truth.sentences
    scene = prepare_scene(spec.size)
    for i in (0, spec.n_frames - 1):
        np.testing.assert_array_equal(render_frame(scene, a.truth, i), render_frame(scene, b.truth, i))
    other = plan_demo(DemoSpec(seed=4, duration_s=8.0, size=256))
    assert [s["text"] for s in other.truth.sentences] != [s["text"] for s in a.truth.sentences]
    assert not np.allclose(other.truth.yaw_deg, a.truth.yaw_deg)


# --------------------------------------------------------------------------------------------------------------
# the generated clip, measured
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_clip_lengths_and_audio(clip, tmp_path):
    video, truth, frames, _ = clip
    assert frames.shape == (CLIP.n_frames, CLIP.size, CLIP.size, 3)
    assert truth.n_frames == CLIP.n_frames and truth.R.shape == (CLIP.n_frames, 3, 3)
    info = probe_video(video)
    assert info.has_audio and info.fps == 25.0
    extract_audio(video, tmp_path / "a.wav")
    audio, rate = read_wav(tmp_path / "a.wav")
    assert abs(len(audio) / rate - CLIP.n_frames / CLIP.fps) <= 0.04
    assert np.abs(audio).max() > 0.05


@pytest.mark.slow
def test_face_found_on_every_frame(clip):
    _, _, _, lm = clip
    assert lm.found_fraction >= 0.95


@pytest.mark.slow
def test_mouth_opening_follows_jaw(clip):
    _, truth, _, lm = clip
    r = np.corrcoef(mouth_opening(lm.interpolated()), truth.jaw_open)[0, 1]
    assert r >= 0.8, r


@pytest.mark.slow
def test_head_rotation_recovered_by_rigid_fit(clip):
    _, truth, _, lm = clip
    pts = lm.interpolated().astype(np.float64)
    stable = _stable_points(truth.source_points)
    errors = [
        _angle_deg(_kabsch(pts[0, stable], pts[i, stable]).T @ (truth.R[i] @ truth.R[0].T))
        for i in range(truth.n_frames)
    ]
    applied = [_angle_deg(truth.R[i] @ truth.R[0].T) for i in range(truth.n_frames)]
    assert np.mean(applied) > 1.5  # the head really moves
    assert np.mean(errors) <= 2.0, np.mean(errors)


@pytest.mark.slow
def test_blinks_visible(clip):
    _, truth, _, lm = clip
    assert truth.blink.max() > 0.8
    r = np.corrcoef(eye_openness(lm.interpolated()), -truth.blink)[0, 1]
    assert r >= 0.6, r
