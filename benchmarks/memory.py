"""Peak memory (max RSS) of one ingest worker on a 4K source and of the training reader, each in its own process.

1. Ingest: ``flows.ingest.ingest(workers=0)`` — the whole run in one process, i.e. one worker plus the
   driver — on a synthetic 3840×2160 talking head (``filters/synthetic.py``), against the same speaker at
   1280×720 measured in the same run (the ratio says what 4K costs).
2. Reader: `shards.reader.ClipWindowDataset` over a shard holding one normal clip and one oversize member of
   ``--member-mib`` MiB: with the default member cap (skipped unread) against a cap above the member (read
   whole: the reader's behaviour before the cap).

    .venv/bin/python benchmarks/memory.py [--seconds 4] [--member-mib 1024]

Each measurement runs in a new process, which reports its peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


PEAK = """
with open("/proc/self/status") as fh:
    print("VmHWM", next(line.split()[1] for line in fh if line.startswith("VmHWM:")))
"""


def peak_rss_mib(code: str, *args: str) -> tuple[float, str]:
    """Run ``code`` in a new Python process; (its peak RSS in MiB, its other stdout).

    The process reports its own high-water mark (``VmHWM``): the rusage of a child (``wait4``) would count
    the parent's memory at fork time too."""
    result = subprocess.run([sys.executable, "-c", code + PEAK, *args], cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    *lines, peak = result.stdout.strip().splitlines()
    return int(peak.split()[1]) / 1024, "\n".join(lines)


INGEST = """
import sys
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
report = ingest(sys.argv[1], sys.argv[2], IngestConfig(), workers=0, progress=False)
print(report.clips_ok, report.frames_read)
"""

READ = """
import sys, warnings
from shards.reader import ClipWindowDataset
warnings.simplefilter("ignore")
dataset = ClipWindowDataset(sys.argv[1], "all", shuffle_buffer=0, max_member_bytes=int(sys.argv[2]))
print(sum(1 for _ in dataset), dict(dataset.stats.counts))
"""


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in blocks (the tar member is written without holding it in memory)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def reader_shard(root: Path, member_mib: int) -> None:
    sys.path.insert(0, str(REPO))
    from tests.test_reader import VERSION, sample, write_view

    (root / VERSION).mkdir(parents=True)
    good = sample("good")
    with tarfile.open(root / VERSION / "clips-000000.tar", "w") as tar:
        for key, members in (("good", good), ("big", dict(good, mp4=None))):
            for extension, data in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                if data is None:
                    info.size = member_mib * 1024**2
                    tar.addfile(info, _Zeros(info.size))
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    write_view(root, "all", {f"{VERSION}/clips-000000.tar": ["big", "good"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the synthetic source")
    parser.add_argument("--member-mib", type=int, default=1024, help="size of the oversize tar member")
    args = parser.parse_args()
    from filters.synthetic import SpeakerSpec, render_speaker
    from shards.tar_members import MAX_MEMBER_BYTES

    print(f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="fada-mem-") as tmp:
        tmp = Path(tmp)
        ingest_mib = {}
        for label, (width, height) in {"720p": (1280, 720), "4K": (3840, 2160)}.items():
            folder = tmp / label
            folder.mkdir()
            render_speaker(SpeakerSpec(seed=5, duration_s=args.seconds, width=width, height=height), folder / "speaker.mp4")
            (folder / "manifest.yaml").write_text(yaml.safe_dump([{"uri": "speaker.mp4", "tag": "interview"}]))
            ingest_mib[label], out = peak_rss_mib(INGEST, str(folder / "manifest.yaml"), str(folder / "data"))
            print(f"ingest {label} ({width}x{height}, {args.seconds:g} s): peak RSS {ingest_mib[label]:.0f} MiB  (clips, frames read: {out.strip()})")
        print(f"ingest 4K / 720p: {ingest_mib['4K'] / ingest_mib['720p']:.2f}x")
        reader_shard(tmp / "reader", args.member_mib)
        capped, out_capped = peak_rss_mib(READ, str(tmp / "reader"), str(MAX_MEMBER_BYTES))
        whole, out_whole = peak_rss_mib(READ, str(tmp / "reader"), str(2 * args.member_mib * 1024**2))
        print(f"reader, {args.member_mib} MiB member, default cap {MAX_MEMBER_BYTES // 1024**2} MiB (skipped): peak RSS {capped:.0f} MiB  {out_capped.strip()}")
        print(f"reader, same shard, member read whole (no cap): peak RSS {whole:.0f} MiB  {out_whole.strip()}")
        print(json.dumps({"ingest_mib": ingest_mib, "reader_capped_mib": capped, "reader_uncapped_mib": whole,
                          "ratio_uncapped_over_capped": whole / capped}))


if __name__ == "__main__":
    main()
