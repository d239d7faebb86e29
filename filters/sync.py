"""Audio-visual sync: how far the audio is shifted against the lips, and how sure we are.

Both scorers fill the same catalog columns (DESIGN.md §2, "The sync scorer"):

* ``sync_offset`` — the shift in frames, audio relative to video, at which audio and lips agree best, in the
  generator's convention (``filters.synthetic``): ``+k`` means the audio is late, the sound of mouth frame
  ``f`` is heard at frame ``f + k``. (syncnet_python prints the opposite sign.)
* ``sync_dist`` — the distance at that shift (Sync-D; lower is better).
* ``sync_conf`` — the median distance over all shifts minus the distance at the best one (Sync-C).
* ``sync_scorer`` — the scorer's name; thresholds are per scorer, so a profile must know which one ran.

``LipAudioSyncScorer`` is the weight-free default: per frame the inner-lip gap from the face mesh against
the audio's log-mel energy, both high-passed, compared by correlation over ±15 frame shifts.
``filters.syncnet.SyncNetScorer`` is SyncNet with the public ``syncnet_v2.model`` weights from a local path.
``make_sync_scorer`` picks one. Neither applies thresholds.
"""

from __future__ import annotations

import numpy as np

from filters.clip_data import ClipData

MAX_SHIFT_FRAMES = 15

# Face-mesh landmarks: inner lips, upper 13 and lower 14; outer eye corners 33 and 263 (the face's scale).
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


def sync_columns(shifts: np.ndarray, distances: np.ndarray, scorer: str) -> dict:
    """The catalog columns from one distance per shift (audio shifted late by ``shifts[i]`` frames).

    offset = the shift of least distance, Sync-D = that distance, Sync-C = median distance − Sync-D.
    """
    best = int(np.argmin(distances))
    least = float(distances[best])
    return {
        "sync_offset": int(shifts[best]),
        "sync_dist": least,
        "sync_conf": float(np.median(distances)) - least,
        "sync_scorer": scorer,
    }


def lip_opening(landmarks: np.ndarray) -> np.ndarray:
    """(N,) inner-lip gap (landmarks 13–14) over the outer-eye-corner distance (33–263); NaN without a face."""
    points = landmarks[..., :2].astype(np.float64)
    gap = np.linalg.norm(points[:, UPPER_INNER_LIP] - points[:, LOWER_INNER_LIP], axis=1)
    eyes = np.linalg.norm(points[:, RIGHT_EYE_OUTER] - points[:, LEFT_EYE_OUTER], axis=1)
    return gap / eyes


def frame_log_energy(audio: np.ndarray, rate: int, fps: float, n_frames: int, band_hz: tuple[float, float],
                     floor_db: float, n_mels: int = 40) -> np.ndarray:
    """(n_frames,) log-mel energy in dB of the speech band, one value per video frame.

    Frame f's window is centred on the middle of its own samples ``[f, f + 1) · rate / fps``, so it lines up
    with the frame's mouth (ClipData: sample 0 is frame 0). Values are floored ``floor_db`` below the clip's
    loudest frame, so the level of the background noise in pauses does not count as lip-relevant detail.
    """
    import librosa

    hop = int(round(rate / fps))
    n_fft = 1 << int(np.ceil(np.log2(1.6 * hop)))  # covers the frame with some overlap: 1024 at 16 kHz
    pad = (n_fft - hop) // 2
    needed = n_frames * hop
    samples = np.zeros(needed + 2 * pad, np.float32)
    usable = min(len(audio), needed)
    samples[pad:pad + usable] = audio[:usable]
    mel = librosa.feature.melspectrogram(y=samples, sr=rate, n_fft=n_fft, hop_length=hop, center=False,
                                         n_mels=n_mels, fmin=band_hz[0], fmax=band_hz[1])
    return librosa.power_to_db(mel.sum(axis=0)[:n_frames], ref=np.max, top_db=floor_db)


def highpass(values: np.ndarray, window: int) -> np.ndarray:
    """``values`` minus their centred moving average over ``window`` frames (removes slow trends)."""
    from scipy.ndimage import uniform_filter1d

    return values - uniform_filter1d(values, window, mode="nearest")


def shifted_correlations(video: np.ndarray, audio: np.ndarray, valid: np.ndarray, shifts: np.ndarray,
                         min_overlap: int) -> np.ndarray:
    """Pearson correlation of ``video[f]`` with ``audio[f + s]`` for each shift s, over frames f where
    ``valid[f]`` and ``f + s`` is inside the clip.

    Raises ValueError when a shift has fewer than ``min_overlap`` such frames or a signal is flat there.
    """
    n = len(video)
    out = np.empty(len(shifts))
    for index, shift in enumerate(shifts):
        frames = np.arange(max(0, -shift), min(n, n - shift))
        frames = frames[valid[frames]]
        if len(frames) < min_overlap:
            raise ValueError(f"only {len(frames)} usable frames at shift {shift:+d} (need {min_overlap}); "
                             f"{int(valid.sum())} of {n} frames have face landmarks")
        x, y = video[frames], audio[frames + shift]
        x, y = x - x.mean(), y - y.mean()
        scale = np.sqrt((x @ x) * (y @ y))
        if scale < 1e-12:
            raise ValueError("lip opening or audio energy is constant: nothing to correlate")
        out[index] = (x @ y) / scale
    return out


class LipAudioSyncScorer:
    """Weight-free sync: correlation of lip opening with speech-band log-mel energy over ±max_shift frames.

    1. Lip opening per frame (``lip_opening``); frames without landmarks are linearly interpolated for the
       filter in step 3 and excluded from the correlation.
    2. Audio log-mel energy per frame (``frame_log_energy``) over ``band_hz``, floored ``floor_db`` below peak.
    3. Both high-passed with a ``highpass_s`` moving average, so slow drifts (head pitch, level changes)
       do not correlate.
    4. Distance per shift = 1 − Pearson correlation (0 = lips and sound move together, 2 = opposite);
       the columns follow ``sync_columns``.

    ``__init__`` keywords are the configuration. Needs at least ``min_overlap_s`` of frames with landmarks
    at every shift, otherwise ``score`` raises ValueError saying why.
    """

    name = "lip_audio_xcorr"
    version = "1"

    def __init__(self, max_shift: int = MAX_SHIFT_FRAMES, band_hz: tuple[float, float] = (80.0, 4000.0),
                 floor_db: float = 40.0, highpass_s: float = 1.0, min_overlap_s: float = 1.0):
        self.max_shift = max_shift
        self.band_hz = band_hz
        self.floor_db = floor_db
        self.highpass_s = highpass_s
        self.min_overlap_s = min_overlap_s

    def distances(self, clip: ClipData) -> tuple[np.ndarray, np.ndarray]:
        """(shifts, 1 − correlation at each shift)."""
        valid = clip.face_found
        if not valid.any():
            raise ValueError(f"no face landmarks in any of {clip.n_frames} frames")
        lips = lip_opening(clip.landmarks)
        frames = np.arange(clip.n_frames)
        lips = np.interp(frames, frames[valid], lips[valid])
        energy = frame_log_energy(clip.audio, clip.audio_rate, clip.fps, clip.n_frames, self.band_hz,
                                  self.floor_db)
        window = max(3, int(round(self.highpass_s * clip.fps)) | 1)
        shifts = np.arange(-self.max_shift, self.max_shift + 1)
        correlations = shifted_correlations(highpass(lips, window), highpass(energy, window), valid, shifts,
                                            min_overlap=int(np.ceil(self.min_overlap_s * clip.fps)))
        return shifts, 1.0 - correlations

    def score(self, clip: ClipData) -> dict:
        shifts, distances = self.distances(clip)
        return sync_columns(shifts, distances, self.name)


def make_sync_scorer(weights_path: str | None = None, device: str = "cpu"):
    """SyncNet when a local ``syncnet_v2.model`` (or .safetensors) path is given, else the weight-free default."""
    if weights_path is None:
        return LipAudioSyncScorer()
    from filters.syncnet import SyncNetScorer

    return SyncNetScorer(weights_path, device=device)
