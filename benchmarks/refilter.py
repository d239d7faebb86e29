"""Re-filter speed on a 1,000,000-row catalog with realistic score distributions.

Builds a synthetic catalog (one parquet part; 1000 clips per shard), then measures in the same run:
  1. `fada refilter` end to end as a user runs it (new process: read catalog, select, write the view);
  2. inside one process: catalog read, vectorised selection (`shards.views.select`), the whole `refilter`;
  3. the baseline: `Profile.decide` row by row in Python, on a 100k-row sample, scaled to 1M.
Goals: end to end ≤ 5 s, selection ≤ 1 s on the 2-core dev machine.

    .venv/bin/python benchmarks/refilter.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from filters.profiles import load_profile
from shards.catalog import CATALOG_SCHEMA, append_part, read_catalog
from shards.views import refilter, select


def synthetic_catalog(n: int, seed: int = 0) -> pa.Table:
    """Rows shaped like real ingests: most clips fine, long tails on every dimension, ~8 % rejected at ingest."""
    rng = np.random.default_rng(seed)
    status_ok = rng.random(n) > 0.08
    reasons = np.array(["no_face", "multi_face", "too_short", "decode_error"])
    tags = np.array(["interview", "news", "vlog", "singing", "other"])
    columns = {
        "key": [f"{i // 40:016x}_{i % 40:05d}" for i in range(n)],
        "shard": [f"shards/v1/clips-{i // 1000:06d}.tar" if ok else None for i, ok in enumerate(status_ok)],
        "source_id": [f"{i // 40:064x}" for i in range(n)],
        "source_uri": [f"s3://raw/{i // 40}.mp4" for i in range(n)],
        "source_tag": tags[rng.integers(0, len(tags), n)],
        "start_s": rng.uniform(0, 600, n), "end_s": rng.uniform(600, 610, n),
        "n_frames": rng.integers(50, 251, n).astype(np.int32), "fps": np.full(n, 25.0, np.float32),
        "status": np.where(status_ok, "ok", "rejected"),
        "reject_reason": np.where(status_ok, None, reasons[rng.integers(0, len(reasons), n)]),
        "source_prior": rng.choice([0.9, 0.85, 0.7, 0.4, 0.5], n), "source_denied": np.zeros(n),
        "iqa": rng.beta(8, 2, n), "sharpness": rng.gamma(4, 50, n), "face_px": rng.normal(260, 60, n),
        "exposure_clip": rng.exponential(0.01, n), "blockiness": rng.exponential(0.1, n),
        "sync_offset": np.round(rng.normal(0, 2, n)), "sync_conf": rng.normal(0.65, 0.15, n), "sync_dist": rng.uniform(0.1, 0.6, n),
        "sync_scorer": np.full(n, "lip_audio_xcorr"), "bg_motion": rng.exponential(0.3, n), "camera_shake": rng.exponential(0.2, n),
        "head_motion": rng.lognormal(np.log(0.006), 0.6, n), "pose_range_deg": rng.gamma(3, 3, n),
        "single_face_ratio": np.clip(rng.normal(0.98, 0.05, n), 0, 1), "face_mesh_ratio": np.clip(rng.normal(0.99, 0.03, n), 0, 1),
        "speech_ratio": rng.beta(5, 3, n), "audio_clip_ratio": rng.exponential(0.0005, n), "snr_db": rng.normal(35, 10, n),
        "score_errors": np.full(n, "{}"),
    }
    arrays = {name: pa.array(columns[name], type=CATALOG_SCHEMA.field(name).type, from_pandas=True) if name in columns else pa.nulls(n, CATALOG_SCHEMA.field(name).type) for name in CATALOG_SCHEMA.names}
    return pa.table(arrays, schema=CATALOG_SCHEMA)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    profile = load_profile("strict")
    with tempfile.TemporaryDirectory() as data_dir:
        (_, build_s) = timed(lambda: append_part(data_dir, synthetic_catalog(args.rows)))
        fada = Path(sys.executable).with_name("fada")
        (run, cli_s) = timed(lambda: subprocess.run([str(fada), "refilter", data_dir, "--profile", "strict", "--name", "bench-cli"], capture_output=True, text=True, check=True))
        (table, read_s) = timed(lambda: read_catalog(data_dir))
        ((keep, _), select_s) = timed(lambda: select(profile, table))
        (_, refilter_s) = timed(lambda: refilter(data_dir, profile, "bench-inprocess"))
        sample = table.slice(0, min(100_000, table.num_rows)).to_pylist()
        (_, decide_s) = timed(lambda: [r["status"] == "ok" and profile.decide(r).keep for r in sample])
        baseline_s = decide_s * table.num_rows / len(sample)
        catalog_mb = sum(p.stat().st_size for p in Path(data_dir, "catalog").glob("*.parquet")) / 1e6
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; catalog {args.rows:,} rows, {catalog_mb:.0f} MB parquet (built in {build_s:.1f} s)")
    print(f"kept by strict: {int(keep.sum()):,} rows")
    print(f"fada refilter end to end (new process)   {cli_s:6.2f} s   (goal <= 5 s)")
    print(f"  read catalog                           {read_s:6.2f} s")
    print(f"  select (vectorised)                    {select_s:6.2f} s   (goal <= 1 s)")
    print(f"  refilter in process (read+select+write){refilter_s:6.2f} s")
    print(f"baseline: Profile.decide row by row      {baseline_s:6.2f} s   (scaled from {len(sample):,} rows)")
    print(f"speed-up of the selection over the baseline: {baseline_s / select_s:.0f}x")
    print(run.stdout.splitlines()[0])


if __name__ == "__main__":
    main()
