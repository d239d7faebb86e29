"""Scores and profile decisions on real talking heads (``../shared/real/``) and variants with a known defect.

For every clip of ``../shared/real/`` this makes, in a temporary folder, through the project's own writers
(``filters.media_writer``: H.264 video, 16-bit wav sidecars):

* ``clean`` — the clip with its own audio;
* ``audio ±3, ±5, ±10`` — its own audio as a sidecar delayed (+, audio late) or advanced (−) by k frames of
  the 25 fps clip; the measured ``sync_offset`` must move by k against ``clean``;
* ``frozen`` — the first frame repeated for the clip's length, with its own audio;
* ``other_speech_1/2`` — another person's speech (``other_speech_*.wav``); ``other_clip`` — the next clip's audio;
* ``shuffled`` — its own audio cut into 40 ms pieces put back in random order;
* ``blur`` (Gaussian σ 2 on the source frames), ``crf45`` (re-encoded at x264 crf 45), ``shake`` (each source
  frame shifted by up to ±8 px at random: a shaking crop).

Each variant is ingested and scored by the real pipeline in-process (``filters.extract.extract_chunk`` with
``ClipScorer.score_frames``, as one ``fada ingest --workers 0`` worker does), then judged by the shipped
``strict`` and ``lenient`` profiles. Prints one row per clip × variant with every score and each profile's
decision, the sync scorer's relative offsets and margins, and writes the markdown tables of docs/quality.md
with ``--markdown PATH``.

    .venv/bin/python benchmarks/real_footage.py [--real ../shared/real] [--markdown out.md] [--clips speaker_2 ...]

Needs ``../shared/real/`` (it is not part of the project); exits 2 saying so where it is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from filters.audio import read_audio_segment
from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import probe_source
from filters.profiles import load_profile
from filters.scoring import ClipScorer
from filters.media_contract import AUDIO_RATE, FPS as CLIP_FPS  # audio shifts are in clip frames
from filters.media_writer import EncodeConfig, Mp4Writer, write_wav

DEFAULT_REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
SHIFTS = (-10, -5, -3, 3, 5, 10)
BLUR_SIGMA = 2.0
CRF_HEAVY = 45
SHAKE_PX = 8
SHUFFLE_S = 0.04
SCORE_COLUMNS = ("sync_offset", "sync_conf", "sync_dist", "iqa", "sharpness", "reblur_ratio", "face_px", "blockiness", "camera_shake",
                 "bg_motion", "head_motion", "pose_range_deg", "face_mesh_ratio", "speech_ratio", "snr_db")
PROFILES = ("strict", "lenient")


@dataclass(frozen=True)
class Variant:
    clip: str
    name: str
    video: Path
    audio: Path  # sidecar wav, first sample at video time 0
    shift: int = 0  # frames the audio was delayed (+) against the clip's own


def source_frames(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)], float(stream.average_rate)


def write_video(path: Path, frames, fps: float, encode: EncodeConfig = EncodeConfig()) -> Path:
    height, width = frames[0].shape[:2]
    with Mp4Writer(path, fps=fps, width=width - width % 2, height=height - height % 2, config=encode) as writer:
        for frame in frames:
            writer.write(frame[: height - height % 2, : width - width % 2])
    return path


def own_audio(video: Path) -> np.ndarray:
    with av.open(str(video)) as container:
        duration = float(container.duration) / av.time_base
    return read_audio_segment(str(video), 0.0, duration, rate=AUDIO_RATE).samples


def shifted(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` late by ``frames`` clip frames (early when negative), same length, zero-filled."""
    samples = int(round(frames * AUDIO_RATE / CLIP_FPS))
    if samples >= 0:
        return np.concatenate([np.zeros(samples, audio.dtype), audio[: len(audio) - samples]])
    return np.concatenate([audio[-samples:], np.zeros(-samples, audio.dtype)])


def shuffled(audio: np.ndarray, seed: int = 0) -> np.ndarray:
    piece = int(SHUFFLE_S * AUDIO_RATE)
    count = len(audio) // piece
    pieces = audio[: count * piece].reshape(count, piece)[np.random.default_rng(seed).permutation(count)]
    return np.concatenate([pieces.ravel(), audio[count * piece:]])


def fitted(audio: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    out[: min(length, len(audio))] = audio[:length]
    return out


def make_variants(real: Path, clips: list[str], folder: Path) -> list[Variant]:
    """Every variant of the module docstring for each clip, written under ``folder``."""
    audios = {clip: own_audio(real / f"{clip}.mp4") for clip in clips}
    variants = []
    for index, clip in enumerate(clips):
        video, audio = real / f"{clip}.mp4", audios[clip]

        def wav(name: str, samples: np.ndarray) -> Path:
            path = folder / f"{clip}.{name}.wav"
            write_wav(path, samples, AUDIO_RATE)
            return path

        own = wav("own", audio)
        variants.append(Variant(clip, "clean", video, own))
        variants += [Variant(clip, f"audio {k:+d}", video, wav(f"shift{k}", shifted(audio, k)), k) for k in SHIFTS]
        frames, fps = source_frames(video)
        variants.append(Variant(clip, "frozen", write_video(folder / f"{clip}.frozen.mp4", [frames[0]] * len(frames), fps), own))
        for other in sorted(real.glob("other_speech_*.wav")):
            speech = read_audio_segment(str(other), 0.0, len(audio) / AUDIO_RATE, rate=AUDIO_RATE, origin_s=0.0).samples
            variants.append(Variant(clip, other.stem, video, wav(other.stem, fitted(speech, len(audio)))))
        next_clip = clips[(index + 1) % len(clips)]
        if next_clip != clip:
            variants.append(Variant(clip, "other_clip", video, wav("other_clip", fitted(audios[next_clip], len(audio)))))
        variants.append(Variant(clip, "shuffled", video, wav("shuffled", shuffled(audio))))
        blurred = [cv2.GaussianBlur(frame, (0, 0), BLUR_SIGMA) for frame in frames]
        variants.append(Variant(clip, "blur", write_video(folder / f"{clip}.blur.mp4", blurred, fps), own))
        variants.append(Variant(clip, f"crf{CRF_HEAVY}", write_video(folder / f"{clip}.crf.mp4", frames, fps, EncodeConfig(crf=CRF_HEAVY)), own))
        jitter = np.random.default_rng(index).integers(-SHAKE_PX, SHAKE_PX + 1, (len(frames), 2))
        shaken = [cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, dy]]), frame.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
                  for frame, (dx, dy) in zip(frames, jitter)]
        variants.append(Variant(clip, "shake", write_video(folder / f"{clip}.shake.mp4", shaken, fps), own))
    return variants


class RealFootageRun:
    """Ingest and score variants with the shipped pipeline (models loaded once)."""

    def __init__(self, config: ExtractConfig = ExtractConfig()):
        self.config = config
        self.detector = FaceDetector(model_selection=config.track.model_selection)
        self.scorer = ClipScorer()
        self.profiles = {name: load_profile(name) for name in PROFILES}

    def score(self, variant: Variant, staging: Path) -> dict:
        """The first kept clip's record with scores and ``decisions`` (profile → Decision); ``status`` says
        why nothing was kept."""
        probe = probe_source(str(variant.video), sidecar_audio=str(variant.audio))
        if not probe.ok:
            return {"status": f"probe: {probe.reject_reason} {probe.detail}"}
        start, end = probe.usable_span_s
        job = ChunkJob("b" * 64, str(variant.video), start, end, 0, str(staging), rotation=probe.rotation,
                       audio_path=str(variant.audio), audio_origin_s=0.0, source_tag="interview")
        records = extract_chunk(job, self.detector, self.config, score=self.scorer.score_frames).clips
        kept = [record for record in records if record["status"] == "ok"]
        if not kept:
            return {"status": "; ".join(str(record.get("reject_reason")) for record in records) or "no clip"}
        record = kept[0]
        record["decisions"] = {name: profile.decide(record) for name, profile in self.profiles.items()}
        return record


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer() and abs(value) < 100):
        return f"{value:+d}" if isinstance(value, (int, np.integer)) else f"{value:.3g}"
    return f"{value:.3g}"


def _decision(record: dict, profile: str) -> str:
    decision = record.get("decisions", {}).get(profile)
    if decision is None:
        return "no clip"
    return "keep" if decision.keep else "reject: " + ", ".join(decision.failed_dimensions)


def markdown_tables(rows: list[tuple[Variant, dict]]) -> str:
    header = ["clip", "variant", *SCORE_COLUMNS, *PROFILES]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for variant, record in rows:
        cells = [variant.clip, variant.name, *(_cell(record.get(column)) for column in SCORE_COLUMNS),
                 *(_decision(record, profile) for profile in PROFILES)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", sync_summary(rows)]
    return "\n".join(lines) + "\n"


def sync_summary(rows: list[tuple[Variant, dict]]) -> str:
    """Relative offsets (measured − clean) per shift, and the confidence margin of clean over each negative."""
    clean = {v.clip: r for v, r in rows if v.name == "clean" and "sync_conf" in r}
    lines = ["| clip | clean offset / conf | relative offsets (shift → read) | negatives' conf (frozen, other speech, other clip, shuffled) | margin |",
             "| --- | --- | --- | --- | --- |"]
    for clip, base in clean.items():
        relative = [f"{v.shift:+d}→{r['sync_offset'] - base['sync_offset']:+.0f}" for v, r in rows
                    if v.clip == clip and v.shift and r.get("sync_offset") is not None and not np.isnan(r["sync_offset"])]
        negatives = [r.get("sync_conf") for v, r in rows if v.clip == clip
                     and v.name in ("frozen", "other_clip", "shuffled") or (v.clip == clip and v.name.startswith("other_speech"))]
        negatives = [n for n in negatives if n is not None]
        margin = base["sync_conf"] - max(negatives) if negatives else float("nan")
        lines.append(f"| {clip} | {base['sync_offset']:+.0f} / {base['sync_conf']:.2f} | {' '.join(relative)} | "
                     f"{' '.join(f'{n:.2f}' for n in negatives)} | {margin:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="folder with speaker_*.mp4 and other_speech_*.wav")
    parser.add_argument("--clips", nargs="*", help="clip stems (default: every speaker_*.mp4)")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    args = parser.parse_args()
    clips = args.clips or sorted(path.stem for path in args.real.glob("speaker_*.mp4"))
    if not args.real.is_dir() or not clips:
        print(f"real_footage: needs the real clips of ../shared/real (speaker_*.mp4, other_speech_*.wav); "
              f"none at {args.real}. They are not part of the project; pass --real DIR.", file=sys.stderr)
        return 2
    run = RealFootageRun()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = make_variants(args.real, clips, Path(tmp))
        started = time.perf_counter()
        for number, variant in enumerate(variants):
            record = run.score(variant, Path(tmp) / f"stage{number}")
            rows.append((variant, record))
            scores = " ".join(f"{column}={_cell(record.get(column))}" for column in SCORE_COLUMNS)
            print(f"{variant.clip:<10} {variant.name:<15} {scores}  strict: {_decision(record, 'strict')}  "
                  f"lenient: {_decision(record, 'lenient')}  {record.get('status', '')} {record.get('score_errors') or ''}", flush=True)
        print(f"{len(variants)} variants ingested and scored in {time.perf_counter() - started:.0f} s (machine shared)")
    print(sync_summary(rows))
    if args.markdown:
        args.markdown.write_text(markdown_tables(rows))
        print(f"tables written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
