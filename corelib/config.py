"""Run configuration: schema of the ``train`` and ``data`` sections, presets, overrides.

A config is YAML::

    model:  {encoder: {name: cae, ...}, quantizer: {...}, rate: {...}, coder: {...}, decoder: {...}}
    train:  {epochs: 40, batch_size: 8, lr: 0.001, ...}    # TrainConfig
    data:   {train: path-or-null, val: path-or-null}        # DataConfig

Layers, later wins: the rate plugin's default components → the preset → ``--config`` →
CLI flags → ``--set key=value``. Unknown keys and wrong types are refused with the path of
the key and the valid choices.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from codec_lab.corelib.errors import ConfigError, did_you_mean
from codec_lab.corelib.params import validate_params

__all__ = [
    "PRESETS",
    "SECTIONS",
    "DataConfig",
    "TrainConfig",
    "deep_merge",
    "load_preset",
    "load_yaml",
    "parse_sets",
    "validate_sections",
]

PRESETS = ("quick", "cpu", "paper")
SECTIONS = ("model", "train", "data", "preset")


@dataclass
class TrainConfig:
    """How to train. ``epochs`` × ``steps_per_epoch`` optimizer steps, capped by ``steps``.

    Attributes:
        epochs: training epochs (rate-plugin schedules such as ADMM steps count these).
        steps_per_epoch: optimizer steps per epoch; null = one pass over the training images.
        steps: hard cap on the total optimizer steps (``--steps``); null = no cap.
        batch_size: crops per step.
        crop: square random-crop size in pixels (with random flips).
        lr: Adam learning rate; ``lr_factor``/``lr_patience``: ReduceLROnPlateau on the
            epoch's training loss.
        aux_lr: learning rate of auxiliary parameters (``*.quantiles``), if any.
        loss: distortion: ``mix`` (CAE-ADMM's 1000·(1−MS-SSIM) + 1000·(1−SSIM) + 1e4·MSE +
            (45 − PSNR)), ``mse`` (255²·MSE) or ``ms-ssim`` (1 − MS-SSIM).
        warmup_epochs: epochs trained on distortion only before the rate loss starts.
        grad_clip: max gradient norm, of the transform's and of a trained coder's steps
            (null: no clipping).
        seed: seeds torch, numpy and the crops.
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda``.
        fit_coder: fit the entropy coder on the training codes after training.
        fit_images: cap on images a counted coder fit observes (null: all training images,
            up to the pixels training saw).
        coder_steps: optimizer steps of a trained coder's stage (null: the coder's default;
            capped by ``steps`` when that is set).
        coder_lr: Adam learning rate of a trained coder's stage.
        coder_batch_size: crops per step of a trained coder's stage (null: ``batch_size``).
        time_limit: minutes of training; after the first epoch the run is shortened to the
            steps that fit (schedules are planned on the shortened run). null: no limit.
        checkpoint_every: also checkpoint every this many optimizer steps inside an epoch
            (and of a trained coder's stage), so an interrupted build loses at most that many;
            null: at the end of every epoch (and every logged interval of the coder stage).
        init: start from trained weights instead of random ones (fine-tuning, e.g. another
            rate point of a trained model): a run folder (a finished run's weights, an
            unfinished build's last checkpoint) or a shipped model's name. Its networks must
            have this codec's layers and shapes; its rate settings may differ. The optimizer
            starts afresh. null: random weights drawn from ``seed``.
    """

    epochs: int = 40
    steps_per_epoch: int | None = None
    steps: int | None = None
    batch_size: int = 8
    crop: int = 128
    lr: float = 1e-3
    lr_factor: float = 0.5
    lr_patience: int = 10
    aux_lr: float = 1e-3
    weight_decay: float = 0.0
    loss: Literal["mix", "mse", "ms-ssim"] = "mix"
    warmup_epochs: int = 1
    grad_clip: float | None = 1.0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fit_coder: bool = True
    fit_images: int | None = None
    coder_steps: int | None = None
    coder_lr: float = 1e-3
    coder_batch_size: int | None = None
    time_limit: float | None = None
    checkpoint_every: int | None = None
    init: str | None = None

    def check(self) -> None:
        """Refuse values out of range, naming the key."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "crop": self.crop}
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {value}")
        for key in ("steps", "steps_per_epoch", "fit_images", "coder_steps", "coder_batch_size",
                    "checkpoint_every"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key} must be >= 1 or null, got {value}")
        for key in ("lr", "coder_lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"train.{key} must be > 0, got {getattr(self, key)}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ConfigError(f"train.time_limit must be > 0 minutes or null, got {self.time_limit}")
        if self.init is not None and (not isinstance(self.init, str) or not self.init.strip()):
            raise ConfigError(f"train.init must be a run folder or a shipped model's name, got {self.init!r}",
                              "pass e.g. --init runs/entropy-q3, or leave it null for random weights")
        if self.crop % 8:
            raise ConfigError(f"train.crop must be a multiple of 8, got {self.crop}")
        # MS-SSIM's five scales need a side > 2 * 16 even with the smallest (3-px) window.
        if self.loss in ("mix", "ms-ssim") and self.crop <= 32:
            raise ConfigError(f"train.crop={self.crop} is too small for the {self.loss} loss (MS-SSIM)",
                              "use train.crop >= 40, or train.loss=mse")


@dataclass
class DataConfig:
    """Where the images are.

    Attributes:
        train: folder of training images; null = the samples shipped with the package.
        val: folder of images evaluated at the end of training; null = the held-out samples.
    """

    train: str | None = None
    val: str | None = None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a mapping at the top level or a clear error."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror}", "check the path") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # PyYAML's message spans lines (with a caret diagram); keep the problem and its position.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config {p} is not valid YAML{where}: {problem}",
                          "fix the YAML syntax (indentation, colons, quotes)") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {p}: the top level must be a mapping of sections",
                          f"use the sections {', '.join(SECTIONS)}")
    return data


def load_preset(name: str) -> dict[str, Any]:
    """The preset's YAML: ``train`` overrides and per-component-name ``components`` params."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", did_you_mean(name, PRESETS))
    text = resources.files("codec_lab.corelib").joinpath(f"presets/{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``over`` merged in (mappings recursively, others replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["model.rate.keep=0.2", ...]`` → a nested override mapping (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value", "e.g. --set train.lr=0.001")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from e
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is set to a value and a section")
        node[parts[-1]] = value
    return out


def validate_sections(config: Mapping[str, Any]) -> tuple[TrainConfig, DataConfig]:
    """Check the top level and the ``train``/``data`` sections; return them typed."""
    for key in config:
        if key not in SECTIONS:
            raise ConfigError(f"unknown config section {key!r}", did_you_mean(key, SECTIONS))
    sections = {}
    for key, cls in (("train", TrainConfig), ("data", DataConfig)):
        raw = config.get(key) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(raw).__name__}")
        sections[key] = cls(**validate_params(cls, raw, key))
    train: TrainConfig = sections["train"]
    train.check()
    return train, sections["data"]


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config as a plain dict (for saving)."""
    return asdict(obj)
