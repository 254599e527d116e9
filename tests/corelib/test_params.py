"""A constructor signature is a config schema: validate_params and check_value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.params import check_value, schema_of, validate_params


class Toy:
    def __init__(self, rho: float = 0.5, steps: int = 3, mode: Literal["a", "b"] = "a",
                 cap: int | None = None, sizes: list[int] | None = None, name: str = "x",
                 flag: bool = False, **extra) -> None:  # fmt: skip
        pass


class Needs:
    def __init__(self, size: int) -> None:
        pass


@dataclass
class DC:
    a: int = 1
    b: list = field(default_factory=list)


def test_defaults_are_filled() -> None:
    assert validate_params(Toy, {}, "model.toy") == {
        "rho": 0.5, "steps": 3, "mode": "a", "cap": None, "sizes": None, "name": "x", "flag": False,
    }  # fmt: skip


def test_unknown_key_with_did_you_mean() -> None:
    with pytest.raises(ConfigError) as e:
        validate_params(Toy, {"rhoo": 1.0}, "model.rate")
    assert "unknown key model.rate.rhoo" in str(e.value)
    assert "did you mean 'rho'" in e.value.hint
    assert "valid: cap, flag, mode, name, rho, sizes, steps" in e.value.hint


def test_wrong_type_names_the_path() -> None:
    with pytest.raises(ConfigError, match=r"model\.toy\.steps: expected int, got str 'many'"):
        validate_params(Toy, {"steps": "many"}, "model.toy")


def test_int_becomes_float() -> None:
    out = validate_params(Toy, {"rho": 2}, "p")
    assert out["rho"] == 2.0 and type(out["rho"]) is float


def test_float_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match="expected int"):
        validate_params(Toy, {"steps": 2.0}, "p")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(value: bool) -> None:
    with pytest.raises(ConfigError):
        validate_params(Toy, {"rho": value}, "p")
    with pytest.raises(ConfigError):
        validate_params(Toy, {"steps": value}, "p")


def test_literal() -> None:
    assert validate_params(Toy, {"mode": "b"}, "p")["mode"] == "b"
    with pytest.raises(ConfigError, match=r"p\.mode: 'c' is not one of 'a' \| 'b'"):
        validate_params(Toy, {"mode": "c"}, "p")


def test_optional() -> None:
    assert validate_params(Toy, {"cap": None}, "p")["cap"] is None
    assert validate_params(Toy, {"cap": 4}, "p")["cap"] == 4
    with pytest.raises(ConfigError, match=r"p\.cap: expected int \| null"):
        validate_params(Toy, {"cap": "four"}, "p")


def test_lists() -> None:
    assert validate_params(Toy, {"sizes": (1, 2)}, "p")["sizes"] == [1, 2]
    with pytest.raises(ConfigError):
        validate_params(Toy, {"sizes": 3}, "p")


def test_str_and_bool_are_strict() -> None:
    with pytest.raises(ConfigError, match="expected str"):
        validate_params(Toy, {"name": 3}, "p")
    with pytest.raises(ConfigError, match="expected bool"):
        validate_params(Toy, {"flag": 1}, "p")


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match=r"missing key model\.x\.size"):
        validate_params(Needs, {}, "model.x")


def test_schema_of_skips_self_and_var_keywords() -> None:
    assert "self" not in schema_of(Toy) and "extra" not in schema_of(Toy)


def test_schema_of_dataclass_with_default_factory() -> None:
    assert schema_of(DC)["b"][1] == []
    assert validate_params(DC, {"a": 2}, "dc") == {"a": 2, "b": []}


def test_check_value_none_type() -> None:
    assert check_value(type(None), None, "p") is None
    with pytest.raises(ConfigError, match="expected null"):
        check_value(type(None), 0, "p")
