"""SyncTalk's audio–visual encoder (AVE): the log-mel front end, the per-frame mel windows, the audio tower with the
original's layout, and a small SyncNet-style face tower to train it against.

What SyncTalk does (``nerf_triplane/utils.py`` ``melspectrogram``/``AudDataset``, ``provider.py``, ``network.py``
``AudioEncoder``): 16 kHz audio → preemphasis 0.97 → librosa's centred STFT (n_fft 800, hop 200, Hann window 800) →
magnitude → 80-band Slaney mel filterbank (55–7600 Hz, Slaney area normalisation) → 20·log10(max(1e-5, ·)) − 20 dB
→ clip(8·(S + 100)/100 − 4, −4, 4). That is 80 mel frames a second. Video frame i gets the 16 mel frames (0.2 s)
starting at ``int(80·i/25)``, shifted back to end at the last mel frame where they would run past it; there are
``int((n_mel − 16)/80·25) + 2`` such windows. Each window goes through the audio tower (a SyncNet audio encoder:
13 conv+BN(+residual)+ReLU blocks, ``[1, 80, 16]`` → 512) and the first/last output is repeated twice at the ends,
so the window of feature j starts at video frame j − 2 and covers frames j − 2 … j + 2, i.e. it is centred on j.

Here (our code, same arithmetic):

- :func:`melspectrogram` is the front end in numpy/scipy (librosa is not a dependency of this project): a framed
  real FFT with the periodic Hann window and the Slaney mel filterbank written out from their definitions, tested
  against a naive per-frame DFT. Padding for the centred STFT is ``constant`` (zeros), the default of librosa ≥ 0.10,
  which SyncTalk's unpinned ``librosa`` requirement installs; ``pad_mode="reflect"`` gives librosa < 0.10's (and
  Wav2Lip's) behaviour. The filterbank and STFT are computed in float64 (librosa keeps the filterbank in float32);
  the difference is below 1e-5 dB.
- :class:`AudioEncoder` has the original's module tree and parameter names (``audio_encoder.{k}.conv_block.{0,1}``),
  so the authors' ``audio_visual_encoder.pth`` (keys without the ``audio_encoder.`` prefix, which their loader and
  :func:`load_authors_audio_encoder` add) loads with ``strict=True``.
- :class:`FaceEncoder` is *not* SyncTalk's (whose face tower was never released): a SyncNet-colour-style tower
  (Wav2Lip's ``SyncNet_color``: 5 consecutive lower-half faces stacked as 15 channels → 512, ReLU'd) but for our
  small crops (default 24×48 instead of 48×96) and about half the depth, so it trains on a CPU in the time budget.
- :func:`mouth_crops` cuts the lower half of the face-mesh bounding box of every frame (Wav2Lip feeds the lower half
  of its face-detector box), resized to a fixed size with one affine warp per frame.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import get_window, lfilter
from torch import Tensor, nn

from gt_core.errors import InputError
from gt_core.io.download import GIT_BLOB_SHA1, ModelFile

SAMPLE_RATE = 16000
PREEMPHASIS = 0.97
N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55.0, 7600.0
MIN_LEVEL = 1e-5  # amplitude floor before dB (the original's exp(-5 ln 10))
REF_DB = 20.0
MAX_ABS = 4.0  # normalised range [-4, 4]
MIN_DB = -100.0
MEL_RATE = SAMPLE_RATE // HOP  # 80 mel frames per second
MEL_WINDOW = 16  # mel frames per video frame (0.2 s)
FPS = 25
END_PAD = 2  # the original repeats the first/last window's feature twice
FEATURE_DIM = 512
SYNC_FRAMES = 5  # video frames of one face window (0.2 s, the length of a mel window)


# ------------------------------------------------------------------------------------------------------ front end
def preemphasis(wav: np.ndarray, k: float = PREEMPHASIS) -> np.ndarray:
    """y[t] = x[t] − k·x[t−1] (y[0] = x[0]), float64."""
    return lfilter([1.0, -k], [1.0], np.asarray(wav, np.float64))


def stft_magnitude(y: np.ndarray, n_fft: int = N_FFT, hop: int = HOP, pad_mode: str = "constant",
                   chunk: int = 4096) -> np.ndarray:
    """|STFT| ``[n_fft//2 + 1, 1 + len(y)//hop]`` of a centred STFT (``n_fft//2`` padding each side), periodic Hann
    window of ``n_fft`` samples (win_length = n_fft), as ``librosa.stft(center=True)``."""
    assert y.ndim == 1, y.shape
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(f"pad_mode must be 'constant' or 'reflect', not {pad_mode!r}")
    padded = np.pad(y, n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # [T, n_fft], a view
    window = get_window("hann", n_fft, fftbins=True)
    out = np.empty((n_fft // 2 + 1, len(frames)), np.float64)
    for s in range(0, len(frames), chunk):  # bounded memory on long videos
        out[:, s:s + chunk] = np.abs(np.fft.rfft(frames[s:s + chunk] * window, axis=1)).T
    return out


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz (3 mels / 200 Hz), logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    lin = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, lin)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float = FMAX) -> np.ndarray:
    """``[n_mels, n_fft//2 + 1]`` triangular filters equally spaced in Slaney mels, each scaled to unit area
    (``norm="slaney"``: 2 / bandwidth in Hz), as ``librosa.filters.mel`` with its defaults."""
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # [n_mels + 2]
    width = np.diff(edges)
    rise = (fft_hz[None] - edges[:-2, None]) / width[:-1, None]
    fall = (edges[2:, None] - fft_hz[None]) / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rise, fall))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_MEL_BASIS: np.ndarray | None = None


def melspectrogram(wav: np.ndarray, pad_mode: str = "constant") -> np.ndarray:
    """16 kHz mono audio ``[T]`` → normalised log-mel ``[80, 1 + T//200]`` float32 in [−4, 4] (SyncTalk's)."""
    global _MEL_BASIS
    if _MEL_BASIS is None:
        _MEL_BASIS = mel_filterbank()
    mag = stft_magnitude(preemphasis(wav), pad_mode=pad_mode)
    db = 20.0 * np.log10(np.maximum(MIN_LEVEL, _MEL_BASIS @ mag)) - REF_DB
    return np.clip(2 * MAX_ABS * (db - MIN_DB) / -MIN_DB - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


# -------------------------------------------------------------------------------------------------------- windows
def n_windows(n_mel: int) -> int:
    """How many per-frame windows the original cuts from ``n_mel`` mel frames (``AudDataset.data_len``)."""
    if n_mel < MEL_WINDOW:
        raise ValueError(f"{n_mel} mel frames hold no {MEL_WINDOW}-frame window")
    return int((n_mel - MEL_WINDOW) / float(MEL_RATE) * float(FPS)) + 2


def window_starts(frames: np.ndarray, n_mel: int) -> np.ndarray:
    """First mel frame of video frame i's window: ``int(80·i/25)``, shifted back so it ends at ``n_mel`` at the
    latest (``crop_audio_window``). ``frames [N]`` int → ``[N]`` int64."""
    frames = np.asarray(frames)
    start = np.array([int(float(MEL_RATE) * (int(i) / float(FPS))) for i in frames.reshape(-1)], np.int64)
    return np.minimum(start, n_mel - MEL_WINDOW).reshape(frames.shape)


def mel_windows(mel: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """``mel [80, T]`` → the windows of video frames ``frames [N]``: ``[N, 1, 80, 16]`` float32 (the tower's input)."""
    assert mel.ndim == 2 and mel.shape[0] == N_MELS, mel.shape
    starts = window_starts(frames, mel.shape[1])
    idx = starts[:, None] + np.arange(MEL_WINDOW)[None]
    return np.ascontiguousarray(np.transpose(mel[:, idx], (1, 0, 2))[:, None], np.float32)


def feature_window_index(n_frames: int, n_mel: int) -> np.ndarray:
    """``[n_frames]``: which window's output is video frame j's feature — window j − 2, clamped to the first/last
    window (the original's two-fold repetition at both ends; beyond its ``n_windows + 4`` features the last one
    keeps repeating, so any video length gets one feature per frame)."""
    return np.clip(np.arange(n_frames) - END_PAD, 0, n_windows(n_mel) - 1)


# --------------------------------------------------------------------------------------------------------- towers
class ConvBlock(nn.Module):
    """conv → BN (+ input) → ReLU; the original's ``Conv2d`` block (parameter names ``conv_block.0``/``.1``)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


# (cin, cout, kernel, stride, padding, residual) of the original AudioEncoder, block by block
AUDIO_LAYOUT: tuple[tuple, ...] = (
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),  # 80×16
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),  # 27×16
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),  # 9×6
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),  # 3×3
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),  # 1×1
)


class AudioEncoder(nn.Module):
    """SyncTalk's AVE audio tower: ``mel [B, 1, 80, 16]`` → ``[B, 512]`` (non-negative: the last block's ReLU)."""

    def __init__(self):
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in AUDIO_LAYOUT))

    def forward(self, mel: Tensor) -> Tensor:
        assert mel.ndim == 4 and mel.shape[1:] == (1, N_MELS, MEL_WINDOW), mel.shape
        return self.audio_encoder(mel).flatten(1)  # [B, 512]


def face_layout(crop_hw: tuple[int, int]) -> tuple[tuple, ...]:
    """The face tower's blocks for ``crop_hw`` (H, W) crops: three stride-2 stages, then a conv over what is left."""
    h, w = crop_hw
    for _ in range(3):
        h, w = (h + 1) // 2, (w + 1) // 2
    return (
        (3 * SYNC_FRAMES, 32, 5, 1, 2, False),
        (32, 64, 3, 2, 1, False), (64, 64, 3, 1, 1, True),
        (64, 128, 3, 2, 1, False), (128, 128, 3, 1, 1, True),
        (128, 256, 3, 2, 1, False), (256, 256, 3, 1, 1, True),
        (256, 512, (h, w), 1, 0, False), (512, 512, 1, 1, 0, False),
    )


class FaceEncoder(nn.Module):
    """Face tower: ``faces [B, 15, H, W]`` (5 lower-half faces, RGB in [0, 1], frame-major) → ``[B, 512]``."""

    def __init__(self, crop_hw: tuple[int, int] = (24, 48)):
        super().__init__()
        self.crop_hw = tuple(crop_hw)
        self.face_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in face_layout(self.crop_hw)))

    def forward(self, faces: Tensor) -> Tensor:
        assert faces.ndim == 4 and faces.shape[1:] == (3 * SYNC_FRAMES, *self.crop_hw), faces.shape
        return self.face_encoder(faces).flatten(1)  # [B, 512]


class SyncNet(nn.Module):
    """Both towers; :meth:`forward` is SyncNet's in-sync probability, the cosine of the L2-normalised embeddings
    (in [0, 1], both being non-negative after their ReLU)."""

    def __init__(self, crop_hw: tuple[int, int] = (24, 48)):
        super().__init__()
        self.audio = AudioEncoder()
        self.face = FaceEncoder(crop_hw)

    def forward(self, mel: Tensor, faces: Tensor) -> Tensor:  # [B, 1, 80, 16], [B, 15, H, W] -> [B]
        a = F.normalize(self.audio(mel), dim=1)
        v = F.normalize(self.face(faces), dim=1)
        return (a * v).sum(dim=1).clamp(1e-6, 1 - 1e-6)


# ---------------------------------------------------------------------------------------------------- mouth crops
def mouth_crops(frames: np.ndarray, landmarks: np.ndarray, crop_hw: tuple[int, int] = (24, 48),
                pad: int = 0) -> np.ndarray:
    """Lower half of each frame's face-mesh box (468 points), warped to ``crop_hw``: ``frames [N, H, W, 3]`` uint8,
    ``landmarks [N, 478, 3]`` pixels → ``[N, 3, h + 2·pad, w + 2·pad]`` float32 in [0, 1] (``pad`` output pixels of
    context on each side, for random-shift augmentation; the centre ``[pad:pad + h, pad:pad + w]`` is the box)."""
    import cv2

    assert frames.ndim == 4 and frames.shape[-1] == 3, frames.shape
    assert landmarks.ndim == 3 and landmarks.shape[0] == len(frames) and landmarks.shape[1] >= 468, landmarks.shape
    h, w = crop_hw
    pts = landmarks[:, :468, :2].astype(np.float64)
    if not np.isfinite(pts).all():
        raise ValueError("landmarks hold NaN: pass Landmarks.interpolated() points")
    x0, y0 = pts[..., 0].min(1), pts[..., 1].min(1)
    x1, y1 = pts[..., 0].max(1), pts[..., 1].max(1)
    top = 0.5 * (y0 + y1)
    out = np.empty((len(frames), 3, h + 2 * pad, w + 2 * pad), np.float32)
    for i in range(len(frames)):
        sx, sy = w / max(x1[i] - x0[i], 1.0), h / max(y1[i] - top[i], 1.0)
        affine = np.array([[sx, 0.0, pad - sx * x0[i]], [0.0, sy, pad - sy * top[i]]])
        crop = cv2.warpAffine(np.asarray(frames[i]), affine, (w + 2 * pad, h + 2 * pad), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)
        out[i] = crop.transpose(2, 0, 1) / np.float32(255.0)
    return out


def face_windows(crops: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``crops [N, 3, h, w]``, window starts ``[B]`` (indices into crops) → ``[B, 15, h, w]`` (frames i … i+4)."""
    idx = np.asarray(starts)[:, None] + np.arange(SYNC_FRAMES)[None]
    win = crops[idx]  # [B, 5, 3, h, w]
    return win.reshape(len(idx), 3 * SYNC_FRAMES, *crops.shape[2:])


# ----------------------------------------------------------------------------------------------- authors' weights
# The authors' audio tower, committed to their repository: pinned by its git blob SHA-1 (`git ls-tree -r HEAD`).
SYNCTALK_AVE = ModelFile(
    name="audio_visual_encoder.pth",
    url="https://github.com/ZiqiaoPeng/SyncTalk/raw/main/nerf_triplane/checkpoints/audio_visual_encoder.pth",
    algo=GIT_BLOB_SHA1,
    digest="9fe9b655c3f952f26f0353a468ab33ff78c0bdf3",
)


def synctalk_ave_path() -> Path:
    """Where the ``download_synctalk_ave`` rule puts the authors' file (relative to the workflow's directory)."""
    return Path("resources") / "weights" / "synctalk" / SYNCTALK_AVE.name


def load_authors_audio_encoder(path: str | Path) -> AudioEncoder:
    """The authors' ``audio_visual_encoder.pth`` (a state dict of the audio tower's ``Sequential``, keys such as
    ``0.conv_block.0.weight``) as an :class:`AudioEncoder`, loaded with ``strict=True`` after adding the
    ``audio_encoder.`` prefix, exactly as SyncTalk's ``provider.py`` does."""
    path = Path(path)
    fix = "delete it and re-run `snakemake download_synctalk_ave` (or `gt-core download-weights --model synctalk-ave`)"
    if not path.is_file():
        raise InputError(path, "AVE weights file missing", fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise InputError(path, f"not a readable torch state dict ({type(err).__name__})", fix) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(path, "not a state dict of tensors", fix)
    state = {k if k.startswith("audio_encoder.") else f"audio_encoder.{k}": v for k, v in state.items()}
    model = AudioEncoder()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[1:2] or [str(err)[:200]]
        raise InputError(path, f"keys/shapes do not match SyncTalk's AudioEncoder ({first[0].strip()[:160]})",
                         fix) from err
    return model.eval()
