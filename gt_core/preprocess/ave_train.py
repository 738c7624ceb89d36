"""Train SyncTalk's audio–visual encoder on one cell's training frames, score it on held-out windows, and extract the
512-d per-frame audio features a SyncTalk-style method reads (the ``ave`` rule).

SyncTalk's authors pre-trained the AVE on LRS2 and released only the audio tower's weights, not the training code.
So, unless their checkpoint is given (``--weights``, from the ``download_synctalk_ave`` rule), the two towers of
:mod:`gt_core.encoders.ave` are trained here contrastively, SyncNet-style (Wav2Lip's ``color_syncnet_train.py``):
a 5-frame lower-face window with the mel window of its first frame is a positive, the same face window with the mel
window of a frame shifted by ``min_shift`` … ``max_shift`` frames either way is a negative (half the batch each);
the loss is BCE of the cosine of the L2-normalised embeddings against those labels.

Deviations from the original, and why:

- trained per cell, on the few seconds of that cell's training frames, instead of once on LRS2 (the checkpoint's
  training data and code were never released; training on the cell's own frames keeps the few-shot protocol honest:
  nothing but the cell's training frames is seen);
- the ``demo`` preset trains for 200 iterations of 32 pairs (CPU budget, ~1 min), Wav2Lip's SyncNet trains for
  hundreds of thousands; the ``paper`` preset trains longer but is still per cell;
- negatives are shifted windows of the same clip only (Wav2Lip draws a random other window, which on a few seconds
  of one speaker is the same thing but can fall within 0.2 s of the positive), so a negative never overlaps its
  positive in time;
- the last ``heldout_fraction`` of the training frames (after a gap of one window, so no audio sample or frame is
  shared) is held out from training and only used to score the trained towers; features are then extracted for the
  whole video (train and test audio; test pixels are never read: only the training slice of ``frames.npy`` is).

Held-out score (``ave.json`` ``heldout``): for every held-out face window, its own audio window and every audio
window shifted by ``min_shift`` … ``max_shift`` frames inside the held-out span. ``auc``: probability that a true
pair scores above a shifted one (chance 0.5); ``balanced_accuracy``: mean of the true- and shifted-pair accuracies
at the SyncNet threshold 0.5 (chance 0.5); ``offset_accuracy``: how often the true offset has the highest score among
all candidates, with its chance level ``offset_chance`` (the mean of 1 / number of candidates).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gt_core.encoders.ave import (FEATURE_DIM, SYNC_FRAMES, AudioEncoder, SyncNet, face_windows,
                                  feature_window_index, load_authors_audio_encoder, mel_windows, melspectrogram,
                                  mouth_crops)
from gt_core.errors import InputError
from gt_core.io.atomic import atomic_path, save_json, save_npy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AVEConfig:
    """Contrastive training of the AVE on one cell (validated on construction)."""

    iterations: int = 200
    batch_size: int = 32  # pairs per step: batch_size/2 face windows, each with its own and a shifted audio window
    lr: float = 1e-3  # Adam
    crop_h: int = 24  # lower-half face crop, pixels (Wav2Lip: 48×96 at its 96 px faces)
    crop_w: int = 48
    min_shift: int = 5  # frames; a negative's audio is at least this far (0.2 s, a whole window) from the face
    max_shift: int = 15
    heldout_fraction: float = 0.2  # the last part of the training frames, scored but never trained on
    jitter: int = 2  # augmentation: random shift of a face window's crop, ± pixels (the same for its 5 frames)
    brightness: float = 0.2  # augmentation: a face window's pixels times U(1 − b, 1 + b)
    seed: int = 0

    def __post_init__(self):
        problems = []
        if self.iterations < 1 or self.batch_size < 2 or self.batch_size % 2:
            problems.append("iterations >= 1 and an even batch_size >= 2")
        if not self.lr > 0:
            problems.append("lr > 0")
        if self.crop_h < 8 or self.crop_w < 8:
            problems.append("crop_h, crop_w >= 8")
        if not SYNC_FRAMES <= self.min_shift <= self.max_shift:
            problems.append(f"{SYNC_FRAMES} <= min_shift <= max_shift (a shift under one window overlaps the truth)")
        if self.jitter < 0 or not 0 <= self.brightness < 1:
            problems.append("jitter >= 0 and 0 <= brightness < 1")
        if not 0.05 <= self.heldout_fraction <= 0.5:
            problems.append("0.05 <= heldout_fraction <= 0.5")
        if problems:
            raise InputError(f"AVE config {asdict(self)}", "invalid: needs " + "; ".join(problems),
                             "fix the preset or the override")

    @property
    def crop_hw(self) -> tuple[int, int]:
        return self.crop_h, self.crop_w


PRESETS: dict[str, AVEConfig] = {
    "tiny": AVEConfig(iterations=100, batch_size=32),  # tests: ~30 s on one core (the least that clearly learns)
    "small": AVEConfig(iterations=120, batch_size=32),
    "demo": AVEConfig(iterations=200, batch_size=32),  # CPU, <= ~90 s a cell
    "paper": AVEConfig(iterations=5000, batch_size=64, lr=3e-4),  # GPU user
}


def preset(name: str, **overrides) -> AVEConfig:
    if name not in PRESETS:
        raise InputError(f"preset {name!r}", "unknown AVE preset", f"use one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# ----------------------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class Spans:
    """Face-window starts (indices into the training frames) of the trained and the held-out span."""

    train: np.ndarray  # [A] int64
    heldout: np.ndarray  # [B] int64 (empty when the cell is too short to hold windows out: `why` says so)
    why: str = ""


def split_windows(n_frames: int, cfg: AVEConfig) -> Spans:
    """Train on windows inside the first part, score on windows inside the last ``heldout_fraction``; a gap of one
    window (5 frames) between the spans, so no frame, and (mel windows being as long as face windows, 0.2 s) no
    audio sample, belongs to both."""
    n_held = int(round(cfg.heldout_fraction * n_frames))
    held0 = n_frames - n_held
    train_stop = held0 - SYNC_FRAMES  # frames [0, train_stop) train, [held0, n) held out
    min_span = cfg.max_shift + SYNC_FRAMES + 1
    if (n_held < SYNC_FRAMES + cfg.min_shift + 1 or train_stop < min_span) and n_frames >= min_span:
        # too short to hold windows out: train on every window, report the held-out score as unavailable
        why = (f"{n_frames} training frames are too few to hold windows out (needs {min_span} trained + "
               f"{SYNC_FRAMES + cfg.min_shift + 1} held-out frames)")
        return Spans(np.arange(0, n_frames - SYNC_FRAMES + 1), np.zeros(0, np.int64), why)
    if n_held < SYNC_FRAMES + cfg.min_shift + 1 or train_stop < min_span:
        raise InputError(f"{n_frames} training frames", f"too few for the AVE's split (needs at least "
                         f"{min_span} trained + {SYNC_FRAMES + cfg.min_shift + 1} held-out frames)",
                         "use a longer training duration or lower max_shift/min_shift")
    return Spans(np.arange(0, train_stop - SYNC_FRAMES + 1), np.arange(held0, n_frames - SYNC_FRAMES + 1))


def _shifted(starts: np.ndarray, span: np.ndarray, cfg: AVEConfig, rng: np.random.Generator) -> np.ndarray:
    """A random shift of ``min_shift`` … ``max_shift`` frames either way per start, staying inside ``span``."""
    lo, hi = span[0], span[-1]
    out = np.empty_like(starts)
    shifts = np.concatenate([-np.arange(cfg.min_shift, cfg.max_shift + 1), np.arange(cfg.min_shift, cfg.max_shift + 1)])
    for k, s in enumerate(starts):
        ok = shifts[(s + shifts >= lo) & (s + shifts <= hi)]
        out[k] = s + rng.choice(ok)
    return out


# ---------------------------------------------------------------------------------------------------------- train
def train_sync(crops: np.ndarray, mel: np.ndarray, frame_ids: np.ndarray, cfg: AVEConfig,
               progress: bool = True) -> tuple[SyncNet, dict]:
    """Contrastive training on the trained span. ``crops [N, 3, h, w]`` mouth crops of the cell's training frames,
    ``mel [80, T]`` the whole clip's log-mel, ``frame_ids [N]`` the frames' indices in the video (the audio clock).
    Returns the model (eval mode) and a record: the loss curve and the held-out scores."""
    j = cfg.jitter
    assert crops.ndim == 4 and crops.shape[1:] == (3, cfg.crop_h + 2 * j, cfg.crop_w + 2 * j), crops.shape
    centre = np.ascontiguousarray(crops[:, :, j:j + cfg.crop_h, j:j + cfg.crop_w])  # what is scored
    assert frame_ids.shape == (len(crops),), frame_ids.shape
    spans = split_windows(len(crops), cfg)
    mels_all = torch.from_numpy(mel_windows(mel, frame_ids))  # [N, 1, 80, 16]: the window of each training frame
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = SyncNet(cfg.crop_hw)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    half = cfg.batch_size // 2
    labels = torch.cat([torch.ones(half), torch.zeros(half)])
    losses: list[float] = []
    model.train()
    start = time.perf_counter()
    for _ in tqdm(range(cfg.iterations), desc="ave", unit="it", disable=not progress, leave=False):
        anchors = rng.choice(spans.train, size=half)  # each face window once, with its own and a shifted audio
        audio_at = np.concatenate([anchors, _shifted(anchors, spans.train, cfg, rng)])
        faces = torch.from_numpy(augment(face_windows(crops, anchors), cfg, rng))  # [B/2, 15, h, w]
        mels = mels_all[torch.from_numpy(audio_at)]  # [B, 1, 80, 16]
        v = F.normalize(model.face(faces), dim=1).repeat(2, 1)  # [B, 512]
        a = F.normalize(model.audio(mels), dim=1)  # [B, 512]
        prob = (a * v).sum(dim=1).clamp(1e-6, 1 - 1e-6)  # SyncNet's in-sync probability
        loss = F.binary_cross_entropy(prob, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    recalibrate_bn(model, centre, mels_all, spans.train)
    seconds = time.perf_counter() - start
    record = {
        "train_seconds": seconds, "iterations": cfg.iterations, "loss": loss_summary(losses),
        "windows": {"train": int(len(spans.train)), "heldout": int(len(spans.heldout)),
                    "train_frames": [int(frame_ids[spans.train[0]]), int(frame_ids[spans.train[-1] + SYNC_FRAMES - 1]) + 1],
                    "heldout_frames": ([int(frame_ids[spans.heldout[0]]),
                                        int(frame_ids[spans.heldout[-1] + SYNC_FRAMES - 1]) + 1]
                                       if len(spans.heldout) else [])},
        "heldout": (sync_scores(model, centre, mels_all, spans.heldout, cfg) if len(spans.heldout)
                    else {"available": False, "reason": spans.why}),
        "train_fit": sync_scores(model, centre, mels_all, spans.train, cfg),
    }
    return model, record


@torch.no_grad()
def recalibrate_bn(model: SyncNet, crops: np.ndarray, mels: torch.Tensor, starts: np.ndarray, batch: int = 64) -> None:
    """Replace the BatchNorm running statistics by their exact averages over the trained span (weights fixed), then
    switch to eval mode. The exponential averages collected during a few hundred fast-moving steps lag the weights:
    on the demo cell they halved the eval-mode AUC compared with batch statistics."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    for s in range(0, len(starts), batch):
        part = starts[s:s + batch]
        model.face(torch.from_numpy(face_windows(crops, part)))
        model.audio(mels[torch.from_numpy(part)])
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def augment(windows: np.ndarray, cfg: AVEConfig, rng: np.random.Generator) -> np.ndarray:
    """Random crop (± ``jitter`` px) and brightness of each face window: ``[B, 15, h + 2j, w + 2j]`` → ``[B, 15, h, w]``."""
    out = np.empty((len(windows), windows.shape[1], cfg.crop_h, cfg.crop_w), np.float32)
    dy, dx = rng.integers(0, 2 * cfg.jitter + 1, size=(2, len(windows)))
    gain = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness, size=len(windows)).astype(np.float32)
    for k in range(len(windows)):
        out[k] = windows[k, :, dy[k]:dy[k] + cfg.crop_h, dx[k]:dx[k] + cfg.crop_w] * gain[k]
    return np.clip(out, 0.0, 1.0)


def loss_summary(losses: list[float], points: int = 20) -> dict:
    k = max(1, len(losses) // 10)
    edges = np.linspace(0, len(losses), min(points, len(losses)) + 1).astype(int)
    return {"first_10pct": float(np.mean(losses[:k])), "last_10pct": float(np.mean(losses[-k:])),
            "min": float(np.min(losses)), "chance_bce": float(np.log(2.0)),
            "curve": [float(np.mean(losses[a:b])) for a, b in zip(edges[:-1], edges[1:])]}


@torch.no_grad()
def sync_scores(model: SyncNet, crops: np.ndarray, mels: torch.Tensor, starts: np.ndarray, cfg: AVEConfig) -> dict:
    """Score every face window in ``starts`` against its own audio window and all shifts of ``min_shift`` …
    ``max_shift`` frames inside the span (see the module docstring for the metrics and their chance levels)."""
    model.eval()
    lo, hi = starts[0], starts[-1]
    faces = F.normalize(model.face(torch.from_numpy(face_windows(crops, starts))), dim=1)  # [S, 512]
    audio = F.normalize(model.audio(mels[lo:hi + 1]), dim=1)  # [S, 512], audio window of each start
    sim = (faces @ audio.T).numpy()  # [S, S]: face window i vs audio window j
    pos, neg, best, chance = [], [], [], []
    for i in range(len(starts)):
        d = np.arange(len(starts)) - i
        cand = (np.abs(d) >= cfg.min_shift) & (np.abs(d) <= cfg.max_shift)
        if not cand.any():
            continue
        pos.append(sim[i, i])
        neg.extend(sim[i, cand])
        best.append(sim[i, i] > sim[i, cand].max())
        chance.append(1.0 / (1 + cand.sum()))
    pos, neg = np.array(pos), np.array(neg)
    auc = float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    return {"available": True, "n_windows": int(len(pos)), "n_true_pairs": int(len(pos)), "n_shifted_pairs": int(len(neg)),
            "auc": auc, "auc_chance": 0.5,
            "balanced_accuracy": float(0.5 * ((pos > 0.5).mean() + (neg <= 0.5).mean())), "balanced_accuracy_chance": 0.5,
            "offset_accuracy": float(np.mean(best)), "offset_chance": float(np.mean(chance)),
            "mean_prob_true": float(pos.mean()), "mean_prob_shifted": float(neg.mean())}


# -------------------------------------------------------------------------------------------------------- extract
@torch.no_grad()
def extract_features(encoder: AudioEncoder, mel: np.ndarray, n_frames: int, batch: int = 256) -> np.ndarray:
    """The per-frame AVE features of a whole video: ``[n_frames, 512]`` float32, frame j ← window j − 2 (the
    original's end padding; :func:`gt_core.encoders.ave.feature_window_index`)."""
    encoder.eval()
    index = feature_window_index(n_frames, mel.shape[1])
    needed = np.arange(index.max() + 1)
    windows = mel_windows(mel, needed)
    out = np.concatenate([encoder(torch.from_numpy(windows[s:s + batch])).numpy()
                          for s in range(0, len(windows), batch)])
    feats = out[index].astype(np.float32)
    assert feats.shape == (n_frames, FEATURE_DIM), feats.shape
    return feats


# ---------------------------------------------------------------------------------------------------------- stage
def read_wav_16k(path: Path) -> np.ndarray:
    from gt_core.io.video import read_wav

    if not path.is_file():
        raise InputError(path, "subject audio missing", "run the `audio` rule (snakemake) to extract it")
    audio, rate = read_wav(path)
    if rate != 16000:
        raise InputError(path, f"sample rate {rate} Hz, the AVE needs 16 kHz", "re-extract it with the `audio` rule")
    return audio


def training_view(cell_dir: Path) -> tuple[dict, Path, np.ndarray, np.ndarray, np.ndarray]:
    """(cell meta, data dir, frame ids [N], frames [N, H, W, 3] uint8, landmarks [N, 478, 3]) of the cell's
    training frames only: the slice of the memory-mapped ``frames.npy`` (test pixels are never read)."""
    from gt_core.preprocess.landmarks import Landmarks

    meta_path = cell_dir / "cell.json"
    if not meta_path.is_file():
        raise InputError(meta_path, "cell not built", "run `snakemake <that file>` to build the cell first")
    meta = json.loads(meta_path.read_text())
    data_dir = (cell_dir / meta["data_dir"]).resolve()
    start, stop = meta["train"]
    for p in (data_dir / "frames.npy", data_dir / "landmarks.npz"):
        if not p.is_file():
            raise InputError(p, "preprocessing output missing", "run the preprocessing rules first (snakemake)")
    frames = np.asarray(np.load(data_dir / "frames.npy", mmap_mode="r")[start:stop])
    landmarks = Landmarks.load(data_dir / "landmarks.npz").interpolated()[start:stop]
    return meta, data_dir, np.arange(start, stop), frames, landmarks


def ave_stage(cell_dir: str | Path, out_dir: str | Path, preset_name: str = "demo", weights: str | Path | None = None,
              seed: int | None = None, weights_model=None, progress: bool = True,
              overrides: dict | None = None) -> dict:
    """Write ``out_dir/{features.npy, ave.json, ave.pt}`` for one cell (the ``ave`` rule). With ``weights`` the
    authors' audio tower is used (after its checksum, ``weights_model``, default the SyncTalk file, is verified)."""
    from gt_core.encoders.ave import SYNCTALK_AVE
    from gt_core.io.download import file_digest, matches

    cell_dir, out_dir = Path(cell_dir), Path(out_dir)
    meta, data_dir, frame_ids, frames, landmarks = training_view(cell_dir)
    wav_path = data_dir / "audio.wav"
    mel = melspectrogram(read_wav_16k(wav_path))  # [80, T]: train and test audio (a legitimate input)
    n_video = int(meta["n_frames_video"])
    cfg = preset(preset_name, **(overrides or {}), **({} if seed is None else {"seed": seed}))
    info: dict = {"cell": str(cell_dir), "n_frames_video": n_video, "feature_dim": FEATURE_DIM,
                  "indexing": "features[j] is video frame j's: the 16 mel frames from int(80*(j-2)/25), clamped to "
                              "the first/last window (SyncTalk's end padding), i.e. 0.2 s centred on frame j",
                  "wav": str(wav_path)}
    if weights is not None:
        weights, model_file = Path(weights), weights_model or SYNCTALK_AVE
        if not weights.is_file():
            raise InputError(weights, "AVE weights file missing", "run `snakemake download_synctalk_ave`, or drop "
                             "--weights to train the AVE in the pipeline")
        if not matches(weights, model_file):
            raise InputError(weights, f"checksum mismatch ({model_file.algo} is not {model_file.digest})",
                             "delete it and re-run `snakemake download_synctalk_ave`")
        encoder = load_authors_audio_encoder(weights)
        sha = file_digest(weights, model_file.algo)
        info.update(source=f"authors' checkpoint {sha}", weights=str(weights), checksum_algo=model_file.algo,
                    train_seconds=0.0, iterations=0,
                    heldout={"available": False, "reason": "the authors' checkpoint holds only the audio tower (no "
                             "face tower was released), so sync on held-out windows cannot be scored"})
        state = {"audio_encoder": encoder.audio_encoder.state_dict(), "face_encoder": None, "source": info["source"]}
    else:
        crops = mouth_crops(frames, landmarks, cfg.crop_hw, pad=cfg.jitter)
        model, record = train_sync(crops, mel, frame_ids, cfg, progress=progress)
        encoder = model.audio
        info.update(source="trained in the pipeline", config=asdict(cfg), preset=preset_name, **record)
        state = {"audio_encoder": encoder.audio_encoder.state_dict(), "face_encoder": model.face.state_dict(),
                 "config": asdict(cfg), "source": info["source"]}
        h = record["heldout"]
        if h["available"]:
            log.info("AVE held-out sync: AUC %.3f (chance 0.5), offset accuracy %.3f (chance %.3f), %.1f s training",
                     h["auc"], h["offset_accuracy"], h["offset_chance"], record["train_seconds"])
        else:
            log.info("AVE held-out sync unavailable: %s", h["reason"])
    features = extract_features(encoder, mel, n_video)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npy(out_dir / "features.npy", features)
    with atomic_path(out_dir / "ave.pt") as tmp:
        torch.save(state, tmp)  # audio_encoder: the original's Sequential keys (load like the authors' file)
    save_json(out_dir / "ave.json", info)
    return info
