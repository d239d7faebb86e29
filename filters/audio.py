"""Audio decoding to 16 kHz mono, on the video's timeline.

Every clip's audio is cut from the same timeline as its frames: sample ``j`` of a segment that starts at
``start_s`` is the sound at ``start_s + j / rate`` seconds of presentation time. For an audio stream
inside the video container that timeline is the container's; a sidecar file's first sample is placed at
the video's first frame (``origin_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import soxr

from filters.media_contract import AUDIO_RATE


@dataclass(frozen=True)
class AudioSegment:
    samples: np.ndarray  # float32 mono in [-1, 1]
    rate: int
    start_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate


def read_audio_segment(
    path: str,
    start_s: float,
    end_s: float,
    *,
    rate: int = AUDIO_RATE,
    origin_s: float | None = None,
) -> AudioSegment:
    """Decode ``[start_s, end_s)`` of the file's first audio stream as mono float32 at ``rate``.

    ``origin_s`` places the file's first sample on the caller's timeline (sidecar audio); when None the
    stream's own presentation times are used. Spans the file does not cover are zero-filled, so the
    result always has ``round((end_s - start_s) * rate)`` samples.
    """
    n_out = int(round((end_s - start_s) * rate))
    native, native_rate, native_start = _decode_native(path, start_s, end_s, origin_s)
    if native_rate is None:
        return AudioSegment(np.zeros(n_out, np.float32), rate, start_s)
    # Place the decoded block on the grid of the requested span at the native rate, then resample.
    n_native = int(round((end_s - start_s) * native_rate))
    offset = int(round((native_start - start_s) * native_rate))
    placed = np.zeros(n_native, np.float32)
    src_lo, dst_lo = max(0, -offset), max(0, offset)
    count = max(0, min(len(native) - src_lo, n_native - dst_lo))
    placed[dst_lo : dst_lo + count] = native[src_lo : src_lo + count]
    resampled = placed if native_rate == rate else soxr.resample(placed, native_rate, rate, quality="HQ")
    out = np.zeros(n_out, np.float32)
    out[: min(n_out, len(resampled))] = resampled[:n_out]
    return AudioSegment(np.clip(out, -1.0, 1.0), rate, start_s)


def _decode_native(
    path: str, start_s: float, end_s: float, origin_s: float | None
) -> tuple[np.ndarray, int | None, float]:
    """Decode mono float32 at the stream's own rate covering at least ``[start_s, end_s)``."""
    margin_s = 0.05
    with av.open(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32), None, start_s
        stream = container.streams.audio[0]
        shift = 0.0 if origin_s is None else origin_s - _stream_start(stream)
        seek_to = start_s - shift - margin_s
        if seek_to > 1.0:
            container.seek(int(seek_to / stream.time_base), stream=stream, backward=True)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        native_rate = stream.rate
        for frame in container.decode(stream):
            frame_time = (frame.time if frame.time is not None else 0.0) + shift
            mono = _to_mono(frame)
            frame_end = frame_time + len(mono) / frame.sample_rate
            if frame_end <= start_s - margin_s:
                continue
            if frame_time >= end_s + margin_s:
                break
            if first_time is None:
                first_time = frame_time
            native_rate = frame.sample_rate
            chunks.append(mono)
    if not chunks:
        return np.zeros(0, np.float32), native_rate, start_s
    return np.concatenate(chunks), native_rate, first_time


def _stream_start(stream: av.audio.stream.AudioStream) -> float:
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Average all channels of a decoded frame into float32 mono in [-1, 1]."""
    data = frame.to_ndarray()
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    elif data.dtype.kind == "u":
        data = (data.astype(np.float32) - 128.0) / 128.0
    n_channels = len(frame.layout.channels)
    if frame.format.is_planar:
        samples = data.reshape(n_channels, -1)
    else:
        samples = data.reshape(-1, n_channels).T
    return samples.mean(axis=0).astype(np.float32)

