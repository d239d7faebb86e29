"""Real ingested clips of synthetic speakers for scorer tests: render → probe → extract → load.

``make_clip(spec, folder)`` runs the actual ingestion stage in-process (no Ray) on a generator video and
returns the first kept clip as ``ClipData`` with face-mesh landmarks, plus the generator's truth.
"""

from __future__ import annotations

import functools
from pathlib import Path

from filters.clip_data import ClipData, LandmarkModel, load_clip
from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import probe_source
from filters.synthetic import SpeakerSpec, SpeakerTruth, render_speaker


@functools.lru_cache(maxsize=1)
def _models() -> tuple[FaceDetector, LandmarkModel]:
    return FaceDetector(), LandmarkModel()


def make_clip(spec: SpeakerSpec, folder: str | Path, config: ExtractConfig = ExtractConfig()) -> tuple[ClipData, SpeakerTruth]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.mp4"
    truth = render_speaker(spec, source)
    probe = probe_source(str(source))
    assert probe.ok, probe.detail
    start, end = probe.usable_span_s
    detector, landmark_model = _models()
    job = ChunkJob("f" * 64, str(source), start, end, 0, str(folder / "stage"), rotation=probe.rotation)
    result = extract_chunk(job, detector, config)
    kept = [clip for clip in result.clips if clip["status"] == "ok"]
    assert kept, [clip["reject_reason"] for clip in result.clips]
    record = {**kept[0], "key": "f" * 16 + "_00000", "source_tag": "interview"}
    stem = folder / "stage" / record["staged_name"]
    return load_clip(f"{stem}.mp4", f"{stem}.wav", record, landmark_model), truth
