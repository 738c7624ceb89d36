"""Audio encoders shared by the AD-NeRF family (AD-NeRF → RAD-NeRF → ER-NeRF → GaussianTalker).

* :class:`AudioNet` encodes one 16-step window of audio features ``[16, C]`` into a ``dim_aud``-d code:
  four strided 1-D convolutions over time (C→32→32→64→64, kernel 3, stride 2, padding 1, LeakyReLU 0.02: 16 → 8 →
  4 → 2 → 1 steps) and an MLP 64→64→dim_aud (LeakyReLU 0.02 between).
* :class:`AudioAttNet` smooths the codes of ``seq_len`` neighbouring frames (the 8-frame context at offsets −4…+3):
  1-D convolutions over the context *across* the code channels (dim_aud→16→8→4→2→1, kernel 3, padding 1,
  LeakyReLU 0.02) give one score per context frame, a Linear(seq_len, seq_len) + softmax turns the scores into
  weights, and the output is the weighted sum of the codes.

C is the audio feature's channel count (DeepSpeech 29, our log-mel 32, wakeword 96). Unlike the original, which
runs one frame at a time, both modules are batched over frames.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gt_core.errors import InputError

LEAKY = 0.02
AUDIO_NORMALISATION = ("auto", "standardise", "none")


def standardises_audio(mode: str, audio_feature: str, key: str) -> bool:
    """Whether a method standardises its audio windows with the training frames' per-channel statistics.

    ``auto`` (both originals' behaviour for their feature): DeepSpeech logits are fed raw, every other feature (our
    log-mel in dB, wakeword embeddings, whose scales are unrelated to DeepSpeech's) is standardised. ``key`` names
    the hyper-parameter in the one-line error for an unknown ``mode``.
    """
    if mode not in AUDIO_NORMALISATION:
        raise InputError(key, f"unknown value {mode!r}", f"use one of {', '.join(AUDIO_NORMALISATION)}")
    return mode == "standardise" or (mode == "auto" and audio_feature != "deepspeech")


class AudioNet(nn.Module):
    """``[B, win, C]`` audio windows → ``[B, dim_aud]`` codes (see the module docstring)."""

    def __init__(self, dim_in: int, dim_aud: int = 32, win_size: int = 16):
        super().__init__()
        assert win_size == 16, "the four stride-2 convolutions reduce exactly 16 steps to 1"
        self.dim_in, self.dim_aud, self.win_size = dim_in, dim_aud, win_size
        act = lambda: nn.LeakyReLU(LEAKY)  # noqa: E731
        self.conv = nn.Sequential(
            nn.Conv1d(dim_in, 32, 3, stride=2, padding=1), act(),  # 16 -> 8
            nn.Conv1d(32, 32, 3, stride=2, padding=1), act(),  # 8 -> 4
            nn.Conv1d(32, 64, 3, stride=2, padding=1), act(),  # 4 -> 2
            nn.Conv1d(64, 64, 3, stride=2, padding=1), act(),  # 2 -> 1
        )
        self.fc = nn.Sequential(nn.Linear(64, 64), act(), nn.Linear(64, dim_aud))

    def forward(self, windows: Tensor) -> Tensor:
        assert windows.ndim == 3 and windows.shape[1:] == (self.win_size, self.dim_in), \
            f"audio windows must be [B, {self.win_size}, {self.dim_in}], got {tuple(windows.shape)}"
        x = self.conv(windows.transpose(1, 2))  # [B, 64, 1]
        return self.fc(x.squeeze(-1))  # [B, dim_aud]


class AudioAttNet(nn.Module):
    """``[B, seq_len, dim_aud]`` context codes → ``[B, dim_aud]`` smoothed code (and the ``[B, seq_len]`` weights)."""

    def __init__(self, dim_aud: int = 32, seq_len: int = 8):
        super().__init__()
        self.dim_aud, self.seq_len = dim_aud, seq_len
        act = lambda: nn.LeakyReLU(LEAKY)  # noqa: E731
        chans = [dim_aud, 16, 8, 4, 2, 1]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv1d(cin, cout, 3, stride=1, padding=1), act()]
        self.conv = nn.Sequential(*layers)
        self.att = nn.Linear(seq_len, seq_len)

    def forward(self, codes: Tensor, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        assert codes.ndim == 3 and codes.shape[1:] == (self.seq_len, self.dim_aud), \
            f"codes must be [B, {self.seq_len}, {self.dim_aud}], got {tuple(codes.shape)}"
        scores = self.conv(codes.transpose(1, 2))[:, 0]  # [B, seq_len]
        weights = torch.softmax(self.att(scores), dim=-1)  # [B, seq_len]
        out = (weights[..., None] * codes).sum(dim=1)  # [B, dim_aud]
        return (out, weights) if return_weights else out


class AveAudioNet(nn.Module):
    """SyncTalk's ``AudioNet_ave`` (network.py:120-137): ``[B, 1, C]`` per-frame AVE features (C = 512) →
    ``[B, dim_aud]`` through an MLP C→256→128→dim_aud, LeakyReLU 0.02 between."""

    def __init__(self, dim_in: int = 512, dim_aud: int = 32):
        super().__init__()
        self.dim_in, self.dim_aud = dim_in, dim_aud
        act = lambda: nn.LeakyReLU(LEAKY)  # noqa: E731
        self.fc = nn.Sequential(nn.Linear(dim_in, 256), act(), nn.Linear(256, 128), act(), nn.Linear(128, dim_aud))

    def forward(self, windows: Tensor) -> Tensor:
        assert windows.ndim == 3 and windows.shape[1:] == (1, self.dim_in), \
            f"AVE features must be [B, 1, {self.dim_in}], got {tuple(windows.shape)}"
        return self.fc(windows[:, 0])  # [B, dim_aud]


class AudioEncoder(nn.Module):
    """The full audio path: ``[B, seq_len, win, C]`` context windows → ``[B, dim_aud]``.

    The per-frame net (``net="conv"``: AudioNet on 16-step windows; ``"ave"``: SyncTalk's MLP on one 512-d AVE
    feature per frame, ``win`` = 1) runs on every window of the context, AudioAttNet smooths over the context.
    """

    def __init__(self, dim_in: int, dim_aud: int = 32, seq_len: int = 8, win_size: int = 16, net: str = "conv"):
        super().__init__()
        assert net in ("conv", "ave"), net
        self.net = AudioNet(dim_in, dim_aud, win_size) if net == "conv" else AveAudioNet(dim_in, dim_aud)
        self.att = AudioAttNet(dim_aud, seq_len)

    def forward(self, context: Tensor) -> Tensor:
        assert context.ndim == 4, f"audio context must be [B, seq_len, win, C], got {tuple(context.shape)}"
        b, k = context.shape[:2]
        codes = self.net(context.reshape(b * k, *context.shape[2:])).view(b, k, -1)  # [B, seq_len, dim_aud]
        return self.att(codes)
