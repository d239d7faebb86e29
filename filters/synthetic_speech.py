"""Deterministic speech-like audio for the synthetic talking heads (`filters.synthetic`).

Speech here is a train of voiced syllables at 3–5 Hz grouped into phrases separated by pauses. Each
syllable is a harmonic sound (f0 100–220 Hz, gliding a little) shaped by two formant-like resonances
and an attack–sustain–release amplitude envelope. The plan (timings, pitches, vowels) is drawn in
seconds from the seed, so the same seed gives the same speech at every sample rate, and any time window
of it can be rendered on its own.

The mouth opening of a video frame is the RMS of the amplitude envelope over that frame, lightly
smoothed. The envelope peaks at 1, so the opening lies in 0..1 with 0 in pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PHRASE_SYLLABLES = (3, 9)  # syllables per phrase, [low, high)
SYLLABLE_RATE_HZ = (3.0, 5.0)
VOICED_SHARE = (0.6, 0.85)  # share of a syllable period that is voiced; the rest is a short gap
PAUSE_S = (0.25, 0.7)  # silence between phrases
SPEAKER_F0_HZ = (100.0, 220.0)
HIGHEST_HARMONIC_HZ = 4000.0
ATTACK_SHARE, RELEASE_SHARE = 0.3, 0.4  # of a syllable's voiced duration
SPEECH_GAIN = 0.2  # the carrier has unit RMS, so a full-envelope syllable is about -14 dBFS RMS
NOISE_FLOOR_STD = 3e-4  # about -70 dBFS: pauses and `silent` tracks are near, not digital, silence
MOUTH_SMOOTHING = np.array([0.25, 0.5, 0.25])  # symmetric, so it does not shift the mouth in time

# (F1, F2) in Hz of five vowels: a, e, i, o, u.
VOWEL_FORMANTS_HZ = np.array([(730, 1090), (530, 1840), (270, 2290), (570, 840), (300, 870)], float)
FORMANT_BANDWIDTH_HZ = 110.0


@dataclass(frozen=True)
class SyllablePlan:
    """Syllables on an absolute time axis in seconds; all arrays have one entry per syllable."""

    onset_s: np.ndarray
    duration_s: np.ndarray
    amplitude: np.ndarray  # envelope peak, 0.6..1 (stress)
    f0_start_hz: np.ndarray
    f0_end_hz: np.ndarray
    vowel: np.ndarray  # row of VOWEL_FORMANTS_HZ


def plan_syllables(seed: int, start_s: float, end_s: float) -> SyllablePlan:
    """Plan phrases of syllables covering [start_s, end_s), starting with a short pause."""
    rng = np.random.default_rng([seed, 0])
    speaker_f0 = rng.uniform(*SPEAKER_F0_HZ)
    rows = []
    t = start_s + rng.uniform(0.1, 0.4)
    while t < end_s:
        period = 1.0 / rng.uniform(*SYLLABLE_RATE_HZ)
        n_syllables = int(rng.integers(*PHRASE_SYLLABLES))
        for i in range(n_syllables):
            declination = 1.0 - 0.08 * i / n_syllables
            f0 = speaker_f0 * declination * rng.uniform(0.92, 1.12)
            rows.append((t, period * rng.uniform(*VOICED_SHARE), rng.uniform(0.6, 1.0),
                         f0, f0 * rng.uniform(0.94, 1.06), rng.integers(len(VOWEL_FORMANTS_HZ))))
            t += period
        t += rng.uniform(*PAUSE_S)
    columns = np.array(rows, float).reshape(-1, 6).T
    return SyllablePlan(*columns[:5], vowel=columns[5].astype(int))


def syllable_envelope(u: np.ndarray) -> np.ndarray:
    """Envelope over a syllable's normalised time u in [0, 1]: raised-cosine attack and release."""
    attack = np.sin(0.5 * np.pi * np.clip(u / ATTACK_SHARE, 0.0, 1.0)) ** 2
    release = np.cos(0.5 * np.pi * np.clip((u - 1.0 + RELEASE_SHARE) / RELEASE_SHARE, 0.0, 1.0)) ** 2
    return attack * release


def harmonic_amplitudes(f0_hz: float, vowel: int) -> np.ndarray:
    """Amplitudes of harmonics 1..K of f0: -6 dB/octave tilt times two formant resonances, unit RMS."""
    k = np.arange(1, int(HIGHEST_HARMONIC_HZ // f0_hz) + 1)
    resonance = 0.05 + sum(1.0 / (1.0 + ((k * f0_hz - f) / FORMANT_BANDWIDTH_HZ) ** 2)
                           for f in VOWEL_FORMANTS_HZ[vowel])
    amplitudes = resonance / k
    return amplitudes / np.sqrt(0.5 * np.sum(amplitudes**2))


def render_speech(plan: SyllablePlan, rate: int, start_s: float, n_samples: int,
                  seed: int, voiced: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render the window [start_s, start_s + n_samples/rate) of the plan at `rate`.

    Returns (signal, envelope), float32 mono. The signal is speech plus a faint noise floor; with
    `voiced=False` it is the noise floor alone and the envelope is zero.
    """
    t = start_s + np.arange(n_samples) / rate
    envelope = np.zeros(n_samples)
    speech = np.zeros(n_samples)
    if voiced:
        for i in range(len(plan.onset_s)):
            _add_syllable(plan, i, t, envelope, speech)
    noise = np.random.default_rng([seed, 1, rate]).standard_normal(n_samples) * NOISE_FLOOR_STD
    signal = np.clip(SPEECH_GAIN * speech + noise, -0.99, 0.99)
    return signal.astype(np.float32), envelope.astype(np.float32)


def _add_syllable(plan: SyllablePlan, i: int, t: np.ndarray, envelope: np.ndarray,
                  speech: np.ndarray) -> None:
    onset, duration = plan.onset_s[i], plan.duration_s[i]
    lo, hi = np.searchsorted(t, [onset, onset + duration])
    if lo >= hi:
        return
    tau = t[lo:hi] - onset
    f0_a, f0_b = plan.f0_start_hz[i], plan.f0_end_hz[i]
    cycles = f0_a * tau + (f0_b - f0_a) * tau**2 / (2.0 * duration)  # integral of the linear f0 glide
    amplitudes = harmonic_amplitudes(max(f0_a, f0_b), plan.vowel[i])
    k = np.arange(1, len(amplitudes) + 1)
    carrier = amplitudes @ np.sin(2.0 * np.pi * np.outer(k, cycles))
    syllable_env = plan.amplitude[i] * syllable_envelope(tau / duration)
    envelope[lo:hi] += syllable_env
    speech[lo:hi] += syllable_env * carrier


def mouth_opening(envelope: np.ndarray, rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Per-frame mouth opening in 0..1: envelope RMS over each frame's interval, smoothed.

    Frame f covers samples [f*rate/fps, (f+1)*rate/fps) of `envelope`, which starts at video time 0.
    """
    bounds = np.round(np.arange(n_frames + 1) * rate / fps).astype(int)
    power = np.add.reduceat(envelope.astype(np.float64) ** 2, bounds[:-1]) / np.diff(bounds)
    padded = np.pad(np.sqrt(power), 1, mode="edge")
    return np.clip(np.convolve(padded, MOUTH_SMOOTHING, mode="valid"), 0.0, 1.0)
