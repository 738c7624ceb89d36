"""Audio feature windows: shape, alignment, registry, offline extractors."""
import numpy as np
import pytest

from gt_core.errors import InputError
from gt_core.io.video import write_wav
from gt_core.preprocess.audio_features import AUDIO_FEATURES, extract_audio_features, frame_windows, log_mel


def test_frame_windows_are_centred_and_zero_padded():
    seq = np.arange(100, dtype=np.float32)[:, None]  # 2 s at 50 Hz, value = step index
    win = frame_windows(seq, n_frames=50)
    assert win.shape == (50, 16, 1)
    assert win[10, 8, 0] == 20  # frame 10 (0.4 s) sits on step 20 at window position 8
    assert (win[0, :8, 0] == 0).all() and win[0, 8, 0] == 0 and win[0, 9, 0] == 1
    assert (win[49, 12:, 0] == 0).all()  # past the end: zeros


def test_mel_responds_to_a_tone_at_its_time():
    t = np.arange(32000) / 16000
    audio = np.where((t > 0.5) & (t < 1.0), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
    mel = log_mel(audio)
    assert mel.shape == (100, 32)
    energy = mel.max(axis=1)
    assert energy[35:45].min() > energy[:15].max() + 0.5  # loud where the tone is


@pytest.mark.parametrize("name", ["mel", "wakeword"])
def test_extractors_give_frame_windows(tmp_path, name):
    rng = np.random.default_rng(0)
    write_wav(tmp_path / "a.wav", 0.1 * rng.standard_normal(16000 * 2).astype(np.float32), 16000)
    feats = extract_audio_features(tmp_path / "a.wav", name, n_frames=50)
    assert feats.shape == (50, 16, AUDIO_FEATURES[name].dim) and np.isfinite(feats).all()


def test_unimplemented_extractors_name_the_offline_choices(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="hubert: this extractor.*not implemented.*deepspeech"):
        extract_audio_features(tmp_path / "a.wav", "hubert", n_frames=25)
    with pytest.raises(InputError, match="unknown"):
        extract_audio_features(tmp_path / "a.wav", "mfcc", n_frames=25)
