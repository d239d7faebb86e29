"""Re-filter time and peak memory on a synthetic catalog with realistic score distributions.

Builds a catalog of ``--rows`` rows (one parquet part, 1000 clips per shard, written in 1M-row chunks), then
runs each measured path in a fresh process and reports its wall time and peak memory (``ru_maxrss`` of that
process: VmHWM, which ``ru_maxrss`` would report were it not inherited across fork+exec, see ``PEAK``):
  1. `fada refilter` end to end as a user runs it (imports, read catalog, select, write the view);
  2. the same after a rescore appended a sync column part covering every status-ok clip;
  3. the old implementation (before the streaming scan: whole catalog read, keys as Python lists, JSON
     written with the pure-Python encoder), at ``--baseline-rows`` rows (default 1M: at 10M it needs ~10 GB),
     and the new path on the same catalog, so the ratio is measured in the same run;
  4. inside one process: the vectorised selection against ``Profile.decide`` row by row (100k-row sample).
Goals (issue 17): 10M rows end to end <= 3 s and <= 2 GB peak memory on 2 cores.

    .venv/bin/python benchmarks/refilter.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.profiles import load_profile
from shards.catalog import CATALOG_SCHEMA, append_column_part, catalog_dir, read_catalog
from shards.views import profile_columns, select

CHUNK = 1_000_000


def synthetic_catalog(n: int, seed: int = 0, first: int = 0) -> pa.Table:
    """Rows ``first .. first+n`` shaped like real ingests: most clips fine, long tails on every dimension,
    ~8 % rejected at ingest. Keys grow with the row number, so chunks concatenate in key order."""
    rng = np.random.default_rng(seed + first)
    rows = range(first, first + n)
    status_ok = rng.random(n) > 0.08
    reasons = np.array(["no_face", "multi_face", "too_short", "decode_error"])
    tags = np.array(["interview", "news", "vlog", "singing", "other"])
    columns = {
        "key": [f"{i // 40:016x}_{i % 40:05d}" for i in rows],
        "shard": [f"shards/v1/clips-{i // 1000:06d}.tar" if ok else None for i, ok in zip(rows, status_ok)],
        "source_id": [f"{i // 40:064x}" for i in rows],
        "source_uri": [f"s3://raw/{i // 40}.mp4" for i in rows],
        "source_tag": tags[rng.integers(0, len(tags), n)],
        "start_s": rng.uniform(0, 600, n), "end_s": rng.uniform(600, 610, n),
        "n_frames": rng.integers(50, 251, n).astype(np.int32), "fps": np.full(n, 25.0, np.float32),
        "status": np.where(status_ok, "ok", "rejected"),
        "reject_reason": np.where(status_ok, None, reasons[rng.integers(0, len(reasons), n)]),
        "source_prior": rng.choice([0.9, 0.85, 0.7, 0.4, 0.5], n), "source_denied": np.zeros(n),
        "iqa": rng.beta(8, 2, n), "sharpness": rng.gamma(4, 50, n), "reblur_ratio": rng.beta(2, 10, n), "face_px": rng.normal(260, 60, n),
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


def build_catalog(data_dir: Path, rows: int) -> None:
    """One key-sorted part, as ``append_part`` writes it, built chunk by chunk to bound this process's memory."""
    final = catalog_dir(data_dir) / "part-000000.parquet"
    final.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(final, CATALOG_SCHEMA, compression="zstd") as writer:
        for first in range(0, rows, CHUNK):
            writer.write_table(synthetic_catalog(min(CHUNK, rows - first), first=first))


def build_sync_rescore(data_dir: Path) -> None:
    """A column part with new sync columns for every status-ok clip, as ``fada rescore --scorer sync`` writes."""
    table = read_catalog(data_dir, ["key", "status", "sync_offset", "sync_conf", "sync_dist", "sync_scorer"])
    table = table.filter(pa.compute.equal(table.column("status"), "ok")).drop_columns(["status"])
    rng = np.random.default_rng(1)
    table = table.set_column(2, "sync_conf", pa.array(rng.normal(0.6, 0.15, table.num_rows), pa.float32()))
    append_column_part(data_dir, table, "sync", {"scorer_version": "bench", "run_id": "bench"})


def old_refilter(data_dir: str, profile_name: str, name: str) -> None:
    """The implementation before the streaming scan (git history of shards/views.py), for the baseline."""
    from datetime import datetime, timezone

    import hashlib

    import pyarrow.dataset as pads

    from shards.atomic import atomic_write_json
    from shards.catalog import catalog_files
    from shards.views import summarize, view_path

    profile = load_profile(profile_name)
    files = [{"file": p.name, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in catalog_files(data_dir)]
    snapshot = {"files": files, "digest": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()}
    table = pads.dataset([str(p) for p in catalog_files(data_dir)], schema=CATALOG_SCHEMA, format="parquet").to_table()
    keep, reasons = select(profile, table)
    kept = table.select(["shard", "key"]).filter(pa.array(keep)).sort_by([("shard", "ascending"), ("key", "ascending")])
    by_shard: dict[str, list[str]] = defaultdict(list)
    for shard, key in zip(kept.column("shard").to_pylist(), kept.column("key").to_pylist()):
        by_shard[shard].append(key)
    view = {"name": name, "profile": {"name": profile.name, "dimensions": profile.raw.get("dimensions", {})}, "catalog": snapshot,
            "shards": dict(by_shard), "summary": summarize(table, keep, reasons),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(view_path(data_dir, name), view)


# Runs a module as __main__ and prints its peak resident memory at exit. The kernel's ru_maxrss of a child
# (os.wait4) keeps the high-water mark of the process it was forked from (this one, holding a built catalog),
# so the child reports its own: VmHWM of the memory map it got at exec.
PEAK = """
import atexit, runpy, sys
atexit.register(lambda: print("peak_kib", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def measured(argv: list[str]) -> dict:
    """Run ``python -m argv[0] argv[1:]`` (or a script) in a fresh process: wall seconds, CPU seconds (user +
    system, from ``os.wait4``: what other jobs on a shared machine do not inflate), its peak RSS (GB), stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, "-c", PEAK, *argv], stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed:\n{text}")
    peak_kib = int(text.rsplit("peak_kib", 1)[1].split()[0])
    return {"s": seconds, "cpu": usage.ru_utime + usage.ru_stime, "gb": peak_kib * 1024 / 1e9, "stdout": text}


def cli(data_dir: Path, name: str) -> list[str]:
    """`fada refilter` as a user runs it (the `fada` script calls flows.cli.main)."""
    return ["flows.cli", "refilter", str(data_dir), "--profile", "strict", "--name", name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rows", type=int, default=1_000_000, help="catalog size for the old-vs-new comparison")
    parser.add_argument("--work", metavar="DIR", help="keep the built catalogs here and reuse them on the next run (default: a temporary folder)")
    parser.add_argument("--old", nargs=2, metavar=("DATA_DIR", "NAME"), help=argparse.SUPPRESS)  # child: the old path
    args = parser.parse_args()
    if args.old:
        return old_refilter(args.old[0], "strict", args.old[1])
    old_cmd = [__file__, "--old"]
    profile = load_profile("strict")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        big, small = work / f"rows-{args.rows}", work / f"rows-{args.baseline_rows}"
        for data_dir in (big, small):
            for stale in [*data_dir.glob("views"), *data_dir.glob("catalog/part-*-rescore-*.parquet"), *data_dir.glob("catalog/.sha256.json")]:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        started = time.perf_counter()
        if not (big / "catalog").exists():
            build_catalog(big, args.rows)
        build_s = time.perf_counter() - started
        catalog_mb = sum(p.stat().st_size for p in catalog_dir(big).glob("*.parquet")) / 1e6
        new = measured(cli(big, "bench-new"))
        again = measured(cli(big, "bench-again"))
        view_mb = Path(big, "views", "bench-new.json").stat().st_size / 1e6
        build_sync_rescore(big)
        rescored = measured(cli(big, "bench-after-rescore"))
        if not (small / "catalog").exists():
            build_catalog(small, args.baseline_rows)
        new_small = measured(cli(small, "bench-new"))  # first: hashes the part, as the old path below does
        old_small = measured([*old_cmd, str(small), "bench-old"])
        same = json.loads(Path(small, "views", "bench-old.json").read_text())["shards"] == json.loads(Path(small, "views", "bench-new.json").read_text())["shards"]
        table = read_catalog(small, profile_columns(profile))
        started = time.perf_counter()
        keep, _ = select(profile, table)
        select_s = time.perf_counter() - started
        sample = table.slice(0, min(100_000, table.num_rows)).to_pylist()
        started = time.perf_counter()
        [r["status"] == "ok" and profile.decide(r).keep for r in sample]
        decide_s = (time.perf_counter() - started) * table.num_rows / len(sample)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs); catalog {args.rows:,} rows, "
          f"{catalog_mb:.0f} MB parquet (built in {build_s:.0f} s); view {view_mb:.0f} MB JSON")
    def line(label: str, m: dict) -> str:
        return f"{label:<62}{m['s']:7.2f} s wall {m['cpu']:7.2f} s CPU {m['gb']:6.2f} GB peak"

    print(f"{'':<62}   (end to end in a new process: imports, snapshot, read, select, write the view)")
    print(line(f"fada refilter, {args.rows:,} rows (goal <= 3 s, <= 2 GB)", new))
    print(line("  again (catalog digests remembered, page cache warm)", again))
    print(line("  after a sync rescore part over every ok clip", rescored))
    print(line(f"old implementation, {args.baseline_rows:,} rows", old_small))
    print(line(f"fada refilter now, {args.baseline_rows:,} rows", new_small))
    print(f"  old / new: {old_small['s'] / new_small['s']:.1f}x wall, {old_small['cpu'] / new_small['cpu']:.1f}x CPU, "
          f"{old_small['gb'] / new_small['gb']:.1f}x memory; same keys per shard: {same}")
    print(f"selection alone, {table.num_rows:,} rows: vectorised {select_s:.2f} s vs Profile.decide row by row {decide_s:.1f} s "
          f"(scaled from {len(sample):,}): {decide_s / select_s:.0f}x")
    print(new["stdout"].splitlines()[0])


if __name__ == "__main__":
    main()
