"""A small training data directory without the ingest stage: generator speakers → 25 fps, 16 kHz clips in
WebDataset shards and a view file, the layout ingestion publishes (shards/v1/clips-*.tar, views/<name>.json).

Clips are rendered with `filters.synthetic.render_speaker` (a talking face whose mouth follows its speech),
centre-cropped to a square and resized to ``size``², so tiny models in tests and the ablation harness have
something real to learn in seconds. Real datasets come from `fada ingest` and `fada refilter`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from filters.media_contract import AUDIO_RATE, FPS, SAMPLES_PER_FRAME
from filters.synthetic import SpeakerSpec, render_speaker

VERSION = "shards/v1"


def read_rendered(path: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, size, size, 3) uint8, audio 16 kHz mono float32) of a rendered mp4."""
    import cv2
    from decord import AudioReader, VideoReader

    video = VideoReader(str(path))
    frames = video.get_batch(list(range(len(video)))).asnumpy()
    height, width = frames.shape[1:3]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    frames = np.stack([cv2.resize(f[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
                       for f in frames])
    audio = AudioReader(str(path), sample_rate=AUDIO_RATE, mono=True)[:].asnumpy()[0].astype(np.float32)
    return frames, audio[: len(frames) * SAMPLES_PER_FRAME]


def encode_mp4(frames: np.ndarray) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "crf": "18"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def encode_wav(audio: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio, AUDIO_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def speaker_spec(seed: int, duration_s: float) -> SpeakerSpec:
    """The generator speaker of ``seed`` as the clips here frame it: 256², the face at 45 % of the height, 16 kHz
    mono audio (centre-cropped and resized by `read_rendered`)."""
    return SpeakerSpec(seed=seed, duration_s=duration_s, width=256, height=256, face_scale=0.45, audio_rate=AUDIO_RATE,
                       audio_channels=1)


def make_speaker_data_dir(root: Path, *, n_clips: int = 3, size: int = 64, duration_s: float = 2.0,
                          view: str = "train", clips_per_shard: int = 100) -> Path:
    """Write ``n_clips`` clips (one per generator seed) to shards of ``clips_per_shard`` and a view of them all."""
    from shards.shard_writer import ShardWriter

    root = Path(root)
    keys = []
    with ShardWriter(root / VERSION, max_count=clips_per_shard) as writer:
        for seed in range(n_clips):
            rendered = root / "raw" / f"speaker{seed}.mp4"
            rendered.parent.mkdir(parents=True, exist_ok=True)
            render_speaker(speaker_spec(seed, duration_s), rendered)
            frames, audio = read_rendered(rendered, size)
            key = f"speaker{seed:03d}"
            record = {"key": key, "source_id": f"src{seed}", "source_tag": "synthetic", "n_frames": len(frames),
                      "fps": 25, "status": "ok"}
            writer.add(key, {"mp4": encode_mp4(frames), "wav": encode_wav(audio), "json": json.dumps(record).encode()})
            keys.append(key)
    shards = {f"{VERSION}/clips-{i // clips_per_shard:06d}.tar": [] for i in range(len(keys))}
    for i, key in enumerate(keys):
        shards[f"{VERSION}/clips-{i // clips_per_shard:06d}.tar"].append(key)
    (root / "views").mkdir(exist_ok=True)
    (root / "views" / f"{view}.json").write_text(json.dumps({"name": view, "shards": shards}))
    return root
