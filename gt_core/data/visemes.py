"""espeak-ng phoneme mnemonics -> viseme targets -> smooth articulation curves at the video frame rate.

A viseme is described by three numbers:

* ``jaw_open``  in [0, 1]: 0 = lips closed, 1 = wide open (as for "a" in "father"),
* ``lip_width`` in [-1, 1]: spread (+, "ee") or narrowed (-, "oo"),
* ``lip_round`` in [0, 1]: protrusion/rounding ("oo", "w", "sh").

Consonants that do not constrain the lips leave ``lip_width``/``lip_round`` (and "h" even the jaw) unspecified, so
those channels are interpolated from the neighbouring phonemes (coarticulation). The targets become knots of a
piecewise-linear curve on a 1 kHz grid, which is then smoothed with a Gaussian (~40 ms) and sampled at the frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

CHANNELS = ("jaw_open", "lip_width", "lip_round")

# (jaw_open, lip_width, lip_round); None = unspecified, taken from the neighbours.
Target = tuple[float | None, float | None, float | None]

_VOWELS: dict[str, Target] = {
    # open vowels and diphthongs starting open
    "a": (0.85, 0.15, 0.0), "a#": (0.75, 0.1, 0.0), "A:": (0.95, 0.0, 0.0), "A@": (0.85, 0.0, 0.05),
    "A": (0.9, 0.0, 0.0), "aI": (0.8, 0.2, 0.0), "aI@": (0.8, 0.15, 0.0), "aI3": (0.8, 0.15, 0.0),
    "aU": (0.8, -0.1, 0.3), "0": (0.75, -0.2, 0.35), "O:": (0.7, -0.35, 0.6), "O": (0.7, -0.3, 0.5),
    "O@": (0.65, -0.3, 0.5), "OI": (0.65, -0.3, 0.45), "V": (0.65, 0.0, 0.0), "@": (0.45, 0.0, 0.0),
    "@2": (0.4, 0.0, 0.0), "@5": (0.4, -0.1, 0.1), "@L": (0.4, 0.0, 0.0), "3:": (0.45, -0.1, 0.25),
    "3": (0.4, -0.1, 0.2), "a@": (0.8, 0.0, 0.0),
    # mid/close spread vowels
    "E": (0.6, 0.35, 0.0), "e": (0.55, 0.4, 0.0), "e@": (0.6, 0.3, 0.0), "eI": (0.5, 0.5, 0.0),
    "I": (0.35, 0.5, 0.0), "I2": (0.3, 0.45, 0.0), "I#": (0.3, 0.4, 0.0), "i": (0.3, 0.6, 0.0),
    "i:": (0.28, 0.8, 0.0), "i@": (0.4, 0.45, 0.0), "i@3": (0.4, 0.45, 0.0), "IR": (0.35, 0.4, 0.0),
    # rounded vowels
    "U": (0.35, -0.5, 0.7), "u:": (0.28, -0.8, 1.0), "u": (0.3, -0.7, 0.9), "U@": (0.4, -0.5, 0.65),
    "oU": (0.55, -0.55, 0.8), "o@": (0.55, -0.4, 0.6), "o": (0.55, -0.5, 0.7),
}

_CONSONANTS: dict[str, Target] = {
    # bilabials: lips pressed together
    "p": (0.0, None, None), "b": (0.0, None, None), "m": (0.0, None, None),
    # labiodentals: lower lip tucked to the upper teeth
    "f": (0.07, 0.1, 0.0), "v": (0.07, 0.1, 0.0),
    # dentals and alveolars
    "T": (0.15, None, None), "D": (0.15, None, None), "s": (0.1, 0.25, None), "z": (0.1, 0.25, None),
    "t": (0.18, None, None), "d": (0.18, None, None), "t#": (0.2, None, None), "n": (0.18, None, None),
    "l": (0.22, None, None), "n-": (0.18, None, None), "l/": (0.22, None, None), "l#": (0.22, None, None),
    # post-alveolars: rounded, protruded
    "S": (0.15, -0.3, 0.6), "Z": (0.15, -0.3, 0.6), "tS": (0.15, -0.3, 0.6), "dZ": (0.15, -0.3, 0.6),
    # velars and glottals
    "k": (0.25, None, None), "g": (0.25, None, None), "N": (0.22, None, None), "x": (0.25, None, None),
    "h": (None, None, None), "?": (0.15, None, None), "C": (0.25, None, None),
    # approximants
    "r": (0.2, -0.3, 0.4), "r-": (0.2, -0.3, 0.4), "w": (0.1, -0.7, 0.95), "j": (0.15, 0.4, 0.0),
}

_PAUSE: Target = (0.0, 0.0, 0.0)


def normalise_mnemonic(mnemonic: str) -> str:
    """Strip stress (``'``, ``,``) and length (``:`` only where it is a pure length mark) from a mnemonic."""
    s = mnemonic.strip().replace("'", "").replace(",", "")
    return s


def phoneme_target(mnemonic: str) -> Target:
    """Viseme target of one espeak-ng phoneme mnemonic (stress marks ignored; unknown symbols get a guess)."""
    s = normalise_mnemonic(mnemonic)
    if not s or s.startswith("_") or s in ("||", "|"):
        return _PAUSE
    for table in (_VOWELS, _CONSONANTS):
        if s in table:
            return table[s]
        # espeak writes long vowels with ':' ("i:", "u:") but some variants add or drop it
        if s.rstrip(":") in table:
            return table[s.rstrip(":")]
        if s + ":" in table:
            return table[s + ":"]
    # fall back on the first character class: vowel letters open the jaw, everything else is a light consonant
    head = s[0]
    if head in "aAV0@3":
        return (0.65, 0.0, 0.0)
    if head in "eEiI":
        return (0.4, 0.4, 0.0)
    if head in "oOuU":
        return (0.45, -0.5, 0.7)
    if head in "pbm":
        return (0.0, None, None)
    if head == "w":
        return _CONSONANTS["w"]
    return (0.18, None, None)


def is_pause(mnemonic: str) -> bool:
    """True for espeak pause symbols (``_``, ``_:``, ``_!``, ``||``)."""
    s = normalise_mnemonic(mnemonic)
    return (not s) or s.startswith("_") or s in ("||", "|")


@dataclass(frozen=True)
class VisemeCurves:
    """Articulation curves sampled at the video frames (frame ``i`` shows time ``i / fps``)."""

    jaw_open: np.ndarray  # [N] float32 in [0, 1]
    lip_width: np.ndarray  # [N] float32 in [-1, 1]
    lip_round: np.ndarray  # [N] float32 in [0, 1]
    fps: float

    def as_array(self) -> np.ndarray:
        """``[N, 3]`` in the order of :data:`CHANNELS`."""
        return np.stack([self.jaw_open, self.lip_width, self.lip_round], axis=1)


def _knots(phonemes: list[tuple[float, str]], end_time: float) -> list[tuple[float, Target]]:
    """Place target knots inside each phoneme interval (a slight lead: articulation precedes the sound)."""
    knots: list[tuple[float, Target]] = []
    times = [t for t, _ in phonemes] + [end_time]
    lead = 0.015  # s, lips move slightly ahead of the acoustic onset
    for i, (t0, mnem) in enumerate(phonemes):
        t1 = max(times[i + 1], t0)
        dur = t1 - t0
        target = phoneme_target(mnem)
        if dur <= 1e-4:
            continue
        if is_pause(mnem):
            if dur > 0.16:  # long pause: hold the rest pose across it
                knots += [(t0 + 0.07, target), (t1 - 0.07, target)]
            else:
                knots.append((t0 + 0.5 * dur, target))
        elif dur > 0.12:  # long phoneme: hold its target for a while
            knots += [(t0 + 0.3 * dur - lead, target), (t0 + 0.75 * dur - lead, target)]
        else:
            knots.append((t0 + 0.45 * dur - lead, target))
    return knots


def viseme_curves(
    phonemes: list[tuple[float, str]],  # (onset seconds, espeak mnemonic), sorted; pauses included
    duration_s: float,
    fps: float = 25.0,
    smooth_ms: float = 40.0,
) -> VisemeCurves:
    """Curves for ``round(duration_s * fps)`` frames; silence (no phonemes) is the closed rest pose."""
    n_frames = int(round(duration_s * fps))
    grid_rate = 1000.0
    grid = np.arange(int(np.ceil(duration_s * grid_rate)) + 1) / grid_rate  # [G] seconds
    phonemes = sorted(phonemes, key=lambda p: p[0])
    knots = _knots(phonemes, end_time=phonemes[-1][0] + 0.1 if phonemes else 0.0)
    # rest pose at both ends of the timeline
    knots = [(0.0, _PAUSE)] + [k for k in knots if 0.0 < k[0] < duration_s] + [(duration_s, _PAUSE)]
    channels = []
    for c in range(3):
        kt = np.array([t for t, v in knots if v[c] is not None])
        kv = np.array([v[c] for t, v in knots if v[c] is not None])
        order = np.argsort(kt, kind="stable")
        curve = np.interp(grid, kt[order], kv[order])
        curve = gaussian_filter1d(curve, sigma=smooth_ms * 1e-3 * grid_rate, mode="nearest")
        frame_t = np.arange(n_frames) / fps
        channels.append(np.interp(frame_t, grid, curve).astype(np.float32))
    jaw, width, rnd = channels
    return VisemeCurves(
        jaw_open=np.clip(jaw, 0.0, 1.0),
        lip_width=np.clip(width, -1.0, 1.0),
        lip_round=np.clip(rnd, 0.0, 1.0),
        fps=float(fps),
    )
