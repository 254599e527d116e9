"""The plan of ``codec compare``: which builds, refits, runs and baseline settings make which curves.

Every unit of work is a *job*; each job makes one or more points, and every point has a
stable key (its file under ``points/``), so a compare that is run again skips what it
finished. Nothing here trains or codes: :mod:`codec_lab.registry.compare_run` does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codec_lab.corelib.comparison import Curve
from codec_lab.corelib.config import TrainConfig, deep_merge, load_preset
from codec_lab.corelib.errors import CodecError, ConfigError, did_you_mean
from codec_lab.corelib.published import published
from codec_lab.corelib.runs import check_run_dir, read_config
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec

__all__ = ["BaselineJob", "BuildJob", "Plan", "RunJob", "make_plan", "parse_sweeps"]


@dataclass(frozen=True)
class CoderVariant:
    """A coder fitted on a job's trained transform (``fit-coder``): one more point."""

    coder: str
    key: str
    curve: str
    run_dir: Path


@dataclass(frozen=True)
class BuildJob:
    """Train one point of a rate strategy's sweep, then evaluate it (and its coder variants)."""

    key: str
    curve: str
    setting: Mapping[str, Any]
    config: Mapping[str, Any]
    run_dir: Path
    variants: tuple[CoderVariant, ...] = ()
    estimate_s: float = 0.0


@dataclass(frozen=True)
class RunJob:
    """Evaluate an already-trained run (and its coder variants)."""

    key: str
    curve: str
    run_dir: Path
    variants: tuple[CoderVariant, ...] = ()
    estimate_s: float = 0.0


@dataclass(frozen=True)
class BaselineJob:
    """A classical codec's sweep: one point per setting (one job: a process start is dearer
    than coding a few images)."""

    key: str
    curve: str
    baseline: str
    settings: tuple[tuple[str, float], ...]  # (point key, setting)
    estimate_s: float = 0.0


Job = BuildJob | RunJob | BaselineJob


@dataclass
class Plan:
    """Everything a compare will do.

    Attributes:
        jobs: the work, builds first (the longest).
        curves: every curve (without points yet), in legend order.
        anchor: key of the BD anchor curve.
        eval_dir: the evaluation images' folder (None: the held-out samples).
        notices: what was left out and why.
    """

    jobs: list[Job] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    anchor: str = "jpeg"
    eval_dir: Path | None = None
    notices: list[str] = field(default_factory=list)

    def point_keys(self, job: Job) -> list[str]:
        """Keys of the points ``job`` makes."""
        if isinstance(job, BaselineJob):
            return [k for k, _ in job.settings]
        return [job.key, *(v.key for v in job.variants)]

    def estimate_s(self) -> float:
        """Estimated seconds of all jobs, one after another."""
        return sum(j.estimate_s for j in self.jobs)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_+-]+", "-", text).strip("-")


def parse_sweeps(items: Sequence[str]) -> dict[str, dict[str, list[Any]]]:
    """``["admm:keep=0.05,0.1", "admm:model.encoder.latent_channels=16,32"]`` →
    ``{"admm": {"model.rate.keep": [0.05, 0.1], "model.encoder.latent_channels": [16, 32]}}``.

    A bare key is the rate's own (``keep`` → ``model.rate.keep``); values are parsed as YAML.
    """
    import yaml

    out: dict[str, dict[str, list[Any]]] = {}
    for item in items:
        rate, sep, rest = item.partition(":")
        key, eq, values = rest.partition("=")
        if not sep or not eq or not rate.strip() or not key.strip() or not values.strip():
            raise ConfigError(f"--sweep {item!r}: expected RATE:KEY=V1,V2,…",
                              "e.g. --sweep admm:keep=0.05,0.1,0.2")  # fmt: skip
        key = key.strip()
        full = key if "." in key else f"model.rate.{key}"
        try:
            parsed = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
        except yaml.YAMLError as e:
            raise ConfigError(f"--sweep {item!r}: a value is not valid YAML") from e
        out.setdefault(rate.strip(), {})[full] = parsed
    return out


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _step_seconds(preset: str, rate: str) -> tuple[float, float, float]:
    """(s/step, s per coder fit, s per evaluated image) measured for ``preset`` (its ``timing``)."""
    timing = load_preset(preset).get("timing") or {}
    steps = timing.get("step_s") or {}
    return (float(steps.get(rate, steps.get("other", 1.0))), float(timing.get("fit_s", 60.0)),
            float(timing.get("eval_image_s", 2.0)))  # fmt: skip


def _build_estimate(cfg: Mapping[str, Any], n_images: int, n_variants: int) -> float:
    train = TrainConfig(**cfg["train"])
    per_epoch = train.steps_per_epoch or 50
    steps = train.epochs * per_epoch if train.steps is None else min(train.steps, train.epochs * per_epoch)
    step_s, fit_s, image_s = _step_seconds(cfg["preset"], cfg["model"]["rate"]["name"])
    train_s = steps * step_s
    if train.time_limit is not None:
        train_s = min(train_s, train.time_limit * 60)
    return train_s + (1 + n_variants) * (fit_s + n_images * image_s)


def _coder_refusal(config: Mapping[str, Any], coder: str, registry: Registry) -> str | None:
    """Why ``coder`` cannot code this build's streams, or None."""
    model = dict(config["model"])
    preset = config.get("preset")
    sized = registry.get("coder", coder).cls.presets.get(preset, {}) if isinstance(preset, str) else {}
    model["coder"] = {"name": coder, **sized}
    try:
        build_codec(model, registry)
    except CodecError as e:
        return e.message
    return None


def make_plan(
    registry: Registry,
    *,
    out: Path,
    rates: Sequence[str] = (),
    runs: Sequence[Path] = (),
    coders: Sequence[str] = (),
    baselines: Sequence[str] = (),
    references: Sequence[str] = (),
    anchor: str = "jpeg",
    sweeps: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    preset: str | None = None,
    config: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    sets: Mapping[str, Any] | None = None,
    n_images: int = 24,
) -> Plan:
    """Plan a comparison (see ``codec compare --help``); every name is checked here, before
    any work, with "did you mean" for typos.

    Args:
        out: the report folder (run folders go to ``out/runs``).
        rates: rate strategies to build, each swept over its knob.
        runs: trained run folders to add as points.
        coders: coders fitted on every build's and run's transform (through fit-coder).
        baselines: classical codecs, each swept over its quality range.
        references: published curves.
        anchor: the BD anchor: a baseline, a rate strategy, or a curve key.
        sweeps: per rate, dotted config key → values (default: the rate's declared sweep).
        preset, config, train, data, sets: the build flags, applied to every build.
        n_images: evaluation images (for the time estimate).
    """
    if not (rates or runs or baselines):
        raise ConfigError("nothing to compare", "give --rate, --run or --baseline (see codec compare --help)")
    plan = Plan(anchor=anchor, eval_dir=Path(data["val"]) if data and data.get("val") else None)
    sweeps = dict(sweeps or {})
    unknown = [r for r in sweeps if r not in rates]
    if unknown:
        raise ConfigError(f"--sweep names rate {unknown[0]!r}, which is not compared",
                          f"add --rate {unknown[0]}, or sweep one of: {', '.join(rates) or '(no --rate)'}")
    coders = list(dict.fromkeys(coders))
    for c in coders:
        registry.get("coder", c)  # unknown names fail here, with did-you-mean
    for rate in dict.fromkeys(rates):
        info = registry.get("rate", rate)
        declared = {f"model.rate.{k}": list(v) for k, v in info.cls.sweep.items()}
        grid = {k: list(v) for k, v in (sweeps.get(rate) or declared).items()}
        if not grid:
            raise ConfigError(f"rate {info.name!r} declares no default sweep",
                              f"give one: --sweep {info.name}:KEY=V1,V2,V3 (a key of `codec plugins "
                              f"{info.name}`)")  # fmt: skip
        base = assemble_config(registry, rate=info.name, preset=preset, config=config, train=train,
                               data=data, sets=sets)  # fmt: skip
        default_coder = base["model"]["coder"]["name"]
        curve, encoder = info.name, base["model"]["encoder"]["name"]
        plan.curves.append(Curve(curve, f"{info.name} ({encoder} + {default_coder})", "learned"))
        extra: list[str] = []
        for c in coders:
            if c == default_coder:
                continue
            why = _coder_refusal(base, c, registry)
            if why:
                plan.notices.append(f"coder {c!r} skipped for rate {info.name!r}: {why}")
                continue
            extra.append(c)
            plan.curves.append(Curve(f"{curve}+{c}", f"{info.name} ({encoder} + {c})", "learned"))
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            setting = dict(zip(keys, values, strict=True))
            over = deep_merge(dict(sets or {}), _nested(setting))
            cfg = assemble_config(registry, rate=info.name, preset=preset, config=config, train=train,
                                  data=data, sets=over)  # fmt: skip
            build_codec(cfg["model"], registry)  # a swept value out of range fails now, not after hours
            key = _slug(f"{info.name}-" + "_".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in setting.items()))
            run_dir = out / "runs" / key
            variants = tuple(CoderVariant(c, f"{key}+{c}", f"{curve}+{c}", out / "runs" / f"{key}+{c}")
                             for c in extra)  # fmt: skip
            plan.jobs.append(BuildJob(key, curve, setting, cfg, run_dir, variants,
                                      _build_estimate(cfg, n_images, len(variants))))  # fmt: skip
    for run in runs:
        run_dir = check_run_dir(run)
        cfg = read_config(run_dir)
        m = cfg["model"]
        curve = _slug(f"run-{m['encoder']['name']}-{m['rate']['name']}-{m['coder']['name']}")
        if all(c.key != curve for c in plan.curves):
            plan.curves.append(Curve(curve, f"{m['rate']['name']} runs ({m['encoder']['name']} + "
                                     f"{m['coder']['name']})", "learned"))  # fmt: skip
        key = _slug(f"run-{run_dir.name}")
        if any(j.key == key for j in plan.jobs):
            raise ConfigError(f"--run {run}: two runs named {run_dir.name!r}", "give each run once")
        variants = []
        for c in coders:
            if c == m["coder"]["name"]:
                continue
            why = _coder_refusal(cfg, c, registry)
            if why:
                plan.notices.append(f"coder {c!r} skipped for run {run}: {why}")
                continue
            vcurve = f"{curve}+{c}"
            if all(x.key != vcurve for x in plan.curves):
                plan.curves.append(Curve(vcurve, f"{m['rate']['name']} runs ({m['encoder']['name']} + {c})",
                                         "learned"))  # fmt: skip
            variants.append(CoderVariant(c, f"{key}+{c}", vcurve, out / "runs" / f"{key}+{c}"))
        _, fit_s, image_s = _step_seconds(cfg.get("preset", "quick"), m["rate"]["name"])
        est = n_images * image_s + len(variants) * (fit_s + n_images * image_s)
        plan.jobs.append(RunJob(key, curve, run_dir, tuple(variants), est))
    names = list(dict.fromkeys(baselines))
    if anchor in registry.baseline_names() and anchor not in names:
        names.append(anchor)
        plan.notices.append(f"baseline {anchor!r} added: it is the BD anchor (--anchor)")
    for name in names:
        b = registry.baseline(name)  # unknown or unavailable: a clear error now
        plan.curves.append(Curve(b.name, b.library(), "baseline"))
        settings = tuple((_slug(f"{b.name}-{b.setting.key}={s:g}"), float(s)) for s in b.sweep)
        plan.jobs.append(BaselineJob(b.name, b.name, b.name, settings, len(settings) * n_images * 0.3))
    for ref in dict.fromkeys(references):
        for pc in published(ref):
            plan.curves.append(Curve(pc.key, pc.label, "published", note=f"{pc.source}; bpp: {pc.rate_note}"))
    valid = [c.key for c in plan.curves] + list(dict.fromkeys(rates))
    if anchor not in valid:
        raise ConfigError(f"--anchor {anchor!r} is not a curve of this comparison",
                          did_you_mean(anchor, [c.key for c in plan.curves]))
    return plan
