"""Register composed codecs into CompressAI's registries, so CompressAI-based scripts can
construct them by name.

CompressAI looks models up in plain dicts filled at import time (no entry points):

* ``compressai.registry.MODELS[name]`` — a class; ``MODELS[name]()`` builds the untrained codec
  (CompressAI-Trainer's way);
* ``compressai.zoo.image.model_architectures[name]`` — a class with ``from_state_dict``
  (``python -m compressai.utils.eval_model checkpoint … -a NAME``);
* ``compressai.zoo.image_models[name]`` — a factory ``(quality, metric, pretrained, …)``;
  ``pretrained=True`` loads the run's trained weights (``eval_model pretrained -a NAME``);
* ``compressai.utils.update_model``'s own copy of the architectures, when it is imported
  (``python -m compressai.utils.update_model --architecture NAME ckpt.pth.tar``).

Registration lasts for the current process; ``codec compressai RUN -- …`` runs a CompressAI
script or module with a run registered.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import compressai.registry
import compressai.zoo
import compressai.zoo.image
import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.contracts import NAME_PATTERN
from codec_lab.corelib.errors import ConfigError
from codec_lab.corelib.runs import check_run_dir, load_weights, read_config
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import build_codec, build_parts

__all__ = ["codec_class", "from_factorized_prior", "register_codec", "register_run", "unregister"]


def codec_class(
    name: str, model: Mapping[str, Any], weights: Path | None = None, registry: Registry | None = None
) -> type[Codec]:
    """A ``Codec`` subclass whose no-argument constructor composes ``model``.

    Args:
        name: the name CompressAI will know it by (also the class's ``__qualname__``).
        model: a ``model`` config section (as a run's ``config.yaml`` holds).
        weights: the run's ``weights.safetensors``, loaded when a factory asks for
            ``pretrained=True``.
        registry: where components are looked up (default: every installed plugin).
    """
    model = dict(model)

    class RegisteredCodec(Codec):
        __doc__ = f"codec-lab codec {name!r}: {', '.join(str(s.get('name', s)) for s in model.values())}"
        pretrained_weights = weights

        def __init__(self) -> None:
            resolved, parts = build_parts(model, registry)
            super().__init__(config=resolved, **parts)

        @classmethod
        def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> RegisteredCodec:
            """CompressAI's factory: build the codec and load ``state_dict`` into it."""
            net = cls()
            net.load_state_dict(dict(state_dict))
            return net

    RegisteredCodec.__name__ = RegisteredCodec.__qualname__ = "Codec_" + name.replace("-", "_")
    return RegisteredCodec


def _check_name(name: str, replace: bool) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"CompressAI model name {name!r} is not lowercase kebab-case",
                          "e.g. --name my-admm")  # fmt: skip
    taken = name in compressai.zoo.image.model_architectures or name in compressai.registry.MODELS
    ours = getattr(compressai.registry.MODELS.get(name), "_codec_lab", False)
    if taken and not (replace and ours):
        raise ConfigError(f"CompressAI already has a model named {name!r}",
                          "choose another --name")  # fmt: skip


def register_codec(name: str, cls: type[Codec], replace: bool = False) -> type[Codec]:
    """Put ``cls`` into CompressAI's model registries under ``name``."""
    _check_name(name, replace)
    cls._codec_lab = True  # type: ignore[attr-defined]

    def factory(
        quality: int | None = None,
        metric: str = "mse",
        pretrained: bool = False,
        progress: bool = True,
        **kwargs: Any,
    ) -> Codec:
        net = cls()
        if pretrained:
            weights = getattr(cls, "pretrained_weights", None)
            if weights is None:
                raise ConfigError(f"{name!r} has no trained weights", "register a run folder")
            load_weights(net, weights)
            net.eval()
        return net

    for table, value in _tables(cls, factory):
        table[name] = value
    return cls


def _tables(cls: Any, factory: Any) -> list[tuple[dict[str, Any], Any]]:
    """CompressAI's model dicts, with what each holds for a registered codec."""
    tables = [
        (compressai.registry.MODELS, cls),
        (compressai.zoo.image.model_architectures, cls),
        (compressai.zoo.image_models, factory),
        (compressai.zoo.models, factory),
    ]
    # update_model copies the architectures into its own dict when it is imported.
    update_model = sys.modules.get("compressai.utils.update_model.__main__")
    if update_model is not None:
        tables.append((update_model.models, cls))
    return tables


def register_run(
    run: str | Path, name: str | None = None, registry: Registry | None = None, replace: bool = False
) -> str:
    """Register a run folder's codec in CompressAI under ``name`` (default: the folder name).

    Returns the name used.
    """
    path = check_run_dir(run)
    name = name or path.resolve().name.lower().replace("_", "-").replace(".", "-")
    model = read_config(path)["model"]
    register_codec(name, codec_class(name, model, path / "weights.safetensors", registry), replace)
    return name


def unregister(name: str) -> None:
    """Remove a codec this module registered (other models are left alone)."""
    if not getattr(compressai.registry.MODELS.get(name), "_codec_lab", False):
        return
    for table, _ in _tables(None, None):
        table.pop(name, None)


# Where FactorizedPrior's modules live in a gdn + noise + entropy + factorized codec.
_FACTORIZED_KEYS = {"g_a.": "encoder.g_a.", "g_s.": "decoder.g_s.",
                    "entropy_bottleneck.": "rate.bottleneck."}  # fmt: skip


def from_factorized_prior(
    state_dict: Mapping[str, torch.Tensor], registry: Registry | None = None
) -> Codec:
    """A ``gdn + noise + entropy + factorized`` codec carrying a CompressAI ``FactorizedPrior``'s
    weights (e.g. a ``bmshj2018-factorized`` checkpoint): it codes byte-identical files.

    N and M are read from the weight shapes, as CompressAI's ``from_state_dict`` does.
    """
    try:
        n = int(state_dict["g_a.0.weight"].size(0))
        m = int(state_dict["g_a.6.weight"].size(0))
    except KeyError as e:
        raise ConfigError(f"not a FactorizedPrior state dict (no {e.args[0]})",
                          "pass bmshj2018-factorized weights") from e  # fmt: skip
    model = {
        "encoder": {"name": "gdn", "channels": n, "latent_channels": m},
        "quantizer": {"name": "noise"},
        "rate": {"name": "entropy"},
        "coder": {"name": "factorized"},
        "decoder": {"name": "gdn", "channels": n, "latent_channels": m},
    }
    codec = build_codec(model, registry)
    mapped = {}
    for key, value in state_dict.items():
        prefix = next((p for p in _FACTORIZED_KEYS if key.startswith(p)), None)
        if prefix is None:
            raise ConfigError(f"unexpected key {key!r} in a FactorizedPrior state dict")
        mapped[_FACTORIZED_KEYS[prefix] + key[len(prefix):]] = value
    codec.load_state_dict(mapped)
    return codec
