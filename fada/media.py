"""Inputs and output of generation: the portrait, the driving audio (streamed), and the mp4 with audio muxed in.

* `load_portrait` — any image PIL opens, converted to RGB (grey, palette, RGBA, CMYK, 16-bit), refused when
  larger than ``max_pixels`` or with no face / several equally large faces, then cropped around the face the
  way ingestion crops clips (`filters.crop`) so the model sees what it was trained on.
* `AudioStream` — the audio of any rate/channel count soundfile reads (wav, flac, ogg, mp3), mixed to mono and
  resampled to 16 kHz block by block, so memory stays bounded for hours of audio; other formats go through
  librosa (whole file). Silence is reported, not refused: the avatar will just keep its mouth closed.
* `VideoWithAudioWriter` — H.264 frames as they come, then the audio as AAC, written to a temporary name and
  renamed when complete.
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from filters.media_contract import AUDIO_RATE, FPS, SAMPLES_PER_FRAME


class InputError(ValueError):
    """A generation input (image or audio) cannot be used; the message says why."""


class SilentAudioWarning(UserWarning):
    pass


def load_portrait(path: str | os.PathLike, size: int, *, max_pixels: int = 40_000_000, detector=None) -> np.ndarray:
    """(size, size, 3) uint8 crop around the single main face of the image at ``path``."""
    from PIL import Image, UnidentifiedImageError

    from filters.crop import CropConfig, crop_and_resize, crop_box_for_face
    from filters.face_track import FaceDetector

    Image.MAX_IMAGE_PIXELS = None  # our own limit below gives the clearer message
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise InputError(f"{path}: {image.width}×{image.height} is larger than {max_pixels} pixels; "
                                 "downscale it first")
            if image.mode == "I;16" or image.mode == "I":
                image = image.point(lambda v: v / 256).convert("L")
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exn:
        raise InputError(f"{path}: not a readable image ({exn})") from exn
    detector = detector or FaceDetector(model_selection=1)
    faces = detector.detect(rgb)
    if not faces:
        raise InputError(f"{path}: no face found; use a portrait with one clearly visible face")
    if len(faces) > 1 and faces[1].area > 0.5 * faces[0].area:
        raise InputError(f"{path}: {len(faces)} faces of similar size; use a portrait with one face")
    box = crop_box_for_face(faces[0].box, rgb.shape[1], rgb.shape[0], CropConfig(size=size))
    return crop_and_resize(rgb, box, size)


class AudioStream:
    """16 kHz mono float32 audio of a file, read in blocks; ``n_frames`` video frames at 25 fps cover it."""

    def __init__(self, path: str | os.PathLike, block_s: float = 30.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{path}: no such audio file")
        try:
            import soundfile

            info = soundfile.info(str(self.path))
            self.rate, self.channels, self.frames_native = info.samplerate, info.channels, info.frames
            self._whole = None
        except Exception:  # a format libsndfile does not read: decode it whole with librosa
            self._whole = self._decode_whole()
            self.rate, self.channels, self.frames_native = AUDIO_RATE, 1, len(self._whole)
        if self.frames_native <= 0:
            raise InputError(f"{path}: the audio is empty")
        self.block_s = block_s
        self.n_samples = int(round(self.frames_native * AUDIO_RATE / self.rate))
        self.n_frames = -(-self.n_samples // SAMPLES_PER_FRAME)

    def _decode_whole(self) -> np.ndarray:
        import librosa

        try:
            audio, _ = librosa.load(str(self.path), sr=AUDIO_RATE, mono=True)
        except Exception as exn:
            raise InputError(f"{self.path}: not a readable audio file ({type(exn).__name__}: {exn})") from exn
        return audio.astype(np.float32)

    def blocks(self):
        """Consecutive 16 kHz mono blocks covering the whole file (resampled with a margin, then trimmed)."""
        if self._whole is not None:
            yield self._whole
            return
        import soundfile
        from scipy.signal import resample_poly

        ratio = Fraction(AUDIO_RATE, self.rate).limit_denominator(1000)
        block, margin = int(self.block_s * self.rate), int(0.05 * self.rate)
        produced = 0
        with soundfile.SoundFile(str(self.path)) as fh:
            for start in range(0, self.frames_native, block):
                lo = max(start - margin, 0)
                fh.seek(lo)
                data = fh.read(min(start + block + margin, self.frames_native) - lo, dtype="float32", always_2d=True)
                mono = data.mean(axis=1)
                if ratio != 1:
                    mono = resample_poly(mono, ratio.numerator, ratio.denominator).astype(np.float32)
                skip = int(round((start - lo) * ratio))
                end_total = min(int(round(min(start + block, self.frames_native) * ratio)), self.n_samples)
                piece = mono[skip: skip + end_total - produced]
                produced += len(piece)
                yield piece

    def frames_audio(self, context_frames: int, clip_frames: int):
        """Per clip of ``clip_frames`` frames: (first frame, audio of the clip ± context frames, zero-padded)."""
        need = (clip_frames + 2 * context_frames) * SAMPLES_PER_FRAME
        pad = context_frames * SAMPLES_PER_FRAME
        buffer = np.zeros(pad, np.float32)  # silence before the start
        offset = -pad  # sample index of buffer[0]
        peak = 0.0
        blocks = self.blocks()
        for first in range(0, self.n_frames, clip_frames):
            want_end = (first + clip_frames + context_frames) * SAMPLES_PER_FRAME
            while offset + len(buffer) < want_end:
                piece = next(blocks, None)
                if piece is None:
                    buffer = np.concatenate([buffer, np.zeros(want_end - offset - len(buffer), np.float32)])
                    break
                peak = max(peak, float(np.abs(piece).max(initial=0.0)))
                buffer = np.concatenate([buffer, piece])
            start = first * SAMPLES_PER_FRAME - pad - offset
            yield first, buffer[start:start + need].copy()
            drop = (first + clip_frames) * SAMPLES_PER_FRAME - pad - offset
            buffer, offset = buffer[drop:], offset + drop
        if peak < 1e-3:
            warnings.warn(f"{self.path}: the audio is silent (peak {peak:.1e}); the avatar will not speak",
                          SilentAudioWarning, stacklevel=2)

    def read_all(self) -> np.ndarray:
        """The whole file at 16 kHz mono (for muxing); bounded by the caller's choice to use it."""
        return np.concatenate(list(self.blocks()))[: self.n_samples]


class VideoWithAudioWriter:
    """Frames (H, W, 3) uint8 at 25 fps → H.264; ``close(audio)`` muxes 16 kHz mono audio as AAC and renames."""

    def __init__(self, path: str | os.PathLike, size: int, fps: int = FPS, crf: int = 18, width: int | None = None):
        """Frames ``size`` high and ``width`` (default ``size``) wide."""
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.video = self.container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        self.video.width, self.video.height = width or size, size
        self.video.pix_fmt = "yuv420p"
        self.audio = self.container.add_stream("aac", rate=AUDIO_RATE)
        self.audio.layout = "mono"
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        for packet in self.video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self, audio_blocks) -> Path:
        """Flush the video, mux ``audio_blocks`` (an iterable of float32 16 kHz arrays), rename into place."""
        import av

        for packet in self.video.encode():
            self.container.mux(packet)
        pts = 0
        for block in audio_blocks:
            for chunk in np.array_split(block, max(1, len(block) // AUDIO_RATE)):
                frame = av.AudioFrame.from_ndarray(chunk.astype(np.float32)[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, pts
                pts += len(chunk)
                for packet in self.audio.encode(frame):
                    self.container.mux(packet)
        for packet in self.audio.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class ArrayAudioStream(AudioStream):
    """`AudioStream`'s interface over 16 kHz mono float32 samples already in memory (e.g. a test clip's track,
    read from its shard), so the pipeline can be driven without writing the audio to a file first.

    ``name`` only labels messages (the silence warning). ``blocks`` yields views of the array ``block_s``
    seconds long; ``frames_audio`` and ``read_all`` are `AudioStream`'s.
    """

    def __init__(self, audio: np.ndarray, name: str = "<in-memory audio>", block_s: float = 30.0):
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise InputError(f"{name}: audio must be mono (1-D) at {AUDIO_RATE} Hz, got shape {audio.shape}")
        if len(audio) == 0:
            raise InputError(f"{name}: the audio is empty")
        self.path = Path(name)
        self.rate, self.channels, self.frames_native = AUDIO_RATE, 1, len(audio)
        self._whole = audio
        self.block_s = block_s
        self.n_samples = len(audio)
        self.n_frames = -(-self.n_samples // SAMPLES_PER_FRAME)

    def blocks(self):
        step = max(1, int(self.block_s * AUDIO_RATE))
        for start in range(0, self.n_samples, step):
            yield self._whole[start:start + step]
