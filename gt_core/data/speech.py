"""English text-to-speech with espeak-ng, loaded through ``ctypes`` from the ``espeakng-loader`` wheel.

No system package is needed: the wheel ships ``libespeak-ng.so`` and its voice data. Every call loads a
private copy of the library afresh, initialises it in synchronous mode with phoneme events on, and unloads it
afterwards, under a lock: espeak-ng is not re-entrant and keeps synthesis state in static variables, so this is
what makes the output depend on the arguments only. :func:`synthesize` returns the audio as float32 together
with the phoneme and word events (times in seconds from the start of the clip), which drive the visemes.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass, field

import numpy as np

# espeak-ng constants (speak_lib.h)
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
CHARS_AUTO = 0
ENDPAUSE = 0x1000
POS_CHARACTER = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
PARAM_RATE = 1  # words per minute
PARAM_PITCH = 3  # base pitch 0-100


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``: fields in the order of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the synthesis call
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class SpeechClip:
    """One synthesised utterance."""

    audio: np.ndarray  # [T] float32 in [-1, 1]
    sample_rate: int  # Hz (22,050 for espeak-ng)
    phonemes: list[tuple[float, str]] = field(default_factory=list)  # (onset seconds, espeak mnemonic)
    words: list[tuple[float, str]] = field(default_factory=list)  # (onset seconds, word text)

    @property
    def duration(self) -> float:
        return len(self.audio) / float(self.sample_rate)


def _private_library_path() -> str:
    """A private copy of ``libespeak-ng.so`` (made once per process) that this module loads and unloads.

    espeak-ng keeps synthesis state in static variables (pitch-flutter phase, gain control, voice-quality cycle
    counters) that neither ``espeak_Terminate`` nor ``espeak_Initialize`` reset, so the same text would come out
    slightly differently depending on what was spoken before. Loading the library afresh for every call makes
    :func:`synthesize` a pure function of its arguments; a private copy keeps other users of the wheel's library
    in this process unaffected by the unloading.
    """
    global _LIB_COPY
    if _LIB_COPY is None:
        import atexit
        import shutil
        import tempfile

        import espeakng_loader

        folder = tempfile.mkdtemp(prefix="gt_core_espeak_")
        atexit.register(shutil.rmtree, folder, True)
        _LIB_COPY = os.path.join(folder, "libespeak-ng-private.so")
        shutil.copyfile(str(espeakng_loader.get_library_path()), _LIB_COPY)
    return _LIB_COPY


class _Engine:
    """One freshly loaded espeak-ng instance: initialised, used for one utterance, then unloaded."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(_private_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        self.lib.espeak_SetSynthCallback.restype = None
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetParameter.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        self.lib.espeak_Synth.restype = ctypes.c_int
        self.lib.espeak_Terminate.restype = ctypes.c_int
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_ng_SetRandSeed.restype = None
        data_path = str(espeakng_loader.get_data_path()).encode()
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            self.close()
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with data path {data_path!r}")
        self.sample_rate = int(rate)
        # espeak_Initialize seeds the generator of the breath noise (voices such as en-us+f3) with time(NULL), so the
        # same text sounded different from one second to the next; a fixed seed makes the samples a function of the
        # arguments alone.
        self.lib.espeak_ng_SetRandSeed(RAND_SEED)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, str]] = []  # (type, audio_position ms, text)
        self._text = b""
        self._callback = _SYNTH_CALLBACK(self._on_synth)  # must outlive the synthesis call
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        """Terminate espeak-ng and unload the library (its static state goes with it)."""
        import _ctypes

        if self.lib is None:
            return
        try:
            self.lib.espeak_Terminate()
        finally:
            handle = self.lib._handle
            self.lib = None
            _ctypes.dlclose(handle)

    def _on_synth(self, wav, n_samples, events) -> int:
        if n_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                raw = bytes(ev.id.string).split(b"\0", 1)[0]
                self._events.append((EVENT_PHONEME, ev.audio_position, raw.decode("ascii", "replace")))
            elif ev.type == EVENT_WORD:
                start = max(ev.text_position - 1, 0)  # espeak counts text positions from 1
                word = self._text[start:start + ev.length].decode("utf-8", "replace")
                self._events.append((EVENT_WORD, ev.audio_position, word))
            i += 1
        return 0  # continue synthesis

    def synthesize(self, text: str, voice: str, rate_wpm: int, pitch: int) -> SpeechClip:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(PARAM_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
        self._chunks, self._events = [], []
        self._text = text.encode("utf-8")
        buf = ctypes.create_string_buffer(self._text)
        err = self.lib.espeak_Synth(buf, len(self._text) + 1, 0, POS_CHARACTER, 0, CHARS_AUTO | ENDPAUSE, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error {err} on {text!r}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        audio = pcm.astype(np.float32) / 32768.0
        phonemes = [(ms / 1000.0, s) for kind, ms, s in self._events if kind == EVENT_PHONEME]
        words = [(ms / 1000.0, s) for kind, ms, s in self._events if kind == EVENT_WORD]
        return SpeechClip(audio=audio, sample_rate=self.sample_rate, phonemes=phonemes, words=words)


RAND_SEED = 1  # espeak-ng's noise generator seed (breath/aspiration), fixed for reproducible speech
_LOCK = threading.Lock()
_LIB_COPY: str | None = None


def synthesize(text: str, voice: str = "en-us", rate_wpm: int = 165, pitch: int = 55) -> SpeechClip:
    """Speak ``text`` with espeak-ng; returns audio at the engine rate (22,050 Hz) plus phoneme/word onsets.

    Thread-safe (calls are serialised) and deterministic: the same arguments give the same samples whatever was
    synthesised before (each call runs on a freshly loaded library, a few ms).
    """
    if not text.strip():
        raise ValueError("synthesize() needs non-empty text")
    with _LOCK:
        engine = _Engine()
        try:
            return engine.synthesize(text, voice, rate_wpm, pitch)
        finally:
            engine.close()


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of ``audio`` [T] float32 from ``rate_in`` to ``rate_out`` Hz (e.g. 22,050 -> 16,000)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate_in == rate_out:
        return audio.astype(np.float32, copy=True)
    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(audio, int(rate_out) // g, int(rate_in) // g).astype(np.float32)
