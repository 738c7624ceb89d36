"""DeepSpeech features: the originals' input layout, the graph interface, time alignment, bad files, the download.

The real graph cannot be fetched offline; ``deepspeech_fake`` writes a graph with the same tensors and a known
affine map, so every number the extractor produces can be predicted here from the originals' recipe.
"""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from gt_core.errors import InputError
from gt_core.io.download import ModelFile, download_model, file_digest
from gt_core.io.video import pcm16, write_wav
from gt_core.preprocess.audio_features import AUDIO_FEATURES, extract_audio_features

from deepspeech_fake import CENTRE_ENERGY, N_CEPSTRUM, N_CONTEXT, write_fake_graph

from gt_core.tensorflow_guard import tensorflow_installed

pytestmark = pytest.mark.skipif(not tensorflow_installed(), reason="TensorFlow is not installed")
pytest.importorskip("python_speech_features")
RATE = 16000


@pytest.fixture(scope="module")
def fake_graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("tf") / "models" / "deepspeech-0_1_0-b90017e8.pb"
    weight, bias = write_fake_graph(path)
    return path, weight, bias


def speech_like(seconds: float, seed: int = 0, burst_at: float | None = None) -> np.ndarray:
    """Quiet noise with 4 Hz amplitude modulation, and optionally one loud 80 ms burst."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.02 * (1.2 + np.sin(2 * np.pi * 4 * t)) * rng.standard_normal(len(t))
    if burst_at is not None:
        audio[(t >= burst_at) & (t < burst_at + 0.08)] *= 25.0
    return np.clip(audio, -0.99, 0.99).astype(np.float32)


def originals_input(audio: np.ndarray) -> np.ndarray:
    """The originals' recipe, written out with loops: MFCC(26) every 2nd frame, ±9 frames of context, standardise."""
    from python_speech_features import mfcc

    cepstra = mfcc(pcm16(audio), samplerate=RATE, numcep=N_CEPSTRUM)[::2]
    rows = []
    for step in range(len(cepstra)):
        row = []
        for k in range(step - N_CONTEXT, step + N_CONTEXT + 1):
            row.extend(cepstra[k] if 0 <= k < len(cepstra) else np.zeros(N_CEPSTRUM))
        rows.append(row)
    rows = np.asarray(rows)
    return (rows - rows.mean()) / rows.std()


def originals_windows(logits: np.ndarray) -> np.ndarray:
    """Zero-pad 8 steps each side and cut windows of 16 at stride 2 (one per 25-fps frame), as the originals do."""
    padded = np.concatenate([np.zeros((8, logits.shape[1])), logits, np.zeros((8, logits.shape[1]))])
    return np.stack([padded[i:i + 16] for i in range(0, len(padded) - 16, 2)])


def test_input_is_the_originals_mfcc_context_layout():
    from gt_core.preprocess.deepspeech import INPUT_DIM, deepspeech_input

    audio = speech_like(1.3)
    got = deepspeech_input(pcm16(audio))
    assert got.shape == (65, INPUT_DIM) and got.dtype == np.float32  # 1.3 s: 129 MFCC frames (10 ms), every 2nd
    np.testing.assert_allclose(got, originals_input(audio), rtol=1e-5, atol=1e-5)


def test_features_through_the_graph_equal_the_originals_windows(tmp_path, fake_graph):
    path, weight, bias = fake_graph
    audio = speech_like(2.0, seed=1)
    write_wav(tmp_path / "a.wav", audio, RATE)
    feats = extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=50, model=path)
    assert feats.shape == (50, 16, 29) == (50, 16, AUDIO_FEATURES["deepspeech"].dim)
    logits = originals_input(audio) @ weight + bias  # [100, 29]: 2 s at 50 Hz
    np.testing.assert_allclose(feats, originals_windows(logits), rtol=1e-4, atol=1e-3)  # TF float32 vs float64


def test_features_are_aligned_to_the_video_frames(tmp_path, fake_graph):
    """A loud burst at 1.00–1.08 s peaks at the centre row of frame 25/26's window (frame i = i / 25 s)."""
    path, _, _ = fake_graph
    write_wav(tmp_path / "a.wav", speech_like(3.0, seed=2, burst_at=1.0), RATE)
    feats = extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=75, model=path)
    centre_energy = feats[:, 8, 0]  # channel 0 = the centre frame's log energy (deepspeech_fake)
    assert int(np.argmax(centre_energy)) in (25, 26)
    far = np.r_[centre_energy[:22], centre_energy[30:]]  # more than 3 frames (0.12 s) away from the burst
    assert centre_energy[25:27].max() > far.max() + 0.3


def test_graph_problems_are_one_line_errors(tmp_path, fake_graph):
    write_wav(tmp_path / "a.wav", speech_like(1.0), RATE)
    missing = tmp_path / "models" / "deepspeech-0_1_0-b90017e8.pb"
    with pytest.raises(InputError, match="not found.*download_deepspeech"):
        extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=25, model=missing)
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"not a graph")
    with pytest.raises(InputError, match="junk.pb: not a TensorFlow graph"):
        extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=25, model=junk)
    other = tmp_path / "deepspeech-0.9.pb"
    write_fake_graph(other, kind="other")
    with pytest.raises(InputError, match="not the DeepSpeech 0.1.0 graph"):
        extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=25, model=other)


def test_default_graph_location_follows_tensorflow_home(monkeypatch, tmp_path):
    from gt_core.preprocess.deepspeech import DEEPSPEECH, deepspeech_graph_path

    monkeypatch.setenv("TENSORFLOW_HOME", str(tmp_path))
    assert deepspeech_graph_path() == tmp_path / "models" / "deepspeech-0_1_0-b90017e8.pb"
    assert DEEPSPEECH.digest.startswith("b90017e8") and DEEPSPEECH.url.endswith(DEEPSPEECH.name + ".zip")
    write_wav(tmp_path / "a.wav", speech_like(1.0), RATE)
    with pytest.raises(InputError, match=str(tmp_path / "models")):  # the error names where it looked
        extract_audio_features(tmp_path / "a.wav", "deepspeech", n_frames=25)


def test_download_unzips_and_verifies_the_digest(tmp_path, fake_graph):
    path, _, _ = fake_graph
    archive = tmp_path / "served" / "graph.pb.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "graph.pb")
    sha1 = file_digest(path, "sha1")
    good = ModelFile("graph.pb", archive.as_uri(), "sha1", sha1, zip_member="graph.pb")
    out = download_model(good, tmp_path / "store" / "graph.pb")
    assert out.read_bytes() == path.read_bytes()
    bad = ModelFile("graph.pb", archive.as_uri(), "sha1", "0" * 40, zip_member="graph.pb")
    with pytest.raises(InputError, match="checksum mismatch"):
        download_model(bad, tmp_path / "store2" / "graph.pb")
    assert not any((tmp_path / "store2").iterdir())  # nothing half-written is left behind
    gone = ModelFile("graph.pb", (tmp_path / "nowhere.zip").as_uri(), "sha1", sha1, zip_member="graph.pb")
    with pytest.raises(InputError, match="download failed.*unzip it and put graph.pb at"):
        download_model(gone, tmp_path / "store3" / "graph.pb")


def test_tensorflow_stays_out_of_pipeline_processes():
    """mediapipe imports all of TensorFlow when it can; next to torch that crashed training (exit 139)."""
    import sys

    import mediapipe  # noqa: F401
    import torch._dynamo  # noqa: F401  (imports triton, where the crash was)

    assert "tensorflow" not in sys.modules
