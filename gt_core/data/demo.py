"""The built-in demo subject: a talking-head video generated from data that the installed packages ship.

The face is a real photo (``skimage.data.astronaut()``, Eileen Collins). Speech is synthesised with espeak-ng
(:mod:`gt_core.data.speech`), its phonemes drive viseme curves (:mod:`gt_core.data.visemes`), and the photo is
animated by warping a 3D face mesh found on it by mediapipe:

* the photo smiles with parted lips, so the rest pose closes them; jaw opening lowers the lower lip and, less,
  the chin and jaw (smooth harmonic weights over the mesh), lip width/rounding scale the mouth region and push
  the lips forward, blinks bring the upper lids down onto the lower ones;
* a small smooth 3D head rotation (yaw/pitch/roll) and translation moves the whole head including the hair,
  projected orthographically, with a matching Lambertian change of shading; extra rings of control points
  around the face carry hair/neck, and an outermost ring stays fixed so the warp blends into the static body;
* the person is separated from the background (mediapipe selfie segmentation), the background is inpainted into
  a static plate, and only the person layer is warped (piecewise-affine, rasterised with OpenCV) and composed
  over it; in the opening mouth the photo's upper teeth hang under the upper lip and a dark cavity is painted
  below them.

Everything the animation used is saved as ground truth (:class:`DemoTruth`), so preprocessing can be measured
against it. The output is deterministic for a seed.
"""
from __future__ import annotations

import collections
import functools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from gt_core.data.speech import SpeechClip, resample, synthesize
from gt_core.data.visemes import VisemeCurves, viseme_curves
from gt_core.preprocess.landmarks import FACE_OVAL, detect_landmarks

# ----------------------------------------------------------------------------------------------------------------
# Script
# ----------------------------------------------------------------------------------------------------------------

# Spoken in the first ``train_part_s`` seconds (the part a method may train on).
TRAIN_SENTENCES: tuple[str, ...] = (
    "Good morning, and welcome aboard the orbiter.",
    "Today we will talk about life on the space station.",
    "The view of the Earth from up here is simply breathtaking.",
    "Every morning we check the oxygen levels and the water supply.",
    "My crew trained for almost two years before this flight.",
    "Floating in microgravity takes a little getting used to.",
    "We eat our meals from small pouches and sealed cans.",
    "The sunrise comes around every ninety minutes.",
    "I still remember the roar of the engines at launch.",
    "Our experiments study how plants grow without gravity.",
    "Please keep your questions coming from the ground.",
    "The robotic arm can move huge pieces of equipment.",
    "Sleeping bags are strapped to the wall of each cabin.",
    "We exercise for two hours a day to keep our muscles strong.",
    "From orbit, the city lights look like glowing jewels.",
    "The mission control team watches every step we take.",
    "Radio contact with Houston is clear and steady today.",
    "A spacewalk needs hours of careful preparation.",
    "Our suits have their own cooling and air systems.",
    "Thank you for joining us on this remarkable journey.",
    "The shuttle carries seven astronauts and a lot of cargo.",
    "Water forms perfect little spheres when it floats.",
    "We photograph hurricanes and volcanoes for the scientists.",
    "My favourite place on board is the big round window.",
    "Hello from orbit.",
    "Let us begin.",
    "That is quite a sight.",
    "Here comes the sun.",
)

# Spoken after ``train_part_s`` (the held-out tail used for evaluation): none of these appear earlier.
TAIL_SENTENCES: tuple[str, ...] = (
    "Learning to fly a jet was my dream since childhood.",
    "My first solo flight was over a quiet green valley.",
    "Pilots rely on checklists to avoid simple mistakes.",
    "Weather over the ocean can change in a few minutes.",
    "Children often ask me what it feels like to be weightless.",
    "The most important tool in any cockpit is teamwork.",
    "I would like to thank my family for their patience.",
    "Books about explorers filled the shelves of my room.",
    "You should never stop asking curious questions.",
    "Mathematics and physics opened many doors for me.",
    "A good teacher can change the course of your life.",
    "Landing at night needs calm hands and clear eyes.",
    "The runway lights guided us home through the fog.",
    "We celebrated with pizza after the long debriefing.",
    "Hard work beats talent when talent does not work hard.",
    "Every mission teaches us something new about ourselves.",
    "Our planet looks fragile from far away.",
    "Who knows where the next generation will travel?",
    "Some day people may walk on the red plains of Mars.",
    "Stay hungry for knowledge and be kind to each other.",
    "The ocean covers most of the surface of our world.",
    "I was nervous, but the training took over.",
    "Music helped us relax during the quiet evenings.",
    "Goodbye for now, and keep looking up at the stars.",
    "Thanks for listening.",
    "See you soon.",
    "It was amazing.",
    "Never give up.",
)

VOICE = "en-us+f3"  # espeak-ng US English, female variant
SPEECH_RATE_WPM = 160
AUDIO_RATE = 16000  # Hz, rate of the muxed audio track
SOURCE_CROP = (88, 4, 272)  # (x0, y0, side) of the square head-and-shoulders crop in astronaut() pixels


@dataclass(frozen=True)
class DemoSpec:
    """What demo video to generate."""

    seed: int = 0
    duration_s: float = 44.0
    size: int = 512  # output frames are size x size
    fps: int = 25
    train_part_s: float = 20.0  # sentences before this time come from the train list, after it from the tail list
    max_rotation_deg: float = 5.0
    max_translation_px: float = 6.0  # at size 512; scaled with the frame size

    def __post_init__(self) -> None:
        if not self.duration_s > 2.0:
            raise ValueError(f"DemoSpec.duration_s must be > 2 s, got {self.duration_s}")
        if self.size < 128:
            raise ValueError(f"DemoSpec.size must be >= 128 px (the face must stay detectable), got {self.size}")
        if self.fps <= 0:
            raise ValueError(f"DemoSpec.fps must be positive, got {self.fps}")
        if self.max_rotation_deg < 0 or self.max_translation_px < 0:
            raise ValueError("DemoSpec.max_rotation_deg and max_translation_px must be >= 0")

    @property
    def n_frames(self) -> int:
        """Frames in the video: ``round(duration_s * fps)``."""
        return int(round(self.duration_s * self.fps))


@dataclass(frozen=True)
class Sentence:
    """One spoken sentence on the demo timeline."""

    start: float  # seconds
    end: float  # seconds (last audible sample)
    text: str
    part: str  # "train-part" or "tail"


@dataclass(frozen=True)
class DemoScript:
    """Sentences, their audio and phonemes laid out on the full timeline."""

    sentences: list[Sentence]
    audio: np.ndarray  # [round(duration * 22050)] float32 at ``sample_rate``
    sample_rate: int
    phonemes: list[tuple[float, str]]  # (onset seconds on the timeline, espeak mnemonic); pauses included
    duration_s: float


@functools.lru_cache(maxsize=256)
def _speak(text: str) -> SpeechClip:
    """Synthesise one sentence and trim its leading/trailing silence (phoneme times shifted to match)."""
    clip = synthesize(text, voice=VOICE, rate_wpm=SPEECH_RATE_WPM)
    loud = np.flatnonzero(np.abs(clip.audio) > 2e-3)
    if len(loud) == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    sr = clip.sample_rate
    a = max(int(loud[0]) - int(0.01 * sr), 0)
    b = min(int(loud[-1]) + int(0.03 * sr), len(clip.audio))
    t0, t1 = a / sr, b / sr
    phonemes = [(min(max(t - t0, 0.0), t1 - t0), p) for t, p in clip.phonemes if t < t1]
    words = [(max(t - t0, 0.0), w) for t, w in clip.words if t < t1]
    return SpeechClip(audio=clip.audio[a:b].copy(), sample_rate=sr, phonemes=phonemes, words=words)


def _fill(
    pool: tuple[str, ...], rng: np.random.Generator, start: float, stop: float, part: str
) -> tuple[list[Sentence], float]:
    """Lay out sentences from ``pool`` (shuffled by ``rng``) between ``start`` and ``stop`` seconds.

    Each sentence must end before ``stop``; sentences are separated by pauses of 0.3-0.8 s. When no remaining
    sentence fits, the rest stays silent. Returns the sentences and the time after the last pause.
    """
    order = list(rng.permutation(len(pool)))
    out: list[Sentence] = []
    cursor = start
    while True:
        if not order:  # every sentence used: go round again in a new order (long durations)
            order = list(rng.permutation(len(pool)))
        remaining = stop - cursor
        fits = [k for k in order if _speak(pool[k]).duration <= remaining]
        if not fits:
            break
        # near the end of the span take the longest sentence that fits, so the silence left over stays short
        pick = max(fits, key=lambda k: _speak(pool[k]).duration) if remaining < 5.0 else fits[0]
        order.remove(pick)
        dur = _speak(pool[pick]).duration
        out.append(Sentence(start=round(cursor, 4), end=round(cursor + dur, 4), text=pool[pick], part=part))
        cursor += dur + float(rng.uniform(0.3, 0.8))
    return out, cursor


def build_script(spec: DemoSpec) -> DemoScript:
    """The spoken script of the demo (deterministic for ``spec.seed``); synthesises speech but renders nothing."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
    lead_in = float(rng.uniform(0.3, 0.8))
    split = min(spec.train_part_s, spec.duration_s)
    train, cursor = _fill(TRAIN_SENTENCES, rng, lead_in, split, "train-part")
    tail: list[Sentence] = []
    if spec.duration_s - split > 1.0:
        tail_start = max(cursor, split + float(rng.uniform(0.3, 0.8)))
        tail, _ = _fill(TAIL_SENTENCES, rng, tail_start, spec.duration_s - 0.3, "tail")
    sentences = train + tail

    sr = _speak(sentences[0].text).sample_rate if sentences else 22050
    audio = np.zeros(int(round(spec.duration_s * sr)), np.float32)
    phonemes: list[tuple[float, str]] = [(0.0, "_")]
    for s in sentences:
        clip = _speak(s.text)
        i0 = int(round(s.start * sr))
        seg = clip.audio[: max(0, min(len(clip.audio), len(audio) - i0))]
        audio[i0:i0 + len(seg)] = seg
        phonemes += [(s.start + t, p) for t, p in clip.phonemes]
        phonemes.append((s.end, "_"))
    return DemoScript(sentences=sentences, audio=audio, sample_rate=sr, phonemes=phonemes,
                      duration_s=float(spec.duration_s))


# ----------------------------------------------------------------------------------------------------------------
# Motion: head pose and blinks
# ----------------------------------------------------------------------------------------------------------------

def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in image axes (x right, y down, z away from the camera). ``[3, 3]``."""
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_wander(rng: np.random.Generator, t: np.ndarray, peak: float, f_lo: float, f_hi: float) -> np.ndarray:
    """Sum of three slow sinusoids with random frequencies/phases, scaled so max |value| = peak * U(0.8, 1)."""
    x = np.zeros_like(t)
    for _ in range(3):
        f = rng.uniform(f_lo, f_hi)
        x += rng.uniform(0.4, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x -= x.mean()
    return x * (peak * rng.uniform(0.8, 1.0) / max(np.abs(x).max(), 1e-9))


def _blink_curve(rng: np.random.Generator, t: np.ndarray, duration_s: float) -> np.ndarray:
    """Blink closure in [0, 1] at times ``t``: blinks every 2-6 s lasting 150-250 ms (close 40 %, open 60 %)."""
    out = np.zeros_like(t)
    onset = float(rng.uniform(0.8, 2.5))
    while onset < duration_s - 0.3:
        length = float(rng.uniform(0.15, 0.25))
        u = (t - onset) / length
        close = (u >= 0) & (u < 0.4)
        opening = (u >= 0.4) & (u <= 1.0)
        out[close] = np.maximum(out[close], 0.5 - 0.5 * np.cos(np.pi * u[close] / 0.4))
        out[opening] = np.maximum(out[opening], 0.5 + 0.5 * np.cos(np.pi * (u[opening] - 0.4) / 0.6))
        onset += length + float(rng.uniform(2.0, 6.0))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Source photo, mesh and deformation fields
# ----------------------------------------------------------------------------------------------------------------

# mediapipe face-mesh index arcs (left-to-right in the image for lips, corner-to-corner for the eyes)
INNER_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
INNER_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
OUTER_UPPER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291])
OUTER_LOWER = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
EYES = (  # (upper lid arc, lower lid arc), both from corner to corner
    (np.array([33, 246, 161, 160, 159, 158, 157, 173, 133]), np.array([33, 7, 163, 144, 145, 153, 154, 155, 133])),
    (np.array([263, 466, 388, 387, 386, 385, 384, 398, 362]), np.array([263, 249, 390, 373, 374, 380, 381, 382, 362])),
)
LIGHT_DIR = np.array([-0.25, -0.35, -1.0]) / np.linalg.norm([-0.25, -0.35, -1.0])  # towards the key light
N_MESH = 468  # vertices of the tessellation (iris points 468-477 are not warped vertices)


def _tessellation_triangles() -> np.ndarray:
    """Triangles of mediapipe's face-mesh tessellation (mouth and eyes are holes). ``[T, 3]`` int."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adj: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]}
    count = collections.Counter(e for t in tris for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))
    # a 3-clique whose three edges each border three triangles is not a face of the mesh
    real = [t for t in tris if not all(count[e] == 3 for e in ((t[0], t[1]), (t[0], t[2]), (t[1], t[2])))]
    return np.array(sorted(real), dtype=np.int64)


def _strip(upper: np.ndarray, lower: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangulate the band between two arcs sharing their end points (vertex ids). Degenerate ends skipped."""
    tris = []
    for k in range(len(upper) - 1):
        a, b, c, d = upper[k], upper[k + 1], lower[k], lower[k + 1]
        if a != c:
            tris.append((a, b, c))
        elif b != d:
            tris.append((a, b, d))
            continue
        if b != d:
            tris.append((b, d, c))
    return [t for t in tris if len(set(t)) == 3]


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    u = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return u * u * (3 - 2 * u)


@dataclass
class DemoScene:
    """The prepared source photo, its 3D mesh (+ outer control rings) and the per-unit deformation fields.

    Warp vertices: ``0..467`` the face mesh, then 3 rings of ``len(FACE_OVAL)`` points each (around the face, at
    the hair/neck silhouette, fixed), all in source pixels with width-scaled depth; per frame
    :func:`frame_vertices` appends the teeth line (one vertex per inner-lip pair) that splits the mouth opening
    into the upper teeth (texture from the photo) and the dark cavity below.
    """

    size: int
    image: np.ndarray  # [S, S, 3] uint8, the cropped and upscaled photo
    alpha: np.ndarray  # [S, S] float32 in [0, 1], person matte
    rgba: np.ndarray  # [S, S, 4] uint8, the person layer that is warped (photo + matte)
    plate: np.ndarray  # [S, S, 3] float32, background with the person inpainted away
    source_points: np.ndarray  # [478, 3] float32, landmarks detected on ``image``
    src_xy: np.ndarray  # [V + 9, 2] float32, texture coordinates of every warp vertex (incl. the teeth line)
    neutral: np.ndarray  # [V, 3] float32, rest pose (lips closed) in source pixels
    head_weight: np.ndarray  # [V] float32, how much each vertex follows the head motion
    jaw_field: np.ndarray  # [V, 3] float32, displacement at jaw_open = 1
    width_field: np.ndarray  # [V, 3] float32, displacement at lip_width = +1
    round_field: np.ndarray  # [V, 3] float32, displacement at lip_round = 1
    blink_field: np.ndarray  # [V, 3] float32, displacement at blink = 1 (upper lids onto the lower lids)
    normals: np.ndarray  # [V, 3] float32, unit surface normals (towards the camera) for relighting on rotation
    teeth_height: np.ndarray  # [9] float32, px of upper teeth visible below each upper inner-lip point
    triangles: np.ndarray  # [T, 3] int, warp triangles (vertex ids)
    pivot: np.ndarray  # [3] float32, head rotation pivot (near the neck, behind the face)
    mouth_width: float  # px, lip corner distance in the source
    roi: tuple[int, int, int, int]  # (x0, y0, x1, y1) region the warp can change


def _person_matte(image: np.ndarray) -> np.ndarray:
    """Soft person matte ``[S, S]`` float32 from mediapipe selfie segmentation, edge-refined by a guided filter."""
    import mediapipe as mp

    from gt_core.preprocess.landmarks import _quiet_stderr

    with _quiet_stderr():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
            mask = seg.process(np.ascontiguousarray(image)).segmentation_mask.astype(np.float32)
    size = image.shape[0]
    radius = max(2, size // 128)
    guide = image.astype(np.float32) / 255.0
    mask = cv2.ximgproc.guidedFilter(guide, mask, radius, 1e-3)
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def _background_plate(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Background with the person inpainted away (inpainted at 1/4 resolution, then upsampled). ``[S, S, 3]``."""
    size = image.shape[0]
    hole = (alpha > 0.05).astype(np.uint8)
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8), iterations=max(2, size // 64))
    small = max(size // 4, 32)
    img_s = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    hole_s = (cv2.resize(hole, (small, small), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    filled = cv2.inpaint(img_s, hole_s, max(3, small // 40), cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 2.0)
    up = cv2.resize(filled, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    soft = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), max(1.0, size / 256))[..., None]
    return up * soft + image.astype(np.float32) * (1.0 - soft)


def _silhouette_scale(alpha: np.ndarray, centre: np.ndarray, direction: np.ndarray, limit: float) -> float:
    """How many ``direction`` lengths from ``centre`` until the matte ends (or the frame/limit is reached)."""
    size = alpha.shape[0]
    for s in np.arange(1.0, limit, 0.02):
        x, y = centre + s * direction
        if not (0 <= x < size and 0 <= y < size):
            return float(s)
        if alpha[int(y), int(x)] < 0.5:
            return float(s)
    return float(limit)


def _mesh_edges() -> np.ndarray:
    """Undirected edges of the face-mesh tessellation. ``[E, 2]`` int."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return np.array(sorted({tuple(sorted(e)) for e in FACEMESH_TESSELATION}), dtype=np.int64)


def _harmonic(n: int, edges: np.ndarray, fixed: dict[int, np.ndarray], dim: int) -> np.ndarray:
    """Harmonic interpolation on a graph: fixed vertices keep their values, the others average their neighbours.

    Smooth and fold-free in practice, unlike hand-made falloffs. Returns ``[n, dim]``.
    """
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import spsolve

    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    lap = (diags(np.asarray(adj.sum(axis=1)).ravel()) - adj).tocsr()  # [n, n] graph Laplacian
    idx_fixed = np.array(sorted(fixed), dtype=np.int64)
    values = np.zeros((n, dim))
    values[idx_fixed] = np.array([np.broadcast_to(fixed[k], (dim,)) for k in idx_fixed])
    free = np.setdiff1d(np.arange(n), idx_fixed)
    if len(free):
        rhs = -lap[free][:, idx_fixed] @ values[idx_fixed]
        sol = spsolve(lap[free][:, free].tocsc(), rhs)
        values[free] = np.asarray(sol).reshape(len(free), dim)
    return values


@functools.lru_cache(maxsize=4)
def prepare_scene(size: int = 512) -> DemoScene:
    """Crop and upscale the photo, find its landmarks, matte and plate, and build mesh + deformation fields."""
    from skimage import data as skdata

    x0, y0, side = SOURCE_CROP
    photo = skdata.astronaut()[y0:y0 + side, x0:x0 + side]
    image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC if size > side else cv2.INTER_AREA)
    lm = detect_landmarks(image[None], video_mode=False)
    if not lm.found[0]:
        raise RuntimeError("mediapipe found no face on the demo source photo")
    pts = lm.points[0].astype(np.float64)  # [478, 3]
    alpha = _person_matte(image)
    plate = _background_plate(image, alpha)

    face = pts[:N_MESH]  # [468, 3]
    oval = face[FACE_OVAL]  # [36, 3]
    centre = oval[:, :2].mean(axis=0)
    face_w = float(np.linalg.norm(face[234, :2] - face[454, :2]))
    mouth_w = float(np.linalg.norm(face[61, :2] - face[291, :2]))
    half = 0.5 * mouth_w
    inner = np.concatenate([INNER_UPPER, INNER_LOWER])
    mouth_c = face[inner].mean(axis=0)
    corner_y = 0.5 * (face[61, 1] + face[291, 1])
    edges = _mesh_edges()

    # --- outer rings: around the face (follows the head), at the hair/neck silhouette, fixed -----------------
    dirs = oval[:, :2] - centre  # [36, 2]
    down = np.array([0.0, 1.0])
    phi = np.degrees(np.arccos(np.clip((dirs @ down) / np.linalg.norm(dirs, axis=1), -1, 1)))  # 0 = straight down
    upper = _smoothstep(phi, 75.0, 110.0)  # 1 for directions towards hair/ears, 0 towards neck/shoulders
    sil = np.array([_silhouette_scale(alpha, centre, d, 2.8) for d in dirs])
    s_a = np.full(len(dirs), 1.1)
    s_b = np.maximum(upper * (sil + 0.15) + (1 - upper) * 1.3, s_a + 0.12)
    s_c = upper * (s_b + 0.45) + (1 - upper) * 1.65
    z_back = float(np.median(oval[:, 2])) + 0.35 * face_w  # depth of the head centre
    rings_xy, rings_z, rings_w = [], [], []
    for s, w_lower, z_mix in ((s_a, 1.0, 0.3), (s_b, 0.55, 1.0), (s_c, 0.0, 1.0)):
        rings_xy.append(centre + s[:, None] * dirs)
        rings_z.append((1 - z_mix) * oval[:, 2] + z_mix * z_back)
        rings_w.append(upper * (1.0 if w_lower > 0 else 0.0) + (1 - upper) * w_lower)
    ring_pts = np.concatenate([np.concatenate(rings_xy), np.concatenate(rings_z)[:, None]], axis=1)  # [108, 3]
    verts = np.concatenate([face, ring_pts])  # [V, 3], V = 468 + 108
    n_ring = len(FACE_OVAL)
    head_w = np.concatenate([np.ones(N_MESH), np.concatenate(rings_w)])
    ring_share = np.concatenate([np.full(n_ring, 0.9), 0.35 * (1 - upper), np.zeros(n_ring)])  # of the oval's motion

    # --- lower-face fields by harmonic interpolation on the mesh ----------------------------------------------
    # Dirichlet constraints: everything above the mouth corners (but the lips) stays, the lip arcs and the lower
    # face outline get explicit values; the lower face in between is interpolated smoothly.
    lips = np.concatenate([INNER_UPPER, INNER_LOWER, OUTER_UPPER, OUTER_LOWER])
    still = [k for k in range(N_MESH) if face[k, 1] < corner_y - 0.12 * mouth_w and k not in lips]
    lower_oval = [k for k in FACE_OVAL if face[k, 1] >= corner_y - 0.12 * mouth_w]
    upper_oval = [k for k in FACE_OVAL if face[k, 1] < corner_y - 0.12 * mouth_w]
    chin_profile = {k: float(np.exp(-0.5 * ((face[k, 0] - mouth_c[0]) / (0.3 * face_w)) ** 2)) for k in lower_oval}

    def lip_profile(k: int) -> float:  # 1 at the middle of the lower lip, ~0.3 at the corners (elliptic)
        dx = (face[k, 0] - mouth_c[0]) / half
        return float(0.3 + 0.7 * np.sqrt(max(0.0, 1.0 - min(dx * dx, 1.0))))

    # jaw: lower lip and chin drop by D (and go back a little), the upper lip lifts slightly
    # The chin drops less than the lower lip (in a frontal view the mandible's rotation carries the chin mostly
    # backwards); a chin following the lip one-to-one also makes mediapipe read the opening jaw as a head pitch.
    D = 0.42 * mouth_w  # px the lower lip drops at jaw_open = 1
    chin_share = 0.2
    fixed: dict[int, np.ndarray] = {k: np.zeros(3) for k in still + upper_oval}
    for k in lower_oval:
        fixed[k] = np.array([0.0, chin_share * D, 0.6 * D]) * chin_profile[k]
    for arc in (INNER_LOWER, OUTER_LOWER):
        for k in arc[1:-1]:
            fixed[int(k)] = np.array([0.0, D, 0.25 * D]) * lip_profile(k)
    for arc, lift in ((INNER_UPPER, 0.1), (OUTER_UPPER, 0.06)):
        for k in arc[1:-1]:
            dx = (face[k, 0] - mouth_c[0]) / half
            fixed[int(k)] = np.array([0.0, -lift * D * max(0.0, 1 - dx ** 2), 0.0])
    for k in (61, 291, 78, 308):
        fixed[k] = np.array([0.0, 0.3 * D, 0.08 * D])
    jaw_face = _harmonic(N_MESH, edges, fixed, 3)  # [468, 3]

    # rest pose: close the smile's parted lips (the lower inner lip meets the upper one, the chin follows a bit)
    gap0 = float(face[14, 1] - face[13, 1])
    fixed = {k: np.zeros(3) for k in still + upper_oval}
    for k in lower_oval:
        fixed[k] = np.array([0.0, -0.5 * gap0, 0.0]) * chin_profile[k]
    for k in np.concatenate([INNER_UPPER, OUTER_UPPER]):
        fixed[int(k)] = np.zeros(3)
    for ku, kl in zip(INNER_UPPER[1:-1], INNER_LOWER[1:-1]):
        fixed[int(kl)] = face[ku] - face[kl]
    for k in OUTER_LOWER[1:-1]:  # the lower lip keeps its thickness: move like its inner edge
        j = int(np.argmin(np.abs(face[INNER_LOWER[1:-1], 0] - face[k, 0])))
        fixed[int(k)] = 0.9 * fixed[int(INNER_LOWER[1 + j])]
    close_face = _harmonic(N_MESH, edges, fixed, 3)  # [468, 3]

    def with_rings(field_face: np.ndarray) -> np.ndarray:
        ring = np.tile(field_face[FACE_OVAL], (3, 1)) * ring_share[:, None]
        return np.concatenate([field_face, ring])

    jaw_field = with_rings(jaw_face)
    neutral = verts + with_rings(close_face)

    # --- lip width / rounding: horizontal scaling of the mouth region, rounding also protrudes the lips --------
    r_mouth = np.linalg.norm((verts[:, :2] - mouth_c[:2]) / np.array([0.6 * mouth_w, 0.45 * mouth_w]), axis=1)
    w_mouth = np.exp(-0.5 * r_mouth ** 2)
    w_mouth[N_MESH:] = 0.0
    rel_x = (verts[:, 0] - mouth_c[0]) / half
    width_field = np.zeros_like(verts)
    width_field[:, 0] = 0.12 * half * rel_x * w_mouth
    round_field = np.zeros_like(verts)
    round_field[:, 0] = -0.2 * half * rel_x * w_mouth
    round_field[:, 2] = -0.12 * mouth_w * w_mouth
    round_field[lips, 2] -= 0.05 * mouth_w

    # --- blink: upper lid arc onto the lower lid arc, the skin above follows with a falloff -----------------
    blink_field = np.zeros_like(verts)
    for up_arc, lo_arc in EYES:
        delta = verts[lo_arc] - verts[up_arc]  # [9, 3] (zero at the corners)
        delta[:, 1] *= 0.86  # the upper lid comes down to just above the lower lid line ...
        lift = np.zeros_like(delta)
        lift[:, 1] = -0.08 * (verts[lo_arc, 1] - verts[up_arc, 1])  # ... which rises a bit; a lash-line sliver stays
        order = np.argsort(verts[up_arc, 0])
        xs = verts[up_arc, 0][order]
        eye_h = float(np.max(verts[lo_arc, 1] - verts[up_arc, 1]))
        for k in range(N_MESH):
            if k in up_arc or k in lo_arc:
                continue
            x, y = verts[k, 0], verts[k, 1]
            if not (xs[0] - 0.2 * eye_h <= x <= xs[-1] + 0.2 * eye_h):
                continue
            h = np.interp(x, xs, verts[up_arc, 1][order]) - y  # height above the upper lid
            if h <= 0 or h > 3 * eye_h:
                continue
            d = np.array([np.interp(x, xs, delta[order, c]) for c in range(3)])
            blink_field[k] = d * np.exp(-((h / (0.9 * eye_h)) ** 2))
        blink_field[up_arc] = delta
        blink_field[lo_arc[1:-1]] = lift[1:-1]

    # --- teeth line: the photo shows the upper teeth between the parted lips -------------------------------------
    su, sl = face[INNER_UPPER[1:-1], :2], face[INNER_LOWER[1:-1], :2]  # [9, 2]
    teeth_src = su + 0.8 * (sl - su)
    teeth_h = 0.8 * np.linalg.norm(sl - su, axis=1)
    n_verts = len(verts)
    teeth_ids = n_verts + np.arange(len(teeth_src))
    teeth_arc = np.concatenate([[INNER_UPPER[0]], teeth_ids, [INNER_UPPER[-1]]])

    # --- triangles: tessellation + eye fills + mouth (teeth, cavity) + ring strips -----------------------------
    tris = [tuple(t) for t in _tessellation_triangles()]
    for up_arc, lo_arc in EYES:
        tris += _strip(up_arc, lo_arc)
    tris += _strip(INNER_UPPER, teeth_arc) + _strip(teeth_arc, INNER_LOWER)
    rings = [FACE_OVAL] + [N_MESH + j * n_ring + np.arange(n_ring) for j in range(3)]
    for inner_ring, outer_ring in zip(rings[:-1], rings[1:]):
        for k in range(n_ring):
            a, b = inner_ring[k], inner_ring[(k + 1) % n_ring]
            c, d = outer_ring[k], outer_ring[(k + 1) % n_ring]
            tris += [(a, b, c), (b, d, c)]
    pivot = np.array([centre[0], face[152, 1], z_back], dtype=np.float64)

    # --- vertex normals of the face mesh (rings: the oval's normal tilted outwards, then facing the camera) ----
    tess = _tessellation_triangles()
    fn = np.cross(face[tess[:, 1]] - face[tess[:, 0]], face[tess[:, 2]] - face[tess[:, 0]])  # [T, 3]
    fn[fn[:, 2] > 0] *= -1  # all towards the camera (z < 0)
    vn = np.zeros_like(face)
    for c in range(3):
        np.add.at(vn, tess[:, c], fn)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-9)
    ring_n = np.concatenate([vn[FACE_OVAL], np.tile([[0.0, 0.0, -1.0]], (2 * n_ring, 1))])
    normals = np.concatenate([vn, ring_n])
    fixed_xy = verts[rings[-1], :2]
    margin = 4
    x_lo, y_lo = np.floor(fixed_xy.min(axis=0)).astype(int) - margin
    x_hi, y_hi = np.ceil(fixed_xy.max(axis=0)).astype(int) + margin
    roi = (max(0, int(x_lo)), max(0, int(y_lo)), min(size, int(x_hi)), min(size, int(y_hi)))
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return DemoScene(
        size=size, image=image, alpha=alpha,
        rgba=np.dstack([image, np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)]), plate=f32(plate),
        source_points=f32(pts), src_xy=f32(np.concatenate([verts[:, :2], teeth_src])), neutral=f32(neutral),
        head_weight=f32(head_w), jaw_field=f32(jaw_field), width_field=f32(width_field),
        round_field=f32(round_field), blink_field=f32(blink_field), normals=f32(normals), teeth_height=f32(teeth_h),
        triangles=np.array(tris, dtype=np.int64), pivot=f32(pivot), mouth_width=mouth_w, roi=roi,
    )


# ----------------------------------------------------------------------------------------------------------------
# Plan (everything but pixels) and ground truth
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class DemoTruth:
    """Ground truth of a generated demo video (one value per frame; frame ``i`` shows time ``i / fps``)."""

    jaw_open: np.ndarray  # [N] float32 in [0, 1]
    lip_width: np.ndarray  # [N] float32 in [-1, 1]
    lip_round: np.ndarray  # [N] float32 in [0, 1]
    blink: np.ndarray  # [N] float32 in [0, 1], 1 = eyes closed
    yaw_deg: np.ndarray  # [N] float32, rotation about the image y axis
    pitch_deg: np.ndarray  # [N] float32, rotation about the image x axis
    roll_deg: np.ndarray  # [N] float32, rotation about the image z axis
    R: np.ndarray  # [N, 3, 3] float32: p' = R (p - pivot) + pivot + [tx, ty, 0], landmark axes (x right, y down, z away)
    translation_px: np.ndarray  # [N, 2] float32
    pivot: np.ndarray  # [3] float32, source pixels (z width-scaled like the landmarks)
    fps: float
    n_frames: int
    seed: int
    sentences: list[dict]  # {start, end, text, part}
    phonemes: list[tuple[float, str]]  # (onset seconds, espeak mnemonic)
    source_points: np.ndarray  # [478, 3] float32, landmarks of the (unanimated) source photo

    def save(self, path: str | Path) -> None:
        """Write as ``.npz`` (the sentences and phonemes as JSON strings)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path, jaw_open=self.jaw_open, lip_width=self.lip_width, lip_round=self.lip_round, blink=self.blink,
            yaw_deg=self.yaw_deg, pitch_deg=self.pitch_deg, roll_deg=self.roll_deg, R=self.R,
            translation_px=self.translation_px, pivot=self.pivot, fps=np.float32(self.fps),
            n_frames=np.int64(self.n_frames), seed=np.int64(self.seed),
            sentences_json=np.array(json.dumps(self.sentences)), phonemes_json=np.array(json.dumps(self.phonemes)),
            source_points=self.source_points,
        )

    def tail_mask(self, train_part_s: float) -> np.ndarray:
        """``[N]`` bool, frames at or after ``train_part_s`` seconds."""
        return np.arange(self.n_frames) / self.fps >= train_part_s


def load_truth(path: str | Path) -> DemoTruth:
    """Read a ground-truth ``.npz`` written by :func:`generate_demo`."""
    with np.load(path, allow_pickle=False) as z:
        return DemoTruth(
            jaw_open=z["jaw_open"], lip_width=z["lip_width"], lip_round=z["lip_round"], blink=z["blink"],
            yaw_deg=z["yaw_deg"], pitch_deg=z["pitch_deg"], roll_deg=z["roll_deg"], R=z["R"],
            translation_px=z["translation_px"], pivot=z["pivot"], fps=float(z["fps"]), n_frames=int(z["n_frames"]),
            seed=int(z["seed"]), sentences=json.loads(str(z["sentences_json"])),
            phonemes=[(float(t), str(p)) for t, p in json.loads(str(z["phonemes_json"]))],
            source_points=z["source_points"],
        )


@dataclass
class DemoPlan:
    """Everything a demo video shows except the pixels: script, audio, articulation, blinks, head motion."""

    spec: DemoSpec
    script: DemoScript
    visemes: VisemeCurves
    truth: DemoTruth


def plan_demo(spec: DemoSpec = DemoSpec()) -> DemoPlan:
    """Script, viseme curves, blinks and head motion for ``spec`` (deterministic for ``spec.seed``)."""
    script = build_script(spec)
    n = spec.n_frames
    t = np.arange(n) / spec.fps
    vis = viseme_curves(script.phonemes, spec.duration_s, fps=spec.fps)
    rng_pose = np.random.default_rng(np.random.SeedSequence([spec.seed, 2]))
    yaw = _smooth_wander(rng_pose, t, spec.max_rotation_deg, 0.05, 0.3)
    pitch = _smooth_wander(rng_pose, t, spec.max_rotation_deg * 0.8, 0.06, 0.35)
    roll = _smooth_wander(rng_pose, t, spec.max_rotation_deg * 0.6, 0.04, 0.25)
    scale = spec.size / 512.0
    tx = _smooth_wander(rng_pose, t, spec.max_translation_px * scale, 0.03, 0.2)
    ty = _smooth_wander(rng_pose, t, spec.max_translation_px * scale * 0.6, 0.03, 0.2)
    blink = _blink_curve(np.random.default_rng(np.random.SeedSequence([spec.seed, 3])), t, spec.duration_s)
    R = np.stack([rotation_matrix(a, b, c) for a, b, c in zip(yaw, pitch, roll)]) if n else np.zeros((0, 3, 3))
    scene = prepare_scene(spec.size)
    truth = DemoTruth(
        jaw_open=vis.jaw_open, lip_width=vis.lip_width, lip_round=vis.lip_round, blink=blink.astype(np.float32),
        yaw_deg=yaw.astype(np.float32), pitch_deg=pitch.astype(np.float32), roll_deg=roll.astype(np.float32),
        R=R.astype(np.float32), translation_px=np.stack([tx, ty], axis=1).astype(np.float32), pivot=scene.pivot.copy(),
        fps=float(spec.fps), n_frames=n, seed=int(spec.seed),
        sentences=[{"start": s.start, "end": s.end, "text": s.text, "part": s.part} for s in script.sentences],
        phonemes=[(round(float(tp), 4), p) for tp, p in script.phonemes],
        source_points=scene.source_points.copy(),
    )
    return DemoPlan(spec=spec, script=script, visemes=vis, truth=truth)


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------

def frame_vertices(scene: DemoScene, truth: DemoTruth, i: int) -> np.ndarray:
    """Warp-vertex positions of frame ``i`` in output pixels: face mesh, rings, then the teeth line. ``[V + 9, 3]``."""
    local = (scene.neutral + truth.jaw_open[i] * scene.jaw_field + truth.lip_width[i] * scene.width_field
             + truth.lip_round[i] * scene.round_field + truth.blink[i] * scene.blink_field)  # [V, 3]
    shift = np.array([truth.translation_px[i, 0], truth.translation_px[i, 1], 0.0], np.float32)
    moved = (local - scene.pivot) @ truth.R[i].T + scene.pivot + shift
    w = scene.head_weight[:, None]
    verts = w * moved + (1 - w) * local
    # upper teeth hang below the upper lip with their height in the photo (less if the lips are closer)
    up, lo = verts[INNER_UPPER[1:-1]], verts[INNER_LOWER[1:-1]]  # [9, 3]
    gap = np.linalg.norm(lo[:, :2] - up[:, :2], axis=1)
    frac = np.minimum(1.0, scene.teeth_height / np.maximum(gap, 1e-6))[:, None]
    teeth = up + (lo - up) * frac
    teeth[:, 2] = up[:, 2] + 0.03 * scene.mouth_width  # just behind the lip
    return np.concatenate([verts, teeth]).astype(np.float32)


def _warp_maps(
    scene: DemoScene, verts: np.ndarray, vertex_gain: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward maps (target pixel -> source pixel) of the piecewise-affine mesh warp, and a per-pixel gain.

    ``verts`` [V', 3] are the target vertex positions, ``vertex_gain`` [V'] a brightness factor per vertex that is
    interpolated linearly over each triangle. Returns ``map_x, map_y, gain``, each ``[S, S]`` float32.
    """
    size = scene.size
    x0, y0, x1, y1 = scene.roi
    tri = scene.triangles
    dst = verts[tri][:, :, :2].astype(np.float64)  # [T, 3, 2]
    src = scene.src_xy[tri].astype(np.float64)  # [T, 3, 2]
    area = 0.5 * ((dst[:, 1, 0] - dst[:, 0, 0]) * (dst[:, 2, 1] - dst[:, 0, 1])
                  - (dst[:, 2, 0] - dst[:, 0, 0]) * (dst[:, 1, 1] - dst[:, 0, 1]))
    ok = np.abs(area) > 0.05
    A = np.concatenate([dst, np.ones((len(tri), 3, 1))], axis=2)  # [T, 3, 3] rows [x y 1] of the target corners
    A[~ok] = np.eye(3)
    M = np.linalg.solve(A, src)  # [T, 3, 2]: [x y 1] @ M = source (x, y)
    G = np.linalg.solve(A, vertex_gain[tri].astype(np.float64)[..., None])[..., 0]  # [T, 3]: [x y 1] @ G = gain
    depth = verts[tri][:, :, 2].mean(axis=1)
    order = np.argsort(-depth, kind="stable")  # far to near: nearer triangles overwrite
    ids = np.full((y1 - y0, x1 - x0), -1, np.int32)
    shift = 4
    pts = np.round((dst - np.array([x0, y0])) * (1 << shift)).astype(np.int32)
    for k in order[ok[order]]:
        cv2.fillConvexPoly(ids, pts[k], int(k), lineType=cv2.LINE_8, shift=shift)
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    map_x = np.tile(np.arange(size, dtype=np.float32), (size, 1))
    map_y = np.tile(np.arange(size, dtype=np.float32)[:, None], (1, size))
    gain = np.ones((size, size), np.float32)
    inside = ids >= 0
    tid = ids[inside]
    m = M.astype(np.float32)[tid]  # [P, 3, 2]
    g = G.astype(np.float32)[tid]  # [P, 3]
    px, py = gx[inside], gy[inside]
    map_x[y0:y1, x0:x1][inside] = px * m[:, 0, 0] + py * m[:, 1, 0] + m[:, 2, 0]
    map_y[y0:y1, x0:x1][inside] = px * m[:, 0, 1] + py * m[:, 1, 1] + m[:, 2, 1]
    gain[y0:y1, x0:x1][inside] = px * g[:, 0] + py * g[:, 1] + g[:, 2]
    return map_x, map_y, gain


def _paint_mouth(frame: np.ndarray, verts: np.ndarray, mouth_w: float) -> None:
    """Paint the dark mouth cavity between the teeth line and the lower inner lip, anti-aliased (in place)."""
    n_teeth = len(INNER_UPPER) - 2
    teeth = np.concatenate([verts[INNER_UPPER[:1], :2], verts[-n_teeth:, :2], verts[INNER_UPPER[-1:], :2]])
    lower = verts[INNER_LOWER, :2]  # [11, 2], left to right
    gap = float(np.max(lower[:, 1] - teeth[:, 1]))
    if gap < 0.3:
        return
    poly = np.concatenate([teeth, lower[::-1][1:-1]])
    size = frame.shape[0]
    x0 = int(max(np.floor(poly[:, 0].min()) - 2, 0))
    x1 = int(min(np.ceil(poly[:, 0].max()) + 3, size))
    y0 = int(max(np.floor(poly[:, 1].min()) - 2, 0))
    y1 = int(min(np.ceil(poly[:, 1].max()) + 3, size))
    if x1 <= x0 or y1 <= y0:
        return
    shift = 4
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - np.array([x0, y0])) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    a = mask.astype(np.float32)[..., None] / 255.0
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    o_t, o_l = np.argsort(teeth[:, 0]), np.argsort(lower[:, 0])
    y_top = np.interp(gx, teeth[o_t, 0], teeth[o_t, 1])
    y_bot = np.interp(gx, lower[o_l, 0], lower[o_l, 1])
    cx = 0.5 * (lower[0, 0] + lower[-1, 0])
    half = max(0.5 * abs(lower[-1, 0] - lower[0, 0]), 1.0)
    rel = np.clip(np.abs(gx - cx) / half, 0, 1)  # 0 in the middle, 1 at the corners
    depth = np.clip((gy - y_top) / np.maximum(y_bot - y_top, 1.0), 0, 1)  # 0 under the teeth, 1 at the lower lip
    # dark red-brown cavity: shadow under the teeth, darkest inside, a tongue tint towards the lower lip
    edge = np.array([96, 40, 38], np.float32)
    deep = np.array([38, 12, 12], np.float32)
    mix = np.clip(1.0 - rel ** 2, 0, 1) * (0.55 + 0.45 * np.clip(1.0 - 1.8 * np.abs(depth - 0.45), 0, 1))
    colour = edge + (deep - edge) * mix[..., None]
    shadow = np.exp(-depth / 0.12)[..., None] * 0.5  # just below the teeth
    colour = colour * (1 - shadow) + np.array([20, 6, 6], np.float32) * shadow
    tongue = np.array([128, 54, 54], np.float32)
    tmix = (_smoothstep(depth, 0.55, 1.0) * (1 - rel ** 2) * min(1.0, gap / (0.3 * mouth_w)))[..., None] * 0.55
    colour = colour * (1 - tmix) + tongue * tmix
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(region * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def vertex_shading(scene: DemoScene, R: np.ndarray) -> np.ndarray:
    """Brightness change of each warp vertex when the head is rotated by ``R`` (Lambertian, fixed light). ``[V']``.

    The photo already contains the frontal shading, so the gain is the ratio of rotated to original shading.
    """
    n = scene.normals @ R.T  # [V, 3]
    amb = 0.45
    lit0 = amb + np.maximum(scene.normals @ LIGHT_DIR, 0.0)
    lit = amb + np.maximum(n @ LIGHT_DIR, 0.0)
    gain = np.ones(len(scene.src_xy), np.float32)
    gain[: len(n)] = np.clip(lit / lit0, 0.7, 1.3)
    return gain


def render_frame(scene: DemoScene, truth: DemoTruth, i: int) -> np.ndarray:
    """Render frame ``i`` of the demo as uint8 RGB ``[S, S, 3]``."""
    verts = frame_vertices(scene, truth, i)
    map_x, map_y, gain = _warp_maps(scene, verts, vertex_shading(scene, truth.R[i]))
    warped = cv2.remap(scene.rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    a = warped[..., 3:4] / 255.0
    out = warped[..., :3] * gain[..., None] * a + scene.plate * (1.0 - a)
    frame = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    _paint_mouth(frame, verts, scene.mouth_width)
    return frame


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------

def generate_demo(out_video: str | Path, out_truth: str | Path, spec: DemoSpec = DemoSpec(),
                  progress: bool = True) -> dict:
    """Render the demo talking-head video (H.264 + AAC mp4) and its ground truth ``.npz``.

    Returns a summary: ``n_frames``, ``duration`` (s), ``n_sentences``, ``seconds`` (wall time taken).
    """
    from gt_core.io.video import write_video, write_wav

    t_start = time.time()
    out_video, out_truth = Path(out_video), Path(out_truth)
    scene = prepare_scene(spec.size)
    plan = plan_demo(spec)
    truth = plan.truth
    audio = resample(plan.script.audio, plan.script.sample_rate, AUDIO_RATE)
    n_samples = int(round(spec.duration_s * AUDIO_RATE))
    audio = np.pad(audio, (0, max(0, n_samples - len(audio))))[:n_samples]
    out_video.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_video.parent) as tmp:
        wav = Path(tmp) / "speech.wav"
        write_wav(wav, audio, AUDIO_RATE)
        frames = (render_frame(scene, truth, i) for i in
                  tqdm(range(truth.n_frames), desc="demo video", unit="frame", disable=not progress))
        write_video(out_video, frames, fps=spec.fps, audio_wav=wav)
    truth.save(out_truth)
    return {
        "n_frames": truth.n_frames,
        "duration": spec.duration_s,
        "n_sentences": len(plan.script.sentences),
        "seconds": round(time.time() - t_start, 2),
    }
