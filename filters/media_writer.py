"""Writers for clip media: H.264 mp4 (yuv420p) streamed frame by frame, and 16-bit PCM wav."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import av
import numpy as np
import soundfile

from filters.media_contract import FPS


@dataclass(frozen=True)
class EncodeConfig:
    crf: int = 18
    preset: str = "veryfast"
    # veryfast with diamond motion search and the fastest sub-pixel refinement: the ingest stage ran 5–23 %
    # faster (real portrait / synthetic source) for 8–12 % more bitrate at the same PSNR (docs/benchmarks.md,
    # "Encoder settings"). "" = the preset's own; "me=dia" alone keeps veryfast's bitrate.
    x264_params: str | None = "me=dia:subme=1"
    threads: int = 1  # one encoder thread per Ray worker core
    keyframe_interval: int = FPS  # 1 s at 25 fps: a training window decodes from a nearby keyframe

    def __post_init__(self) -> None:
        if self.x264_params is None:  # `--set encode.x264_params=`: an empty YAML value
            object.__setattr__(self, "x264_params", "")
        if not isinstance(self.x264_params, str):
            raise ValueError(f"encode.x264_params must be a string of key=value pairs, got {self.x264_params!r}")
        pairs = [pair for pair in self.x264_params.split(":") if pair]
        malformed = [pair for pair in pairs if not re.fullmatch(r"[a-z0-9_-]+=[^=:]+", pair)]
        if malformed:
            raise ValueError(f"encode.x264_params must be key=value pairs joined by ':' (x264's --x264-params form); bad: {malformed}")


class Mp4Writer:
    """Encode RGB frames into an H.264/yuv420p mp4 as they arrive (nothing is buffered here)."""

    def __init__(self, path: str | os.PathLike, *, fps: float, width: int, height: int, config: EncodeConfig = EncodeConfig()):
        self.path = str(path)
        self._container = av.open(self.path, mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=int(round(fps)))
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.thread_count = config.threads
        self._stream.codec_context.gop_size = config.keyframe_interval
        options = {"crf": str(config.crf), "preset": config.preset, "keyint": str(config.keyframe_interval)}
        if config.x264_params:
            options["x264-params"] = config.x264_params
        self._stream.options = options
        self.frames_written = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_wav(path: str | os.PathLike, samples: np.ndarray, rate: int) -> None:
    """Mono float samples in [-1, 1] to a 16-bit PCM wav."""
    soundfile.write(str(path), np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
