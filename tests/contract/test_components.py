"""Every registered component of every kind keeps its kind's contract."""

from __future__ import annotations

import json

import pytest
import torch

from codec_lab.corelib.contracts import KINDS, ComponentInfo
from codec_lab.corelib.testing import setup_coder, setup_rate
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from tests.contract import checks
from tests.helpers import image_tensor

INFOS = Registry().infos()


def _ids(infos: list[ComponentInfo]) -> list[str]:
    return [f"{i.kind}-{i.name}" for i in infos]


def of_kind(kind: str) -> list[ComponentInfo]:
    return [i for i in INFOS if i.kind == kind]


def test_every_kind_has_a_component() -> None:
    assert {i.kind for i in INFOS} == set(KINDS)


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_metadata(info: ComponentInfo) -> None:
    checks.check_info(info)


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_constructs_with_defaults(info: ComponentInfo) -> None:
    part = checks.construct(info)
    assert isinstance(part, KINDS[info.kind])


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_constructs_with_small_params(info: ComponentInfo) -> None:
    assert isinstance(checks.small(info), KINDS[info.kind])


def _default_quantizer(registry: Registry) -> torch.nn.Module:
    finite = [i for i in registry.infos() if i.kind == "quantizer"]
    for info in finite:
        q = checks.small(info)
        if q.alphabet_size is not None:
            return q
    pytest.skip("no finite-alphabet quantizer registered")


def _make(info: ComponentInfo, registry: Registry):
    """A factory of ready-to-use instances (rates and coders configured)."""

    def make():
        part = checks.small(info)
        if info.kind == "rate":
            setup_rate(part, _default_quantizer(registry), 4, 8)
        elif info.kind == "coder" and not info.cls.requires.get("rate"):
            setup_coder(part, checks.CODER_SPECS)
        return part

    return make


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_state_dict_round_trip(info: ComponentInfo, registry: Registry) -> None:
    checks.check_state_dict_round_trip(_make(info, registry))


@pytest.mark.parametrize("info", INFOS, ids=_ids(INFOS))
def test_extra_state_info_is_json_able(info: ComponentInfo, registry: Registry) -> None:
    json.dumps(_make(info, registry)().extra_state_info())


@pytest.mark.parametrize("info", of_kind("encoder"), ids=_ids(of_kind("encoder")))
def test_encoder_contract(info: ComponentInfo) -> None:
    checks.check_encoder(checks.small(info))


@pytest.mark.parametrize("info", of_kind("decoder"), ids=_ids(of_kind("decoder")))
def test_decoder_contract(info: ComponentInfo, registry: Registry) -> None:
    factor = None
    if info.name in registry.names("encoder"):
        factor = checks.small(registry.get("encoder", info.name)).downsampling_factor
    dec = checks.construct(info, {**checks.SMALL_PARAMS.get(("decoder", info.name), {}),
                                  "latent_channels": 4})  # fmt: skip
    checks.check_decoder(dec, 4, factor)


@pytest.mark.parametrize("info", of_kind("quantizer"), ids=_ids(of_kind("quantizer")))
def test_quantizer_contract(info: ComponentInfo) -> None:
    torch.manual_seed(0)
    checks.check_quantizer(checks.small(info))


@pytest.mark.parametrize("info", of_kind("rate"), ids=_ids(of_kind("rate")))
def test_rate_contract(info: ComponentInfo, registry: Registry) -> None:
    torch.manual_seed(0)
    q_name = info.cls.default_components.get("quantizer")
    q = checks.small(registry.get("quantizer", q_name)) if q_name else _default_quantizer(registry)
    checks.check_rate(checks.small(info), q)


@pytest.mark.parametrize("info", of_kind("coder"), ids=_ids(of_kind("coder")))
def test_coder_contract(info: ComponentInfo, registry: Registry) -> None:
    rates = info.cls.requires.get("rate")
    if not rates:
        checks.check_coder(lambda: checks.small(info))
        return
    # A coder that codes with a rate's own density is checked with that rate's streams.
    rate = checks.small(registry.get("rate", rates[0]))
    q_name = rate.default_components.get("quantizer")
    q = checks.small(registry.get("quantizer", q_name)) if q_name else _default_quantizer(registry)
    specs = setup_rate(rate, q, 4, 16)
    checks.check_coder(lambda: checks.small(info), specs, rate=rate)


@pytest.mark.parametrize("info", of_kind("rate"), ids=_ids(of_kind("rate")))
def test_rate_defaults_compose_into_a_working_codec(info: ComponentInfo, registry: Registry) -> None:
    """``codec build --rate NAME`` composes a codec that codes a real image bit-exactly."""
    chosen = {**info.cls.default_components, "rate": info.name}
    sets = {"model": {kind: dict(p) for (kind, name), p in checks.SMALL_PARAMS.items()
                      if chosen.get(kind) == name}}  # fmt: skip
    cfg = assemble_config(registry, rate=info.name, sets=sets)
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], registry).eval()
    f = codec.downsampling_factor
    x = image_tensor(2 * f if f >= 16 else 32, 3 * f if f >= 16 else 40, seed=3)
    enc = codec.compress(x)
    out = codec.decompress(**enc)
    with torch.no_grad():
        ref = codec(x)["x_hat"].clamp(0, 1)
    assert torch.equal(out["x_hat"], ref)
