"""Probe a source video (and its optional sidecar audio) before anything decodes it in bulk.

``probe_source`` opens the file with PyAV, reads its facts (display size, rotation, frame rate, duration,
start times, audio format) and either accepts it or rejects it with one reason from ``REJECT_REASONS``.
It never raises on bad input: whatever the demuxer or decoder throws becomes a reason, so every dropped
source can be counted and audited.

Checks run in this order and the first failure is the reason:

1. the file opens, has a video stream, its declared data is present and its first frame decodes
   (``unreadable``, ``no_video_stream``, ``truncated``);
2. video duration, frame rate, display size against ``ProbeLimits`` (``too_short``, ``bad_fps``, ``too_small``);
3. audio: the sidecar if one is given, else the file's own audio stream (``sidecar_unreadable``, ``no_audio``),
   and the span where video and audio overlap must be long enough (``too_short``).

Truncation is detected cheaply, without decoding the whole file: the byte range the container's index
declares must fit in the file, and the frames decoded from the last key frame onwards must reach the
declared end of the stream.

Rotation convention. ``ProbeResult.rotation`` is the angle, in degrees counter-clockwise, by which decoded
frames must be turned to display upright. It is FFmpeg's display-matrix angle
(``av_display_rotation_get``, exposed as PyAV's ``VideoFrame.rotation``, counter-clockwise in [-180, 180])
rounded to a quarter turn and brought into [0, 360). PyAV's ``VideoStream.set_display_rotation(d)`` writes
the same convention, so a file written with ``d`` probes as ``d % 360``. ``np.rot90`` also turns
counter-clockwise, hence ``apply_rotation(frame, r) == np.rot90(frame, k=r // 90)``. A phone's portrait
video stored landscape with the legacy tag ``rotate=90`` (clockwise) probes as ``rotation=270``.
Mirroring in the display matrix is not handled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

REJECT_REASONS = (
    "unreadable",
    "truncated",
    "no_video_stream",
    "no_audio",
    "too_short",
    "bad_fps",
    "too_small",
    "sidecar_unreadable",
)

# A stream counts as truncated when its decoded frames stop this long before its declared end. Small enough
# to catch any interrupted download, large enough for containers (Matroska) that only declare the duration
# of the longest stream.
_END_TOLERANCE_S = 0.5
# The end check seeks to the key frame at or before (declared end - this) and decodes from there.
_END_LOOKBACK_S = 1.0


@dataclass(frozen=True)
class ProbeLimits:
    """Thresholds a source must meet; the ``__init__`` keywords are the configuration."""

    min_duration_s: float = 2.0
    min_fps: float = 15.0
    max_fps: float = 60.0
    min_short_side: int = 256


@dataclass(frozen=True)
class ProbeResult:
    """Facts about one source and the first reason it fails, if any (``reject_reason is None`` when accepted).

    Times are seconds on the video file's presentation timeline; a sidecar's first sample is placed at the
    first video frame. ``width``/``height`` are the display size (after rotation). ``audio_*`` describe the
    audio that will be used: the sidecar when given, else the file's own audio stream.
    """

    reject_reason: str | None
    detail: str
    width: int = 0
    height: int = 0
    rotation: int = 0
    fps: float = 0.0
    duration_s: float = 0.0
    video_start_s: float = 0.0
    n_frames: int | None = None
    video_codec: str = ""
    has_audio_stream: bool = False
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_start_s: float | None = None
    audio_duration_s: float | None = None
    audio_source: str | None = None

    @property
    def ok(self) -> bool:
        """True when the source passed every check."""
        return self.reject_reason is None

    @property
    def usable_span_s(self) -> tuple[float, float] | None:
        """(start, end) where both video and audio exist, or None when there is no audio or no overlap."""
        if self.audio_start_s is None or self.audio_duration_s is None:
            return None
        start = max(self.video_start_s, self.audio_start_s)
        end = min(self.video_start_s + self.duration_s, self.audio_start_s + self.audio_duration_s)
        return (start, end) if end > start else None

    def to_dict(self) -> dict:
        """JSON-safe dict of every field plus ``ok`` and ``usable_span_s`` (a list or None)."""
        span = self.usable_span_s
        return {**dataclasses.asdict(self), "ok": self.ok, "usable_span_s": list(span) if span else None}


class _Rejected(Exception):
    """Internal signal: a check failed with ``reason`` (one of REJECT_REASONS) and a human-readable ``detail``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def probe_source(path_or_file: Any, *, sidecar_audio: Any = None, limits: ProbeLimits = ProbeLimits()) -> ProbeResult:
    """Inspect a video (local path or open binary file object) and its optional sidecar audio.

    Returns a ``ProbeResult`` that is accepted or carries the first failing reason; never raises on bad
    input. A file object's read position is restored afterwards.
    """
    facts: dict = {}
    try:
        stream_audio = _probe_video_file(path_or_file, facts)
        _check_video(facts, limits)
        if sidecar_audio is not None:
            facts.update(_probe_sidecar(sidecar_audio, video_start_s=facts["video_start_s"]))
        elif stream_audio is not None:
            facts.update(stream_audio)
        else:
            raise _Rejected("no_audio", "no audio stream and no sidecar audio")
        _check_overlap(ProbeResult(None, "", **facts), limits)
    except _Rejected as rejected:
        return ProbeResult(rejected.reason, rejected.detail, **facts)
    result = ProbeResult(None, "", **facts)
    return dataclasses.replace(result, detail=_summary(result))


def apply_rotation(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded HxW[xC] frame upright: ``rotation`` degrees counter-clockwise (0, 90, 180 or 270).

    Returns a C-contiguous array (a copy unless ``rotation`` is 0 and the input is already contiguous).
    """
    if rotation not in (0, 90, 180, 270):
        raise ValueError(f"rotation must be 0, 90, 180 or 270, got {rotation!r}")
    return np.ascontiguousarray(np.rot90(frame, k=rotation // 90))


# --- the main file -------------------------------------------------------------------------------------


def _probe_video_file(path_or_file: Any, facts: dict) -> dict | None:
    """Fill ``facts`` with the video facts of the file; return its own audio facts (None without audio stream).

    Raises ``_Rejected`` with ``unreadable``, ``no_video_stream`` or ``truncated``.
    """
    with _failures_as("unreadable"), _open(path_or_file) as container:
        if not container.streams.video:
            raise _Rejected("no_video_stream", f"streams: {_stream_kinds(container)}")
        video = container.streams.video[0]
        facts["video_codec"] = video.codec_context.name
        _check_index_fits(container, "truncated")
        _read_first_frame(container, video, facts)
        frame_s = 1.0 / facts["fps"] if facts["fps"] else 0.0
        facts["duration_s"] = _checked_end(container, video, "truncated", frame_s) - facts["video_start_s"]
        audio = container.streams.audio
        facts["has_audio_stream"] = bool(audio)
        return _stream_audio_facts(container, audio[0]) if audio else None


def _read_first_frame(container, video, facts: dict) -> None:
    """Decode the first frame: start time, rotation, display size, frame rate and frame count."""
    first = next(container.decode(video), None)
    if first is None:
        raise _Rejected("unreadable", "no video frame decodes")
    rotation = round(first.rotation / 90) * 90 % 360
    turned = rotation in (90, 270)
    facts.update(
        video_start_s=float(first.time) if first.pts is not None else 0.0,
        rotation=rotation,
        width=first.height if turned else first.width,
        height=first.width if turned else first.height,
        fps=float(video.average_rate or video.guessed_rate or 0.0),
        n_frames=video.frames or None,
    )


def _stream_audio_facts(container, audio) -> dict:
    """Facts of the file's own audio stream; ``truncated`` if its data ends early."""
    start = _stream_start(audio)
    end = _checked_end(container, audio, "truncated")
    return _audio_facts(audio, start_s=start, duration_s=end - start, source="stream")


# --- sidecar audio --------------------------------------------------------------------------------------


def _probe_sidecar(path_or_file: Any, *, video_start_s: float) -> dict:
    """Audio facts of a sidecar file, placed so its first sample is at ``video_start_s``.

    Raises ``_Rejected("sidecar_unreadable")`` when it does not open, has no audio or ends early.
    """
    with _failures_as("sidecar_unreadable"), _open(path_or_file) as container:
        if not container.streams.audio:
            raise _Rejected("sidecar_unreadable", f"no audio stream in sidecar (streams: {_stream_kinds(container)})")
        audio = container.streams.audio[0]
        _check_index_fits(container, "sidecar_unreadable")
        duration = _checked_end(container, audio, "sidecar_unreadable") - _stream_start(audio)
        return _audio_facts(audio, start_s=video_start_s, duration_s=duration, source="sidecar")


def _audio_facts(audio, *, start_s: float, duration_s: float, source: str) -> dict:
    """The ``audio_*`` fields of ProbeResult for one audio stream."""
    return {
        "audio_rate": int(audio.codec_context.sample_rate),
        "audio_channels": int(audio.codec_context.channels),
        "audio_start_s": start_s,
        "audio_duration_s": duration_s,
        "audio_source": source,
    }


# --- checks ---------------------------------------------------------------------------------------------


def _check_video(facts: dict, limits: ProbeLimits) -> None:
    """Duration, frame rate and display size against the limits, in that order."""
    if facts["duration_s"] < limits.min_duration_s:
        raise _Rejected("too_short", f"video {facts['duration_s']:.2f} s < {limits.min_duration_s} s")
    if not limits.min_fps <= facts["fps"] <= limits.max_fps:
        raise _Rejected("bad_fps", f"fps {facts['fps']:.1f} outside {limits.min_fps:g}–{limits.max_fps:g}")
    width, height = facts["width"], facts["height"]
    if min(width, height) < limits.min_short_side:
        raise _Rejected("too_small", f"{width}x{height}: short side {min(width, height)} < {limits.min_short_side}")


def _check_overlap(result: ProbeResult, limits: ProbeLimits) -> None:
    """The span where video and audio both exist must last ``min_duration_s``."""
    span = result.usable_span_s
    overlap = span[1] - span[0] if span else 0.0
    if overlap < limits.min_duration_s:
        detail = f"video and {result.audio_source} audio overlap {overlap:.2f} s < {limits.min_duration_s} s"
        raise _Rejected("too_short", detail)


def _check_index_fits(container, reason: str) -> None:
    """The container's index (every sample's byte range, for MP4/MOV) must fit inside the file's bytes."""
    size = container.size
    needed = max((e.pos + e.size for s in container.streams for e in s.index_entries if e.pos >= 0), default=0)
    if size > 0 and needed > size:
        raise _Rejected(reason, f"index needs {needed} bytes, file has {size}")


# --- PyAV helpers ---------------------------------------------------------------------------------------


def _checked_end(container, stream, reason: str, frame_s: float = 0.0) -> float:
    """End time of ``stream``: declared by the stream itself when it does so, else measured from its data.

    Raises ``_Rejected(reason)`` when no frame decodes near the declared end, or the data stops more than
    ``_END_TOLERANCE_S`` before it (a truncated file). ``frame_s`` is the video frame period.
    """
    declared_end = _declared_end(container, stream)
    data_end = _data_end(container, stream, declared_end, frame_s)
    if data_end is None:
        raise _Rejected(reason, f"no {stream.type} decodes near the declared end")
    if declared_end is not None and data_end < declared_end - _END_TOLERANCE_S:
        raise _Rejected(reason, f"{stream.type} data stops at {data_end:.2f} s, declared end {declared_end:.2f} s")
    stream_end = _stream_declared_end(stream)
    return stream_end if stream_end is not None else data_end


def _stream_start(stream) -> float:
    """The stream's declared start time in seconds (0 when undeclared)."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _declared_end(container, stream) -> float | None:
    """End time the stream declares, else the container's (longest stream), else None."""
    end = _stream_declared_end(stream)
    if end is None and container.duration:
        end = ((container.start_time or 0) + container.duration) / 1_000_000
    return end


def _stream_declared_end(stream) -> float | None:
    """start + duration as declared by the stream itself (MP4 always has it; Matroska does not)."""
    if not stream.duration:
        return None
    return float((stream.start_time or 0) + stream.duration) * float(stream.time_base)


def _data_end(container, stream, declared_end: float | None, frame_s: float = 0.0) -> float | None:
    """End time of the stream's data, read cheaply from the key frame before the declared end.

    Seeks there, decodes packets only until one frame comes out (the data there is decodable), then reads
    the remaining packets' timestamps without decoding. ``frame_s`` stands in for a packet without a
    duration. Returns None when no frame decodes or the demuxer/decoder fails (data missing). Without a
    declared end it reads on from the current position.
    """
    import av

    if declared_end is not None:
        target = max(declared_end - _END_LOOKBACK_S, 0.0)
        container.seek(int(target / stream.time_base), stream=stream, backward=True)
    end, decoded = None, False
    try:
        for packet in container.demux(stream):
            decoded = decoded or bool(packet.decode())
            if packet.pts is not None:
                length = float(packet.duration * packet.time_base) if packet.duration else frame_s
                end = max(end or 0.0, float(packet.pts * packet.time_base) + length)
    except av.error.FFmpegError:
        return None
    return end if decoded else None


@contextlib.contextmanager
def _open(path_or_file: Any) -> Iterator:
    """Open a path or binary file object with PyAV for reading; restore a file object's position after."""
    import av

    source = os.fspath(path_or_file) if isinstance(path_or_file, os.PathLike) else path_or_file
    position = source.tell() if hasattr(source, "tell") else None
    try:
        with av.open(source, mode="r", metadata_errors="replace") as container:
            yield container
    finally:
        if position is not None:
            source.seek(position)


@contextlib.contextmanager
def _failures_as(reason: str) -> Iterator[None]:
    """Turn any exception raised while reading untrusted media into ``_Rejected(reason)``."""
    try:
        yield
    except _Rejected:
        raise
    except Exception as exc:  # demuxers, decoders and file objects raise many types on bad input
        raise _Rejected(reason, f"{type(exc).__name__}: {exc}") from exc


def _stream_kinds(container) -> str:
    """Comma-separated stream types, for details ("audio, data")."""
    return ", ".join(s.type for s in container.streams) or "none"


def _summary(result: ProbeResult) -> str:
    """One line describing an accepted source."""
    start, end = result.usable_span_s
    return (
        f"{result.width}x{result.height} rot {result.rotation}, {result.fps:.2f} fps, {result.duration_s:.2f} s "
        f"{result.video_codec}; audio {result.audio_rate} Hz x{result.audio_channels} from {result.audio_source}; "
        f"usable {start:.2f}–{end:.2f} s"
    )
