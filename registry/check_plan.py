"""How ``codec plugins check`` builds one component and its partners, the same way in this
process and in a fresh one: a rate's quantizer and latent geometry, a coder's streams (from the
rate it requires), a decoder's latent (from the same-named encoder); the component's rules, and
the probe whose output the two processes must agree on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from codec_lab.corelib import coder_rules
from codec_lab.corelib import testing as T
from codec_lab.corelib.contracts import Baseline, Component, ComponentInfo
from codec_lab.corelib.errors import CodecError
from codec_lab.corelib.params import schema_of, validate_params
from codec_lab.corelib.streams import Stream, StreamSpec
from codec_lab.registry.components import Registry
from codec_lab.registry.plugin_info import Info

__all__ = ["Plan", "load_state", "plan_for"]


def _finite_quantizer(registry: Registry) -> ComponentInfo:
    """A quantizer with a finite alphabet: ``stochastic`` when registered, else the first."""
    names = registry.names("quantizer")
    for name in sorted(names, key=lambda n: (n != "stochastic", n)):
        info = registry.get("quantizer", name)
        try:
            if T.construct(info).alphabet_size is not None:
                return info
        except Exception:
            continue
    raise CodecError("no quantizer with a finite alphabet is registered")


def _quantizer_for(registry: Registry, rate_cls: type) -> ComponentInfo:
    name = rate_cls.default_components.get("quantizer")
    return registry.get("quantizer", name) if name else _finite_quantizer(registry)


def _geometry(registry: Registry, rate_cls: type) -> tuple[int, int]:
    """Latent channels and downsampling factor of the rate's default encoder, built with its
    defaults ((4, 8) when it names none)."""
    name = rate_cls.default_components.get("encoder")
    if name and name in registry.names("encoder"):
        try:
            enc = T.construct(registry.get("encoder", name))
            return int(enc.latent_channels), int(enc.downsampling_factor)
        except Exception:
            pass
    return 4, 8


def _following(info: ComponentInfo, latent_channels: int) -> dict[str, Any]:
    """The params the builder gives a part that follows the encoder: its ``latent_channels``."""
    return {"latent_channels": latent_channels} if "latent_channels" in schema_of(info.cls) else {}


def load_state(module: torch.nn.Module, state: Mapping[str, Any]) -> None:
    """Load ``state`` as the ``Codec`` does: CompressAI's loading resizes entropy-table buffers."""
    from compressai.models import CompressionModel

    CompressionModel.load_state_dict(module, dict(state))  # type: ignore[arg-type]


@dataclass
class Plan:
    """How to build a component and its partners, the same way here and in a fresh process."""

    make: Callable[[], Any]
    rules: Callable[[], list[T.Rule]]
    build: Callable[[bool], dict[str, Any]]  # fitted? → {"part": ..., partners...}
    probe: Callable[[dict[str, Any]], dict[str, Any]]
    state_make: Callable[[], torch.nn.Module] | None = None


def _latent(c: int, h: int = 5, w: int = 6, seed: int = 11) -> torch.Tensor:
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed)) * 3


def plan_for(registry: Registry, info: Info) -> Plan:
    """The rules and the fresh-process probe of one component, with its partners."""
    kind = info.kind
    if kind == "baseline":
        def make_b() -> Baseline:
            return info.cls()  # type: ignore[return-value]

        def probe_b(objs: dict[str, Any]) -> dict[str, Any]:
            b = objs["part"]
            if b.unavailable():
                return {}
            img = T.photo(40, 56)
            data = b.encode(img, float(b.sweep[len(b.sweep) // 2]))
            return {"bytes": data, "decoded": np.asarray(b.decode(data))}

        return Plan(make_b, lambda: T.baseline_rules(make_b), lambda fit: {"part": make_b()}, probe_b)

    own = _following(info, 4) if kind == "quantizer" else {}  # type: ignore[arg-type]

    def make() -> Component:
        return T.construct(info, own)  # type: ignore[arg-type]

    if kind == "encoder":
        def probe_e(objs: dict[str, Any]) -> dict[str, Any]:
            enc = objs["part"].eval()
            with torch.no_grad():
                return {"y": enc(T._encoder_input(enc))["y"]}

        return Plan(make, lambda: T.encoder_rules(make), lambda fit: {"part": make()}, probe_e, make)

    if kind == "decoder":
        params: dict[str, Any] = {}
        factor: int | None = None
        accepted = schema_of(info.cls)
        if info.name in registry.names("encoder"):  # the same-named encoder gives its latent and factor
            enc_info = registry.get("encoder", info.name)
            enc = T.construct(enc_info)
            params = {k: v for k, v in validate_params(enc_info.cls, {}, "model.encoder").items()
                      if k in accepted}  # fmt: skip
            params["latent_channels"] = enc.latent_channels
            factor = enc.downsampling_factor
        latent_channels = int(params.get("latent_channels") or (
            accepted["latent_channels"][1] if "latent_channels" in accepted
            and isinstance(accepted["latent_channels"][1], int) else 4))  # fmt: skip
        if "latent_channels" in accepted:
            params["latent_channels"] = latent_channels
        params = {k: v for k, v in params.items() if k in accepted}

        def make_d() -> Component:
            return T.construct(info, params)  # type: ignore[arg-type]

        def probe_d(objs: dict[str, Any]) -> dict[str, Any]:
            dec = objs["part"].eval()
            with torch.no_grad():
                return {"x": dec(_latent(latent_channels, 3, 4))}

        return Plan(make_d, lambda: T.decoder_rules(make_d, latent_channels, factor),
                     lambda fit: {"part": make_d()}, probe_d, make_d)  # fmt: skip

    if kind == "quantizer":
        def probe_q(objs: dict[str, Any]) -> dict[str, Any]:
            q = objs["part"].eval()
            sym = q.quantize(_latent(4) * ((q.alphabet_size or 16) / 4.5))
            return {"symbols": sym, "values": q.from_symbols(sym)}

        return Plan(make, lambda: T.quantizer_rules(make), lambda fit: {"part": make()}, probe_q, make)

    if kind == "rate":
        q_info = _quantizer_for(registry, info.cls)
        channels, factor = _geometry(registry, info.cls)

        def make_q() -> Component:
            return T.construct(q_info, _following(q_info, channels))

        def build_r(fit: bool) -> dict[str, Any]:
            rate, q = make(), make_q()
            T.setup_rate(rate, q, channels, factor)  # type: ignore[arg-type]
            return {"part": rate, "quantizer": q}

        def probe_r(objs: dict[str, Any]) -> dict[str, Any]:
            rate, q = objs["part"].eval(), objs["quantizer"].eval()
            y = _latent(channels, 7, 5)
            with torch.no_grad():
                offset = rate.quantization_offset(q)
                out = rate(q(y) if offset is None else q(y - offset) + offset, T.features_for(y), q)
            res: dict[str, Any] = {"y_hat": out.y_hat}
            for s in out.streams:
                res[f"{s.spec.name}.symbols"] = s.symbols
                res[f"{s.spec.name}.mask"] = s.full_mask()
            return res

        def state_r() -> torch.nn.Module:
            return build_r(False)["part"]

        return Plan(make, lambda: T.rate_rules(make, make_q, channels, factor),  # type: ignore[arg-type]
                     build_r, probe_r, state_r)  # fmt: skip

    # coder: the streams of the rate it requires, or the checks' two streams
    rate_names = info.cls.requires.get("rate")
    specs: list[StreamSpec] = T.CODER_SPECS
    rate_info = q_info = None
    if rate_names:
        rate_info = registry.get("rate", rate_names[0])
        q_info = _quantizer_for(registry, rate_info.cls)

    def partners() -> tuple[Any, list[StreamSpec]]:
        if rate_info is None:
            return None, list(T.CODER_SPECS)
        channels, factor = _geometry(registry, rate_info.cls)
        rate = T.construct(rate_info)
        q = T.construct(q_info, _following(q_info, channels))  # type: ignore[arg-type]
        return rate, T.setup_rate(rate, q, channels, factor)  # type: ignore[arg-type]

    shared_rate, specs = partners()

    def build_c(fit: bool) -> dict[str, Any]:
        rate, sp = partners()
        coder = make()
        T.setup_coder(coder, sp, rate)  # type: ignore[arg-type]
        if fit:
            coder_rules._fit(coder, sp, torch.Generator().manual_seed(0))  # type: ignore[arg-type]
        objs = {"part": coder}
        if rate is not None:
            objs["rate"] = rate
        return objs

    def probe_c(objs: dict[str, Any]) -> dict[str, Any]:
        coder = objs["part"].eval()
        res: dict[str, Any] = {}
        for c in coder_rules._cases(specs, seed=4):
            data = coder.encode(Stream(c.spec, c.sym, c.mask), c.ctx)
            res[f"{c.spec.name}.bytes"] = data
            res[f"{c.spec.name}.decoded"] = coder.decode(data, c.spec, c.shape, c.mask, c.ctx)
        return res

    def state_c() -> torch.nn.Module:
        return build_c(False)["part"]

    return Plan(make, lambda: T.coder_rules(make, specs, shared_rate), build_c, probe_c,  # type: ignore[arg-type]
                 state_c)  # fmt: skip
