"""Video and audio I/O through ffmpeg-python, driving the static ffmpeg binary that `imageio-ffmpeg` ships.

There is no ffprobe in that wheel, so :func:`probe_video` parses the stream header ffmpeg prints on stderr.
Frames are returned as uint8 RGB arrays ``[N, H, W, 3]``; audio as 16 kHz mono.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import ffmpeg
import imageio_ffmpeg
import numpy as np

from gt_core.errors import InputError

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (from ffmpeg's stream header)."""

    path: str
    width: int
    height: int
    fps: float
    duration: float  # seconds (container duration)
    has_audio: bool
    audio_rate: int | None
    n_frames_25fps: int  # frames the 25-fps resampled stream will have: round(duration * 25)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> "VideoInfo":
        return cls(**json.loads(Path(path).read_text()))


def _run(stream, what: str, **kwargs) -> tuple[bytes, bytes]:
    try:
        return stream.run(cmd=FFMPEG, capture_stdout=True, capture_stderr=True, quiet=True, **kwargs)
    except ffmpeg.Error as err:  # pragma: no cover - message path tested through InputError users
        tail = err.stderr.decode(errors="replace").strip().splitlines()[-1:] if err.stderr else ["?"]
        raise InputError(what, f"ffmpeg failed ({tail[0]})", "check the file is a readable video/audio file") from err


def _frame_rate(stream_line: str) -> float | None:
    """The frame rate in ffmpeg's ``Video:`` stream line: its ``fps`` field, else ``tbr``. ffmpeg prints rates of
    1000 and more with a ``k`` suffix (``1k fps``), which a plain number pattern would miss (and then call a
    1000-fps video unreadable instead of naming its frame rate)."""
    for unit in ("fps", "tbr"):
        m = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", stream_line)
        if m:
            return float(m.group(1)) * (1000.0 if m.group(2) else 1.0)
    return None


def probe_video(path: str | Path) -> VideoInfo:
    """Read width, height, fps, duration and the audio stream of ``path`` (raises InputError if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "video file not found", "put the video there or fix `subjects.<name>.video` in the config")
    proc = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    header = proc.stderr
    stream = re.search(r"Stream #\S+.*?: Video: [^\n]*", header)
    size = re.search(r"\b(\d{2,5})x(\d{2,5})\b", stream.group(0)) if stream else None
    rate = _frame_rate(stream.group(0)) if stream else None
    if size is None or rate is None:
        raise InputError(path, "no readable video stream", "re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`")
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header)
    if dur is None:
        raise InputError(path, "container reports no duration", "re-mux it, e.g. `ffmpeg -i in -c copy out.mp4`")
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3))
    audio = re.search(r"Stream #\S+.*?: Audio: [^\n]*?(\d+) Hz", header)
    return VideoInfo(
        path=str(path),
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=rate,
        duration=duration,
        has_audio=audio is not None,
        audio_rate=int(audio.group(1)) if audio else None,
        n_frames_25fps=int(round(duration * 25)),
    )


def read_frames(
    path: str | Path,
    fps: float = 25.0,
    crop: tuple[int, int, int] | None = None,  # (x0, y0, size) square crop in source pixels
    size: int | None = None,  # output side length after the crop (square), None = keep
    max_frames: int | None = None,
    max_side: int | None = None,  # without crop/size: shrink (keeping aspect) so the longer side is at most this
) -> np.ndarray:
    """Decode ``path`` resampled to ``fps`` (optionally square-cropped and resized) as uint8 ``[N, H, W, 3]``."""
    info = probe_video(path)
    stream = ffmpeg.input(str(path)).video.filter("fps", fps=fps, round="near")
    w, h = info.width, info.height
    if crop is not None:
        x0, y0, side = (int(v) for v in crop)
        stream = stream.filter("crop", side, side, x0, y0)
        w = h = side
    if size is not None:
        stream = stream.filter("scale", size, size, flags="area")
        w = h = size
    elif max_side is not None and max(w, h) > max_side:
        factor = max_side / max(w, h)
        w, h = 2 * max(1, round(w * factor / 2)), 2 * max(1, round(h * factor / 2))
        stream = stream.filter("scale", w, h, flags="area")
    kwargs = {"format": "rawvideo", "pix_fmt": "rgb24"}
    if max_frames is not None:
        kwargs["vframes"] = int(max_frames)
    out, _ = _run(stream.output("pipe:", **kwargs), path)
    frames = np.frombuffer(out, np.uint8)
    if frames.size % (w * h * 3):
        raise InputError(path, "decoded byte count is not a whole number of frames", "re-encode the video")
    return frames.reshape(-1, h, w, 3)


def extract_audio(path: str | Path, out_wav: str | Path, rate: int = 16000) -> None:
    """Write the audio of ``path`` as 16-bit mono PCM wav at ``rate`` Hz."""
    info = probe_video(path)
    if not info.has_audio:
        raise InputError(path, "video has no audio track", "use a video with speech (the methods are audio-driven)")
    stream = ffmpeg.input(str(path)).audio.output(str(out_wav), ac=1, ar=rate, acodec="pcm_s16le", f="wav")
    _run(stream.overwrite_output(), path)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM16 wav as float32 mono in [-1, 1] and its sample rate."""
    try:
        with wave.open(str(path), "rb") as wf:
            rate, n_ch, width = wf.getframerate(), wf.getnchannels(), wf.getsampwidth()
            declared = wf.getnframes()
            raw = wf.readframes(declared)
    except (wave.Error, EOFError) as err:
        raise InputError(path, f"corrupt or non-PCM wav ({err})", "re-extract it: delete the file and re-run") from err
    if width != 2:
        raise InputError(path, f"expected 16-bit PCM, got {8 * width}-bit", "convert with ffmpeg -acodec pcm_s16le")
    if len(raw) != declared * n_ch * width:  # the file ends before the data its header declares (cut mid-file)
        held = len(raw) // (n_ch * width)
        raise InputError(path, f"truncated wav: its header declares {declared / rate:.2f} s, the file holds "
                               f"{held / rate:.2f} s", "delete it and re-run the step that wrote it (re-extracts it)")
    audio = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    return audio.reshape(-1, n_ch).mean(axis=1), rate


def pcm16(audio: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] → the int16 sample values :func:`read_wav` read (exact round trip)."""
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> None:
    """Write float audio in [-1, 1] (mono, ``[T]``) as 16-bit PCM wav."""
    assert audio.ndim == 1, audio.shape
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(int(rate))
        wf.writeframes(pcm.tobytes())


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray] | np.ndarray,  # each [H, W, 3] uint8
    fps: float = 25.0,
    audio_wav: str | Path | None = None,
    crf: int = 18,
) -> None:
    """Encode RGB frames to H.264 mp4 (yuv420p), muxing ``audio_wav`` as AAC when given.

    Frames are streamed to ffmpeg's stdin, so a long video never sits in memory twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    video_in = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
    streams = [video_in.video]
    out_kwargs = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf, "r": fps, "movflags": "+faststart"}
    if audio_wav is not None:
        streams.append(ffmpeg.input(str(audio_wav)).audio)
        out_kwargs.update(acodec="aac", audio_bitrate="128k", shortest=None)
    args = ffmpeg.output(*streams, str(path), **out_kwargs).overwrite_output().global_args(
        "-nostats", "-loglevel", "error").compile(cmd=FFMPEG)
    # ffmpeg's messages go to a file, never to a pipe nobody reads while the frames are written: a slow encode (a
    # loaded machine) filled a 64 KiB stderr pipe with progress lines and ffmpeg and this process waited on each other
    with tempfile.TemporaryFile() as log_file:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log_file)
        try:
            proc.stdin.write(np.ascontiguousarray(first, dtype=np.uint8).tobytes())
            for frame in frames:
                assert frame.shape[:2] == (h, w), (frame.shape, (h, w))
                proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        finally:
            proc.stdin.close()
            code = proc.wait()
        if code != 0:
            log_file.seek(0)
            tail = log_file.read().decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise RuntimeError(f"ffmpeg could not write {path} (exit {code}): {tail[0]}")
