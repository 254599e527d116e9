"""From user input to a resolved config, and from a config to a Codec."""

from __future__ import annotations

import copy

import pytest

from codec_lab import hookimpl
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.errors import CompositionError, ConfigError, UnknownComponentError
from codec_lab.plugins.coders.histogram import HistogramCoder
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec, resolve_model
from codec_lab.registry.manager import make_plugin_manager
from tests.helpers import TINY_MODEL


def test_defaults(registry: Registry) -> None:
    cfg = assemble_config(registry)
    assert cfg["preset"] == "quick"
    names = {k: v["name"] for k, v in cfg["model"].items()}
    assert names == {"encoder": "cae", "quantizer": "stochastic", "rate": "admm", "coder": "histogram",
                     "decoder": "cae"}  # fmt: skip
    assert cfg["model"]["encoder"] == {"name": "cae", "channels": 32, "blocks": 1, "latent_channels": 16}
    assert cfg["model"]["rate"]["every"] == 6 and cfg["model"]["rate"]["keep"] == 0.1
    assert cfg["train"]["epochs"] == 30 and cfg["train"]["loss"] == "mix"
    assert cfg["data"] == {"train": None, "val": None}


def test_layers_later_wins(registry: Registry) -> None:
    config = {"preset": "cpu", "train": {"lr": 0.003, "epochs": 7, "batch_size": 4},
              "model": {"rate": {"name": "admm", "keep": 0.3, "rho": 0.5}}}  # fmt: skip
    cfg = assemble_config(registry, config=config, train={"epochs": 9, "steps": 11},
                          sets={"train": {"lr": 0.004}, "model": {"rate": {"keep": 0.4}}})  # fmt: skip
    assert cfg["preset"] == "cpu"
    assert cfg["train"]["lr"] == 0.004  # sets > file > preset
    assert cfg["train"]["epochs"] == 9  # flags > file
    assert cfg["train"]["batch_size"] == 4  # file > preset
    assert cfg["train"]["steps_per_epoch"] == 60  # preset
    assert cfg["model"]["rate"]["keep"] == 0.4 and cfg["model"]["rate"]["rho"] == 0.5
    assert cfg["model"]["rate"]["every"] == 8  # cpu preset
    assert cfg["model"]["encoder"]["channels"] == 64


def test_preset_argument_beats_the_file(registry: Registry) -> None:
    assert assemble_config(registry, preset="paper", config={"preset": "cpu"})["preset"] == "paper"
    assert assemble_config(registry, sets={"preset": "cpu"})["preset"] == "cpu"


def test_resolved_config_is_a_fixed_point(registry: Registry) -> None:
    cfg = assemble_config(registry, config={"model": copy.deepcopy(TINY_MODEL)})
    again = assemble_config(registry, config=cfg)
    assert again == cfg


def test_unknown_component_key_suggests(registry: Registry) -> None:
    with pytest.raises(ConfigError) as e:
        assemble_config(registry, sets={"model": {"rate": {"kep": 1}}})
    assert "unknown key model.rate.kep" in str(e.value) and "did you mean 'keep'" in e.value.hint


def test_unknown_model_kind_suggests(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="did you mean 'encoder'"):
        resolve_model({**TINY_MODEL, "encodr": {"name": "cae"}}, registry)


def test_unknown_component_suggests(registry: Registry) -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'admm'"):
        assemble_config(registry, rate="admn")
    with pytest.raises(UnknownComponentError, match="unknown coder 'histgram'"):
        assemble_config(registry, components={"coder": "histgram"})


def test_unknown_section(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="unknown config section 'modle'"):
        assemble_config(registry, config={"modle": {}})
    with pytest.raises(ConfigError, match="unknown config section 'x'"):
        assemble_config(registry, sets={"x": {"y": 1}})


@pytest.mark.parametrize("model", [5, [1], "cae"])
def test_file_model_must_be_a_mapping(registry: Registry, model) -> None:
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        assemble_config(registry, config={"model": model})


def test_component_section_must_be_a_mapping(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="model.rate: expected a mapping with a name"):
        assemble_config(registry, sets={"model": {"rate": 5}})


def test_component_section_may_be_just_a_name(registry: Registry) -> None:
    cfg = assemble_config(registry, config={"model": {"coder": "histogram"}})
    assert cfg["model"]["coder"] == {"name": "histogram", "momentum": 0.99}


def test_set_model_must_be_a_mapping(registry: Registry) -> None:
    with pytest.raises(ConfigError):
        assemble_config(registry, sets={"model": 5})


@pytest.mark.parametrize("kind", ["encoder", "rate"])
def test_component_name_must_be_a_string(registry: Registry, kind: str) -> None:
    with pytest.raises(ConfigError):
        assemble_config(registry, sets={"model": {kind: {"name": 5}}})


def test_resolve_model_needs_names(registry: Registry) -> None:
    model = copy.deepcopy(TINY_MODEL)
    del model["coder"]
    with pytest.raises(ConfigError, match=r"model\.coder\.name is missing.*histogram"):
        resolve_model(model, registry)
    model["coder"] = {"name": 3}
    with pytest.raises(ConfigError, match="expected a string"):
        resolve_model(model, registry)


def test_decoder_inherits_the_encoders_architecture(registry: Registry) -> None:
    model = {**TINY_MODEL, "encoder": {"name": "cae", "channels": 16, "blocks": 2, "latent_channels": 6},
             "decoder": {"name": "cae"}}  # fmt: skip
    dec = resolve_model(model, registry)["decoder"]
    assert (dec["channels"], dec["blocks"], dec["latent_channels"]) == (16, 2, 6)
    model["decoder"] = {"name": "cae", "channels": 8, "latent_channels": 99}
    dec = resolve_model(model, registry)["decoder"]
    assert (dec["channels"], dec["blocks"], dec["latent_channels"]) == (8, 2, 6)


def test_decoder_follows_encoder_overrides_over_the_preset(registry: Registry) -> None:
    cfg = assemble_config(registry, sets={"model": {"encoder": {"channels": 8, "blocks": 0}}})
    assert cfg["model"]["decoder"]["channels"] == 8 and cfg["model"]["decoder"]["blocks"] == 0


def test_wrong_component_param_type(registry: Registry) -> None:
    with pytest.raises(ConfigError, match=r"model\.rate\.grid: 'diag' is not one of"):
        assemble_config(registry, sets={"model": {"rate": {"grid": "diag"}}})
    with pytest.raises(ConfigError, match=r"model\.encoder\.channels: expected int"):
        assemble_config(registry, sets={"model": {"encoder": {"channels": "wide"}}})


def test_component_value_checks_happen_at_build(registry: Registry) -> None:
    cfg = assemble_config(registry, sets={"model": {"rate": {"keep": 2.0}}})
    with pytest.raises(ConfigError, match="keep must be in"):
        build_codec(cfg["model"], registry)


def test_build_codec(registry: Registry) -> None:
    cfg = assemble_config(registry, config={"model": copy.deepcopy(TINY_MODEL)})
    codec = build_codec(cfg["model"], registry)
    assert isinstance(codec, Codec)
    assert codec.config == cfg["model"]
    assert codec.encoder.latent_channels == 4 and codec.quantizer.alphabet_size == 15


# ---------------------------------------------------------------- composition rules
class _NeedsEntropy(HistogramCoder):
    name = "needs-entropy"
    requires = {"rate": ("entropy", "importance")}


class _PickyCoder(HistogramCoder):
    name = "picky"

    def check_composition(self, parts):
        return "needs more than 100 symbols" if parts["quantizer"].alphabet_size < 100 else None


class _Bare(ADMMRate):
    name = "bare"
    default_components = {}


class _Extra:
    @hookimpl
    def codec_register_coders(self):
        return [_NeedsEntropy, _PickyCoder]

    @hookimpl
    def codec_register_rates(self):
        return [_Bare]


@pytest.fixture
def extended() -> Registry:
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(_Extra(), name="extra")
    return Registry(pm)


def test_requires_is_checked(extended: Registry) -> None:
    with pytest.raises(CompositionError) as e:
        assemble_config(extended, components={"coder": "needs-entropy"})
    assert "coder 'needs-entropy' cannot work with rate 'admm'" in str(e.value)
    assert e.value.hint == "choose rate 'entropy' or 'importance'"


def test_check_composition_is_called(extended: Registry) -> None:
    cfg = assemble_config(extended, components={"coder": "picky"})
    with pytest.raises(CompositionError, match="needs more than 100 symbols") as e:
        build_codec(cfg["model"], extended)
    # the hint suggests what works with the other parts, never the refused coder itself
    assert "histogram" in e.value.hint and "picky" not in e.value.hint
    assert e.value.hint.startswith("change the part the message names")
    cfg = assemble_config(extended, components={"coder": "picky"},
                          sets={"model": {"quantizer": {"bound": 60}}})  # fmt: skip
    build_codec(cfg["model"], extended)


def test_rate_without_defaults_needs_every_component(extended: Registry) -> None:
    with pytest.raises(ConfigError, match="no encoder chosen and rate 'bare' names no default"):
        assemble_config(extended, rate="bare")
    cfg = assemble_config(extended, rate="bare", config={"model": {k: v for k, v in TINY_MODEL.items()
                                                                   if k != "rate"}})  # fmt: skip
    assert cfg["model"]["rate"]["name"] == "bare"


@pytest.mark.parametrize("preset", ["quick", "cpu", "paper"])
def test_every_preset_param_is_accepted_by_a_component_of_that_name(registry: Registry, preset: str) -> None:
    """Presets apply each key to the kinds that accept it, so a typo there would be silently dropped."""
    from codec_lab.corelib.config import load_preset
    from codec_lab.corelib.params import schema_of

    for name, params in (load_preset(preset).get("components") or {}).items():
        accepted: set[str] = set()
        for kind in ("encoder", "decoder", "quantizer", "rate", "coder"):
            if name in registry.names(kind):
                accepted |= set(schema_of(registry.get(kind, name).cls))
        assert accepted, f"preset {preset}: no component named {name!r}"
        assert set(params) <= accepted, f"preset {preset}: {name} has unknown keys {set(params) - accepted}"


def test_a_decoder_only_preset_key_reaches_only_the_decoder(registry: Registry) -> None:
    cfg = assemble_config(registry, preset="cpu")
    assert cfg["model"]["decoder"]["output_bn"] is False and "output_bn" not in cfg["model"]["encoder"]


def test_a_preset_can_tune_its_recipe_per_rate(registry: Registry) -> None:
    assert assemble_config(registry, preset="paper", rate="importance")["train"]["lr"] == 1e-4
    assert assemble_config(registry, preset="paper", rate="admm")["train"]["lr"] == 0.004
    cfg = assemble_config(registry, preset="paper", rate="importance", sets={"train": {"lr": 0.01}})
    assert cfg["train"]["lr"] == 0.01  # --set still wins


def test_the_quantizer_follows_the_encoders_latent_channels(registry: Registry) -> None:
    cfg = assemble_config(registry, rate="importance", sets={"model": {"encoder": {"latent_channels": 64}}})
    assert cfg["model"]["quantizer"]["latent_channels"] == 64 == cfg["model"]["decoder"]["latent_channels"]


# ---------------------------------------------------------------- presets belong to plugins
class _TunedRate(ADMMRate):
    """A third-party rate that brings its own preset settings."""

    name = "tuned-admm"
    presets = {"cpu": {"keep": 0.33, "every": 3}, "paper": {"keep": 0.05}}
    train_presets = {"cpu": {"lr": 0.0123, "loss": "mse"}}


def _with(*classes: type) -> Registry:
    class Plugin:
        @hookimpl
        def codec_register_rates(self):
            return list(classes)

    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(Plugin(), name="presets-plugin")
    return Registry(pm)


def test_a_plugin_contributes_its_preset_settings() -> None:
    reg = _with(_TunedRate)
    cpu = assemble_config(reg, rate="tuned-admm", preset="cpu")
    assert (cpu["model"]["rate"]["keep"], cpu["model"]["rate"]["every"]) == (0.33, 3)
    assert (cpu["train"]["lr"], cpu["train"]["loss"]) == (0.0123, "mse")
    assert cpu["model"]["encoder"]["channels"] == 64  # the cae encoder's own cpu settings
    paper = assemble_config(reg, rate="tuned-admm", preset="paper")
    assert paper["model"]["rate"]["keep"] == 0.05 and paper["train"]["lr"] == 0.004  # the recipe's
    quick = assemble_config(reg, rate="tuned-admm", preset="quick")
    assert quick["model"]["rate"]["keep"] == 0.1  # no quick settings: the constructor default
    # later layers still win over a plugin's preset
    over = assemble_config(reg, rate="tuned-admm", preset="cpu", sets={"model": {"rate": {"keep": 0.5}}})
    assert over["model"]["rate"]["keep"] == 0.5


def test_corelib_presets_hold_only_the_training_recipe() -> None:
    from codec_lab.corelib.config import PRESETS, load_preset

    for name in PRESETS:
        assert set(load_preset(name)) == {"train", "timing"}, name


@pytest.mark.parametrize(("attrs", "words"), [
    ({"presets": {"fast": {"keep": 0.2}}}, "unknown preset 'fast'"),
    ({"presets": {"cpu": {"kep": 0.2}}}, "unknown key 'kep'"),
    ({"train_presets": {"cpu": {"learning_rate": 1}}}, "unknown key 'learning_rate'"),
    ({"presets": {"cpu": 5}}, "must map preset names"),
])  # fmt: skip
def test_bad_plugin_presets_are_refused_at_registration(attrs: dict, words: str) -> None:
    from codec_lab.corelib.errors import PluginWarning

    bad = type("BadPresets", (ADMMRate,), {"name": "bad-presets", **attrs})
    with pytest.warns(PluginWarning, match=words):
        reg = _with(bad)
    assert "bad-presets" not in reg.names("rate")
