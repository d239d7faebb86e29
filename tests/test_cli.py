"""The ``fada`` command line as a user meets it: the model commands expose every parameter of their flow with the
flow's default and choices (so the two cannot drift), and every command reports a user's mistake as one line
and exit code 2, never a traceback."""

import enum
import inspect
import re
import types
import typing
from pathlib import Path

import pytest

from fada.evaluate import pair_runs
from flows import training_flows
from flows.cli import build_parser, main

# command → (flow, the arguments it requires, {flow parameter: its flag when not --<name>}); the flags are the
# user-facing contract. refresh_cache is Prefect's cache switch: not on the command line.
MODEL_COMMANDS = {
    "train-teacher": (training_flows.train_teacher_flow, ["--data", "d", "--out", "o", "--steps", "3"],
                      {"data_dir": "--data", "out_dir": "--out", "config_overrides": "--set", "sd15_dir": "--sd15"}),
    "distill": (training_flows.distill_student_flow, ["--data", "d", "--teacher", "t", "--out", "o", "--steps", "3"],
                {"data_dir": "--data", "out_dir": "--out", "overrides": "--set"}),
    "generate": (training_flows.generate_flow, ["--ckpt", "c", "--image", "i.png", "--audio", "a.wav", "--out", "v.mp4"],
                 {"guidance_reference": "--s-r", "guidance_audio": "--s-a"}),
    "evaluate": (training_flows.evaluate_flow, ["--data", "d", "--ckpt", "c", "--out", "o"],
                 {"data_dir": "--data", "out_dir": "--out"}),
    "train-syncnet": (training_flows.train_sync_expert_flow, ["--data", "d", "--out", "o"],
                      {"data_dir": "--data", "out_dir": "--out", "settings": "--set"}),
}


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def parse(*argv: str):
    return vars(build_parser().parse_args(list(argv)))


def plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    return str(value) if isinstance(value, Path) else value


def without_none(hint):
    rest = [a for a in typing.get_args(hint) if a is not type(None)]
    return rest[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(rest) == 1 else hint


def flow_parameters(flow):
    hints = typing.get_type_hints(flow.fn)
    for name, parameter in inspect.signature(flow.fn).parameters.items():
        if name != "refresh_cache":
            yield name, parameter, hints[name]


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_flow_parameter_is_an_option_with_the_flows_default(command):
    flow, required, flags = MODEL_COMMANDS[command]
    parsed = parse(command, *required)
    for name, parameter, hint in flow_parameters(flow):
        if parameter.default is inspect.Parameter.empty:
            continue  # required: given above under its flag (parse_args would have failed otherwise)
        if parameter.default is None and typing.get_origin(without_none(hint)) in (dict, list):
            assert parsed[name] == [], name  # a repeated option (--set KEY=VALUE, --skip) given no times: the flow's None
        else:
            assert parsed[name] == plain(parameter.default), (command, name)
        assert "refresh_cache" not in parsed


def enum_options(flow, flags):
    """(flag, dest, enum, repeated) for every enum the flow takes: a parameter, a list of them, a model's field."""
    for name, _, hint in flow_parameters(flow):
        hint = without_none(hint)
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is list else None
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            yield flags.get(name, "--" + name.replace("_", "-")), name, hint, False
        elif isinstance(item, type) and issubclass(item, enum.Enum):
            yield flags.get(name, "--" + name.replace("_", "-")), name, item, True
        elif hasattr(item, "model_fields"):
            for field, info in item.model_fields.items():
                if isinstance(info.annotation, type) and issubclass(info.annotation, enum.Enum):
                    yield "--" + field.replace("_", "-"), field, info.annotation, True


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_enum_parameters_accept_exactly_the_flows_choices(command, capsys):
    flow, required, flags = MODEL_COMMANDS[command]
    options = list(enum_options(flow, flags))
    assert options or command == "train-teacher"
    for flag, dest, members, repeated in options:
        for member in members:
            assert parse(command, *required, flag, member.value)[dest] == ([member.value] if repeated else member.value)
        assert main([command, *required, flag, "no-such-choice"]) == 2
        assert one_line_error(capsys).startswith(f"error: fada {command}: argument {flag}: ")


@pytest.mark.parametrize("command, option", [("train-teacher", "--steps"), ("distill", "--steps"), ("generate", "--size"),
                                             ("evaluate", "--max-frames"), ("train-syncnet", "--steps")])
def test_the_flows_value_checks_apply_on_the_command_line(command, option, capsys):
    _, required, _ = MODEL_COMMANDS[command]
    assert main([command, *required, option, "0"]) == 2
    assert f"argument {option}: '0': Input should be greater than 0" in one_line_error(capsys)


def test_evaluate_takes_max_frames_and_pairs_modes_as_the_library_does(tmp_path, capsys):
    parsed = parse("evaluate", "--data", "d", "--ckpt", "a", "--mode", "teacher,fast", "--out", "o", "--max-frames", "9",
                   "--skip", "fid")
    assert (parsed["max_frames"], parsed["ckpt"], parsed["mode"], parsed["skip"]) == (9, ["a"], ["teacher,fast"], ["fid"])
    assert pair_runs(parsed["ckpt"], parsed["mode"]) == [("a", "teacher"), ("a", "fast")]
    parsed = parse("evaluate", "--data", "d", "--ckpt", "a", "--out", "o")  # no --mode: the flow's EvaluationRun default
    assert pair_runs(parsed["ckpt"], parsed["mode"]) == [("a", training_flows.EvaluationRun(ckpt="a").mode.value)]
    # fada.evaluate.pair_runs's rule, its message: two checkpoints and three modes cannot be paired
    argv = ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--ckpt", "a", "--ckpt", "b",
            "--mode", "teacher", "--mode", "fast", "--mode", "balanced"]
    assert main(argv) == 2
    assert one_line_error(capsys) == ("error: 2 --ckpt and 3 --mode values: give one mode, one per checkpoint, "
                                               "or several modes for one checkpoint")
    assert main(["evaluate", "--data", "d", "--ckpt", "a", "--mode", "teacher,slow", "--out", "o"]) == 2
    assert "argument --mode: 'slow': use teacher, balanced, fast" in one_line_error(capsys)


def test_help_of_a_flow_command_comes_from_the_flow_docstring(capsys):
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert caught.value.code == 0
    assert "--max-frames MAX_FRAMES" in out and "at most this many frames per clip" in out
    assert "--refresh-cache" not in out


# --- user errors: one line, exit 2 -------------------------------------------------------------------------

# Every subcommand with a path that does not exist (or, where the path is created, a bad argument).
USER_ERRORS = {
    "ingest": (["ingest", "{missing}", "--out", "{tmp}/data", "--workers", "0", "--quiet"], "manifest not found"),
    "refilter": (["refilter", "{missing}"], "no catalog in"),
    "rescore": (["rescore", "{missing}", "--scorer", "iqa"], "nothing to rescore"),
    "verify": (["verify", "{missing}"], "no data directory"),
    "repair": (["repair", "{missing}"], "no data directory"),
    "lineage": (["lineage", "{missing}", "abc"], "no shard, source or clip key matches 'abc'"),
    "demo": (["demo", "--out", "{tmp}/demo", "--set", "clip.nope=1", "--quiet"], "unknown configuration key 'clip.nope'"),
    "train-teacher": (["train-teacher", "--data", "{missing}", "--steps", "1", "--out", "{tmp}/o", "--device", "cpu"],
                      "views/strict.json"),
    "train-teacher-set": (["train-teacher", "--data", "{missing}", "--steps", "1", "--out", "{tmp}/o", "--set", "train.lr=1"],
                          "unknown configuration key 'train.lr'"),
    "distill": (["distill", "--data", "{missing}", "--teacher", "{missing}", "--steps", "1", "--out", "{tmp}/o",
                 "--device", "cpu"], "is not a FADA checkpoint"),
    "distill-set": (["distill", "--data", "{missing}", "--teacher", "{missing}", "--steps", "1", "--out", "{tmp}/o",
                     "--set", "solver_steps=2"], "unknown configuration key 'solver_steps'"),
    "generate": (["generate", "--ckpt", "{missing}", "--image", "{missing}", "--audio", "{missing}", "--out", "{tmp}/v.mp4",
                  "--device", "cpu"], "is not a FADA checkpoint"),
    "train-tiny-decoder": (["train-tiny-decoder", "--data", "{missing}", "--vae", "{missing}", "--out", "{tmp}/o",
                            "--device", "cpu"], "no AutoencoderKL in"),
    "evaluate": (["evaluate", "--data", "{missing}", "--ckpt", "{missing}", "--out", "{tmp}/o", "--device", "cpu",
                  "--skip", "fid", "--skip", "fvd"], "is not a FADA checkpoint"),
    "ablate": (["ablate", "--data", "{missing}", "--out", "{tmp}/o", "--doc", "{tmp}/t.md", "--device", "cpu",
                "--teacher-steps", "1", "--max-student-steps", "1"], "views/strict.json"),
    "ablate-seeds": (["ablate", "--out", "{tmp}/o", "--seeds", "0"], "must be at least 1"),
    "split": (["split", "{missing}"], "has no catalog"),
    "train-syncnet": (["train-syncnet", "--data", "{missing}", "--out", "{tmp}/o", "--device", "cpu"], "views/strict.json"),
    "train-syncnet-set": (["train-syncnet", "--data", "{missing}", "--out", "{tmp}/o", "--set", "model.widht=1"],
                          "unknown SyncNet model keys ['widht']"),
}


def test_every_subcommand_is_covered():
    listed = re.search(r"\{([a-z,-]+)\}", build_parser().format_usage()).group(1).split(",")
    assert {argv[0] for argv, _ in USER_ERRORS.values()} == set(listed)


@pytest.mark.parametrize("case", USER_ERRORS)
def test_user_errors_are_one_line_and_exit_2(case, tmp_path, capsys):
    argv, needle = USER_ERRORS[case]
    assert main([a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in argv]) == 2
    assert needle in one_line_error(capsys)


@pytest.mark.parametrize("argv, needle", [
    (["no-such-command"], "error: fada: argument command: invalid choice: 'no-such-command'"),
    (["verify"], "error: fada verify: the following arguments are required: data_dir (see fada verify --help)"),
    (["refilter", "d", "--reshard-below", "half"], "argument --reshard-below: invalid float value: 'half'"),
    (["train-teacher", "--data", "d", "--out", "o"], "the following arguments are required: --steps"),
    (["split", "d", "--unknown"], "error: fada: unrecognized arguments: --unknown"),
])
def test_a_refused_command_line_is_one_line_and_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in one_line_error(capsys)


# --- the flow-backed commands run for real, tiny -------------------------------------------------------------


@pytest.mark.slow
def test_model_commands_run_end_to_end_on_a_tiny_view(tmp_path, capsys):
    """train-teacher → distill → generate through `main`, on two generated 32² clips: the options the commands take
    from their flows reach the library (a wrong name or default would fail here; evaluate's reach it in
    test_user_errors_are_one_line_and_exit_2, which fails in the library only after every option is read)."""
    import numpy as np
    import soundfile
    from PIL import Image
    from skimage import data as sample_images

    from shards.synthetic_dataset import make_speaker_data_dir

    data = make_speaker_data_dir(tmp_path / "speakers", n_clips=2, size=32, duration_s=1.2)
    small = ["--set", "train.num_frames=2", "--set", "train.batch_size=1", "--set", "train.shuffle_buffer=4"]
    assert main(["train-teacher", "--data", str(data), "--view", "train", "--steps", "2", "--out", str(tmp_path / "t"),
                 *small, "--device", "cpu", "--quiet"]) == 0
    assert "teacher: 2 steps (resumed from 0)" in capsys.readouterr().out
    assert main(["distill", "--data", str(data), "--view", "train", "--teacher", str(tmp_path / "t"), "--steps", "1",
                 "--out", str(tmp_path / "s"), "--loss", "fixed", "--set", "batch_size=1", "--set", "shuffle_buffer=4",
                 "--set", "solver_steps_per_window=1", "--device", "cpu", "--quiet"]) == 0
    assert "student: 1 steps" in capsys.readouterr().out
    Image.fromarray(sample_images.astronaut()).save(tmp_path / "face.png")
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    assert main(["generate", "--ckpt", str(tmp_path / "s"), "--mode", "fast", "--image", str(tmp_path / "face.png"),
                 "--audio", str(tmp_path / "a.wav"), "--out", str(tmp_path / "v.mp4"), "--steps", "4", "--s-r", "2.0",
                 "--device", "cpu", "--quiet"]) == 0
    assert "NFE-D" in capsys.readouterr().out and (tmp_path / "v.mp4").is_file()

