"""From user input to a resolved config, and from a resolved config to a ``Codec``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.config import as_dict, deep_merge, load_preset, validate_sections
from codec_lab.corelib.contracts import KINDS
from codec_lab.corelib.errors import BitstreamError, CompositionError, ConfigError, PluginError, did_you_mean
from codec_lab.corelib.params import schema_of, validate_params
from codec_lab.registry.components import Registry, normalize
from codec_lab.registry.manager import BUILTIN

__all__ = ["assemble_config", "build_codec", "build_parts", "planned_shapes", "resolve_model", "smoke_test"]

DEFAULT_RATE = "admm"


def _section(model: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = model.get(kind)
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {"name": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"model.{kind}: expected a mapping with a name, got {type(raw).__name__}",
            f"e.g. model: {{{kind}: {{name: NAME}}}}",
        )
    return dict(raw)


def resolve_model(model: Mapping[str, Any], registry: Registry) -> dict[str, dict[str, Any]]:
    """Validate a ``model`` section and complete every component's params with defaults.

    The decoder inherits the encoder's architecture keys when both have the same name; the
    decoder and the quantizer always get the encoder's ``latent_channels`` when they take one.
    """
    for key in model:
        if key not in KINDS:
            raise ConfigError(f"unknown key model.{key}", did_you_mean(key, KINDS))
    out: dict[str, dict[str, Any]] = {}
    for kind in ("encoder", "quantizer", "rate", "coder", "decoder"):
        section = _section(model, kind)
        if "name" not in section:
            raise ConfigError(f"model.{kind}.name is missing", f"valid: {', '.join(registry.names(kind))}")
        name = section.pop("name")
        if not isinstance(name, str):
            raise ConfigError(f"model.{kind}.name: expected a string, got {name!r}")
        info = registry.get(kind, name)
        accepted = schema_of(info.cls)
        if kind == "decoder" and info.name == out["encoder"]["name"]:
            inherited = {k: v for k, v in out["encoder"].items() if k in accepted and k != "name"}
            section = {**inherited, **section}
        follows = kind in ("decoder", "quantizer") and "latent_channels" in accepted
        if follows and "latent_channels" in out["encoder"]:
            # Per-channel parts (a decoder, a per-channel quantizer) follow the encoder.
            section["latent_channels"] = out["encoder"]["latent_channels"]
        params = validate_params(info.cls, section, f"model.{kind}")
        out[kind] = {"name": info.name, **params}
    _check_requires(out, registry)
    return out


def _check_requires(model: Mapping[str, Mapping[str, Any]], registry: Registry) -> None:
    for kind, section in model.items():
        cls = registry.get(kind, section["name"]).cls
        for other, allowed in cls.requires.items():
            chosen = model[other]["name"]
            if chosen not in allowed:
                raise CompositionError(
                    f"{kind} {section['name']!r} cannot work with {other} {chosen!r}",
                    f"choose {other} {' or '.join(repr(a) for a in allowed)}",
                )


def assemble_config(
    registry: Registry,
    *,
    rate: str | None = None,
    preset: str | None = None,
    config: Mapping[str, Any] | None = None,
    components: Mapping[str, str | None] | None = None,
    train: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    sets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve a full config. Later layers win: rate defaults → preset → ``config`` → flags → sets.

    Args:
        rate: the rate plugin (``--rate``); default from ``config`` or ``admm``.
        preset: ``quick`` | ``cpu`` | ``paper``; default from ``config`` or ``quick``.
        config: a loaded ``--config`` file.
        components: ``kind -> name`` from ``--encoder/--quantizer/--coder/--decoder``.
        train, data: flag overrides of those sections (``--steps``, ``--device``, ``--data``).
        sets: nested overrides from ``--set``.
    Returns:
        ``{"preset", "model", "train", "data"}``, every key present and validated.
    """
    config = dict(config or {})
    sets = dict(sets or {})
    file_model = config.get("model") or {}
    if not isinstance(file_model, Mapping):
        raise ConfigError("model: expected a mapping of component sections")
    set_model = sets.get("model") or {}
    if not isinstance(set_model, Mapping):
        raise ConfigError(f"--set model={set_model!r}: model is a section, not a value",
                          "set one key, e.g. --set model.rate.keep=0.2")
    preset_name = preset or sets.get("preset") or config.get("preset") or "quick"
    recipe = load_preset(preset_name)

    rate_name = (
        rate
        or _section(set_model, "rate").get("name")
        or _section(file_model, "rate").get("name")
        or DEFAULT_RATE
    )
    if not isinstance(rate_name, str):
        raise ConfigError(f"model.rate.name: expected a component name, got {rate_name!r}",
                          f"valid: {', '.join(registry.names('rate'))}")
    defaults = registry.get("rate", rate_name).cls.default_components
    model: dict[str, Any] = {}
    for kind in KINDS:
        file_sec = _section(file_model, kind)
        set_sec = _section(set_model, kind)
        name = (
            (rate_name if kind == "rate" else None)
            or set_sec.get("name")
            or (components or {}).get(kind)
            or file_sec.get("name")
            or defaults.get(kind)
        )
        if name is None:
            raise ConfigError(
                f"no {kind} chosen and rate {rate_name!r} names no default",
                f"pass --{kind} NAME; valid: {', '.join(registry.names(kind))}",
            )
        if not isinstance(name, str):
            raise ConfigError(f"model.{kind}.name: expected a component name, got {name!r}",
                              f"valid: {', '.join(registry.names(kind))}")
        # The component's own settings for this preset; each kind takes the keys it accepts
        # (a transform may share one table between its encoder and decoder).
        cls = registry.get(kind, name).cls
        accepted = schema_of(cls)
        preset_params = cls.presets.get(preset_name, {})
        section: dict[str, Any] = {k: v for k, v in preset_params.items() if k in accepted}
        if kind == "decoder" and normalize(name) == normalize(model["encoder"]["name"]):
            # A same-named decoder inherits the encoder's architecture (resolve_model); preset keys
            # here would shadow the encoder's later-layer overrides (--set model.encoder.channels).
            section = {k: v for k, v in section.items() if k not in model["encoder"]}
        if normalize(file_sec.get("name", name)) == normalize(name):
            section.update({k: v for k, v in file_sec.items() if k != "name"})
        section.update({k: v for k, v in set_sec.items() if k != "name"})
        model[kind] = {"name": name, **section}

    merged: dict[str, Any] = {
        # The rate strategy may change the recipe (a rate trained on MSE, another lr).
        "train": deep_merge(
            deep_merge(recipe.get("train") or {},
                       registry.get("rate", rate_name).cls.train_presets.get(preset_name, {})),
            config.get("train") or {},
        ),
        "data": dict(config.get("data") or {}),
    }
    merged = deep_merge(merged, {"train": dict(train or {}), "data": dict(data or {})})
    merged = deep_merge(merged, {k: v for k, v in sets.items() if k in ("train", "data")})
    for key in list(config) + list(sets):
        if key not in ("model", "train", "data", "preset"):
            raise ConfigError(f"unknown config section {key!r}",
                              did_you_mean(key, ("model", "train", "data", "preset")))
    train_cfg, data_cfg = validate_sections(merged)
    return {
        "preset": preset_name,
        "model": resolve_model(model, registry),
        "train": as_dict(train_cfg),
        "data": as_dict(data_cfg),
    }


def build_codec(model: Mapping[str, Any], registry: Registry | None = None) -> Codec:
    """Construct the ``Codec`` a ``model`` config section describes.

    Refuses a composition that cannot work, saying what would.
    """
    registry = registry or Registry()
    resolved, parts = build_parts(model, registry)
    origins = {}
    for kind, section in resolved.items():
        info = registry.get(kind, section["name"])
        origins[kind] = info.source if info.source == BUILTIN else f"{info.cls.__module__} from {info.source}"
    return Codec(config=resolved, origins=origins, **parts)


# Entropy-table buffers CompressAI resizes to what a state dict holds when it loads one
# (CompressionModel.load_state_dict): their size follows training, not the config.
_RESIZED_ON_LOAD = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def planned_shapes(
    model: Mapping[str, Any], registry: Registry | None = None
) -> dict[str, tuple[int, ...] | None] | None:
    """The state-dict shapes the codec of ``model`` would have, found without allocating it.

    The codec is built under torch's fake-tensor mode (tensors with shapes and no storage),
    so a config asking for a huge network is measured, not allocated. Keys whose size is
    set by loading (CompressAI's entropy tables) map to None. None when a component cannot
    be built that way (it then gets no early check; loading still checks every key).
    """
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError:  # a torch without it: no early check
        return None
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            codec = build_codec(model, registry)
            return {k: None if k.rsplit(".", 1)[-1] in _RESIZED_ON_LOAD else tuple(v.shape)
                    for k, v in codec.state_dict().items()}  # fmt: skip
    except (ConfigError, CompositionError, PluginError):
        raise  # the config itself is wrong: say so now
    except Exception:  # a component doing something fake tensors cannot (e.g. .numpy())
        return None


def build_parts(
    model: Mapping[str, Any], registry: Registry | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The resolved ``model`` section and its constructed, compatible components."""
    registry = registry or Registry()
    resolved = resolve_model(model, registry)
    parts = {}
    for kind, section in resolved.items():
        params = {k: v for k, v in section.items() if k != "name"}
        parts[kind] = registry.get(kind, section["name"]).cls(**params)
    for kind, part in parts.items():
        reason = part.check_composition(parts)
        if reason:
            works = _alternatives(kind, resolved, parts, registry)
            hint = (f"change the part the message names, or keep the other parts and choose {kind} "
                    f"{' or '.join(repr(w) for w in works)}" if works
                    else f"change the part the message names (no other {kind} works with the other parts)")
            raise CompositionError(f"{kind} {resolved[kind]['name']!r}: {reason}", hint)
    return resolved, parts


def _alternatives(kind: str, resolved: Mapping[str, Mapping[str, Any]], parts: Mapping[str, Any],
                  registry: Registry) -> list[str]:  # fmt: skip
    """The other registered components of ``kind`` that compose with ``parts`` at their defaults."""
    names = {k: s["name"] for k, s in resolved.items()}
    works = []
    for name in registry.names(kind):
        if name == names[kind]:
            continue
        cls = registry.get(kind, name).cls
        if any(names[k] not in allowed for k, allowed in cls.requires.items() if k in names):
            continue
        if any(name not in registry.get(k, n).cls.requires.get(kind, (name,)) for k, n in names.items()
               if k != kind):  # fmt: skip
            continue
        params: dict[str, Any] = {}
        if kind in ("decoder", "quantizer") and "latent_channels" in schema_of(cls):
            params["latent_channels"] = resolved["encoder"].get("latent_channels")
        try:  # a candidate that cannot even be built at its defaults is no suggestion
            candidate = cls(**{k: v for k, v in params.items() if v is not None})
            trial = {**parts, kind: candidate}
            if all(p.check_composition(trial) is None for p in trial.values()):
                works.append(name)
        except Exception:  # noqa: S112
            continue
    return works


def smoke_test(model: Mapping[str, Any], registry: Registry | None = None) -> None:
    """Code and decode one tiny image with a throwaway codec of ``model``, before anything
    is trained: a component that breaks its contract fails here, in seconds, with a
    :class:`PluginError` naming it, rather than after a training run.

    The throwaway codec is built under a forked random state, so the caller's random stream
    (the seed a run reproduces) is unchanged; its coder is unfitted, which every coder must
    code with.
    """
    registry = registry or Registry()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        codec = build_codec(model, registry).eval()
        h, w = codec.padded_size(1, 1)
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            codec(x)  # the likelihoods path
        enc = codec.compress(x)
        try:
            codec.decompress(**enc)
        except BitstreamError as e:  # bytes it has just written: the coder (or the rate's masks)
            blame = codec.blame("coder")
            raise PluginError(
                "coder", blame.name, "decode", blame.origin,
                f"could not read back what its encode had just written for a {h}x{w} image "
                f"({e.message})",
                "decode must invert encode exactly: the same probabilities in the same order, under "
                f"the masks rate {codec.blame('rate').name!r} derives in decode_mask",
            ) from e
