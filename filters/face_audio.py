"""Face and audio checks of a clip: one face, a face mesh, speech, clipping, a rough SNR.

Columns:

* ``single_face_ratio``: share of the face detector's frames with exactly one face, as ingestion recorded it
  (``filters.extract``); NaN when the record lacks it.
* ``face_mesh_ratio``: share of the clip's frames in which the face mesh found a face.
* ``speech_ratio``: share of ``FRAME_S`` audio frames that the voice activity detector below calls voiced
  speech.
* ``audio_clip_ratio``: share of samples with |x| ≥ ``CLIP_LEVEL`` (full scale is 1).
* ``snr_db``: speech-to-noise ratio over the voiced frames, in [0, ``SNR_CAP_DB``]; 0 without speech.

Voice activity, per non-overlapping frame t of ``FRAME_S`` (20 ms, two per video frame at 25 fps), after
removing the frame's mean:

1. power P_t = mean(x²), level L_t = 10·log10(P_t) in dBFS, smoothed S_t = 10·log10 of the mean of P over
   ``SMOOTH_FRAMES`` frames centred on t;
2. adaptive noise floor (minimum statistics): N_t = the least S over ±``FLOOR_WINDOW_S`` around t, in power
   10^(N_t/10) — background noise is what remains in the quietest moments, and speech always has them
   (syllable gaps) within a few seconds;
3. spectral flatness F_t = geometric / arithmetic mean of the Hann-windowed power spectrum between
   ``FLATNESS_BAND_HZ`` (≈ 0.56 for white noise, near 0 for voiced speech's harmonics);
4. zero-crossing rate Z_t = share of consecutive samples that change sign (0.5 for white noise, well under
   0.25 for voiced speech, whose energy lies below ~1 kHz);
5. voiced_t = L_t ≥ N_t + ``MARGIN_DB`` and L_t ≥ ``MIN_SPEECH_DBFS`` and F_t ≤ ``MAX_FLATNESS`` and
   Z_t ≤ ``MAX_ZCR``, then a ``VOTE_FRAMES``-frame majority vote (drops isolated frames).

SNR (rough): snr_db = 10·log10( Σ_voiced (P_t − n_t) / Σ_voiced n_t ) with n_t = 10^(N_t/10) the local floor,
clipped to [0, SNR_CAP_DB]. Unvoiced consonants count as non-speech: this detector looks for voicing, which
is what lip-sync training needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from filters.clip_data import ClipData

FRAME_S = 0.020
SMOOTH_FRAMES = 3  # 60 ms power smoothing before the floor search
FLOOR_WINDOW_S = 1.5  # the floor is the minimum over ±1.5 s
MARGIN_DB = 10.0  # speech stands at least this far above the local floor
MIN_SPEECH_DBFS = -50.0  # quieter frames are never speech (a −70 dBFS hiss is not a voice)
FLATNESS_BAND_HZ = (100.0, 4000.0)
MAX_FLATNESS = 0.35
MAX_ZCR = 0.25
VOTE_FRAMES = 3
CLIP_LEVEL = 0.99
SNR_CAP_DB = 60.0
POWER_EPS = 1e-12  # −120 dBFS: keeps digital silence finite


@dataclass(frozen=True)
class SpeechFrames:
    """Per-frame voice activity of a signal (module docstring), frame t covering samples [t·n, (t+1)·n)."""

    voiced: np.ndarray  # (T,) bool
    power: np.ndarray  # (T,) P_t
    floor: np.ndarray  # (T,) n_t, the adaptive noise floor as power

    @property
    def speech_ratio(self) -> float:
        return float(self.voiced.mean()) if len(self.voiced) else 0.0

    @property
    def snr_db(self) -> float:
        if not self.voiced.any():
            return 0.0
        noise = self.floor[self.voiced].sum()
        signal = max(self.power[self.voiced].sum() - noise, POWER_EPS)
        return float(np.clip(10.0 * np.log10(signal / noise), 0.0, SNR_CAP_DB))


def detect_speech(audio: np.ndarray, rate: int) -> SpeechFrames:
    """Voice activity of mono ``audio`` at ``rate`` Hz in ``FRAME_S`` frames (a trailing partial frame is dropped)."""
    length = int(round(FRAME_S * rate))
    n_frames = len(audio) // length
    if n_frames == 0:
        empty = np.zeros(0)
        return SpeechFrames(empty.astype(bool), empty, empty)
    frames = audio[: n_frames * length].reshape(n_frames, length).astype(np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    power = np.mean(frames**2, axis=1) + POWER_EPS
    level_db = 10.0 * np.log10(power)
    smooth_db = 10.0 * np.log10(uniform_filter1d(power, SMOOTH_FRAMES, mode="nearest"))
    floor_db = minimum_filter1d(smooth_db, 2 * int(round(FLOOR_WINDOW_S / FRAME_S)) + 1, mode="nearest")
    candidate = (
        (level_db >= floor_db + MARGIN_DB)
        & (level_db >= MIN_SPEECH_DBFS)
        & (spectral_flatness(frames, rate) <= MAX_FLATNESS)
        & (zero_crossing_rate(frames) <= MAX_ZCR)
    )
    votes = uniform_filter1d(candidate.astype(np.float64), VOTE_FRAMES, mode="nearest")
    return SpeechFrames(votes > 0.5, power, 10.0 ** (floor_db / 10.0))


def spectral_flatness(frames: np.ndarray, rate: int) -> np.ndarray:
    """(T,) geometric / arithmetic mean of each frame's Hann-windowed power spectrum in FLATNESS_BAND_HZ."""
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2 + POWER_EPS
    freqs = np.fft.rfftfreq(frames.shape[1], 1.0 / rate)
    band = spectrum[:, (freqs >= FLATNESS_BAND_HZ[0]) & (freqs <= FLATNESS_BAND_HZ[1])]
    return np.exp(np.mean(np.log(band), axis=1)) / np.mean(band, axis=1)


def zero_crossing_rate(frames: np.ndarray) -> np.ndarray:
    """(T,) share of consecutive sample pairs whose signs differ."""
    return np.mean(np.signbit(frames[:, 1:]) != np.signbit(frames[:, :-1]), axis=1)


class FaceAudioScorer:
    """Columns ``single_face_ratio, face_mesh_ratio, speech_ratio, audio_clip_ratio, snr_db``."""

    name = "face_audio"
    version = "1"

    def score(self, clip: ClipData) -> dict[str, float]:
        speech = detect_speech(clip.audio, clip.audio_rate)
        return {
            "single_face_ratio": float(clip.record.get("single_face_ratio", np.nan)),
            "face_mesh_ratio": float(clip.face_found.mean()) if clip.n_frames else 0.0,
            "speech_ratio": speech.speech_ratio,
            "audio_clip_ratio": float(np.mean(np.abs(clip.audio) >= CLIP_LEVEL)) if len(clip.audio) else 0.0,
            "snr_db": speech.snr_db,
        }
