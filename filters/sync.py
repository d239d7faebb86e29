"""Audio-visual sync: how far the audio is shifted against the lips, and how sure we are.

Both scorers fill the columns of ``filters.sync_columns`` (DESIGN.md §2, "The sync scorer").

``LipAudioSyncScorer`` is the weight-free default (version 3): four mouth descriptors from the face mesh
against 21 log-mel audio features, related per shift by a cross-validated ridge regression, the offset read
on the frames every shift shares, the confidence measured against the shifts away from the peak (details
in its docstring). ``filters.syncnet.SyncNetScorer``
is SyncNet with ``syncnet_v2.model`` weights (public or trained by ``fada train-syncnet``) from a local path.
``make_sync_scorer`` picks one. Neither applies thresholds.
"""

from __future__ import annotations

import numpy as np

from filters.clip_data import ClipData
from filters.sync_columns import MAX_SHIFT_FRAMES

# Face-mesh landmark pairs (mediapipe's 468-point topology). Inner lips: 13–14 (centre), 82–87 and 312–317
# (either side); outer lips: 0–17, 37–84, 267–314; mouth corners 61–291; nose base 2 to chin 152 (the jaw);
# outer eye corners 33–263, the face's scale.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
OUTER_LIP_PAIRS = ((0, 17), (37, 84), (267, 314))
MOUTH_CORNERS = (61, 291)
NOSE_TO_CHIN = (2, 152)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
MOUTH_DESCRIPTORS = ("inner_aperture", "outer_aperture", "mouth_width", "jaw_drop")


def _pair_distance(points: np.ndarray, pairs) -> np.ndarray:
    return np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=1) for a, b in pairs], axis=0)


def mouth_descriptors(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4) per frame, over the outer-eye-corner distance: inner-lip aperture, outer-lip aperture, mouth
    width, jaw drop (nose base to chin) — the order of ``MOUTH_DESCRIPTORS``; NaN rows without a face."""
    points = landmarks[..., :2].astype(np.float64)
    eyes = np.linalg.norm(points[:, RIGHT_EYE_OUTER] - points[:, LEFT_EYE_OUTER], axis=1)
    columns = [_pair_distance(points, INNER_LIP_PAIRS), _pair_distance(points, OUTER_LIP_PAIRS),
               _pair_distance(points, (MOUTH_CORNERS,)), _pair_distance(points, (NOSE_TO_CHIN,))]
    return np.stack(columns, axis=1) / eyes[:, None]


def frame_log_mel(audio: np.ndarray, rate: int, fps: float, n_frames: int, n_mels: int, band_hz: tuple[float, float],
                  floor_db: float) -> np.ndarray:
    """(n_frames, n_mels + 1) log-mel band energies and the total's, in dB, one row per video frame.

    Frame f's window is centred on the middle of its own samples ``[f, f + 1) · rate / fps``, so it lines up
    with the frame's mouth (ClipData: sample 0 is frame 0). Values are floored ``floor_db`` below the clip's
    loudest band / total, so the level of background noise in pauses does not count as lip-relevant detail.
    """
    import librosa

    hop = int(round(rate / fps))
    n_fft = 1 << int(np.ceil(np.log2(1.6 * hop)))  # covers the frame with some overlap: 1024 at 16 kHz
    pad = (n_fft - hop) // 2
    samples = np.zeros(n_frames * hop + 2 * pad, np.float32)
    usable = min(len(audio), n_frames * hop)
    samples[pad:pad + usable] = audio[:usable]
    mel = librosa.feature.melspectrogram(y=samples, sr=rate, n_fft=n_fft, hop_length=hop, center=False,
                                         n_mels=n_mels, fmin=band_hz[0], fmax=min(band_hz[1], rate / 2))[:, :n_frames]
    bands = librosa.power_to_db(mel, ref=float(mel.max()) + 1e-20, top_db=floor_db)
    total = mel.sum(axis=0)
    total = librosa.power_to_db(total, ref=float(total.max()) + 1e-20, top_db=floor_db)
    return np.concatenate([bands, total[None]], axis=0).T


def highpass(values: np.ndarray, window: int) -> np.ndarray:
    """``values`` minus their centred moving average over ``window`` frames along axis 0 (removes slow trends)."""
    from scipy.ndimage import uniform_filter1d

    return values - uniform_filter1d(values, window, axis=0, mode="nearest")


def _standardised(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=0)
    scale = centred.std(axis=0)
    return centred / np.where(scale > 1e-12, scale, 1.0)


def predicted_correlation(audio: np.ndarray, mouth: np.ndarray, ridge: float, folds: int) -> float:
    """How well the audio features predict the mouth descriptors of the same frames, out of sample.

    Both standardised; a ridge regression mouth ≈ audio · W (penalty ``ridge`` × training frames, on
    standardised features) is fitted on all but one of ``folds`` contiguous blocks and predicts the held-out
    block; returns the mean over descriptors of the Pearson correlation between prediction and truth.
    Out-of-sample, so a random audio track scores about 0 however many features it has.
    """
    x, y = _standardised(audio), _standardised(mouth)
    blocks = np.array_split(np.arange(len(x)), folds)
    # Each fold's training Gram matrices are the whole clip's minus the block's; one batched solve for all.
    block_xx = np.stack([x[b].T @ x[b] for b in blocks])
    block_xy = np.stack([x[b].T @ y[b] for b in blocks])
    train = np.array([len(x) - len(b) for b in blocks], np.float64)
    penalty = ridge * train[:, None, None] * np.eye(x.shape[1])
    weights = np.linalg.solve(x.T @ x - block_xx + penalty, x.T @ y - block_xy)
    predicted = np.concatenate([x[b] @ w for b, w in zip(blocks, weights)])
    predicted, truth = predicted - predicted.mean(axis=0), y - y.mean(axis=0)
    scale = np.sqrt((predicted**2).sum(axis=0) * (truth**2).sum(axis=0))
    return float(np.mean(np.where(scale > 1e-12, (predicted * truth).sum(axis=0) / np.maximum(scale, 1e-12), 0.0)))


class LipAudioSyncScorer:
    """Weight-free sync: how well the audio predicts the mouth's movement, over ±max_shift frames.

    1. Mouth per frame: inner and outer lip aperture, mouth width and jaw drop over the eye-corner distance
       (``mouth_descriptors``). Frames without landmarks are interpolated for the filter of step 3 and
       excluded from step 4.
    2. Audio per frame: ``n_mels`` log-mel band energies over ``band_hz`` and their total, floored
       ``floor_db`` below the clip's peak (``frame_log_mel``).
    3. Both high-passed with a ``highpass_s`` moving average, so slow drifts (head pitch, level changes)
       do not count.
    4. For each shift s (audio late by s): r(s) = ``predicted_correlation`` of mouth[f] from audio[f + s]
       (a ridge regression, cross-validated over ``folds`` blocks — a multivariate correlation that, out of
       sample, is near 0 for unrelated audio), computed twice: over every frame f where both f and f + s are
       in the clip (r_all), and over the frames ``max_shift ≤ f < N − max_shift`` that every shift shares
       (r_common).
    5. ``sync_offset`` = the shift of largest r_common: every shift is judged on the same mouth frames. On
       r_all each shift sees other frames at the clip's ends, and a mouth that is still there paired with
       silence (the padding of a delayed track, a pause before speech) agrees at whichever shifts pair them:
       speaker_4 with its audio 10 frames late peaked at −6 (r 0.41) instead of +9 (0.39).
       ``sync_dist`` = 1 − r_all at the offset. ``sync_conf`` = r_all at the offset − the largest r_all
       more than ``sidelobe_gap`` frames away from it: how far the peak stands above the best alternative
       alignment (a peak-to-sidelobe contrast). Measured on ``../shared/real/`` and the generated speakers
       (docs/quality.md), it separated talking faces from mismatched and shuffled audio with a wider margin
       than Sync-C (r at the peak − the median r, version 2) or a z-score of the peak against the other shifts;
       a mismatched track's peak rarely stands far above its second-best lag.

    A mouth that does not move (std of the high-passed inner aperture under ``min_mouth_motion``: a frozen
    frame, a photo) has no sync evidence: conf 0, dist 1, offset missing (NaN). The scorer raises ValueError,
    recorded in ``score_errors``, instead of guessing when the face is lost in more than ``max_face_lost`` of
    the frames, when under ``min_speech_ratio`` of the audio is voiced speech (``filters.face_audio``), or
    when a shift has under ``min_overlap_s`` of frames with landmarks — the shared frames included, so a
    clip needs 2 · ``max_shift`` frames + ``min_overlap_s`` (2.2 s at 25 fps) to be scored.

    Measured on ``../shared/real/`` and the generated speakers: docs/quality.md ("The sync scorer on real
    footage").
    """

    name = "lip_audio_xcorr"
    version = "3"

    def __init__(self, max_shift: int = MAX_SHIFT_FRAMES, n_mels: int = 20, band_hz: tuple[float, float] = (80.0, 7600.0),
                 floor_db: float = 50.0, highpass_s: float = 1.0, ridge: float = 0.1, folds: int = 5,
                 sidelobe_gap: int = 3, min_mouth_motion: float = 0.004, max_face_lost: float = 0.2,
                 min_speech_ratio: float = 0.1, min_overlap_s: float = 1.0):
        self.max_shift = max_shift
        self.n_mels = n_mels
        self.band_hz = band_hz
        self.floor_db = floor_db
        self.highpass_s = highpass_s
        self.ridge = ridge
        self.folds = folds
        self.sidelobe_gap = sidelobe_gap
        self.min_mouth_motion = min_mouth_motion
        self.max_face_lost = max_face_lost
        self.min_speech_ratio = min_speech_ratio
        self.min_overlap_s = min_overlap_s

    def features(self, clip: ClipData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mouth (N, 4), audio (N, n_mels + 1), valid (N,)): high-passed per-frame features, and which
        frames have landmarks. Raises ValueError when the clip cannot be judged (class docstring)."""
        from filters.face_audio import detect_speech

        valid = clip.face_found
        lost = 1.0 - float(valid.mean()) if clip.n_frames else 1.0
        if lost > self.max_face_lost:
            raise ValueError(f"face lost in {int((~valid).sum())} of {clip.n_frames} frames "
                             f"(more than {self.max_face_lost:.0%}): too little of the mouth to judge sync")
        speech = detect_speech(clip.audio, clip.audio_rate).speech_ratio
        if speech < self.min_speech_ratio:
            raise ValueError(f"only {speech:.0%} of the audio is voiced speech (need {self.min_speech_ratio:.0%}): "
                             "silence or non-speech cannot be matched to lips")
        frames = np.arange(clip.n_frames)
        mouth = mouth_descriptors(clip.landmarks)
        mouth = np.stack([np.interp(frames, frames[valid], column[valid]) for column in mouth.T], axis=1)
        audio = frame_log_mel(clip.audio, clip.audio_rate, clip.fps, clip.n_frames, self.n_mels, self.band_hz,
                              self.floor_db)
        window = max(3, int(round(self.highpass_s * clip.fps)) | 1)
        return highpass(mouth, window), highpass(audio, window), valid

    def correlations(self, clip: ClipData) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(shifts, r_all, r_common) at each shift (class docstring, step 4), or None when the mouth does
        not move."""
        mouth, audio, valid = self.features(clip)
        if mouth[valid, 0].std() < self.min_mouth_motion:
            return None
        n = clip.n_frames
        min_overlap = int(np.ceil(self.min_overlap_s * clip.fps))
        shifts = np.arange(-self.max_shift, self.max_shift + 1)
        shared = np.arange(self.max_shift, n - self.max_shift)
        shared = shared[valid[shared]]
        r_all, r_common = np.empty(len(shifts)), np.empty(len(shifts))
        for index, shift in enumerate(shifts):
            frames = np.arange(max(0, -shift), min(n, n - shift))
            frames = frames[valid[frames]]
            for used in (frames, shared):
                if len(used) < max(min_overlap, 2 * self.folds):
                    raise ValueError(f"only {len(used)} usable frames at shift {shift:+d} (need {min_overlap}); "
                                     f"{int(valid.sum())} of {n} frames have face landmarks")
            r_all[index] = predicted_correlation(audio[frames + shift], mouth[frames], self.ridge, self.folds)
            r_common[index] = predicted_correlation(audio[shared + shift], mouth[shared], self.ridge, self.folds)
        return shifts, r_all, r_common

    def distances(self, clip: ClipData) -> tuple[np.ndarray, np.ndarray]:
        """(shifts, 1 − r_all at each shift); all 1 when the mouth does not move."""
        found = self.correlations(clip)
        if found is None:
            shifts = np.arange(-self.max_shift, self.max_shift + 1)
            return shifts, np.ones(len(shifts))
        shifts, r_all, _ = found
        return shifts, 1.0 - r_all

    def score(self, clip: ClipData) -> dict:
        found = self.correlations(clip)
        if found is None:
            return {"sync_offset": float("nan"), "sync_dist": 1.0, "sync_conf": 0.0, "sync_scorer": self.name}
        shifts, r_all, r_common = found
        peak = int(np.argmax(r_common))
        away = np.abs(shifts - shifts[peak]) > self.sidelobe_gap
        return {
            "sync_offset": int(shifts[peak]),
            "sync_dist": 1.0 - float(r_all[peak]),
            "sync_conf": float(r_all[peak] - r_all[away].max()),
            "sync_scorer": self.name,
        }


def make_sync_scorer(weights_path: str | None = None, device: str = "cpu"):
    """SyncNet when a local ``syncnet_v2.model`` (or .safetensors) path is given, else the weight-free default."""
    if weights_path is None:
        return LipAudioSyncScorer()
    from filters.syncnet import SyncNetScorer

    return SyncNetScorer(weights_path, device=device)
