"""Small synthetic media files for tests, written with PyAV (no ffmpeg binary, no shared samples).

Video frames are dark grey with a white square (``MARKER_FRACTION`` of each side) in the top-left corner of
the *stored* frame, so tests can tell where a player shows it once rotation metadata is applied. Audio is a
440 Hz sine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MARKER_FRACTION = 0.25
_AUDIO_CODECS = {".wav": "pcm_s16le"}  # everything else gets AAC (mp4, m4a, mkv)
_LAYOUTS = {1: "mono", 2: "stereo"}


def make_frame(index: int, width: int, height: int) -> np.ndarray:
    """RGB frame ``index``: grey level that drifts with the index, white marker in the top-left."""
    frame = np.full((height, width, 3), 40 + index % 64, np.uint8)
    frame[: int(height * MARKER_FRACTION), : int(width * MARKER_FRACTION)] = 255
    return frame


def write_test_video(
    path: str | Path,
    *,
    n_frames: int = 64,
    fps: int = 25,
    size: tuple[int, int] = (320, 288),
    audio_rate: int | None = None,
    audio_channels: int = 1,
    audio_duration_s: float | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Write an H.264 video (container from the suffix: .mp4, .mkv, ...) and return its path.

    ``size`` is the stored (width, height). ``audio_rate`` adds an AAC track of ``audio_duration_s``
    (default: as long as the video). ``rotation`` is written as display-matrix metadata, degrees
    counter-clockwise (PyAV's ``set_display_rotation`` convention). ``faststart`` puts the MP4 index (moov)
    before the data.
    """
    import av

    width, height = size
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        audio = None
        if audio_rate:
            audio = container.add_stream("aac", rate=audio_rate, layout=_LAYOUTS[audio_channels])
        for index in range(n_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(index, width, height), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            seconds = n_frames / fps if audio_duration_s is None else audio_duration_s
            _encode_sine(container, audio, seconds)
    return Path(path)


def write_test_audio(path: str | Path, *, duration_s: float, rate: int = 48000, channels: int = 2) -> Path:
    """Write an audio-only file (PCM for .wav, AAC otherwise, e.g. .m4a) and return its path."""
    import av

    codec = _AUDIO_CODECS.get(Path(path).suffix, "aac")
    with av.open(str(path), mode="w") as container:
        audio = container.add_stream(codec, rate=rate, layout=_LAYOUTS[channels])
        _encode_sine(container, audio, duration_s)
    return Path(path)


def truncate_copy(src: str | Path, dst: str | Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (an interrupted download)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def _encode_sine(container, stream, duration_s: float, chunk: int = 1024) -> None:
    """Encode ``duration_s`` of a 440 Hz sine into ``stream`` in ``chunk``-sample frames, then flush."""
    import av

    rate, channels = stream.rate, stream.layout.nb_channels
    total = int(round(duration_s * rate))
    planar = stream.format.is_planar
    for start in range(0, total, chunk):
        t = np.arange(start, min(start + chunk, total)) / rate
        wave = np.tile(0.3 * np.sin(2 * np.pi * 440 * t), (channels, 1))
        samples = _to_format(wave, stream.format.name, planar)
        frame = av.AudioFrame.from_ndarray(samples, format=stream.format.name, layout=stream.layout.name)
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _to_format(wave: np.ndarray, format_name: str, planar: bool) -> np.ndarray:
    """(channels, samples) float wave -> the array shape and dtype PyAV expects for ``format_name``."""
    data = (wave * 32767).astype(np.int16) if format_name.startswith("s16") else wave.astype(np.float32)
    return data if planar else data.T.reshape(1, -1)
