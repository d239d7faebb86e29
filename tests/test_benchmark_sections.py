"""The training-side sections of `benchmarks/model_gpu.py` run on CPU with the tiny configuration (no timings
asserted: the benchmark prints them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_gpu import timed  # noqa: E402
from benchmarks.train_sections import (distill_step_benchmark, largest_batch, loader_rate, make_distill_step,  # noqa: E402
                                       write_loader_data)
from fada.config import load_config  # noqa: E402
from fada.model import FadaModel  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return FadaModel(**load_config("tiny")["model"]).eval()


def test_distill_step_trains_the_student_and_reports_teacher_passes(teacher):
    cpu = torch.device("cpu")
    row = distill_step_benchmark(teacher, cpu, timed, frames=2, side=16, solver_steps=1, cfg_variant="layer-tokens",
                                 repeats=1)
    assert row["seconds"] > 0 and row["teacher_nfe_per_step"] == 3 and "out_of_memory" not in row
    step, student = make_distill_step(teacher, cpu, frames=2, side=16, solver_steps=2, cfg_variant="none", batch=2,
                                      checkpointing=False)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    step()
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert "skipped" in largest_batch(teacher, cpu, frames=2, side=16, solver_steps=1, cfg_variant="none",
                                      checkpointing=False)


def test_loader_rate_reads_windows_as_float_and_uint8(tmp_path):
    data_dir = write_loader_data(tmp_path, n_clips=1, seconds=1.0, size=64, copies=2, per_shard=1)
    for uint8 in (False, True):
        row = loader_rate(data_dir, workers=0, batch=1, frames=4, motion=2, size=64, uint8=uint8, min_windows=2)
        assert row["windows_per_s"] > 0 and row["uint8"] is uint8
