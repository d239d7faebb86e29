"""Rescore speed against ingest's per-core rate, in the same run, pinned to one CPU core.

Renders a synthetic 512×512 25 fps talking head, then:
  1. `ingest` (no Ray: decode, detect, track, crop, encode, every scorer) into a fresh data directory;
  2. `rescore` of each scorer named by ``--scorers`` from the shards (decode the stored clips, face-mesh
     landmarks, that scorer, write the column part).
Prints frames per second per core for each and the ratio rescore / ingest.

    .venv/bin/python benchmarks/rescore.py [--seconds 20] [--scorers sync iqa]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

from filters.synthetic import SpeakerSpec, render_speaker
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
from shards.rescore import rescore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scorers", nargs="+", default=["sync", "iqa", "source_prior"])
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    config = IngestConfig.from_dict({"clip": {"max_s": 5.0}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        render_speaker(SpeakerSpec(seed=7, duration_s=args.seconds, width=512, height=512), tmp / "speaker.mp4")
        (tmp / "manifest.yaml").write_text(yaml.safe_dump([{"uri": "speaker.mp4", "tag": "interview"}]))
        started = time.perf_counter()
        report = ingest(tmp / "manifest.yaml", tmp / "data", config, workers=0, progress=False)
        ingest_s = time.perf_counter() - started
        frames = round(report.hours_ok * 3600 * 25)
        ingest_rate = frames / ingest_s
        print(f"machine: {platform.machine()}, pinned to 1 core (shared with other jobs); {args.seconds:g} s synthetic 512² talking head, "
              f"{report.clips_ok} clips, {frames} frames kept")
        print(f"ingest + every scorer          {ingest_rate:8.1f} frames/s per core ({ingest_s:.1f} s)")
        for name in args.scorers:
            started = time.perf_counter()
            record = rescore(tmp / "data", name, config.scoring)
            seconds = time.perf_counter() - started
            rate = record["frames"] / seconds
            print(f"rescore {name:<22} {rate:8.1f} frames/s per core ({seconds:.1f} s, incl. loading the models) = "
                  f"{rate / ingest_rate:.2f}x ingest")


if __name__ == "__main__":
    main()
