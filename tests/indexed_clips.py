"""Shards of clips that carry their own indices, for reader tests: each 64×64 H.264 frame shows its index as
8 black/white blocks and sample i of the wav has the PCM16 value i, so windows, motion frames, references and
audio can be checked exactly (`indices_of`)."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from shards.shard_writer import ShardWriter

SIZE, CLIP_FRAMES = 64, 30
BLOCK_H, BLOCK_W = SIZE // 2, SIZE // 4
VERSION = "shards/v1"


def frame_with_index(index: int) -> np.ndarray:
    """A 64×64 RGB frame showing `index` in binary: 2 rows × 4 blocks tiling the frame, white = 1."""
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(8):
        if index >> bit & 1:
            row, col = divmod(bit, 4)
            frame[row * BLOCK_H:(row + 1) * BLOCK_H, col * BLOCK_W:(col + 1) * BLOCK_W] = 255
    return frame


def indices_of(frames: torch.Tensor) -> list[int]:
    """Read back the frame indices of (T, 3, H, W) frames in [-1, 1], at any size."""
    blocks = frames.mean(dim=1).unflatten(1, (2, -1)).unflatten(3, (4, -1)).mean(dim=(2, 4))  # (T, 2, 4)
    bits = (blocks.flatten(1) > 0).long()
    return (bits * (2 ** torch.arange(8))).sum(dim=1).tolist()


def mp4_bytes(n_frames: int) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for index in range(n_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_with_index(index), format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def wav_bytes(n_frames: int) -> bytes:
    """Sample i has the PCM16 value i (a ramp), 640 samples per frame."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.arange(n_frames * 640, dtype=np.int16), 16000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def sample(key: str, n_frames: int = CLIP_FRAMES) -> dict[str, bytes]:
    record = {"key": key, "source_id": "src", "n_frames": n_frames, "fps": 25, "iqa": None}
    return {"mp4": mp4_bytes(n_frames), "wav": wav_bytes(n_frames), "json": json.dumps(record).encode()}


def write_view(data_dir, name: str, shards: dict[str, list[str]]) -> None:
    (data_dir / "views").mkdir(exist_ok=True)
    (data_dir / "views" / f"{name}.json").write_text(json.dumps({"name": name, "shards": shards}))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """4 shards × 3 clips; view `subset` keeps 8 of the 12 (the middle clip of each shard is left out)."""
    root = tmp_path_factory.mktemp("data")
    with ShardWriter(root / VERSION, max_count=3) as writer:
        for n in range(12):
            writer.add(f"clip{n:02d}", sample(f"clip{n:02d}"))
    keep = {f"{VERSION}/clips-{s:06d}.tar": [f"clip{n:02d}" for n in range(3 * s, 3 * s + 3) if n % 3 != 1]
            for s in range(4)}
    write_view(root, "subset", keep)
    return root


def raw_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
