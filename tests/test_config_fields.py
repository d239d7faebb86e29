"""`filters.config_fields`: the one override parser and the one strict dataclass builder."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from filters.config_fields import ConfigError, apply_dotted, apply_overrides, allowed_paths, from_dict, merge


@dataclass(frozen=True)
class Inner:
    size: int = 512
    scale: float = 1.8


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "a"
    weights: str | None = None
    mode: Literal["no", "bf16"] = "no"
    pair: tuple[float, float] = (0.0, 1.0)
    flag: bool = False
    extra: dict = field(default_factory=dict)


CONFIG = {"clip": {"min_s": 2.0, "max_s": 10.0}, "chunk_s": 120.0, "encode": {"x264_params": "me=dia"}}


def test_overrides_set_nested_values_parsed_as_yaml_scalars():
    result = apply_overrides(CONFIG, ["clip.max_s=8", "chunk_s=60", "encode.x264_params=", "clip.min_s=1e-4"])
    assert result == {"clip": {"min_s": "1e-4", "max_s": 8}, "chunk_s": 60, "encode": {"x264_params": None}}
    assert CONFIG["clip"]["max_s"] == 10.0  # the input is not changed


def test_later_overrides_win_and_values_may_hold_equals_signs():
    assert apply_overrides(CONFIG, ["chunk_s=1", "chunk_s=2"])["chunk_s"] == 2
    assert apply_overrides(CONFIG, ["encode.x264_params=me=dia:subme=1"])["encode"]["x264_params"] == "me=dia:subme=1"


@pytest.mark.parametrize("pair, needles", [
    ("clip.no_such=1", ["'clip.no_such'", "under 'clip'", "'max_s'", "'min_s'"]),
    ("trian.lr=1", ["'trian.lr'", "'chunk_s'", "'clip'", "'encode'"]),
    ("chunk_s.x=1", ["'chunk_s' is a value, not a section"]),
    ("novalue", ["--set expects section.key=value", "'novalue'"]),
    ("clip.max_s=[1", ["not a YAML scalar"]),
    ("clip..max_s=1", ["empty part"]),
])
def test_bad_overrides_name_the_key_and_what_is_allowed(pair, needles):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(CONFIG, [pair])
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_allowed_tree_opens_sections_and_lists_keys_the_config_lacks():
    allowed = {"model": None, "train": {"num_frames": 16, "warmup_steps": 0}}
    result = apply_overrides({"model": {"unet": {"a": 1}}, "train": {"num_frames": 8}},
                             ["model.unet.dropout=0.1", "train.warmup_steps=5"], allowed=allowed)
    assert result == {"model": {"unet": {"a": 1, "dropout": 0.1}}, "train": {"num_frames": 8, "warmup_steps": 5}}
    with pytest.raises(ConfigError, match="'train.lr'.*'num_frames', 'warmup_steps'"):
        apply_overrides({}, ["train.lr=1"], allowed=allowed)


def test_dotted_mappings_merge_like_the_flows_parameters():
    result = apply_dotted(CONFIG, {"clip.max_s": 5, "encode": {"x264_params": ""}})
    assert result["clip"] == {"min_s": 2.0, "max_s": 5} and result["encode"] == {"x264_params": ""}
    with pytest.raises(ConfigError, match="'clip.max'"):
        apply_dotted(CONFIG, {"clip.max": 5})


def test_merge_is_recursive_and_copies():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert merge(base, {"a": {"b": 5}, "e": {"f": 1}}) == {"a": {"b": 5, "c": 2}, "d": 3, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


def test_from_dict_builds_nested_dataclasses_and_converts_what_yaml_gives():
    built = from_dict(Outer, {"inner": {"size": "256", "scale": 2}, "pair": [0.5, "1e-4"], "weights": None,
                              "mode": "bf16", "flag": True, "extra": {"k": 1}})
    assert built == Outer(inner=Inner(256, 2.0), pair=(0.5, 1e-4), mode="bf16", flag=True, extra={"k": 1})
    assert isinstance(built.inner.scale, float) and isinstance(built.pair, tuple)
    assert from_dict(Outer, {"inner": None}) == Outer() == from_dict(Outer, None)


@pytest.mark.parametrize("values, needles", [
    ({"nmae": "x"}, ["unknown ingest keys ['nmae']", "allowed:", "'name'"]),
    ({"inner": {"sise": 3}}, ["unknown ingest.inner keys ['sise']", "'scale', 'size'"]),
    ({"inner": {"size": "big"}}, ["ingest.inner.size", "expected int", "'big'"]),
    ({"inner": {"size": 1.5}}, ["ingest.inner.size", "expected int"]),
    ({"flag": "yes please"}, ["ingest.flag", "expected bool"]),
    ({"inner": {"size": True}}, ["ingest.inner.size", "expected int"]),
    ({"mode": "fp8"}, ["ingest.mode", "'fp8' is not one of ['no', 'bf16']"]),
    ({"pair": [1.0]}, ["ingest.pair", "expected 2 values"]),
    ({"name": 3}, ["ingest.name", "expected str"]),
    ({"weights": 3}, ["ingest.weights", "expected str"]),
    ({"extra": [1]}, ["ingest.extra", "expected dict"]),
    ({"inner": 5}, ["expected a mapping in ingest.inner"]),
])
def test_from_dict_refuses_unknown_keys_and_wrong_types_in_one_line(values, needles):
    with pytest.raises(ConfigError) as caught:
        from_dict(Outer, values, section="ingest")
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_allowed_paths_of_a_dataclass_open_dict_fields_and_check_nested_ones():
    assert allowed_paths(Outer) == {"inner": {"size": None, "scale": None}, "name": None, "weights": None,
                                    "mode": None, "pair": None, "flag": None, "extra": None}
    assert apply_overrides({}, ["extra.any.depth=1"], allowed=allowed_paths(Outer)) == {"extra": {"any": {"depth": 1}}}
    with pytest.raises(ConfigError, match="'inner.sise'.*'scale', 'size'"):
        apply_overrides({}, ["inner.sise=1"], allowed=allowed_paths(Outer))
    with pytest.raises(ConfigError, match="'inner.sise'"):
        apply_dotted({}, {"inner": {"sise": 1}}, allowed=allowed_paths(Outer))
