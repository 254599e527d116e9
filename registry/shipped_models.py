"""Trained models shipped inside the package, so a photo compresses right after ``pip install``.

Each model is a minimal run folder, ``registry/shipped/<name>/`` (``config.yaml``,
``weights.safetensors``, and the ``run.json`` / ``metrics.json`` its build wrote), and one
index, ``registry/shipped/models.json``, describes them all: family and quality, components,
the weights' SHA-256 and size, the model digest compressed files store, the metrics measured
with real files when it was built, its training facts and the exact command that trained it.
``python -m codec_lab.registry.ship_model`` writes both.

Models are named by the user in three ways (:func:`resolve`):

* a run folder path — an existing folder always wins;
* a model name, ``entropy-q2``;
* a family name, ``entropy``, with ``--quality 1..4`` picking the rate point (as CompressAI's
  zoo does; 1 is the smallest file), :data:`DEFAULT_QUALITY` when not given.

With no model at all, :data:`DEFAULT_FAMILY` at :data:`DEFAULT_QUALITY` is used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec_lab.corelib.errors import ConfigError, RunError, did_you_mean

__all__ = ["DEFAULT_FAMILY", "DEFAULT_QUALITY", "INDEX", "INDEX_FORMAT", "QUALITIES", "Resolved",
           "ShippedModel", "by_digest", "default_model", "family_point", "file_sha256", "find",
           "load_index", "resolve", "resolve_for_file", "shipped_dir", "verify"]  # fmt: skip

DEFAULT_FAMILY = "entropy"
"""The family ``codec compress`` uses when no ``--model`` is given."""
DEFAULT_QUALITY = 3
"""The rate point of a family used when no ``--quality`` is given."""
QUALITIES = (1, 2, 3, 4)
"""The rate points a family may have: 1 is the smallest file, 4 the best image."""
INDEX = "models.json"
"""The index file inside :func:`shipped_dir`."""
INDEX_FORMAT = 1
"""Version of the index layout; a reader refuses a newer one rather than misread it."""

_REINSTALL = "reinstall codec-lab (pip install --force-reinstall codec-lab), or pass a run folder"
_RUN_HINT = "or a run folder from `codec build`"


def shipped_dir() -> Path:
    """The folder of the shipped models (``codec_lab/registry/shipped``).

    A function, not a constant, so tests can point it at a folder of their own.
    """
    return Path(__file__).resolve().parent / "shipped"


@dataclass(frozen=True)
class ShippedModel:
    """One entry of ``models.json``.

    Attributes:
        name: what ``--model`` takes (``entropy-q3``); also the folder's name.
        family: models that differ only in their rate point share one (``entropy``).
        quality: the rate point within the family (1..4, 1 is the smallest file), or None for a
            model that is the only one of its family.
        components: kind → component name (encoder, quantizer, rate, coder, decoder).
        sha256: SHA-256 (hex) of ``weights.safetensors``: checked before every use.
        bytes: size of ``weights.safetensors``.
        model_digest: ``Codec.weights_digest()``: what a compressed file's header stores, so
            ``codec decompress`` finds the model that made a file.
        metrics: means over the evaluation images, measured with real files when the model
            was built: ``set`` (``Kodak`` for the 24 Kodak images), ``images``, ``bpp``,
            ``psnr``, ``ms_ssim``.
        training: facts from the build's ``run.json`` and config: ``steps``, ``epochs``,
            ``seconds`` (training + coder fit), ``preset``, ``images``, ``data``.
        command: the exact command that trained it.
        source: where it came from, in one line.
    """

    name: str
    family: str
    quality: int | None
    components: dict[str, str]
    sha256: str
    bytes: int
    model_digest: str
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    source: str = ""

    @property
    def path(self) -> Path:
        """The model's run folder."""
        return shipped_dir() / self.name

    @property
    def strategy(self) -> str:
        """``rate + coder``: what distinguishes the shipped models from each other."""
        return f"{self.components.get('rate', '?')} + {self.components.get('coder', '?')}"

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``models.json`` stores it."""
        return {"name": self.name, "family": self.family, "quality": self.quality,
                "components": dict(self.components), "sha256": self.sha256, "bytes": self.bytes,
                "model_digest": self.model_digest, "metrics": dict(self.metrics),
                "training": dict(self.training), "command": self.command, "source": self.source}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> ShippedModel:
        """An entry of ``models.json``; a malformed one is refused, naming the index."""
        try:
            quality = d.get("quality")
            model = cls(name=str(d["name"]), family=str(d["family"]),
                        quality=None if quality is None else int(quality),
                        components={str(k): str(v) for k, v in dict(d["components"]).items()},
                        sha256=str(d["sha256"]), bytes=int(d["bytes"]), model_digest=str(d["model_digest"]),
                        metrics=dict(d.get("metrics") or {}), training=dict(d.get("training") or {}),
                        command=str(d.get("command", "")), source=str(d.get("source", "")))  # fmt: skip
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{where} has a malformed model entry ({type(e).__name__}: {e})",
                           _REINSTALL) from e
        if model.quality is not None and model.quality not in QUALITIES:
            raise RunError(f"{where}: model {model.name!r} has quality {model.quality}, not one of "
                           f"{', '.join(map(str, QUALITIES))}", _REINSTALL)  # fmt: skip
        return model


def load_index(folder: Path | None = None) -> list[ShippedModel]:
    """The shipped models, sorted by family, quality and name; empty when none are shipped."""
    path = (folder or shipped_dir()) / INDEX
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is unreadable ({e})", _REINSTALL) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise RunError(f"{path} is not a shipped-models index", _REINSTALL)
    if int(doc.get("format", 0)) > INDEX_FORMAT:
        raise RunError(f"{path} has index format {doc.get('format')}; this codec-lab reads {INDEX_FORMAT}",
                       "upgrade codec-lab")  # fmt: skip
    models = [ShippedModel.from_dict(m, str(path)) for m in doc["models"] if isinstance(m, dict)]
    return sorted(models, key=_order)


def _order(m: ShippedModel) -> tuple[str, int, str]:
    return m.family, m.quality or 0, m.name


def find(name: str, models: Iterable[ShippedModel] | None = None) -> ShippedModel | None:
    """The shipped model called ``name``, or None."""
    return next((m for m in (load_index() if models is None else models) if m.name == name), None)


def by_digest(digest: str, models: Iterable[ShippedModel] | None = None) -> ShippedModel | None:
    """The shipped model whose ``model_digest`` a compressed file's header names, or None."""
    return next((m for m in (load_index() if models is None else models) if m.model_digest == digest), None)


def _points(family: str, models: Iterable[ShippedModel]) -> dict[int, ShippedModel]:
    return {m.quality: m for m in models if m.family == family and m.quality is not None}


def family_point(family: str, quality: int | None = None,
                 models: Iterable[ShippedModel] | None = None) -> ShippedModel:  # fmt: skip
    """The model of ``family`` at ``quality`` (default :data:`DEFAULT_QUALITY`).

    Raises:
        ConfigError: the family has no such point (the points it has are listed).
    """
    models = list(load_index() if models is None else models)
    points = _points(family, models)
    q = DEFAULT_QUALITY if quality is None else quality
    if q not in points:
        have = ", ".join(map(str, sorted(points))) or "none"
        raise ConfigError(f"shipped family {family!r} has no quality {q} (it has: {have})",
                          "pick one of those with --quality")  # fmt: skip
    return points[q]


def default_model(models: Iterable[ShippedModel] | None = None) -> ShippedModel:
    """The model used when none is named: :data:`DEFAULT_FAMILY` at :data:`DEFAULT_QUALITY`.

    Raises:
        RunError: this installation ships no such model.
    """
    models = list(load_index() if models is None else models)
    point = _points(DEFAULT_FAMILY, models).get(DEFAULT_QUALITY)
    if point is None:
        raise RunError(f"this installation ships no default model ({DEFAULT_FAMILY} at quality "
                       f"{DEFAULT_QUALITY}{_shipped(models)})",
                       "pass --model RUN, a run folder from `codec build`")  # fmt: skip
    return point


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(model: ShippedModel) -> Path:
    """The model's run folder, once its weights are the ones the index records.

    Raises:
        RunError: the folder or its weights are missing, or the weights' SHA-256 differs (a
            damaged or modified installation).
    """
    weights = model.path / "weights.safetensors"
    if not weights.is_file():
        raise RunError(f"shipped model {model.name!r} has no weights ({weights} is missing)", _REINSTALL)
    try:
        digest = file_sha256(weights)
    except OSError as e:
        raise RunError(f"cannot read {weights}: {e.strerror}", _REINSTALL) from e
    if digest != model.sha256:
        raise RunError(f"shipped model {model.name!r} is damaged: its weights' SHA-256 is {digest[:16]}…, "
                       f"the index records {model.sha256[:16]}…", _REINSTALL)  # fmt: skip
    return model.path


@dataclass(frozen=True)
class Resolved:
    """What a ``--model`` value named.

    Attributes:
        path: the run folder to load.
        shipped: the shipped model, or None for a run folder the user gave.
    """

    path: Path
    shipped: ShippedModel | None = None

    @property
    def label(self) -> str:
        """How messages name it: the shipped model's name, or the folder."""
        return self.shipped.name if self.shipped is not None else str(self.path)


def _shipped(models: list[ShippedModel]) -> str:
    """``; shipped: a, b, c`` or ``; no models are shipped in this installation``."""
    if not models:
        return "; no models are shipped in this installation"
    return "; shipped: " + ", ".join(m.name for m in models)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.startswith(".") or value.startswith("~")


def resolve(model: str | Path | None, quality: int | None = None, *, option: str = "--model",
            models: Iterable[ShippedModel] | None = None) -> Resolved:  # fmt: skip
    """Turn a ``--model`` value (and ``--quality``) into a run folder to load.

    In order: no ``model`` → :func:`default_model` (or its family's ``quality`` point); an
    existing folder → that folder; a shipped model's name; a shipped family's name (its
    ``quality`` point); a value that looks like a path → that path, for ``load_run`` to say
    what is wrong with it. Shipped weights are checked against their SHA-256.

    Args:
        option: how errors name the value (``--model``, ``--run``).

    Raises:
        ConfigError: ``quality`` with a run folder or a single model; an unknown name (with
            "did you mean" and the shipped names).
        RunError: no default model is shipped; a shipped model is damaged.
    """
    if quality is not None and quality not in QUALITIES:
        raise ConfigError(f"--quality {quality}: not a rate point",
                          f"pass one of {', '.join(map(str, QUALITIES))} (1: smallest file)")  # fmt: skip
    if model is None:
        index = list(load_index() if models is None else models)
        chosen = default_model(index) if quality is None else family_point(DEFAULT_FAMILY, quality, index)
        return Resolved(verify(chosen), chosen)
    value = str(model)
    if Path(value).is_dir():  # an existing folder always wins over a shipped name
        if quality is not None:
            raise ConfigError(f"--quality picks a shipped model's rate point; {value} is a run folder",
                              "drop --quality (a run has one rate point), or name a shipped family")
        return Resolved(Path(value))
    index = list(load_index() if models is None else models)
    exact = find(value, index)
    if exact is not None and quality is None:
        return Resolved(verify(exact), exact)
    if _points(value, index):
        chosen = family_point(value, quality, index)
        return Resolved(verify(chosen), chosen)
    if exact is not None:
        hint = (f"pass --model {exact.family} --quality {quality}" if _points(exact.family, index)
                else "drop --quality")  # fmt: skip
        raise ConfigError(f"--quality picks a point of a shipped family; {value!r} is one model", hint)
    if _looks_like_path(value) or Path(value).exists():
        return Resolved(Path(value))  # load_run says what is wrong with it (missing, not a run…)
    names = [m.name for m in index] + sorted({m.family for m in index if m.quality is not None})
    if not index:
        raise ConfigError(f"{option} {value!r} is neither a folder nor a shipped model (no models "
                          "are shipped in this installation)", "pass a run folder from `codec build`")
    raise ConfigError(f"{option} {value!r} is neither a folder nor a shipped model",
                      f"{did_you_mean(value, names)}; {_RUN_HINT}")


def resolve_for_file(model: str | Path | None, digest: str, where: str, *,
                     models: Iterable[ShippedModel] | None = None) -> Resolved:  # fmt: skip
    """The model to decode a file whose header names model ``digest``.

    No ``model``: the shipped model with that digest. A shipped family's name: its member with
    that digest (any quality). Anything else: :func:`resolve` (the decoder then checks the
    digest itself and says when the file is another model's).

    Raises:
        RunError: no ``model`` was given and no shipped model made the file.
    """
    index = list(load_index() if models is None else models)
    if model is None or (not Path(str(model)).is_dir() and find(str(model), index) is None
                         and _points(str(model), index)):  # fmt: skip
        family = None if model is None else str(model)
        match = by_digest(digest, [m for m in index if family is None or m.family == family])
        if match is not None:
            return Resolved(verify(match), match)
        if model is None:
            raise RunError(f"{where} was made by model {digest}, which is none of the shipped models"
                           f"{_shipped(index)}", "pass --model RUN, the run folder that made it")  # fmt: skip
    return resolve(model, models=index)
