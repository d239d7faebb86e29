"""Sync-C and Sync-D of a generated talking-head video (LSE-C / LSE-D in Wav2Lip's evaluation).

The reference is SyncNet's evaluation (Chung & Zisserman 2016, ``syncnet_python``'s ``evaluate``, reused by
Wav2Lip, LatentSync and the talking-head papers FADA compares with): mean embedding distance between the
video and the audio shifted by s frames, for s in ±15; offset = the shift of least distance, Sync-D = that
distance (lower is better), Sync-C = median distance − Sync-D (higher is better).

The values come from the data filters' own scorer, so generated videos and training clips are measured on
one scale: ``filters.syncnet.SyncNetScorer`` when local ``syncnet_v2.model`` weights are given, else the
weight-free default ``filters.sync.LipAudioSyncScorer`` (lip opening against speech energy; its distance is
1 − correlation). ``sync_scorer`` names the scorer: values of different scorers are not comparable.

Both values are taken at the best shift, so an audio lag within ±15 frames leaves them unchanged and shows
only in ``sync_offset``. A generator conditioned on aligned audio should be best at shift 0, so the same
two values at shift 0 are reported too: ``sync_d_at_0`` = distance at shift 0, ``sync_c_at_0`` = median
distance − ``sync_d_at_0``.

A generated video is a face crop like an ingested clip (frames (T, H, W, 3) uint8 RGB at 25 fps, audio
16 kHz mono float in [-1, 1], sample 0 at frame 0). ``generated_clip`` wraps it as the scorers'
``ClipData`` with face-mesh landmarks from ``filters.clip_data.LandmarkModel``; both scorers find the face
from those landmarks.
"""

from __future__ import annotations

import numpy as np

from filters.clip_data import ClipData, LandmarkModel
from filters.media_contract import AUDIO_RATE, FPS
from filters.sync import LipAudioSyncScorer, make_sync_scorer
from filters.sync_columns import sync_columns


def generated_clip(frames: np.ndarray, audio: np.ndarray, landmark_model: LandmarkModel) -> ClipData:
    """A generated video as ``ClipData`` (25 fps, 16 kHz), with its face-mesh landmarks computed here."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D) at {AUDIO_RATE} Hz, got shape {audio.shape}")
    return ClipData(key="generated", frames=frames, fps=float(FPS), audio=audio, audio_rate=AUDIO_RATE,
                    landmarks=landmark_model.landmarks(frames), record={"key": "generated", "fps": float(FPS)})


def distance_curve(scorer, clip: ClipData) -> tuple[np.ndarray, np.ndarray]:
    """(shifts, distance at each shift) of either sync scorer; a shift of +k means audio late by k frames."""
    if isinstance(scorer, LipAudioSyncScorer):
        return scorer.distances(clip)
    from filters.syncnet import shifted_distances

    video, audio = scorer.embeddings(clip)
    distances = shifted_distances(video, audio, scorer.max_shift).numpy().astype(np.float64)
    return np.arange(-scorer.max_shift, scorer.max_shift + 1), distances


class SyncMetric:
    """Sync scores of generated videos; see the module docstring. ``__init__`` keywords are the configuration.

    ``syncnet_weights``: local path to ``syncnet_v2.model`` (or .safetensors); None = the weight-free scorer.
    ``landmark_model``: share one with other metrics to load mediapipe once.
    ``score`` raises ValueError when the scorer cannot score the video (no face, too short).
    """

    def __init__(self, syncnet_weights: str | None = None, device: str = "cpu",
                 landmark_model: LandmarkModel | None = None):
        self.scorer = make_sync_scorer(syncnet_weights, device)
        self.landmark_model = LandmarkModel() if landmark_model is None else landmark_model

    def score(self, frames: np.ndarray, audio: np.ndarray) -> dict:
        """``sync_c``, ``sync_d``, ``sync_offset``, ``sync_scorer``, ``sync_c_at_0``, ``sync_d_at_0``."""
        shifts, distances = distance_curve(self.scorer, generated_clip(frames, audio, self.landmark_model))
        columns = sync_columns(shifts, distances, self.scorer.name)
        at_zero = float(distances[shifts == 0][0])
        return {
            "sync_c": columns["sync_conf"],
            "sync_d": columns["sync_dist"],
            "sync_offset": columns["sync_offset"],
            "sync_scorer": columns["sync_scorer"],
            "sync_c_at_0": float(np.median(distances)) - at_zero,
            "sync_d_at_0": at_zero,
        }
