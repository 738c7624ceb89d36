"""Per-subject preprocessing stages: each reads files and writes files, one Snakemake rule each.

Layout of a subject's data directory ``results/{subject}/data/`` (all frame arrays share the 25-fps clock):

==================  ==========================================================================================
``probe.json``      container facts (:class:`gt_core.io.video.VideoInfo`), validated against the split's needs
``crop.json``       the fixed square head crop (source pixels) used for every frame
``frames.npy``      uint8 ``[N, R, R, 3]`` cropped, resized RGB frames (memory-mappable)
``audio.wav``       16 kHz mono PCM, exactly ``N / 25`` seconds
``landmarks.npz``   face-mesh points ``[N, 478, 3]`` (pixels of the R×R frame) + ``found [N]``
``eyes.npy``        float32 ``[N]`` raw eye openness (lid gap / eye width); cells normalise it on train frames
``pose.npz``        head pose per frame + intrinsics + canonical shape; ``transforms.json`` (NeRF/3DGS convention)
``labels.npz``      uint8 ``[N, R, R]`` parsing: 0 background, 1 torso + neck, 2 head
``audio_{kind}.npy``  float32 ``[N, 16, C]`` audio windows
==================  ==========================================================================================
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from gt_core.errors import InputError
from gt_core.io.atomic import atomic_path, save_json, save_npy
from gt_core.io.video import VideoInfo, extract_audio, probe_video, read_frames, read_wav, write_wav
from gt_core.preprocess.landmarks import Landmarks, detect_landmarks, eye_openness

log = logging.getLogger(__name__)
AUDIO_RATE = 16000
FPS_RANGE = (5.0, 120.0)  # frame rates a talking-head video plausibly has (the frames are resampled to 25 fps)
# The audio may end this much before the video (encoder padding: a few ms on every file seen here); more would be
# padded with silence under frames whose speech is lost, and the test tail is the end of the video.
MAX_AUDIO_SHORTFALL_S = 0.2


def probe_stage(video: str | Path, out_json: str | Path, required_seconds: float, fps: int = 25) -> VideoInfo:
    """Probe ``video`` and check it can feed the split: has audio, long enough, a sane frame rate."""
    info = probe_video(video)
    if not info.has_audio:
        raise InputError(video, "video has no audio track", "use a video with the subject's speech (methods are audio-driven)")
    if info.duration + 0.5 / fps < required_seconds:
        raise InputError(video, f"video is {info.duration:.2f} s long but the split needs {required_seconds:.2f} s "
                                f"(longest training clip + gap + test tail)",
                         "use a longer video, or lower `durations` / `test.seconds` / `test.gap_s` in the config")
    if not FPS_RANGE[0] <= info.fps <= FPS_RANGE[1]:
        raise InputError(video, f"implausible frame rate {info.fps:g} fps (expected {FPS_RANGE[0]:g}–"
                                f"{FPS_RANGE[1]:g}; a broken header, a time-lapse or a slow-motion file?)",
                         "re-encode it at its real rate, e.g. `ffmpeg -i in -r 25 out.mp4`, and check it plays at "
                         "normal speed with its audio in sync")
    info.to_json(out_json)
    log.info("probe %s: %dx%d %.2f fps %.2f s audio=%s Hz", video, info.width, info.height, info.fps,
             info.duration, info.audio_rate)
    return info


def crop_stage(video: str | Path, probe_json: str | Path, out_json: str | Path, resolution: int | None = None) -> None:
    """Detect faces on a subsample of the raw video and fix one square head crop for the whole video."""
    from gt_core.preprocess.crop import crop_box_for_video

    box, lms = crop_box_for_video(video, out_size_hint=resolution)
    box.to_json(out_json)
    log.info("crop %s: %s from %d sampled frames (%.0f%% with a face)", video, box, len(lms), 100 * lms.found_fraction)


def frames_stage(video: str | Path, probe_json: str | Path, crop_json: str | Path, out_npy: str | Path,
                 resolution: int, fps: int = 25) -> np.ndarray:
    """Decode the video at ``fps``, crop the head square, resize to ``resolution``; exactly the probed frame count."""
    from gt_core.preprocess.crop import CropBox

    info = VideoInfo.from_json(probe_json)
    box = CropBox.from_json(crop_json)
    frames = read_frames(video, fps=fps, crop=(box.x0, box.y0, box.size), size=resolution)
    expected = info.n_frames_25fps
    if abs(len(frames) - expected) > 1:
        raise InputError(video, f"decoded {len(frames)} frames at {fps} fps, the container implies {expected}",
                         "re-encode the video with a constant frame rate (ffmpeg -r 25)")
    if len(frames) < expected:  # ffmpeg's fps filter may drop the last partial frame: repeat it
        frames = np.concatenate([frames, frames[-1:]], axis=0)
    frames = frames[:expected]
    save_npy(out_npy, frames)
    return frames


def audio_stage(video: str | Path, probe_json: str | Path, out_wav: str | Path, fps: int = 25) -> None:
    """16 kHz mono wav, padded or trimmed to exactly ``n_frames / fps`` seconds so audio and frames share a clock."""
    info = VideoInfo.from_json(probe_json)
    with atomic_path(out_wav) as tmp:
        extract_audio(video, tmp, rate=AUDIO_RATE)
        audio, rate = read_wav(tmp)
        n = int(round(info.n_frames_25fps / fps * AUDIO_RATE))
        if len(audio) < n - MAX_AUDIO_SHORTFALL_S * AUDIO_RATE:
            raise InputError(video, f"audio track holds {len(audio) / AUDIO_RATE:.2f} s for {n / AUDIO_RATE:.2f} s "
                                    f"of video (truncated or corrupt audio; at most {MAX_AUDIO_SHORTFALL_S:g} s "
                                    "missing is padded with silence)",
                             "re-mux the video with its full audio, or cut the video to the audio's length "
                             "(`ffmpeg -i in -t <seconds> out.mp4`)")
        audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
        write_wav(tmp, audio, AUDIO_RATE)


def landmarks_stage(frames_npy: str | Path, out_npz: str | Path, out_eyes: str | Path, max_missing: int = 0,
                    source: str | Path | None = None) -> Landmarks:
    """Face mesh on every working frame; too many frames without a face is an error naming them."""
    frames = np.load(frames_npy, mmap_mode="r")
    lms = detect_landmarks(np.asarray(frames), video_mode=True, progress=True)
    missing = np.flatnonzero(~lms.found)
    if len(missing) > max_missing:
        shown = ", ".join(f"{i} ({i / 25:.2f} s)" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(source or frames_npy, f"no face found in {len(missing)} of {len(lms)} frames: {shown}",
                         "cut those frames out of the video, or raise `preprocess.max_missing_faces` "
                         "to interpolate landmarks over them")
    with atomic_path(out_npz) as tmp:
        lms.save(tmp)
    eyes = eye_openness(lms.interpolated()).astype(np.float32)
    save_npy(out_eyes, eyes)
    return lms


def pose_stage(landmarks_npz: str | Path, out_npz: str | Path, out_transforms: str | Path,
               canonical_frames: range, out_expression: str | Path | None = None) -> None:
    """Rigid head pose per frame against the canonical shape of the frames every cell trains on; with
    ``out_expression``, also the raw brow/blink measures ``[N, 7]`` in that head frame (the cell normalises them)."""
    from gt_core.preprocess.expression import raw_expression
    from gt_core.preprocess.pose import fit_head_pose

    lms = Landmarks.load(landmarks_npz)
    pose = fit_head_pose(lms, np.arange(canonical_frames.start, min(canonical_frames.stop, len(lms))))
    with atomic_path(out_npz) as tmp:
        pose.save(tmp)
    with atomic_path(out_transforms) as tmp:
        pose.write_transforms_json(tmp)
    if out_expression is not None:
        save_npy(out_expression, raw_expression(lms.interpolated(), pose.canonical, pose.focal, pose.cx, pose.cy))
    log.info("pose: focal %.1f px, mean reprojection error %.2f px", pose.focal, float(np.mean(pose.reproj_error_px)))


def masks_stage(frames_npy: str | Path, landmarks_npz: str | Path, out_npz: str | Path) -> None:
    """Per-frame parsing into background / torso + neck / head."""
    from gt_core.preprocess.masks import save_labels, segment_frames

    frames = np.asarray(np.load(frames_npy, mmap_mode="r"))
    labels = segment_frames(frames, Landmarks.load(landmarks_npz), progress=True)
    with atomic_path(out_npz) as tmp:
        save_labels(tmp, labels)


def audio_features_stage(wav: str | Path, probe_json: str | Path, name: str, out_npy: str | Path,
                         fps: int = 25, model: str | Path | None = None) -> None:
    from gt_core.preprocess.audio_features import extract_audio_features

    info = VideoInfo.from_json(probe_json)
    audio, rate = read_wav(wav)  # a truncated wav is an error here, not silently zero-padded features
    expected = info.n_frames_25fps / fps
    if abs(len(audio) / rate - expected) > 1.0 / fps:
        raise InputError(wav, f"holds {len(audio) / rate:.2f} s of audio, the video's {info.n_frames_25fps} frames "
                              f"need {expected:.2f} s", "delete it and re-run (the audio rule re-extracts it)")
    save_npy(out_npy, extract_audio_features(wav, name, info.n_frames_25fps, fps, model))


# --- head-sync stabiliser (SyncTalk) -----------------------------------------------------------------------------
def stabilise_stage(frames_npy: str | Path, landmarks_npz: str | Path, pose_npz: str | Path, out_npz: str | Path,
                    out_transforms: str | Path, out_stats: str | Path, canonical_frames: int,
                    preset: str = "fast") -> None:
    """SyncTalk's head-sync stabiliser: keypoint tracks + bundle adjustment of the tracker's pose; the 3-D points are
    fitted on the first ``canonical_frames`` frames only (:mod:`gt_core.preprocess.stabilise`)."""
    import torch

    from gt_core.preprocess.pose import HeadPose
    from gt_core.preprocess.stabilise import PRESETS, stabilise_head_pose

    for path in (frames_npy, landmarks_npz, pose_npz):
        if not Path(path).exists():
            raise InputError(path, "input of the stabiliser missing", "run the frames / landmarks / pose rules first")
    if preset not in PRESETS:
        raise InputError("stabilise --preset", f"unknown preset {preset!r}", f"use one of {sorted(PRESETS)}")
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    frames = np.asarray(np.load(frames_npy, mmap_mode="r"))
    lms = Landmarks.load(landmarks_npz)
    pose = HeadPose.load(pose_npz)
    if not len(frames) == len(lms) == len(pose):
        raise InputError(pose_npz, f"{len(frames)} frames, {len(lms)} landmark frames and {len(pose)} poses differ",
                         "delete the subject's data directory and re-run snakemake")
    res = stabilise_head_pose(frames, lms.interpolated().astype(np.float64), pose,
                              min(int(canonical_frames), len(frames)), PRESETS[preset], what=frames_npy)
    with atomic_path(out_npz) as tmp:
        res.pose.save(tmp)
    with atomic_path(out_transforms) as tmp:
        res.pose.write_transforms_json(tmp)
    save_json(out_stats, res.stats)
    s = res.stats
    log.info("stabilise: %d+%d tracks, keypoint error %.3f -> %.3f px, landmark reprojection %.3f -> %.3f px, "
             "rotation jitter %.3f -> %.3f deg/frame, %.1f s", s["canonical_tracks"], s["late_tracks"],
             s["canonical_keypoint_px_init"], s["canonical_keypoint_px_ba"], s["landmark_reprojection_px_before"],
             s["landmark_reprojection_px_after"], s["rotation_jitter_deg_before"], s["rotation_jitter_deg_after"],
             s["seconds"]["total_s"])
# --- end head-sync stabiliser ------------------------------------------------------------------------------------


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


__all__ = [
    "probe_stage", "crop_stage", "frames_stage", "audio_stage", "landmarks_stage", "pose_stage", "masks_stage",
    "audio_features_stage", "save_json",
]
