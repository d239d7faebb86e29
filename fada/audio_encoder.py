"""Audio encoders: 16 kHz waveform → a few tokens per video frame for the denoising net's audio attention.

Both encoders take the audio of ``num_frames`` frames plus ``context_frames`` frames on each side
(640 samples per frame at 25 fps; `pad_context` zero-pads where there is no neighbour) and return
``(B, num_frames, num_tokens, dim)``: each frame sees a window of about ±2 frames of features (DESIGN.md §3).

* `MelAudioEncoder` — the trainable default: log-mel (80 bands, 10 ms hop, 4 per frame), a 1-D conv stack over
  time, then each frame's window flattened and projected to tokens.
* `Wav2Vec2AudioEncoder` — a frozen wav2vec2 (transformers) built from its config; its weights come from a
  local directory (`load_wav2vec2_weights`) when a model is created and from the checkpoint afterwards.
  Its 50 Hz hidden states (2 per frame) in the window are projected to tokens.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from filters.media_contract import AUDIO_RATE, SAMPLES_PER_FRAME


def pad_context(audio: torch.Tensor, context_frames: int) -> torch.Tensor:
    """Zero-pad (B, S) audio with ``context_frames`` frames of silence on both sides."""
    pad = context_frames * SAMPLES_PER_FRAME
    return F.pad(audio, (pad, pad))


def frame_windows(features: torch.Tensor, num_frames: int, per_frame: int, context_frames: int) -> torch.Tensor:
    """(B, T, C) features at ``per_frame`` per video frame, covering num_frames + 2·context frames →
    (B, num_frames, (2·context + 1)·per_frame, C): each frame's window of neighbouring features."""
    width = (2 * context_frames + 1) * per_frame
    needed = (num_frames + 2 * context_frames) * per_frame
    if features.shape[1] < needed:
        features = F.pad(features, (0, 0, 0, needed - features.shape[1]))
    features = features[:, :needed]
    windows = features.unfold(1, width, per_frame)  # (B, num_frames, C, width)
    return windows[:, :num_frames].permute(0, 1, 3, 2)


class TokenProjection(nn.Module):
    """A frame's window of features → ``num_tokens`` tokens of ``dim`` (two-layer MLP, LayerNorm)."""

    def __init__(self, in_features: int, num_tokens: int, dim: int, hidden_dim: int):
        super().__init__()
        self.num_tokens, self.dim = num_tokens, dim
        self.net = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, num_tokens * dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch, frames = windows.shape[:2]
        tokens = self.net(windows.flatten(2)).view(batch, frames, self.num_tokens, self.dim)
        return self.norm(tokens)


class MelAudioEncoder(nn.Module):
    """Trainable log-mel encoder (the default when no wav2vec2 weights are given)."""

    def __init__(self, dim: int, num_tokens: int = 4, hidden_dim: int = 256, context_frames: int = 2,
                 n_mels: int = 80, n_fft: int = 512):
        super().__init__()
        import librosa

        self.context_frames, self.n_fft, self.hop = context_frames, n_fft, SAMPLES_PER_FRAME // 4
        mel = librosa.filters.mel(sr=AUDIO_RATE, n_fft=n_fft, n_mels=n_mels, fmin=55.0, fmax=7600.0)
        self.register_buffer("mel_basis", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, hidden_dim, 3, padding=1), nn.SiLU(),
            nn.Conv1d(hidden_dim, hidden_dim, 3, padding=1), nn.SiLU(),
        )
        self.project = TokenProjection((2 * context_frames + 1) * 4 * hidden_dim, num_tokens, dim, hidden_dim)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) → (B, S // 160, n_mels): frame i covers samples [160·i, 160·(i+1)) (centred STFT)."""
        spec = torch.stft(audio.float(), self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        mel = self.mel_basis @ spec.abs().pow(2)
        return torch.log(mel.clamp_min(1e-5)).transpose(1, 2)[:, : audio.shape[1] // self.hop]

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        features = self.conv(self.log_mel(audio).transpose(1, 2)).transpose(1, 2)
        windows = frame_windows(features, num_frames, 4, self.context_frames)
        return self.project(windows.to(self.project.net[0].weight.dtype))


class Wav2Vec2AudioEncoder(nn.Module):
    """Frozen wav2vec2 (from ``wav2vec2_config``, a transformers `Wav2Vec2Config` dict) + trainable projection."""

    def __init__(self, dim: int, wav2vec2_config: dict, num_tokens: int = 4, hidden_dim: int = 256,
                 context_frames: int = 2):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        self.context_frames = context_frames
        self.wav2vec2 = Wav2Vec2Model(Wav2Vec2Config(**wav2vec2_config)).requires_grad_(False).eval()
        width = self.wav2vec2.config.hidden_size
        self.project = TokenProjection((2 * context_frames + 1) * 2 * width, num_tokens, dim, hidden_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        self.wav2vec2.eval()  # frozen: dropout stays off
        return self

    def forward(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        audio = (audio - audio.mean(1, keepdim=True)) / (audio.std(1, keepdim=True) + 1e-7)
        with torch.no_grad():
            hidden = self.wav2vec2(audio.to(self.wav2vec2.dtype)).last_hidden_state
        features = F.interpolate(hidden.transpose(1, 2).float(), size=audio.shape[1] // 320, mode="linear")
        windows = frame_windows(features.transpose(1, 2), num_frames, 2, self.context_frames)
        return self.project(windows.to(self.project.net[0].weight.dtype))


def make_audio_encoder(dim: int, kind: str = "mel", **kwargs) -> nn.Module:
    """The encoder named by ``kind`` (``mel`` or ``wav2vec2``) with tokens of ``dim`` (the UNet's cross-attention dim)."""
    if kind == "mel":
        return MelAudioEncoder(dim, **kwargs)
    if kind == "wav2vec2":
        if "wav2vec2_config" not in kwargs:
            raise ValueError("audio kind 'wav2vec2' needs 'wav2vec2_config' (use wav2vec2_audio_config(path))")
        return Wav2Vec2AudioEncoder(dim, **kwargs)
    raise ValueError(f"audio encoder kind {kind!r}: use 'mel' or 'wav2vec2'")


def wav2vec2_audio_config(path: str, **kwargs) -> dict:
    """Audio section for a local wav2vec2 directory (transformers layout): its config inlined."""
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config.from_pretrained(path, local_files_only=True).to_dict()
    return {"kind": "wav2vec2", "wav2vec2_config": config, **kwargs}


def load_wav2vec2_weights(encoder: Wav2Vec2AudioEncoder, path: str) -> None:
    """Copy pretrained weights from a local wav2vec2 directory (safetensors or weights-only) into ``encoder``."""
    from transformers import Wav2Vec2Model

    pretrained = Wav2Vec2Model.from_pretrained(path, local_files_only=True)
    encoder.wav2vec2.load_state_dict(pretrained.state_dict())
