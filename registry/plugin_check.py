"""One installed component, looked up by name: what it declares (``codec plugins show``) and
whether it keeps its contract (``codec plugins check``).

The checks are ``codec_lab.corelib.testing``'s rules, run one by one so that every rule is
reported, plus what needs the registry: partners for the kinds that need them (a rate's
quantizer, a coder's streams, a decoder's latent), a rate's default components composed into a
working codec, and determinism in a fresh Python process (the component built there by name,
loading the state dict of the one built here, must code the same bytes).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from codec_lab.corelib import testing as T
from codec_lab.corelib.contracts import KINDS
from codec_lab.corelib.errors import CodecError, did_you_mean
from codec_lab.registry.check_plan import load_state, plan_for
from codec_lab.registry.components import Registry
from codec_lab.registry.manager import BUILTIN_PLUGINS, make_plugin_manager
from codec_lab.registry.plugin_info import ALL_KINDS, Info, arg_help, describe, find

__all__ = [
    "ALL_KINDS",
    "CheckReport",
    "ContractCheckFailed",
    "RuleResult",
    "arg_help",
    "check",
    "describe",
    "find",
    "fresh_process_main",
]


FRESH_RULE = "deterministic in a fresh process"


class ContractCheckFailed(CodecError):
    """``codec plugins check`` found broken rules."""



# ---------------------------------------------------------------------------- results
Status = Literal["passed", "failed", "skipped"]


@dataclass
class RuleResult:
    """One rule's outcome: ``message`` is the failure (``rule "…" failed: …``) or why it was
    skipped; ``hint`` what to fix; ``trace`` the traceback of an unexpected exception."""

    rule: str
    status: Status
    message: str = ""
    hint: str = ""
    trace: str = ""


@dataclass
class CheckReport:
    """Every rule's outcome for one component or baseline."""

    kind: str
    name: str
    source: str
    module: str
    results: list[RuleResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r} ({self.source})"

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in ("passed", "failed", "skipped")}

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "source": self.source, "module": self.module,
                "ok": self.ok, **self.counts(),
                "rules": [{"rule": r.rule, "status": r.status, "message": r.message, "hint": r.hint}
                          for r in self.results]}  # fmt: skip


def _where_raised(e: BaseException, info: Info) -> str:
    """``file.py:LINE`` of the innermost frame in the plugin's own file (else the innermost)."""
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return ""
    try:
        own = inspect.getsourcefile(info.cls)
    except TypeError:
        own = None
    mine = [f for f in frames if own and f.filename == own]
    f = (mine or frames)[-1]
    return f"{Path(f.filename).name}:{f.lineno}"


def _run(rule: T.Rule, info: Info) -> RuleResult:
    try:
        rule.run()
    except T.ContractViolation as e:
        return RuleResult(rule.name, "failed", f'rule "{e.rule}" failed: {e.detail}', e.hint)
    except T.RuleSkipped as e:
        return RuleResult(rule.name, "skipped", str(e))
    except Exception as e:
        at = _where_raised(e, info)
        return RuleResult(
            rule.name, "failed",
            f'rule "{rule.name}" failed: {type(e).__name__}: {e}' + (f" (raised at {at})" if at else ""),
            "fix the error, or raise codec_lab.errors.ConfigError for settings it cannot work with",
            traceback.format_exc(),
        )  # fmt: skip
    return RuleResult(rule.name, "passed")


def _skip_all(rules: Sequence[str], why: str) -> list[RuleResult]:
    return [RuleResult(r, "skipped", why) for r in rules]


def _registry_rules(registry: Registry, info: Info) -> list[T.Rule]:
    """What only the registry can check: a rate's default components exist and compose."""
    if info.kind != "rate":
        return []
    cls = info.cls

    def defaults_exist() -> None:
        rule = "default components are registered"
        for kind, name in cls.default_components.items():
            T.require(kind in KINDS, rule, f"default_components names unknown kind {kind!r}",
                      did_you_mean(kind, KINDS))
            T.require(name in registry.names(kind), rule, f"default {kind} {name!r} is not registered",
                      did_you_mean(str(name), registry.names(kind)))

    def composes() -> None:
        from codec_lab.registry.compose import assemble_config, build_codec

        rule = "composes with its default components into a working codec"
        try:
            cfg = assemble_config(registry, rate=info.name)
            codec = build_codec(cfg["model"], registry).eval()
        except CodecError as e:
            raise T.ContractViolation(rule, f"`codec build --rate {info.name}` is refused: {e}",
                                      "name every kind in default_components (encoder, quantizer, coder, "
                                      "decoder) with components that work together") from None
        f = codec.downsampling_factor
        h, w = (2 * f, 3 * f) if f >= 16 else (32, 40)
        x = T.photo(h, w).astype(np.float32)
        x = torch.from_numpy(x).permute(2, 0, 1)[None] / 255.0
        torch.manual_seed(0)
        out = codec.decompress(**codec.compress(x))["x_hat"]
        with torch.no_grad():
            ref = codec(x)["x_hat"].clamp(0, 1)
        T.require(torch.equal(out, ref), rule, "compress → decompress differs from the codec's eval forward",
                  "decode_mask/reconstruct must give the decoder exactly what forward gave it")

    return [T.Rule("default components are registered", defaults_exist),
            T.Rule("composes with its default components into a working codec", composes)]  # fmt: skip


def _rule_names(registry: Registry, info: Info) -> list[str]:
    try:
        return [r.name for r in plan_for(registry, info).rules()]
    except Exception:
        return []


def _check_in_process(registry: Registry, info: Info) -> CheckReport:
    report = CheckReport(info.kind, info.name, info.source, info.cls.__module__)
    add = report.results.append
    add(_run(T.Rule("registry metadata", lambda: T.check_info(info)), info))
    if info.kind == "baseline":
        construct_rule = T.Rule("constructs without arguments", lambda: info.cls())
    else:
        construct_rule = T.Rule("constructs with its defaults", lambda: T.construct(info))  # type: ignore[arg-type]
    built = _run(construct_rule, info)
    add(built)
    if built.status != "passed":
        why = f'not run: rule "{construct_rule.name}" failed'
        report.results += _skip_all(_rule_names(registry, info), why)
        return report
    try:
        plan = plan_for(registry, info)
        rules = plan.rules()
    except Exception as e:  # a partner cannot be set up: name it
        add(RuleResult("sets up with its partners", "failed",
                       f'rule "sets up with its partners" failed: {type(e).__name__}: {e}',
                       "a rate is checked with its default quantizer, a coder with the streams of the rate "
                       "it requires, a decoder with the same-named encoder's latent",
                       traceback.format_exc()))  # fmt: skip
        return report
    for rule in rules:
        add(_run(rule, info))
    if plan.state_make is not None:
        add(_run(T.Rule("state dict round trip",
                        lambda: T.check_state_dict_round_trip(plan.state_make)), info))  # type: ignore[arg-type]
    for rule in _registry_rules(registry, info):
        add(_run(rule, info))
    return report


# ---------------------------------------------------------------------------- fresh process
def _states(objs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.state_dict() for k, v in objs.items() if isinstance(v, torch.nn.Module)}


def _same(a: Any, b: Any) -> str | None:
    """None when the probes agree, else what differs."""
    if set(a) != set(b):
        return f"it produced {sorted(b)} instead of {sorted(a)}"
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, bytes):
            if x != y:
                return f"{key}: {len(y)} bytes there, {len(x)} here" + (" (same length, other bytes)"
                                                                         if len(x) == len(y) else "")
            continue
        if isinstance(x, np.ndarray):
            x, y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
        if isinstance(x, torch.Tensor):
            if not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dtype != y.dtype:
                return f"{key}: another shape or dtype"
            if x.is_floating_point():
                if not torch.allclose(x, y, rtol=1e-4, atol=1e-5):
                    return f"{key}: values differ by up to {float((x - y).abs().max()):.3g}"
            elif not torch.equal(x, y):
                return f"{key}: {int((x != y).sum())} of {x.numel()} values differ"
    return None


def _plugin_modules(registry: Registry) -> tuple[list[str], bool]:
    """The modules of the non-built-in plugins (to import in a fresh process), and whether some
    plugin is no module (then the fresh process loads the entry points itself)."""
    extra, objects = [], False
    for name, plugin in registry.pm.list_name_plugin():
        if name in BUILTIN_PLUGINS:
            continue
        if isinstance(plugin, ModuleType):
            extra.append(plugin.__name__)
        else:
            objects = True
    return extra, objects


FRESH_HINT = ("keep everything it codes with in buffers or parameters (its state dict), draw no random "
              "numbers in eval mode or while coding (or seed them), and make it constructible by name "
              "(install the package, or name its module in CODEC_PLUGINS)")


def _fail(detail: str) -> RuleResult:
    return RuleResult(FRESH_RULE, "failed", f'rule "{FRESH_RULE}" failed: {detail}', FRESH_HINT)


CHILD = "import sys; from codec_lab.registry import plugin_check as p; p.fresh_process_main(sys.argv[1])"


def _run_child(request: Path, answer: Path, objects: bool, timeout: float) -> str | None:
    """Run the fresh process; None when it answered, else what went wrong."""
    env = dict(os.environ)
    # The modules found here are found there: this sys.path, less the interpreter's own folders
    # (the fresh interpreter has those, in its order). It runs in an empty folder, so that
    # nothing in the working folder shadows a module.
    own = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})
    paths = [str(Path(p).resolve()) for p in sys.path if p and Path(p).exists()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if not p.startswith(own)))
    if not objects:  # every plugin is a module, named in the request
        env["CODEC_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(request)], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=request.parent)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"the fresh process ran longer than {timeout:.0f} s"
    if proc.returncode != 0 or not answer.exists():
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"the fresh process failed: {last}"
    return None


def _fresh_process(registry: Registry, infos: Sequence[Info], timeout: float = 600) -> list[RuleResult]:
    """Build each component here and in a new Python process, by name; compare what they code."""
    extra, objects = _plugin_modules(registry)
    results: dict[int, RuleResult] = {}
    here: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="codec-check-") as tmp:
        targets = []
        for i, info in enumerate(infos):
            try:
                plan = plan_for(registry, info)
                torch.manual_seed(0)
                objs = plan.build(True)
                why = objs["part"].unavailable() if info.kind == "baseline" else None
                if why:
                    results[i] = RuleResult(FRESH_RULE, "skipped", f"unavailable here: {why}")
                    continue
                here[i] = plan.probe(objs)
            except Exception as e:
                why = f"not run: it fails here: {type(e).__name__}: {e}"
                results[i] = RuleResult(FRESH_RULE, "skipped", why)
                continue
            path = Path(tmp) / f"state{i}.pt"
            torch.save(_states(objs), path)
            targets.append({"index": i, "kind": info.kind, "name": info.name, "state": str(path)})
        if targets:
            request, answer = Path(tmp) / "request.json", Path(tmp) / "answer.pt"
            request.write_text(json.dumps({"targets": targets, "extra": extra, "entry_points": objects,
                                           "threads": torch.get_num_threads(), "answer": str(answer)}))
            failure = _run_child(request, answer, objects, timeout)
            there = torch.load(answer, weights_only=False) if failure is None else {}
            for t in targets:
                i = t["index"]
                got = there.get(i, {})
                if failure is not None:
                    results[i] = _fail(failure)
                elif got.get("error"):
                    results[i] = _fail(f"a fresh Python process could not build it by name and code with it: "
                                       f"{got['error']}")  # fmt: skip
                else:
                    diff = _same(here[i], got["probe"])
                    results[i] = RuleResult(FRESH_RULE, "passed") if diff is None else _fail(
                        "built by name in a fresh Python process with this one's state dict, it coded the "
                        f"same input differently ({diff})")  # fmt: skip
    return [results[i] for i in range(len(infos))]


def fresh_process_main(request_path: str) -> None:
    """The fresh process's side of the determinism rule (run by :func:`check`)."""
    import warnings

    warnings.filterwarnings("ignore")
    request = json.loads(Path(request_path).read_text())
    torch.set_num_threads(int(request["threads"]))
    registry = Registry(make_plugin_manager(entry_points=bool(request["entry_points"]) or None,
                                            extra=tuple(request["extra"])))  # fmt: skip
    answers: dict[int, dict[str, Any]] = {}
    for t in request["targets"]:
        try:
            info = find(registry, t["name"], t["kind"])[0]
            plan = plan_for(registry, info)
            torch.manual_seed(20240611)  # not the seed the other process built with
            objs = plan.build(False)
            states = torch.load(t["state"], weights_only=False)
            for key, sd in states.items():
                load_state(objs[key], sd)
            answers[t["index"]] = {"probe": plan.probe(objs)}
        except Exception as e:
            answers[t["index"]] = {"error": f"{type(e).__name__}: {e}"}
    torch.save(answers, request["answer"])


# ---------------------------------------------------------------------------- check
def check(registry: Registry, infos: Sequence[Info], *, fresh_process: bool = True) -> list[CheckReport]:
    """Run every rule on each of ``infos``; every failure is reported (none stops the others)."""
    reports = [_check_in_process(registry, info) for info in infos]
    if fresh_process:
        runnable = [i for i, r in enumerate(reports) if r.results[1].status == "passed"
                    and all(x.rule != "sets up with its partners" for x in r.failed)]
        fresh = _fresh_process(registry, [infos[i] for i in runnable])
        for i, res in zip(runnable, fresh, strict=True):
            reports[i].results.append(res)
    return reports
