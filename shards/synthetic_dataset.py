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


def render_clip(seed: int, folder: Path, size: int, duration_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, size, size, 3) uint8, audio) of the generator speaker of ``seed``, rendered to ``folder``."""
    rendered = Path(folder) / f"speaker{seed}.mp4"
    rendered.parent.mkdir(parents=True, exist_ok=True)
    render_speaker(speaker_spec(seed, duration_s), rendered)
    return read_rendered(rendered, size)


def write_clip_shards(root: Path, clips, clips_per_shard: int = 100) -> dict[str, list[str]]:
    """Write ``clips`` — (key, frames, audio, catalog record) — to ``root/shards/v1`` in shards of
    ``clips_per_shard``; returns {shard path relative to ``root``: [keys]}."""
    from shards.shard_writer import ShardWriter

    shards: dict[str, list[str]] = {}
    with ShardWriter(Path(root) / VERSION, max_count=clips_per_shard) as writer:
        for i, (key, frames, audio, record) in enumerate(clips):
            record = {"key": key, "n_frames": len(frames), "fps": FPS, "status": "ok", **record}
            writer.add(key, {"mp4": encode_mp4(frames), "wav": encode_wav(audio), "json": json.dumps(record).encode()})
            shards.setdefault(f"{VERSION}/clips-{i // clips_per_shard:06d}.tar", []).append(key)
    return shards


def write_view(root: Path, view: str, shards: dict[str, list[str]]) -> None:
    """``root/views/<view>.json`` selecting ``shards`` ({shard: [keys]}; shards left without keys are dropped)."""
    selected = {shard: keys for shard, keys in shards.items() if keys}
    (Path(root) / "views").mkdir(parents=True, exist_ok=True)
    (Path(root) / "views" / f"{view}.json").write_text(json.dumps({"name": view, "shards": selected}))


def make_speaker_data_dir(root: Path, *, n_clips: int = 3, size: int = 64, duration_s: float = 2.0,
                          view: str = "train", clips_per_shard: int = 100) -> Path:
    """Write ``n_clips`` clips (one per generator seed) to shards of ``clips_per_shard`` and a view of them all."""
    root = Path(root)

    def clips():
        for seed in range(n_clips):
            frames, audio = render_clip(seed, root / "raw", size, duration_s)
            yield f"speaker{seed:03d}", frames, audio, {"source_id": f"src{seed}", "source_tag": "synthetic"}

    write_view(root, view, write_clip_shards(root, clips(), clips_per_shard))
    return root


def degrade_frames(frames: np.ndarray, seed: int, *, blur_sigma: float, noise_std: float) -> np.ndarray:
    """Frames as a poor camera gives them: Gaussian blur of ``blur_sigma`` pixels, then Gaussian pixel noise of
    ``noise_std`` (uint8 levels), seeded."""
    import cv2

    rng = np.random.default_rng(seed)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), sigmaX=blur_sigma) for f in frames]).astype(np.float32)
    return np.clip(blurred + rng.normal(0.0, noise_std, blurred.shape), 0, 255).round().astype(np.uint8)


def make_mixed_quality_data_dir(root: Path, *, n_clean: int = 4, n_moderate: int = 4, size: int = 32,
                                duration_s: float = 4.0, strict_view: str = "strict", lenient_view: str = "lenient",
                                blur_sigma: float = 1.0, noise_std: float = 12.0, clips_per_shard: int = 100) -> Path:
    """The paper's premise in miniature: a ``strict`` view of clean speakers (seeds 0..n_clean−1) and a ``lenient``
    view of the same plus ``n_moderate`` "moderate-quality" speakers (the next seeds): the first half (rounded
    up) with another speaker's audio — the previous seed's, so their lip-sync ground truth is wrong — and the
    rest with degraded frames (`degrade_frames`: blur ``blur_sigma`` px, noise ``noise_std`` levels). Each
    catalog record names its ``quality`` (clean, bad_sync, degraded)."""
    if n_clean < 1:
        raise ValueError("n_clean must be at least 1: the strict view would be empty")
    root = Path(root)
    n_bad_sync = (n_moderate + 1) // 2
    quality: dict[str, str] = {}

    def clips():
        previous_audio = None
        for seed in range(n_clean + n_moderate):
            frames, audio = render_clip(seed, root / "raw", size, duration_s)
            kind = "clean" if seed < n_clean else "bad_sync" if seed < n_clean + n_bad_sync else "degraded"
            own_audio = audio
            if kind == "bad_sync":
                audio = previous_audio
            elif kind == "degraded":
                frames = degrade_frames(frames, seed, blur_sigma=blur_sigma, noise_std=noise_std)
            previous_audio = own_audio
            key = f"speaker{seed:03d}"
            quality[key] = kind
            yield key, frames, audio, {"source_id": f"src{seed}", "source_tag": "synthetic", "quality": kind}

    shards = write_clip_shards(root, clips(), clips_per_shard)
    write_view(root, lenient_view, shards)
    write_view(root, strict_view, {shard: [k for k in keys if quality[k] == "clean"] for shard, keys in shards.items()})
    return root
