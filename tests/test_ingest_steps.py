"""The ingest steps on their own: chunk planning on the output frame grid, and every drop counted per step
and reason in the run report (in this process, no Ray; no clip is extracted)."""

import json
import shutil

import numpy as np
import yaml

from filters.frames import frame_count
from filters.probe import ProbeResult
from flows.ingest import ingest
from shards.ingest.steps import Inspection, Plan
from shards.sources import SourceSpec
from tests.media_factory import write_test_video


def test_plan_cuts_the_usable_span_into_chunks_on_the_output_frame_grid():
    # video 0.2–6.2 s, audio 0.0–5.23 s: usable 0.2–5.23 s, 125.75 output frames at 25 fps, of which the grid keeps 125
    probe = ProbeResult(None, "", fps=30.0, duration_s=6.0, video_start_s=0.2, audio_start_s=0.0, audio_duration_s=5.23,
                        audio_source="stream")
    plan = Plan(fps=25.0, chunk_s=2.0)
    jobs = plan(Inspection(SourceSpec("a.mp4", "talk"), "ab" * 32, "a.mp4", None, 1, probe), "/staging")
    assert [plan.frames(job) for job in jobs] == [50, 50, 25]
    assert sum(map(plan.frames, jobs)) == frame_count(*probe.usable_span_s, 25.0) == 125
    assert [job.chunk_index for job in jobs] == [0, 1, 2] and jobs[0].start_s == 0.2
    assert all(abs(b.start_s - a.end_s) < 1e-9 for a, b in zip(jobs, jobs[1:]))  # contiguous: no frame twice or lost


def test_every_dropped_source_is_counted_under_its_step_and_reason(tmp_path):
    folder = tmp_path / "sources"
    folder.mkdir()
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    write_test_video(folder / "silent_film.mp4", n_frames=75)  # no audio stream, no sidecar
    shutil.copy(folder / "silent_film.mp4", folder / "renamed.mp4")  # the same bytes under another name
    rows = [{"uri": name, "tag": "talk"} for name in ("garbage.mp4", "silent_film.mp4", "renamed.mp4", "missing.mp4")]
    (folder / "manifest.yaml").write_text(yaml.safe_dump(rows))

    first = ingest(folder / "manifest.yaml", tmp_path / "data", workers=0, progress=False)
    assert first.drops == {"inspect": {"unreadable": 1, "already_ingested": 1}, "probe": {"unreadable": 1, "no_audio": 1}}
    saved = json.loads(next((tmp_path / "data" / "runs").glob("ingest-*.json")).read_text())
    assert saved["drops"] == first.drops

    again = ingest(folder / "manifest.yaml", tmp_path / "data", workers=0, progress=False)
    assert again.drops == {"inspect": {"unreadable": 1, "already_ingested": 3}}
