"""Teacher training on two processes through torchrun (DDP over gloo on CPU): each rank reads its own shard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shards.synthetic_dataset import make_speaker_data_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_ranks_train_and_write_one_checkpoint(tmp_path):
    data = make_speaker_data_dir(tmp_path / "data", n_clips=2, size=32, duration_s=1.2, clips_per_shard=1)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(free_port()), "-m", "flows.cli", "train-teacher", "--data", str(data),
               "--view", "train", "--config", "tiny", "--set", "train.num_frames=2", "--set", "train.batch_size=1",
               "--set", "train.checkpoint_every=2", "--steps", "2", "--out", str(out), "--device", "cpu", "--quiet"]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["step"] == 2 and len(meta["shards"]) == 2
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]
