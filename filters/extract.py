"""Turn one span of a source video into face-centred clips: the per-chunk work of ingestion.

Steps, all streaming (one decoded frame in flight plus the tracker's short look-ahead):
1. decode the span upright at the output rate (``filters.frames``);
2. detect shot boundaries online (``filters.scenes``); a cut closes the current clip;
3. track the main face through each shot and smooth its box (``filters.face_track``);
4. crop a square around it, resize, and encode straight into the clip's mp4 (``filters.crop``);
5. cut the span's 16 kHz audio for each clip at exactly the clip's frame times (640 samples per frame at
   25 fps), so audio and video stay aligned to the sample;
6. optionally score each kept clip while its crops are still in memory (``score``, e.g.
   ``ClipScorer.score_frames``): the crops of the clip being built are kept in one buffer of ``max_s``
   seconds that is reused clip after clip, instead of decoding the written clip again.

Clip rule: a shot is cut into consecutive clips of ``max_s`` seconds from its first frame; the remainder
is a clip of its own when it lasts at least ``min_s`` and is otherwise dropped as ``too_short``. A chunk
boundary ends a clip like a cut does. Every dropped clip is reported with its reason.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from filters.audio import AudioSegment, read_audio_segment
from filters.config_fields import from_dict
from filters.crop import CropConfig, crop_and_resize, crop_box_for_face
from filters.face_track import FaceDetector, FaceTrackConfig, ShotTracker, TrackedFrame
from filters.frames import DecodeError, iter_frames
from filters.media_contract import AUDIO_RATE, CLIP_MAX_S, CLIP_MIN_S, FPS
from filters.media_writer import EncodeConfig, Mp4Writer, write_wav
from filters.scenes import SceneCutDetector

# (frames (N, S, S, 3) uint8, mono float32 audio, audio rate, clip record) → columns to merge into the record
ClipScoreFn = Callable[[np.ndarray, np.ndarray, int, dict], dict]


@dataclass(frozen=True)
class ClipConfig:
    min_s: float = CLIP_MIN_S
    max_s: float = CLIP_MAX_S
    fps: float = float(FPS)
    min_face_ratio: float = 0.5  # share of detector frames that must find a face, else "no_face"
    max_multi_face_ratio: float = 0.2  # share of detector frames allowed a second prominent face, else "multi_face"


@dataclass(frozen=True)
class SceneConfig:
    threshold: float = 20.0
    adaptive_ratio: float = 3.0
    min_shot_frames: int = 10


@dataclass(frozen=True)
class ExtractConfig:
    clip: ClipConfig = field(default_factory=ClipConfig)
    scenes: SceneConfig = field(default_factory=SceneConfig)
    track: FaceTrackConfig = field(default_factory=FaceTrackConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    audio_rate: int = AUDIO_RATE
    max_frame_side: int = 2048  # larger sources are shrunk on decode (memory and speed); boxes stay in source pixels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ExtractConfig":
        """Build from nested mappings; unknown sections, keys or wrong types raise `ConfigError` (a ValueError)."""
        return from_dict(cls, values, section="ingest")


@dataclass(frozen=True)
class ChunkJob:
    """One span of one source; what a Ray worker receives."""

    source_id: str
    video_path: str  # local path
    start_s: float
    end_s: float
    chunk_index: int
    staging_dir: str
    rotation: int = 0
    audio_path: str | None = None  # sidecar audio (local path); None = the video's own audio stream
    audio_origin_s: float | None = None  # where the sidecar's first sample sits on the video timeline
    source_tag: str = ""  # data-source tag from the manifest (scorers read it)


@dataclass
class ChunkResult:
    job: ChunkJob
    clips: list[dict]  # one record per clip, kept or dropped, in time order
    frames_read: int


def extract_chunk(job: ChunkJob, detector: FaceDetector, config: ExtractConfig, score: ClipScoreFn | None = None) -> ChunkResult:
    """Every clip of the span, kept or dropped; with ``score``, each kept clip's record also gets its scores."""
    audio_path = job.audio_path or job.video_path
    audio = read_audio_segment(audio_path, job.start_s, job.end_s, rate=config.audio_rate, origin_s=job.audio_origin_s)
    assembler = _ClipAssembler(job, config, audio, score)
    scenes = SceneCutDetector(**asdict(config.scenes))
    tracker = ShotTracker(detector, config.track, config.clip.fps)
    frames_read = 0
    try:
        for frame in iter_frames(
            job.video_path,
            start_s=job.start_s,
            end_s=job.end_s,
            fps=config.clip.fps,
            rotation=job.rotation,
            max_side=config.max_frame_side,
        ):
            frames_read += 1
            if scenes.push(frame.rgb):
                assembler.add_all(tracker.flush())
                assembler.close_clip()
                tracker = ShotTracker(detector, config.track, config.clip.fps)
            assembler.add_all(tracker.push(frame))
        assembler.add_all(tracker.flush())
        assembler.close_clip()
    except DecodeError as error:
        assembler.add_all(tracker.flush())
        assembler.close_clip(forced_reason="decode_error", detail=str(error))
    return ChunkResult(job, assembler.records, frames_read)


class _ClipAssembler:
    """Groups tracked frames into clips, encodes kept ones as they arrive, and records every clip.

    Only per-frame numbers are kept for the clip being built; pixels go straight to the encoder, and into
    the reused crop buffer when kept clips are scored. A stretch of frames with no face nearby (the tracker
    has no box) becomes its own ``no_face`` record.
    """

    def __init__(self, job: ChunkJob, config: ExtractConfig, audio: AudioSegment, score: ClipScoreFn | None = None):
        self.job = job
        self.config = config
        self.audio = audio
        self.score = score
        self._crops: np.ndarray | None = None  # (max_frames, S, S, 3), allocated on the first face clip
        self.max_frames = int(round(config.clip.max_s * config.clip.fps))
        self.min_frames = int(math.ceil(config.clip.min_s * config.clip.fps - 1e-6))
        self.records: list[dict] = []
        self._frames: list[dict] = []
        self._writer: Mp4Writer | None = None
        self._tmp_video: Path | None = None

    def add_all(self, tracked: list[TrackedFrame]) -> None:
        for item in tracked:
            has_face = item.face_box is not None
            if self._frames and (len(self._frames) >= self.max_frames or has_face != self._has_face):
                self.close_clip()
            self._add(item)

    @property
    def _has_face(self) -> bool:
        return self._frames[0]["face_box"] is not None

    def _add(self, item: TrackedFrame) -> None:
        crop_box = None
        if item.face_box is not None:
            height, width = item.frame.rgb.shape[:2]
            crop_box = crop_box_for_face(item.face_box, width, height, self.config.crop)
            if self._writer is None:
                self._open_writer()
            crop = crop_and_resize(item.frame.rgb, crop_box, self.config.crop.size)
            if self._crops is not None:
                self._crops[len(self._frames)] = crop  # a face clip has a crop on every frame
            self._writer.write(crop)
        to_source = 1.0 / item.frame.scale  # boxes are recorded in source pixels
        self._frames.append(
            {
                "time_s": item.frame.time_s,
                "is_keyframe": item.is_keyframe,
                "n_faces": item.n_faces,
                "has_second_face": item.has_second_face,
                "face_box": None if item.face_box is None else [round(float(v) * to_source, 1) for v in item.face_box],
                "crop_box": None if crop_box is None else [int(round(v * to_source)) for v in crop_box],
            }
        )

    def _open_writer(self) -> None:
        self._tmp_video = Path(self.job.staging_dir) / f".{self._clip_name()}.tmp.mp4"
        self._tmp_video.parent.mkdir(parents=True, exist_ok=True)
        size = self.config.crop.size
        self._writer = Mp4Writer(self._tmp_video, fps=self.config.clip.fps, width=size, height=size, config=self.config.encode)
        if self.score is not None and self._crops is None:
            self._crops = np.empty((self.max_frames, size, size, 3), np.uint8)

    def _clip_name(self) -> str:
        return f"c{self.job.chunk_index:05d}_{len(self.records):04d}"

    def close_clip(self, forced_reason: str | None = None, detail: str = "") -> None:
        if not self._frames:
            return
        record = self._describe_clip()
        reason, reason_detail = (forced_reason, detail) if forced_reason else self._reject_reason(record)
        if self._writer is not None:
            self._writer.close()
        name = self._clip_name()
        if reason is None:
            stage = Path(self.job.staging_dir)
            os.replace(self._tmp_video, stage / f"{name}.mp4")
            samples = self._clip_audio(record)
            write_wav(stage / f"{name}.wav", samples, self.config.audio_rate)
            record["staged_name"] = name
            if self.score is not None:
                audio = np.clip(samples, -1.0, 1.0).astype(np.float32)
                record.update(self.score(self._crops[: record["n_frames"]], audio, self.config.audio_rate, record))
        elif self._tmp_video is not None:
            self._tmp_video.unlink(missing_ok=True)
        record.update(status="ok" if reason is None else "rejected", reject_reason=reason, reject_detail=reason_detail)
        self.records.append(record)
        self._frames, self._writer, self._tmp_video = [], None, None

    def _describe_clip(self) -> dict:
        fps = self.config.clip.fps
        frames = self._frames
        keyframes = [f for f in frames if f["is_keyframe"]]
        n_key = max(1, len(keyframes))
        face_sides = [max(b[2] - b[0], b[3] - b[1]) for b in (f["face_box"] for f in frames) if b is not None]
        return {
            "source_id": self.job.source_id,
            "source_tag": self.job.source_tag,
            "chunk_index": self.job.chunk_index,
            "start_s": round(frames[0]["time_s"], 6),
            "end_s": round(frames[0]["time_s"] + len(frames) / fps, 6),
            "n_frames": len(frames),
            "fps": fps,
            "face_detect_ratio": sum(f["n_faces"] > 0 for f in keyframes) / n_key,
            "single_face_ratio": sum(f["n_faces"] == 1 for f in keyframes) / n_key,
            "multi_face_ratio": sum(f["has_second_face"] for f in keyframes) / n_key,
            "face_px": float(np.median(face_sides)) if face_sides else 0.0,
            "face_boxes": [f["face_box"] for f in frames],
            "crop_boxes": [f["crop_box"] for f in frames],
            "crop_size": self.config.crop.size,
            "audio_rate": self.config.audio_rate,
        }

    def _reject_reason(self, record: dict) -> tuple[str | None, str]:
        clip = self.config.clip
        if not self._has_face or record["face_detect_ratio"] < clip.min_face_ratio:
            return "no_face", f"face found in {record['face_detect_ratio']:.0%} of detector frames (need {clip.min_face_ratio:.0%})"
        if record["n_frames"] < self.min_frames:
            return "too_short", f"{record['n_frames']} frames < {self.min_frames} ({clip.min_s}s)"
        if record["multi_face_ratio"] > clip.max_multi_face_ratio:
            return "multi_face", f"second prominent face in {record['multi_face_ratio']:.0%} of detector frames (limit {clip.max_multi_face_ratio:.0%})"
        return None, ""

    def _clip_audio(self, record: dict) -> np.ndarray:
        """The clip's samples: exactly ``n_frames * rate / fps`` of them, starting at its first frame's time."""
        rate = self.audio.rate
        lo = int(round((record["start_s"] - self.audio.start_s) * rate))
        count = int(round(record["n_frames"] * rate / record["fps"]))
        return self.audio.samples[lo : lo + count]
