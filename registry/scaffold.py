"""``codec plugins new``: a complete, pip-installable plugin package that already works.

For every kind (an encoder or decoder comes as a same-named pair) it writes
``DIR/NAME/pyproject.toml`` (setuptools, the ``codec.plugins`` entry point naming the module),
the module ``codec_lab_<name>.py`` with the hook and a minimal real implementation of the
contract, a README and ``tests/test_<name>.py`` running codec-lab's contract checks. The
templates are ``registry/templates/*.tmpl`` (``string.Template``: ``$name`` placeholders).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import codec_lab
from codec_lab.corelib.contracts import KINDS, NAME_PATTERN
from codec_lab.corelib.errors import ConfigError, OutputError, did_you_mean
from codec_lab.registry.components import Registry, normalize

__all__ = ["SCAFFOLD_KINDS", "Scaffold", "module_name", "scaffold"]

SCAFFOLD_KINDS: tuple[str, ...] = (*KINDS, "baseline")
"""Kinds ``codec plugins new`` writes: an encoder or decoder comes with its pair."""

TEMPLATES = Path(__file__).parent / "templates"

_TEMPLATE = {"encoder": "transform", "decoder": "transform"}

_SUMMARY = {
    "encoder": "a tiny convolutional analysis transform (f = 4), with its decoder",
    "decoder": "a tiny convolutional synthesis transform (f = 4), with its encoder",
    "quantizer": "uniform rounding to -bound … bound, straight-through in training",
    "rate": "an L1 penalty on the quantized latent; every symbol sent",
    "coder": "a static discretized-Laplace model, rANS-coded",
    "baseline": "JPEG 4:4:4 through Pillow",
}

_EDIT = {
    "transform": (
        "* `$enc_cls.__init__`/`forward`: the analysis network; keep `latent_channels` and "
        "`downsampling_factor` (the spatial factor f) in step with it.\n"
        "* `$dec_cls`: the synthesis network; it must upsample by the encoder's factor. The builder "
        "passes it the encoder's keys it accepts (same names) and `latent_channels`.\n"
        "* An encoder may return more features (e.g. `\"importance\"` for the `importance` rate): "
        "list them in `features`."
    ),
    "quantizer": (
        "* `forward`: the training relaxation (straight-through, noise) and, in eval, the hard "
        "decoder values.\n"
        "* `to_symbols`/`from_symbols`: the symbols in [0, `alphabet_size`) and back, exactly "
        "inverse. Set `grid_step = None` for uneven (learned) levels."
    ),
    "rate": (
        "* `forward`: the rate loss and which symbols are sent (`Stream(spec, symbols, mask)`), "
        "with `info` values for the `report_columns`.\n"
        "* `decode_mask`/`reconstruct`: the decoder's side — it must derive each mask from the "
        "streams before it or the model itself.\n"
        "* `setup`: declare more streams (side streams first); training hooks "
        "(`on_train_start`, `on_batch_end`, `on_epoch_end`, `on_train_end`) for schedules.\n"
        "* `default_components`, `report_columns`, `sweep`: what `codec build`/`codec compare` use."
    ),
    "coder": (
        "* `setup`: create the probability model's buffers/parameters for each stream spec.\n"
        "* `likelihoods`, `encode`, `decode`: keep them on the same integer frequencies; set "
        "`fitting` and implement `fit_begin`/`fit_observe`/`fit_end` (counted) or `fit_loss` "
        "(trained) for a learned model.\n"
        "* Optional: `max_symbols(n_bytes, spec)` bounds how many symbols n bytes can carry, so "
        "damaged files are refused early (mind that rANS codes a final run of the first symbol "
        "from an empty coder for free)."
    ),
    "baseline": (
        "* `encode`/`decode`: your codec's library; `decode` must return exactly what a decoder of "
        "the file shows, (H, W, 3) uint8.\n"
        "* `setting`, `sweep`, `low`, `high`, `larger_is_smaller`: the knob an RD curve varies.\n"
        "* `unavailable()`: say what to install when the library is missing."
    ),
}

_USE = {
    "encoder": "codec build --encoder $name --decoder $name   # with the default rate's other parts",
    "decoder": "codec build --encoder $name --decoder $name   # with the default rate's other parts",
    "quantizer": "codec build --quantizer $name",
    "rate": "codec build --rate $name      # composes its default_components",
    "coder": "codec build --coder $name",
    "baseline": "codec compare --baseline $name",
}


def module_name(name: str) -> str:
    """The plugin module of package ``name``: ``my-rate`` → ``codec_lab_my_rate``."""
    return "codec_lab_" + name.replace("-", "_")


def _camel(name: str, suffix: str) -> str:
    base = "".join(part[:1].upper() + part[1:] for part in name.split("-"))
    if not base.lower().endswith(suffix.lower()):
        base += suffix
    return base if base[:1].isalpha() else f"Plugin{base}"


def _requirement() -> str:
    m = re.match(r"(\d+)\.(\d+)", codec_lab.__version__)
    return f"codec-lab>={m.group(1)}.{m.group(2)}" if m else "codec-lab"


@dataclass(frozen=True)
class Scaffold:
    """What :func:`scaffold` wrote."""

    kind: str
    name: str
    root: Path
    module: str
    files: tuple[Path, ...]
    next_steps: tuple[str, ...]


def _refuse_taken(registry: Registry, kind: str, name: str) -> None:
    kinds = ("encoder", "decoder") if kind in ("encoder", "decoder") else (kind,)
    for k in kinds:
        if k == "baseline":
            taken = name in registry.baseline_names()
            info = registry.baseline_info(name) if taken else None
        else:
            taken = name in registry.names(k)
            info = registry.get(k, name) if taken else None
        if info is not None:
            raise ConfigError(f"{k} {name!r} already exists: {info.source} registers it "
                              f"({info.cls.__module__}.{info.cls.__qualname__})",
                              "choose another name (names are unique within a kind)")  # fmt: skip


def scaffold(registry: Registry, name: str, kind: str, out: Path | str = ".") -> Scaffold:
    """Write the package of a new ``kind`` plugin ``name`` into ``out/name``.

    Refuses an unknown kind, a name that is not lowercase kebab-case, a name already
    registered for that kind, and an existing target folder (nothing is ever overwritten).
    """
    kind = normalize(kind)
    if kind not in SCAFFOLD_KINDS:
        raise ConfigError(f"unknown kind {kind!r}", did_you_mean(kind, SCAFFOLD_KINDS))
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"invalid plugin name {name!r}: a name is lowercase kebab-case",
                          f"letters, digits and single hyphens, e.g. {_suggest(name)!r}")  # fmt: skip
    _refuse_taken(registry, kind, name)
    root = Path(out) / name
    if root.exists() or root.is_symlink():
        raise OutputError(f"{root} already exists; refusing to overwrite it",
                          "choose another --out folder or another name")  # fmt: skip
    module = module_name(name)
    template = _TEMPLATE.get(kind, kind)
    words = {
        "name": name, "kind": kind, "module": module, "dist": f"codec-lab-{name}",
        "summary": _SUMMARY[kind], "requirement": _requirement(),
        "cls": _camel(name, kind.capitalize()), "enc_cls": _camel(name, "Encoder"),
        "dec_cls": _camel(name, "Decoder"), "test_file": f"test_{name.replace('-', '_')}.py",
        "kind_key": kind if kind != "baseline" else "baseline",
    }  # fmt: skip
    if kind in ("encoder", "decoder"):
        words["registers"] = (f"an encoder and a decoder named `{name}` (`{words['enc_cls']}`, "
                              f"`{words['dec_cls']}`)")
    else:
        words["registers"] = f"a {kind} named `{name}` (`{words['cls']}`)"
    words["edit"] = Template(_EDIT[template]).substitute(words)
    words["use"] = Template(_USE[kind]).substitute(words)

    def render(file: str) -> str:
        return Template((TEMPLATES / file).read_text(encoding="utf-8")).substitute(words)

    contents = {
        Path("pyproject.toml"): render("pyproject.toml.tmpl"),
        Path(f"{module}.py"): render(f"{template}.py.tmpl"),
        Path("README.md"): render("README.md.tmpl"),
        Path("tests") / words["test_file"]: render(f"test_{template}.py.tmpl"),
    }
    try:
        (root / "tests").mkdir(parents=True)
        for rel, text in contents.items():
            (root / rel).write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {root}: {e.strerror or e}", "choose a writable --out folder") from e
    here = root.as_posix()
    if not (root.is_absolute() or here.startswith(".")):
        here = f"./{here}"  # pip reads a bare name as a project name
    steps = (
        f"pip install -e {here}",
        f"codec plugins check {name}",
        Template(_USE[kind]).substitute(words).split("  #")[0].strip(),
        f"pytest {here}/tests",
    )
    return Scaffold(kind, name, root, module, tuple(root / rel for rel in contents), steps)


def _suggest(name: str) -> str:
    """A kebab-case spelling of ``name`` (``My_Rate`` → ``my-rate``)."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name.strip())
    s = re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")
    return s or "my-plugin"
