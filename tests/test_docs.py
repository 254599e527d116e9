"""The plugin author's docs stay true: documented hooks and contracts, a current generated
reference, and examples in ``docs/plugins.md`` that import, register and keep the contracts."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from codec_lab.contracts import KINDS
from codec_lab.registry import hookdoc
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.manager import make_plugin_manager
from codec_lab.testing import (
    check_coder,
    check_decoder,
    check_encoder,
    check_info,
    check_quantizer,
    check_rate,
)
from tests.helpers import image_tensor

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r"```python\n# file: (\w+)\.py\n(.*?)```", re.S)


def test_every_hook_and_contract_member_has_a_docstring() -> None:
    missing = hookdoc.undocumented()
    assert not missing, (
        "hooks and contract members without a docstring (the reference is generated from "
        f"them): {', '.join(missing)}"
    )


def test_generated_reference_is_current() -> None:
    path = ROOT / "docs" / "reference.md"
    assert hookdoc.DOC_PATH == path
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    assert current == hookdoc.render(), (
        f"docs/reference.md is stale: regenerate it with `{hookdoc.COMMAND}`"
    )


def test_reference_names_every_hook_and_contract() -> None:
    text = hookdoc.render()
    specs = [n for n in dir(hookdoc.importlib.import_module("codec_lab.registry.hookspecs"))
             if n.startswith("codec_")]  # fmt: skip
    assert specs
    for name in [*specs, *(c.__name__ for c in KINDS.values()), "Baseline", "Stream", "StreamSpec",
                 "RateOutput", "check_coder", "check_rate"]:  # fmt: skip
        assert f"### `{name}`" in text, name
    assert "](reference.md)" in GUIDE.read_text(encoding="utf-8")


def test_markdown_conversion_keeps_structure() -> None:
    doc = ("Summary with :meth:`setup` and ``code``.\n\nArgs:\n    ctx: the context, which\n"
           "        goes on.\n\nExample::\n\n    x = 1\n\nReturns: None.")  # fmt: skip
    md = hookdoc.markdown(doc)
    assert "`setup`" in md and "`code`" in md and ":meth:" not in md
    assert "- `ctx`: the context, which goes on." in md
    assert "```python\nx = 1\n```" in md
    text, entries = hookdoc.split_attributes("A class.\n\nAttributes:\n    a, b: both.\n    c: one\n"
                                             "        more.\n\nAfter.")  # fmt: skip
    assert entries == {"a": "both.", "b": "both.", "c": "one more."}
    assert text == "A class.\n\nAfter."


def test_guide_names_real_hooks_and_check_signatures() -> None:
    """Hook names and the contract checks' signatures quoted in the guide's prose are real."""
    text = GUIDE.read_text(encoding="utf-8")
    specs = hookdoc.importlib.import_module("codec_lab.registry.hookspecs")
    for hook in set(re.findall(r"\b(codec_register_[a-z_]+)\b", text)):
        assert hasattr(specs, hook), f"docs/plugins.md names a hook that does not exist: {hook}"
    testing = hookdoc.testing_module()
    quoted = re.findall(r"^\| `((?:check|setup)_\w+)\(([^)]*)\)`", text, re.M)
    quoted += re.findall(r", `(setup_\w+)\(([^)]*)\)`", text)
    assert len(quoted) >= 8, quoted
    for name, args in quoted:
        signature = inspect.signature(getattr(testing, name))
        params = list(signature.parameters.values())
        written = [a.strip() for a in args.split(",") if a.strip()]
        assert [w.split("=")[0] for w in written] == [p.name for p in params][: len(written)], (
            f"docs/plugins.md shows {name}({args}), the code has {name}{signature}"
        )
        required = [p.name for p in params if p.default is inspect.Parameter.empty]
        assert len(written) >= len(required), f"docs/plugins.md leaves out arguments of {name}"


# ---------------------------------------------------------------------------- the guide's examples
def _blocks() -> dict[str, str]:
    return {name: body for name, body in FILE_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def doc_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """Every ``# file: NAME.py`` block of docs/plugins.md, written to a folder and imported."""
    import importlib

    folder = tmp_path_factory.mktemp("doc-examples")
    blocks = _blocks()
    for name, body in blocks.items():
        (folder / f"{name}.py").write_text(body, encoding="utf-8")
    sys.path.insert(0, str(folder))
    try:
        yield {name: importlib.import_module(name) for name in blocks}
    finally:
        sys.path.remove(str(folder))
        for name in blocks:
            sys.modules.pop(name, None)


def _plugin_modules(modules: dict[str, ModuleType]) -> tuple[str, ...]:
    return tuple(n for n, m in modules.items() if any(a.startswith("codec_register_") for a in vars(m)))


@pytest.fixture(scope="module")
def doc_registry(doc_modules: dict[str, ModuleType]) -> Registry:
    """The built-ins plus the guide's plugin modules, loaded by name."""
    return Registry(make_plugin_manager(entry_points=False, extra=_plugin_modules(doc_modules)))


def test_every_complete_example_compiles() -> None:
    blocks = _blocks()
    assert len(blocks) >= 6, f"expected an example per kind and a test module, found {sorted(blocks)}"
    for name, body in blocks.items():
        compile(body, f"docs/plugins.md:{name}.py", "exec")


def test_every_python_block_parses_and_its_imports_resolve() -> None:
    """Snippets too: each ```python block is valid Python, and what it imports exists (the
    guide's own example modules aside: the fixtures import those)."""
    import ast
    import importlib

    text = GUIDE.read_text(encoding="utf-8")
    examples = set(_blocks())
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) > len(examples)
    for body in blocks:
        tree = ast.parse(body)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module not in examples:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule: from PIL import features
                        importlib.import_module(f"{node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


def test_examples_cover_every_kind(doc_modules: dict[str, ModuleType], doc_registry: Registry) -> None:
    origins = {m.__name__ for m in doc_modules.values()}
    ours = {kind: [i for i in doc_registry.infos() if i.kind == kind and i.cls.__module__ in origins]
            for kind in KINDS}  # fmt: skip
    assert all(ours.values()), f"no example of {[k for k, v in ours.items() if not v]}"
    assert any(b.cls.__module__ in origins for b in doc_registry.baseline_infos()), "no baseline example"
    for infos in ours.values():
        for info in infos:
            check_info(info)


def test_examples_keep_their_contracts(doc_modules: dict[str, ModuleType], doc_registry: Registry) -> None:
    origins = {m.__name__ for m in doc_modules.values()}
    mine = [i for i in doc_registry.infos() if i.cls.__module__ in origins]
    stochastic = doc_registry.get("quantizer", "stochastic").cls(bound=7)
    for info in mine:
        if info.kind == "encoder":
            enc = info.cls()
            check_encoder(enc)
            dec = doc_registry.get("decoder", info.name).cls(latent_channels=enc.latent_channels)
            check_decoder(dec, enc.latent_channels, enc.downsampling_factor)
        elif info.kind == "quantizer":
            check_quantizer(info.cls())
        elif info.kind == "rate":
            check_rate(info.cls(), stochastic)
        elif info.kind == "coder":
            check_coder(info.cls)
    for b in doc_registry.baseline_infos():
        if b.cls.__module__ in origins:
            baseline = b.cls()
            if baseline.unavailable() is None:
                image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
                assert baseline.decode(baseline.encode(image, b.cls.sweep[-1])).shape == image.shape


def test_the_guides_own_tests_pass(doc_modules: dict[str, ModuleType]) -> None:
    tests = [m for n, m in doc_modules.items() if n.startswith("test_")]
    assert tests, "docs/plugins.md shows no test module"
    for module in tests:
        for name, fn in vars(module).items():
            if name.startswith("test_") and callable(fn):
                fn()


def test_the_examples_compose_into_a_codec_that_codes(doc_registry: Registry) -> None:
    """The example rate's default_components (all the guide's examples) build a codec whose
    files decode to what its eval forward shows."""
    rate = next(i for i in doc_registry.infos() if i.kind == "rate" and i.cls.default_components
                and i.cls.__module__ == "first_channels_rate")  # fmt: skip
    cfg = assemble_config(doc_registry, rate=rate.name, train={"device": "cpu"})
    assert {k: cfg["model"][k]["name"] for k in rate.cls.default_components} == dict(
        rate.cls.default_components
    )
    torch.manual_seed(0)
    codec = build_codec(cfg["model"], doc_registry).eval()
    x = image_tensor(20, 28)
    coded = codec.compress(x)
    x_hat = codec.decompress(coded["strings"], coded["shape"])["x_hat"]
    with torch.no_grad():
        expected = codec(x)["x_hat"].clamp(0, 1)
    assert x_hat.shape == x.shape
    assert torch.allclose(x_hat, expected, atol=1e-5)
