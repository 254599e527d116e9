"""Config layers: --set parsing, merging, section validation, YAML files, presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec_lab.corelib.config import (
    PRESETS,
    DataConfig,
    TrainConfig,
    deep_merge,
    load_preset,
    load_yaml,
    parse_sets,
    validate_sections,
)
from codec_lab.corelib.errors import ConfigError


# ---------------------------------------------------------------- parse_sets
def test_parse_sets_nests_and_parses_yaml_values() -> None:
    got = parse_sets([
        "model.rate.keep=0.2", "model.rate.grid=tile", "train.steps=5", "train.grad_clip=null",
        "train.fit_coder=false", "data.train=", "model.encoder.name=cae",
    ])  # fmt: skip
    assert got == {
        "model": {"rate": {"keep": 0.2, "grid": "tile"}, "encoder": {"name": "cae"}},
        "train": {"steps": 5, "grad_clip": None, "fit_coder": False},
        "data": {"train": None},
    }
    assert isinstance(got["train"]["steps"], int)


def test_parse_sets_value_may_contain_equals() -> None:
    assert parse_sets(["data.train=a=b"]) == {"data": {"train": "a=b"}}


def test_parse_sets_later_wins() -> None:
    assert parse_sets(["train.lr=1", "train.lr=2"]) == {"train": {"lr": 2}}


@pytest.mark.parametrize("item", ["train.lr", "=3", " =3"])
def test_parse_sets_needs_key_and_value(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_sets([item])


def test_parse_sets_refuses_invalid_yaml() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_sets(["train.lr=[1, 2"])


def test_parse_sets_refuses_a_value_and_a_section() -> None:
    with pytest.raises(ConfigError, match="a value and a section"):
        parse_sets(["train=3", "train.lr=2"])


# ---------------------------------------------------------------- deep_merge
def test_deep_merge_recurses_and_replaces() -> None:
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2], "c": 3}
    over = {"a": {"y": {"w": 4}}, "b": [9], "d": {"e": 5}}
    got = deep_merge(base, over)
    assert got == {"a": {"x": 1, "y": {"z": 2, "w": 4}}, "b": [9], "c": 3, "d": {"e": 5}}


def test_deep_merge_does_not_alias_its_inputs() -> None:
    base = {"a": {"x": [1]}}
    over = {"b": {"y": [2]}}
    got = deep_merge(base, over)
    got["a"]["x"].append(3)
    got["b"]["y"].append(3)
    assert base == {"a": {"x": [1]}} and over == {"b": {"y": [2]}}


def test_deep_merge_mapping_replaces_a_scalar_and_back() -> None:
    assert deep_merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert deep_merge({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


# ---------------------------------------------------------------- validate_sections
def test_validate_sections_defaults() -> None:
    train, data = validate_sections({})
    assert train == TrainConfig() and data == DataConfig()


def test_validate_sections_converts_int_to_float() -> None:
    train, _ = validate_sections({"train": {"lr": 1, "epochs": 3}})
    assert train.lr == 1.0 and isinstance(train.lr, float) and train.epochs == 3


def test_validate_sections_reads_exponents_without_a_dot() -> None:
    # YAML 1.1 reads 1e-4 as a string; --set train.lr=1e-4 is how people write it.
    train, _ = validate_sections({"train": parse_sets(["train.lr=1e-4", "train.aux_lr=2.5E-3"])["train"]})
    assert train.lr == 1e-4 and train.aux_lr == 2.5e-3


def test_unknown_section_suggests() -> None:
    with pytest.raises(ConfigError, match="unknown config section 'trian'.*did you mean 'train'"):
        validate_sections({"trian": {}})


def test_unknown_train_key_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown key train\.lrr.*did you mean 'lr'"):
        validate_sections({"train": {"lrr": 0.1}})


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"lr": "fast"}, r"train\.lr: expected float, got str 'fast'"),
        ({"epochs": 2.5}, r"train\.epochs: expected int"),
        ({"epochs": True}, r"train\.epochs: expected int"),
        ({"fit_coder": "yes"}, r"train\.fit_coder: expected bool"),
        ({"loss": "l1"}, r"train\.loss: 'l1' is not one of 'mix' \| 'mse' \| 'ms-ssim'"),
        ({"device": "tpu"}, r"train\.device"),
        ({"steps": "many"}, r"train\.steps: expected int \| null"),
        ({"epochs": 0}, r"train\.epochs must be >= 1"),
        ({"steps": 0}, r"train\.steps must be >= 1 or null"),
        ({"lr": 0}, r"train\.lr must be > 0"),
        ({"crop": 60}, r"train\.crop must be a multiple of 8"),
        ({"lr": "1e"}, r"train\.lr: expected float"),
        ({"init": ""}, r"train\.init must be a run folder"),
        ({"init": 3}, r"train\.init: expected str \| null"),
    ],
)
def test_bad_train_values(train: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_sections({"train": train})


def test_section_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="train: expected a mapping, got list"):
        validate_sections({"train": [1, 2]})


def test_data_paths_must_be_strings() -> None:
    with pytest.raises(ConfigError, match=r"data\.val"):
        validate_sections({"data": {"val": 3}})


def test_crop_too_small_for_ms_ssim_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="crop"):
        validate_sections({"train": {"crop": 32, "loss": "mix"}})


# ---------------------------------------------------------------- YAML files and presets
def test_load_yaml(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 0.01\n")
    assert load_yaml(p) == {"train": {"lr": 0.01}}
    p.write_text("")
    assert load_yaml(p) == {}


def test_load_yaml_invalid(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train: {lr: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(p)


def test_load_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(p)


def test_load_yaml_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_validate(name: str) -> None:
    preset = load_preset(name)
    train, _ = validate_sections({"train": preset["train"]})
    assert train.epochs >= 1
    assert set(preset) <= {"train", "components", "rates", "timing"}
    for rate, section in (preset.get("rates") or {}).items():
        assert set(section) <= {"train"}, rate
        validate_sections({"train": {**preset["train"], **section["train"]}})


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        load_preset("quik")
