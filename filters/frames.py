"""Streaming frame reader: decode a span of a video, upright, resampled to a constant frame rate.

Frames are decoded one at a time (memory stays bounded whatever the source length). Output frame ``j``
shows the source frame whose presentation time is nearest to ``start_s + j / fps`` (like ffmpeg's fps
filter with round=near): sources at other rates gain repeated frames or lose some, and variable-rate
sources are regularised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np

from filters.media_contract import FPS
from filters.probe import apply_rotation


class DecodeError(RuntimeError):
    """The stream could not be decoded past ``at_s`` seconds (corrupt or truncated data)."""

    def __init__(self, at_s: float, detail: str):
        super().__init__(f"decode failed at {at_s:.2f}s: {detail}")
        self.at_s = at_s
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    index: int  # output frame index within the span (0-based)
    time_s: float  # presentation time on the video timeline: start_s + index / fps
    source_time_s: float  # presentation time of the source frame shown
    rgb: np.ndarray  # H x W x 3 uint8, upright
    scale: float = 1.0  # rgb pixels per source pixel (< 1 when a huge frame was shrunk on decode)


def frame_count(start_s: float, end_s: float, fps: float) -> int:
    """How many output frames lie in ``[start_s, end_s)`` on the grid ``start_s + j / fps``."""
    return int(np.floor((end_s - start_s) * fps + 1e-6))


def iter_frames(
    path: str,
    *,
    start_s: float,
    end_s: float,
    fps: float = float(FPS),
    rotation: int = 0,
    decoder_threads: int = 1,
    max_side: int | None = None,
) -> Iterator[Frame]:
    """Yield upright RGB frames at ``fps`` for output times in ``[start_s, end_s)``.

    ``max_side`` shrinks frames whose longer side exceeds it (area filter, during colour conversion),
    bounding memory and work for huge sources; ``Frame.scale`` tells by how much.

    Raises ``DecodeError`` (after yielding every frame decoded before it) when the data is corrupt.
    """
    n_out = frame_count(start_s, end_s, fps)
    if n_out <= 0:
        return
    half_period = 0.5 / fps
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if decoder_threads > 1 else "NONE"
        stream.codec_context.thread_count = decoder_threads
        if start_s > 1.0:
            container.seek(int((start_s - 1.0) / stream.time_base), stream=stream, backward=True)
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = 1.0 if not max_side or max(width, height) <= max_side else max_side / max(width, height)
        size = (2 * round(width * scale / 2), 2 * round(height * scale / 2))
        decoded = _decode(container, stream)
        previous: tuple[float, av.VideoFrame] | None = None
        upcoming = next(decoded, None)
        for index in range(n_out):
            target = start_s + index / fps
            # Advance until the upcoming frame lies beyond the target; keep the one before it.
            while upcoming is not None and upcoming[0] <= target:
                previous, upcoming = upcoming, next(decoded, None)
            chosen = _nearest(previous, upcoming, target)
            if chosen is None or (upcoming is None and target - chosen[0] > max(2 * half_period, 0.1)):
                return  # the stream ended before the span did
            yield Frame(index, target, chosen[0], apply_rotation(_to_rgb(chosen[1], size, scale), rotation), scale)


def _decode(container: av.container.InputContainer, stream: av.video.stream.VideoStream):
    """Decoded (time_s, frame) pairs; corrupt data becomes a DecodeError at the last good time."""
    last_time = 0.0
    try:
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            last_time = float(frame.time)
            yield last_time, frame
    except (av.error.FFmpegError, ValueError) as exc:
        raise DecodeError(last_time, str(exc)) from exc


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int], scale: float) -> np.ndarray:
    if scale == 1.0:
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()


def _nearest(previous, upcoming, target: float):
    if previous is None:
        return upcoming
    if upcoming is None:
        return previous
    return upcoming if (upcoming[0] - target) < (target - previous[0]) else previous
