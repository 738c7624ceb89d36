"""SyncTalk's audio–visual encoder (:mod:`gt_core.encoders.ave`, :mod:`gt_core.preprocess.ave_train`).

* the log-mel front end against a naive per-frame DFT and a loop-by-loop Slaney filterbank; 80 frames a second;
* the per-frame window indexing at the start and the end (the original's shift-back and two-fold end padding);
* a state dict with exactly the original ``AudioEncoder``'s key names and shapes (written out here from its source)
  loads ``strict=True`` through our loader, and through the ``ave`` stage with its checksum verified;
* git-blob SHA-1 verification on files with known blob ids;
* a ``tiny`` AVE trained on the demo subject's 10 s cell beats chance on held-out windows it never trained on;
* leakage: with the test frames' pixels and landmarks replaced by noise, features and weights are bit-identical;
* bad input (missing wav, corrupt weights, wrong checksum, bad preset) → one-line :class:`InputError`.

The demo-cell tests use ``results/demo/10s/cell`` (built by ``snakemake results/demo/10s/cell/cell.json``) and are
skipped with that command when it is missing.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gt_core.encoders import ave
from gt_core.errors import InputError
from gt_core.io.download import GIT_BLOB_SHA1, ModelFile, file_digest, matches
from gt_core.preprocess import ave_train

ROOT = Path(__file__).resolve().parents[1]
DEMO_CELL = ROOT / "results" / "demo" / "10s" / "cell"
torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------------ front end
def naive_reference(wav: np.ndarray) -> np.ndarray:
    """SyncTalk's ``melspectrogram`` written out the slow way: explicit preemphasis, zero-padded centred frames, a
    DFT as a sum over samples, triangular Slaney filters built bin by bin."""
    y = np.array(wav, np.float64)
    y[1:] = y[1:] - 0.97 * np.asarray(wav, np.float64)[:-1]
    padded = np.concatenate([np.zeros(400), y, np.zeros(400)])
    n = np.arange(800)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / 800)  # periodic Hann
    dft = np.exp(-2j * np.pi * np.outer(np.arange(401), n) / 800)  # [401, 800]
    n_frames = 1 + len(y) // 200
    mag = np.stack([np.abs(dft @ (padded[t * 200:t * 200 + 800] * window)) for t in range(n_frames)], axis=1)

    def mel(f):  # Slaney: 3 mels per 200 Hz below 1 kHz, 27 mels per factor 6.4 above
        return f / (200 / 3) if f < 1000 else 15 + 27 * np.log(f / 1000) / np.log(6.4)

    def hz(m):
        return m * 200 / 3 if m < 15 else 1000 * 6.4 ** ((m - 15) / 27)

    edges = [hz(mel(55) + k * (mel(7600) - mel(55)) / 81) for k in range(82)]
    bank = np.zeros((80, 401))
    for i in range(80):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        for b in range(401):
            f = b * 8000 / 400
            tri = min((f - lo) / (mid - lo), (hi - f) / (hi - mid))
            bank[i, b] = max(0.0, tri) * 2 / (hi - lo)
    db = 20 * np.log10(np.maximum(1e-5, bank @ mag)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def test_mel_front_end_matches_naive_reference():
    rng = np.random.default_rng(0)
    t = np.arange(int(0.3 * 16000)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(len(t)))
    mel = ave.melspectrogram(wav.astype(np.float32))
    ref = naive_reference(wav.astype(np.float32))
    assert mel.shape == ref.shape == (80, 1 + len(wav) // 200) and mel.dtype == np.float32
    np.testing.assert_allclose(mel, ref, atol=1e-4)
    assert -4 < mel.min() and mel.max() < 4  # the test signal is inside the clip range (no trivial agreement)


def test_mel_rate_silence_and_scale():
    assert ave.melspectrogram(np.zeros(16000, np.float32)).shape == (80, 81)  # 80 frames a second (+1: centred)
    assert ave.melspectrogram(np.zeros(10 * 16000, np.float32)).shape == (80, 801)
    np.testing.assert_array_equal(ave.melspectrogram(np.zeros(3200, np.float32)), -4.0)  # floor: −120 dB → −4
    assert float(ave.hz_to_mel(1000.0)) == pytest.approx(15.0)
    f = np.array([0.0, 55.0, 999.0, 1000.0, 4000.0, 7600.0])
    np.testing.assert_allclose(ave.mel_to_hz(ave.hz_to_mel(f)), f, atol=1e-9)
    bank = ave.mel_filterbank()
    assert bank.shape == (80, 401) and (bank >= 0).all() and (bank.sum(axis=1) > 0).all()


def test_window_indexing_start_and_end():
    n_mel = 801  # 10 s
    np.testing.assert_array_equal(ave.window_starts(np.arange(6), n_mel), [0, 3, 6, 9, 12, 16])  # int(80 i / 25)
    assert ave.n_windows(n_mel) == int((801 - 16) / 80 * 25) + 2 == 247
    last = ave.n_windows(n_mel) - 1  # starts at int(80·246/25) = 787, past 801 − 16: shifted back to end at 801
    assert ave.window_starts(np.array([245, last]), n_mel).tolist() == [784, 785]
    index = ave.feature_window_index(250, n_mel)
    assert index[:5].tolist() == [0, 0, 0, 1, 2]  # first window's feature three times (the original's +2 padding)
    assert index[-3:].tolist() == [245, 246, 246] and index[246:].tolist() == [244, 245, 246, 246]
    mel = np.random.default_rng(0).standard_normal((80, n_mel)).astype(np.float32)
    win = ave.mel_windows(mel, np.array([1, last]))
    assert win.shape == (2, 1, 80, 16)
    np.testing.assert_array_equal(win[0, 0], mel[:, 3:19])
    np.testing.assert_array_equal(win[1, 0], mel[:, 785:801])


# ---------------------------------------------------------------------------------------------- authors' weights
# The original AudioEncoder (SyncTalk nerf_triplane/network.py), block by block: (cin, cout, kernel).
ORIGINAL_BLOCKS = [(1, 32, 3), (32, 32, 3), (32, 32, 3), (32, 64, 3), (64, 64, 3), (64, 64, 3), (64, 128, 3),
                   (128, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 512, 3), (512, 512, 1)]


def original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The keys and shapes of the authors' ``audio_visual_encoder.pth`` (no ``audio_encoder.`` prefix)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (cin, cout, k) in enumerate(ORIGINAL_BLOCKS):
        state[f"{i}.conv_block.0.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        state[f"{i}.conv_block.0.bias"] = torch.randn(cout, generator=g) * 0.05
        state[f"{i}.conv_block.1.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        state[f"{i}.conv_block.1.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{i}.conv_block.1.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{i}.conv_block.1.running_var"] = 1 + torch.rand(cout, generator=g)
        state[f"{i}.conv_block.1.num_batches_tracked"] = torch.tensor(1000)
    return state


def test_original_layout_loads_strictly(tmp_path):
    state = original_state_dict()
    path = tmp_path / "audio_visual_encoder.pth"
    torch.save(state, path)
    model = ave.load_authors_audio_encoder(path)
    ours = model.audio_encoder.state_dict()
    assert list(ours) == list(state)  # same names, same order
    for k, v in state.items():
        assert torch.equal(ours[k], v), k
    out = model(torch.randn(3, 1, 80, 16))
    assert out.shape == (3, 512) and (out >= 0).all()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == sum(cout * cin * k * k + 3 * cout for cin, cout, k in ORIGINAL_BLOCKS)


def test_git_blob_sha1_known_ids(tmp_path):
    empty, hello = tmp_path / "empty", tmp_path / "hello"
    empty.write_bytes(b"")
    hello.write_bytes(b"hello\n")
    assert file_digest(empty, GIT_BLOB_SHA1) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    assert file_digest(hello, GIT_BLOB_SHA1) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`
    big = tmp_path / "big"
    big.write_bytes(np.random.default_rng(0).bytes(3 << 20))  # several read chunks
    content = big.read_bytes()
    assert file_digest(big, GIT_BLOB_SHA1) == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    assert matches(hello, ModelFile("hello", "", GIT_BLOB_SHA1, "ce013625030ba8dba906f756967f9e9ca394464a"))
    assert not matches(hello, ModelFile("hello", "", "sha1", "ce013625030ba8dba906f756967f9e9ca394464a"))


def test_bad_weights_files_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    wrong = tmp_path / "wrong.pth"
    state = original_state_dict()
    state["12.conv_block.0.weight"] = torch.zeros(256, 512, 1, 1)
    torch.save(state, wrong)
    for path, problem in [(corrupt, "not a readable"), (wrong, "do not match"), (tmp_path / "absent.pth", "missing")]:
        with pytest.raises(InputError) as err:
            ave.load_authors_audio_encoder(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and problem in msg and "download_synctalk_ave" in msg


def test_config_validation():
    with pytest.raises(InputError, match="min_shift"):
        ave_train.AVEConfig(min_shift=2)
    with pytest.raises(InputError, match="unknown AVE preset"):
        ave_train.preset("huge")
    assert set(ave_train.PRESETS) >= {"tiny", "small", "demo", "paper"}


# ------------------------------------------------------------------------------------------------- the demo cell
def copy_cell(dst: Path, corrupt_test: bool = False, wav: bool = True) -> Path:
    """The demo subject's 10 s cell under ``dst`` (cell.json + the data the ``ave`` stage reads)."""
    if not (DEMO_CELL / "cell.json").is_file():
        pytest.skip(f"{DEMO_CELL}/cell.json missing: run `snakemake --cores 1 results/demo/10s/cell/cell.json`")
    meta = json.loads((DEMO_CELL / "cell.json").read_text())
    src = (DEMO_CELL / meta["data_dir"]).resolve()
    data, cell = dst / "data", dst / "10s" / "cell"
    data.mkdir(parents=True)
    cell.mkdir(parents=True)
    shutil.copy(DEMO_CELL / "cell.json", cell / "cell.json")  # data_dir "../../data"
    if wav:
        shutil.copy(src / "audio.wav", data / "audio.wav")
    frames = np.load(src / "frames.npy")
    from gt_core.preprocess.landmarks import Landmarks

    lms = Landmarks.load(src / "landmarks.npz")
    if corrupt_test:
        rng = np.random.default_rng(1)
        test = slice(meta["train"][1], None)  # every frame after the training frames (the test tail included)
        frames[test] = rng.integers(0, 256, frames[test].shape, dtype=np.uint8)
        lms.points[test] = rng.uniform(0, lms.width, lms.points[test].shape).astype(np.float32)
    np.save(data / "frames.npy", frames)
    lms.save(data / "landmarks.npz")
    return cell


def tiny_run(root: Path, corrupt: bool, **overrides) -> tuple[Path, Path]:
    cell = copy_cell(root / "demo", corrupt_test=corrupt)
    out = root / "demo" / "10s" / "ave"
    ave_train.ave_stage(cell, out, "tiny", progress=False, overrides=overrides)
    return cell, out


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The ``tiny`` AVE on (a copy of) the demo cell: (cell dir, out dir)."""
    return tiny_run(tmp_path_factory.mktemp("clean"), corrupt=False)


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """A few training steps on the demo cell and on a copy whose frames after the training frames (the test tail
    included) are noise (pixels and landmarks)."""
    return {name: tiny_run(tmp_path_factory.mktemp(name), corrupt=name == "corrupted", iterations=4)
            for name in ("clean", "corrupted")}


def test_outputs_and_shapes(clean_run):
    cell, out = clean_run
    meta = json.loads((cell / "cell.json").read_text())
    feats = np.load(out / "features.npy")
    assert feats.shape == (meta["n_frames_video"], 512) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert (feats[0] == feats[2]).all() and (feats[-1] == feats[-2]).all()  # the original's end padding
    assert len(np.unique(feats.round(4), axis=0)) > 0.5 * len(feats)  # speech gives other features per frame
    info = json.loads((out / "ave.json").read_text())
    assert info["source"] == "trained in the pipeline" and info["iterations"] == ave_train.PRESETS["tiny"].iterations
    assert info["train_seconds"] > 0 and info["heldout"]["available"]
    state = torch.load(out / "ave.pt", map_location="cpu", weights_only=True)
    encoder = ave.AudioEncoder()
    encoder.audio_encoder.load_state_dict(state["audio_encoder"])  # the authors' file layout
    mel = ave.melspectrogram(np.zeros(16000, np.float32))
    assert encoder.eval()(torch.from_numpy(ave.mel_windows(mel, np.array([0])))).shape == (1, 512)


def test_tiny_ave_beats_chance_on_heldout_windows(clean_run):
    """Held-out windows (the last 20 % of the training frames, after a 5-frame gap) were never trained on. A tiny
    AVE must rank true audio above shifted audio there clearly more often than chance (AUC 0.5)."""
    info = json.loads((clean_run[1] / "ave.json").read_text())
    held = info["heldout"]
    assert held["n_true_pairs"] >= 40 and held["auc_chance"] == 0.5
    assert held["auc"] > 0.6, held
    assert info["windows"]["train_frames"][1] + ave.SYNC_FRAMES <= info["windows"]["heldout_frames"][0]


def test_features_and_weights_ignore_test_pixels(demo_runs):
    (_, clean), (_, bad) = demo_runs["clean"], demo_runs["corrupted"]
    assert np.array_equal(np.load(clean / "features.npy"), np.load(bad / "features.npy"))
    a = torch.load(clean / "ave.pt", map_location="cpu", weights_only=True)
    b = torch.load(bad / "ave.pt", map_location="cpu", weights_only=True)
    for tower in ("audio_encoder", "face_encoder"):
        assert a[tower].keys() == b[tower].keys()
        assert all(torch.equal(a[tower][k], b[tower][k]) for k in a[tower]), tower


def test_authors_weights_through_the_stage(clean_run, tmp_path):
    cell, _ = clean_run
    path = tmp_path / "audio_visual_encoder.pth"
    torch.save(original_state_dict(), path)
    pinned = ModelFile(path.name, "", GIT_BLOB_SHA1, file_digest(path, GIT_BLOB_SHA1))
    info = ave_train.ave_stage(cell, tmp_path / "ave", weights=path, weights_model=pinned, progress=False)
    assert info["source"] == f"authors' checkpoint {pinned.digest}" and info["heldout"]["available"] is False
    assert "no face tower" in info["heldout"]["reason"]
    feats = np.load(tmp_path / "ave" / "features.npy")
    mel = ave.melspectrogram(ave_train.read_wav_16k(cell.parent.parent / "data" / "audio.wav"))
    direct = ave.load_authors_audio_encoder(path)(torch.from_numpy(ave.mel_windows(mel, np.array([0, 7]))))
    np.testing.assert_allclose(feats[[2, 9]], direct.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="checksum mismatch") as err:  # the authors' digest: our file fails it
        ave_train.ave_stage(cell, tmp_path / "ave2", weights=path, progress=False)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_wav_is_a_one_line_error(tmp_path):
    from gt_core.cli import main

    cell = copy_cell(tmp_path / "demo", wav=False)
    with pytest.raises(InputError, match="audio.wav: subject audio missing") as err:
        ave_train.ave_stage(cell, tmp_path / "ave", "tiny", progress=False)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)
    assert main(["ave", "--cell", str(cell), "--out", str(tmp_path / "ave"), "--preset", "tiny"]) == 2


def test_short_cell_trains_on_every_window_and_says_why_no_heldout_score():
    from gt_core.preprocess.ave_train import preset, split_windows

    cfg = preset("tiny")
    short, long_ = split_windows(50, cfg), split_windows(250, cfg)
    assert len(short.heldout) == 0 and "too few to hold windows out" in short.why and len(short.train) == 46
    assert len(long_.heldout) > 0 and long_.why == "" and long_.train[-1] + 5 < long_.heldout[0]  # a gap between
    with pytest.raises(InputError, match="too few for the AVE's split"):
        split_windows(15, cfg)
