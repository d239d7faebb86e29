"""SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", 2016) as a sync scorer.

The network follows the public ``syncnet_python`` repository (joonson/syncnet_python, ``SyncNetModel.S``)
layer for layer, with the same module names and ``nn.Sequential`` positions, so its ``syncnet_v2.model``
state dict loads unchanged from a local path (it cannot be downloaded here). Two streams, each ending in a
``embedding_dim``-d (1024) embedding:

* audio: (B, 1, 13, 20) — 13 MFCCs × 20 steps at 100 Hz, i.e. 0.2 s;
* video: (B, 3, 5, 224, 224) — 5 consecutive face crops (0.2 s at 25 fps), BGR, raw 0–255 values.

``SyncNetScorer`` reproduces the reference evaluation (``SyncNetInstance.evaluate``): one window per video
frame f (frames f..f+4 against MFCC steps 4f..4f+19), Euclidean distances between the video embedding of
window f and the audio embedding of window f+s for s in ±15 (audio beyond the clip counts as a zero
embedding, as in the reference, so Sync-C stays comparable with published thresholds), mean over f, then
the columns of ``filters.sync_columns.sync_columns``. MFCCs are computed as ``python_speech_features.mfcc`` does
with its defaults on int16-scaled samples (what the reference feeds it); face crops follow the reference
pipeline's geometry (``crop_scale`` 0.4) around a face box taken from the face-mesh landmarks.

Besides the public checkpoint, ``load_syncnet`` reads a directory written by ``save_syncnet``
(``model.safetensors`` + ``config.json``): a sync expert trained on the user's own shards
(``filters.syncnet_training``), possibly a narrower or smaller-input configuration of the same layers
(``width``, ``crop_size``) whose embeddings are L2-normalised (``normalize``), so its Sync-D / Sync-C are
on the cosine-distance scale (0–2), not the public model's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from filters import media_contract
from filters.clip_data import ClipData
from filters.sync_columns import MAX_SHIFT_FRAMES, sync_columns

WINDOW_FRAMES = 5  # video frames per window: 0.2 s at 25 fps
MFCC_RATE_HZ = 100
MFCC_STEPS_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
MFCC_WINDOW_STEPS = 20  # 0.2 s
N_MFCC = 13
CROP_SIZE = 224
SAMPLE_RATE, FPS = media_contract.AUDIO_RATE, float(media_contract.FPS)  # SyncNet was trained on 16 kHz audio and 25 fps video


def _conv_block(conv: nn.Module, channels: int, batch_norm: type[nn.Module], pool: nn.Module | None) -> list:
    """conv → batch norm → ReLU (→ pool): four or three consecutive entries of the reference Sequentials."""
    block = [conv, batch_norm(channels), nn.ReLU(inplace=True)]
    return block + [pool] if pool is not None else block


def _embedding_head(width: int, embedding_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, embedding_dim))


def _lip_feature_side(crop_size: int) -> int:
    """Side of the lip stream's feature map before its last convolution (6 for 224² crops): conv 7 /2,
    pool 3 /2, conv 5 /2 pad 1, pool 3 /2 pad 1, three size-keeping convs, pool 3 /2."""
    side = (crop_size - 7) // 2 + 1
    side = (side - 3) // 2 + 1
    side = (side + 2 - 5) // 2 + 1
    side = (side + 2 - 3) // 2 + 1
    side = (side - 3) // 2 + 1
    if side < 1:
        raise ValueError(f"crop_size {crop_size} is too small for the SyncNet lip stream (needs >= 47)")
    return side


class SyncNetModel(nn.Module):
    """The two SyncNet streams. State-dict keys: ``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
    ``netfclip.*`` as in syncnet_python; ``__init__`` keywords are the configuration.

    The defaults are the public model. ``width`` scales every channel count (0.25: a 16th of the
    convolution cost), ``crop_size`` is the face-crop side (the lip stream's last convolution spans what is
    left of it: 6×6 at 224), ``normalize`` L2-normalises both embeddings (trained experts; the public model
    does not)."""

    def __init__(self, embedding_dim: int = 1024, width: float = 1.0, crop_size: int = CROP_SIZE,
                 normalize: bool = False):
        super().__init__()
        self.embedding_dim, self.width, self.crop_size, self.normalize = embedding_dim, width, crop_size, normalize

        def c(channels: int) -> int:
            return max(1, int(round(channels * width)))

        side = _lip_feature_side(crop_size)
        self.netcnnaud = nn.Sequential(
            *_conv_block(nn.Conv2d(1, c(64), 3, padding=1), c(64), nn.BatchNorm2d, nn.MaxPool2d(1, 1)),
            *_conv_block(nn.Conv2d(c(64), c(192), 3, padding=1), c(192), nn.BatchNorm2d, nn.MaxPool2d(3, stride=(1, 2))),
            *_conv_block(nn.Conv2d(c(192), c(384), 3, padding=1), c(384), nn.BatchNorm2d, None),
            *_conv_block(nn.Conv2d(c(384), c(256), 3, padding=1), c(256), nn.BatchNorm2d, None),
            *_conv_block(nn.Conv2d(c(256), c(256), 3, padding=1), c(256), nn.BatchNorm2d, nn.MaxPool2d(3, stride=2)),
            nn.Conv2d(c(256), c(512), (5, 4)), nn.BatchNorm2d(c(512)), nn.ReLU(),
        )
        self.netfcaud = _embedding_head(c(512), embedding_dim)
        self.netfclip = _embedding_head(c(512), embedding_dim)
        self.netcnnlip = nn.Sequential(
            *_conv_block(nn.Conv3d(3, c(96), (5, 7, 7), stride=(1, 2, 2)), c(96), nn.BatchNorm3d,
                         nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2))),
            *_conv_block(nn.Conv3d(c(96), c(256), (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), c(256),
                         nn.BatchNorm3d, nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
            *_conv_block(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), nn.BatchNorm3d, None),
            *_conv_block(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), nn.BatchNorm3d, None),
            *_conv_block(nn.Conv3d(c(256), c(256), (1, 3, 3), padding=(0, 1, 1)), c(256), nn.BatchNorm3d,
                         nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2))),
            *_conv_block(nn.Conv3d(c(256), c(512), (1, side, side)), c(512), nn.BatchNorm3d, None),
        )

    @property
    def config(self) -> dict:
        return {"embedding_dim": self.embedding_dim, "width": self.width, "crop_size": self.crop_size,
                "normalize": self.normalize}

    def _out(self, embedding: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(embedding, dim=1) if self.normalize else embedding

    def audio_embedding(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows → (B, embedding_dim)."""
        return self._out(self.netfcaud(self.netcnnaud(mfcc).flatten(1)))

    def video_embedding(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, crop_size, crop_size) BGR 0–255 face-crop windows → (B, embedding_dim)."""
        return self._out(self.netfclip(self.netcnnlip(crops).flatten(1)))


WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"  # a trained expert's directory (save_syncnet)


def read_syncnet_config(directory: str | os.PathLike) -> dict:
    """The ``config.json`` of a trained-expert directory; its ``model`` entry is SyncNetModel's keywords."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is a directory without {CONFIG_FILE}: not a trained SyncNet")
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(f"{path} has no 'model' mapping of SyncNetModel keywords")
    return config


def save_syncnet(model: SyncNetModel, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``{"model": model.config, **extra}``) into
    ``directory``, each under a temporary name renamed when complete (weights first, so a config never
    names weights that are not there yet). ``load_syncnet(directory)`` reads them back."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    for name, write in ((WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp))),
                        (CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps({"model": model.config, **(extra or {})},
                                                                            indent=1)))):
        tmp = directory / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, directory / name)
    return directory


def load_syncnet(weights_path: str | os.PathLike, device: str = "cpu") -> SyncNetModel:
    """A SyncNetModel in eval mode with the state dict at ``weights_path``: a torch ``.model``/``.pt`` file
    or ``.safetensors`` of the public architecture, or a directory written by ``save_syncnet`` (its
    ``config.json`` gives the architecture). Checkpoints from before PyTorch 0.4.1 lack BatchNorm's
    ``num_batches_tracked`` (unused in eval); any other missing or unexpected key is an error."""
    path = Path(weights_path)
    keywords: dict = {}
    if path.is_dir():
        keywords = read_syncnet_config(path)["model"]
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device=device)
    else:
        state = torch.load(str(path), map_location=device, weights_only=True)
    try:
        model = SyncNetModel(**keywords)
    except TypeError as exc:
        raise ValueError(f"{weights_path}: bad SyncNet configuration {keywords}: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path} is not a SyncNet state dict: missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return model.to(device).eval()


def reference_mfcc(audio: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """(13, T) MFCCs at 100 Hz as ``python_speech_features.mfcc(audio_int16, rate)`` computes them.

    Its defaults: 25 ms rectangular frames every 10 ms (the last one zero-padded), pre-emphasis 0.97,
    512-point power spectrum / 512, 26 triangular mel filters on floor-quantised FFT bins over 0..rate/2,
    log, orthonormal DCT-II, first 13 kept, sine lifter 22, and c0 replaced by the log frame energy.
    """
    from scipy.fft import dct

    n_fft, n_filters, lifter = 512, 26, 22
    win, step = int(round(0.025 * rate)), int(round(rate / MFCC_RATE_HZ))
    signal = audio.astype(np.float64) * 32768.0
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    n_steps = 1 if len(signal) <= win else 1 + int(np.ceil((len(signal) - win) / step))
    signal = np.pad(signal, (0, (n_steps - 1) * step + win - len(signal)))
    frames = np.lib.stride_tricks.sliding_window_view(signal, win)[::step]
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft
    tiny = np.finfo(float).eps
    energy = np.maximum(power.sum(axis=1), tiny)
    filterbank = np.maximum(power @ _mel_filterbank(n_filters, n_fft, rate).T, tiny)
    cepstra = dct(np.log(filterbank), type=2, axis=1, norm="ortho")[:, :N_MFCC]
    cepstra *= 1 + (lifter / 2) * np.sin(np.pi * np.arange(N_MFCC) / lifter)
    cepstra[:, 0] = np.log(energy)
    return cepstra.T.astype(np.float32)


def _mel_filterbank(n_filters: int, n_fft: int, rate: int) -> np.ndarray:
    """(n_filters, n_fft // 2 + 1) triangles between mel-spaced FFT bins, python_speech_features' way."""
    top_mel = 2595 * np.log10(1 + (rate / 2) / 700)
    hz = 700 * (10 ** (np.linspace(0, top_mel, n_filters + 2) / 2595) - 1)
    bins = np.floor((n_fft + 1) * hz / rate)
    columns = np.arange(n_fft // 2 + 1)
    bank = np.zeros((n_filters, len(columns)))
    for j in range(n_filters):
        low, centre, high = bins[j:j + 3]
        rising = (columns >= low) & (columns < centre)
        falling = (columns >= centre) & (columns < high)
        bank[j, rising] = (columns[rising] - low) / (centre - low)
        bank[j, falling] = (high - columns[falling]) / (high - centre)
    return bank


def face_boxes_from_landmarks(landmarks: np.ndarray, smooth_frames: int = 13) -> np.ndarray:
    """(N, 4) face boxes ``x0, y0, x1, y1`` from the extent of the face mesh, standing in for the
    reference's S3FD boxes: missing frames linearly interpolated, then median-filtered over
    ``smooth_frames`` as the reference smooths its track (edges repeat the end values rather than the
    reference's zero padding). Raises ValueError when no frame has landmarks."""
    from scipy.ndimage import median_filter

    valid = ~np.isnan(landmarks[:, 0, 0])
    if not valid.any():
        raise ValueError(f"no face landmarks in any of {len(landmarks)} frames")
    points = landmarks[..., :2]
    boxes = np.concatenate([np.nanmin(points, axis=1), np.nanmax(points, axis=1)], axis=1).astype(np.float64)
    frames = np.arange(len(landmarks))
    boxes = np.stack([np.interp(frames, frames[valid], boxes[valid, i]) for i in range(4)], axis=1)
    return median_filter(boxes, size=(smooth_frames, 1), mode="nearest")


def face_crops(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.4, size: int = CROP_SIZE) -> np.ndarray:
    """(N, size, size, 3) uint8 BGR crops the way the reference pipeline cuts them (``crop_video``).

    With s = half the box's larger side and (cx, cy) its centre, the crop spans rows cy − s .. cy + s(1 + 2c)
    and columns cx ± s(1 + c) for c = ``crop_scale`` (forehead to below the chin), outside the frame grey 110.
    """
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for index, (frame, (x0, y0, x1, y1)) in enumerate(zip(frames, boxes)):
        half = max(x1 - x0, y1 - y0) / 2
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        scale = 2 * half * (1 + crop_scale) / size  # source pixels per output pixel
        left, top = centre_x - half * (1 + crop_scale), centre_y - half
        matrix = np.array([[scale, 0, left + 0.5 * scale - 0.5], [0, scale, top + 0.5 * scale - 0.5]])
        out[index] = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=(110, 110, 110))[..., ::-1]
    return out


def shifted_distances(video: torch.Tensor, audio: torch.Tensor, max_shift: int) -> torch.Tensor:
    """(2·max_shift + 1,) mean over windows f of ‖video[f] − audio[f + s]‖ for s = −max_shift..max_shift;
    audio outside the clip is a zero embedding (the reference's padding)."""
    padded = nn.functional.pad(audio, (0, 0, max_shift, max_shift))
    shifts = range(2 * max_shift + 1)
    return torch.stack([
        nn.functional.pairwise_distance(video, padded[j:j + len(video)]).mean() for j in shifts
    ])


def clip_inputs(clip: ClipData, crop_size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray, int]:
    """What SyncNet sees of a clip: (face crops (N, crop_size, crop_size, 3) uint8 BGR, MFCCs (13, T) at
    100 Hz, number of windows N − 5 — one per start f = 0 .. N − 6, the reference's windows). Raises
    ValueError for clips that are not 25 fps / 16 kHz, are too short, or have no face landmarks at all."""
    if clip.audio_rate != SAMPLE_RATE or abs(clip.fps - FPS) > 1e-6:
        raise ValueError(f"SyncNet needs {FPS:g} fps and {SAMPLE_RATE} Hz, got {clip.fps:g} fps, "
                         f"{clip.audio_rate} Hz")
    hop = SAMPLE_RATE // int(FPS)
    n_windows = min(clip.n_frames, len(clip.audio) // hop) - WINDOW_FRAMES
    if n_windows < 1:
        raise ValueError(f"clip too short for SyncNet: {clip.n_frames} frames, {len(clip.audio)} samples")
    crops = face_crops(clip.frames, face_boxes_from_landmarks(clip.landmarks), size=crop_size)
    return crops, reference_mfcc(clip.audio), n_windows


def window_tensors(crops: np.ndarray, mfcc: np.ndarray, video_starts, audio_starts) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs: video windows (B, 3, 5, S, S) float 0–255 of frames f..f+4 for f in ``video_starts``
    and audio windows (B, 1, 13, 20) of MFCC steps 4g..4g+19 for g in ``audio_starts``."""
    video = torch.from_numpy(np.stack([crops[f:f + WINDOW_FRAMES] for f in video_starts]))
    audio = torch.from_numpy(np.stack([mfcc[:, MFCC_STEPS_PER_FRAME * g:MFCC_STEPS_PER_FRAME * g + MFCC_WINDOW_STEPS]
                                       for g in audio_starts]))
    return video.permute(0, 4, 1, 2, 3).float(), audio[:, None]


def embed_windows(model: SyncNetModel, crops: np.ndarray, mfcc: np.ndarray, n_windows: int, device: str = "cpu",
                  batch_size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(video, audio) embeddings of windows 0 .. n_windows − 1, on the CPU, without gradients."""
    video, audio = [], []
    with torch.inference_mode():
        for start in range(0, n_windows, batch_size):
            starts = range(start, min(n_windows, start + batch_size))
            windows, steps = window_tensors(crops, mfcc, starts, starts)
            video.append(model.video_embedding(windows.to(device)).cpu())
            audio.append(model.audio_embedding(steps.to(device)).cpu())
    return torch.cat(video), torch.cat(audio)


def weights_version(weights_path: str | os.PathLike) -> str:
    """Scorer version: ``v2`` for the public checkpoint (a file), ``trained-<sha256[:12] of the weights>``
    for a trained expert's directory, so re-scoring with a retrained expert records a new version."""
    path = Path(weights_path)
    if not path.is_dir():
        return "v2"
    return "trained-" + hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]


class SyncNetScorer:
    """SyncNet sync scores (Sync-D, Sync-C, offset) for a clip; see the module docstring for the procedure.

    ``__init__`` keywords are the configuration; ``weights_path`` is the public checkpoint or a trained
    expert's directory. ``score`` raises ValueError for clips that are not 25 fps / 16 kHz, are shorter than
    ``WINDOW_FRAMES`` + 1 frames, or have no face landmarks at all.
    """

    name = "syncnet"

    def __init__(self, weights_path: str | os.PathLike, device: str = "cpu", max_shift: int = MAX_SHIFT_FRAMES,
                 batch_size: int = 20):
        self.weights_path = str(weights_path)
        self.device = device
        self.max_shift = max_shift
        self.batch_size = batch_size
        self.model = load_syncnet(weights_path, device)
        self.version = weights_version(weights_path)

    def embeddings(self, clip: ClipData) -> tuple[torch.Tensor, torch.Tensor]:
        """(video, audio) embeddings, one row per window start f = 0 .. N − 6 (the reference's windows)."""
        crops, mfcc, n_windows = clip_inputs(clip, self.model.crop_size)
        return embed_windows(self.model, crops, mfcc, n_windows, self.device, self.batch_size)

    def score(self, clip: ClipData) -> dict:
        video, audio = self.embeddings(clip)
        distances = shifted_distances(video, audio, self.max_shift).numpy().astype(np.float64)
        return sync_columns(np.arange(-self.max_shift, self.max_shift + 1), distances, self.name)
