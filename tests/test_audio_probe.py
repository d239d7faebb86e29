"""The denoiser audio probe (`fada.metrics.audio_probe`): only the audio differs between its two passes, so a
net whose output does not depend on the audio has a gap of exactly 0; its audio windows line up with the frames;
too-short speakers are refused."""

import numpy as np
import pytest
import torch

from fada.config import load_config
from fada.metrics.audio_probe import audio_probe, window_audio
from fada.metrics.oracle_sync import SAMPLES_PER_FRAME, MouthRegressor, RenderedSpeaker, render_speakers
from fada.train_teacher import build_model


@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    return render_speakers([9000, 9001], 1.2, tmp_path_factory.mktemp("held_out"), size=32)  # 30 frames each


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, codec = build_model(load_config("tiny"))
    return model.eval(), codec


def reader():
    torch.manual_seed(1)
    return MouthRegressor().eval()


def test_audio_blind_net_has_zero_gap(tiny, speakers):
    model, codec = tiny
    blind = type(model)(**model.config)
    blind.load_state_dict(model.state_dict())
    for module in blind.audio_encoder.modules():  # every audio token becomes the same constant
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    result = audio_probe(blind.eval(), codec, speakers, reader(), num_frames=8, timesteps=(600,))
    assert result[600]["r_own"] == result[600]["r_swapped"] and result["mean_gap"] == 0.0
    assert -1 <= result[600]["r_own"] <= 1


def test_the_net_sees_the_audio_it_is_given(tiny, speakers):
    """The untrained net's output depends (slightly) on its audio tokens: the two passes differ."""
    model, codec = tiny
    result = audio_probe(model, codec, speakers, reader(), num_frames=8, timesteps=(600, 800))
    assert set(result) == {600, 800, "mean_gap"}
    assert any(result[t]["r_own"] != result[t]["r_swapped"] for t in (600, 800))


def test_window_audio_lines_up_with_frames_and_pads_with_silence():
    audio = np.arange(10 * SAMPLES_PER_FRAME, dtype=np.float32)
    window = window_audio(audio, first=1, frames=2, context=2).numpy()
    assert len(window) == 6 * SAMPLES_PER_FRAME
    assert np.all(window[:SAMPLES_PER_FRAME] == 0)  # frame −1 does not exist
    assert window[SAMPLES_PER_FRAME] == 0 and window[3 * SAMPLES_PER_FRAME] == 2 * SAMPLES_PER_FRAME
    tail = window_audio(audio, first=8, frames=2, context=2).numpy()
    assert tail[0] == 6 * SAMPLES_PER_FRAME and np.all(tail[4 * SAMPLES_PER_FRAME:] == 0)


def test_too_short_speakers_are_refused(tiny, speakers):
    model, codec = tiny
    short = RenderedSpeaker(1, speakers[0].frames[:12], speakers[0].audio, speakers[0].mouth_open[:12])
    with pytest.raises(ValueError, match="fewer than 2 windows"):
        audio_probe(model, codec, [short], reader(), num_frames=8)
