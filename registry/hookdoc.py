"""Render the plugin author's reference from the docstrings: ``docs/reference.md``.

The reference is generated, never written by hand: every hook in
:mod:`codec_lab.registry.hookspecs` (name, signature, docstring), every public attribute and
method of each contract and the types they exchange (:mod:`codec_lab.contracts`), and the
contract checks a plugin's tests call (the public testing module). Signatures and defaults are
taken from the source text, so the reference shows exactly what the code says.

Usage::

    python -m codec_lab.registry.hookdoc            # print the reference
    python -m codec_lab.registry.hookdoc --write    # regenerate docs/reference.md
    python -m codec_lab.registry.hookdoc --check    # exit 1 when docs/reference.md is stale

The project's tests fail when a hook or a contract member has no docstring
(:func:`undocumented`) and when ``docs/reference.md`` differs from :func:`render`.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["COMMAND", "DOC_PATH", "Member", "hooks", "main", "render", "undocumented"]

COMMAND = "python -m codec_lab.registry.hookdoc --write"
"""The command that regenerates the reference."""

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
"""Where the reference lives in a source checkout (``docs/reference.md``)."""

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Components", ("Component", "Encoder", "Decoder", "Quantizer", "Rate", "EntropyCoder")),
    ("What components exchange", ("Stream", "StreamSpec", "RateOutput", "SetupContext", "TrainContext",
                                  "ReportColumn", "Context", "Fitting", "ComponentInfo")),
    ("Baselines (classical codecs)", ("Baseline", "BaselineInfo")),
)  # fmt: skip
"""The names of ``codec_lab.contracts`` the reference documents, by section."""

_ATTR_SECTION = re.compile(r"^(Class attributes|Attributes):\s*$")
_ENTRY = re.compile(r"^([A-Za-z_][\w.]*(?:,\s*[A-Za-z_][\w.]*)*|\*\*\w+|\*\w+):\s*(.*)$")
_SECTION = re.compile(r"^(Args|Arguments|Returns|Raises|Yields|Since|Examples?|Notes?|Usage):")
_ROLE = re.compile(r":(?:meth|class|attr|func|mod|data|exc|obj):`~?([^`]+)`")


# ---------------------------------------------------------------------------- source model
@dataclass
class Member:
    """One documented thing: a hook, a class, an attribute or a method."""

    name: str
    kind: str  # "hook", "class", "attribute", "property", "method", "function", "alias"
    signature: str
    doc: str
    owner: str = ""
    members: list[Member] = field(default_factory=list)


def _unparse_args(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_self: bool) -> str:
    """``name(a: T, b: T = 1, *, c=2) -> R`` from the source (PEP 8 spacing, without ``self``)."""
    a = fn.args

    def one(arg: ast.arg, default: ast.expr | None) -> str:
        text = arg.arg + (f": {ast.unparse(arg.annotation)}" if arg.annotation is not None else "")
        if default is not None:
            text += f" = {ast.unparse(default)}" if arg.annotation is not None else f"={ast.unparse(default)}"
        return text

    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    parts = [one(arg, d) for arg, d in zip(positional, defaults, strict=True)]
    if a.posonlyargs:
        parts.insert(len(a.posonlyargs), "/")
    if a.vararg is not None:
        parts.append("*" + one(a.vararg, None))
    elif a.kwonlyargs:
        parts.append("*")
    parts += [one(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    if a.kwarg is not None:
        parts.append("**" + one(a.kwarg, None))
    if drop_self and positional and positional[0].arg in ("self", "cls"):
        parts.pop(0)
    ret = f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else ""
    return f"{fn.name}({', '.join(parts)}){ret}"


def _is_property(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def _attribute_docs(body: list[ast.stmt]) -> dict[str, str]:
    """Attribute docstrings: a string literal right after an assignment."""
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if not (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):  # fmt: skip
            continue
        for name in _targets(stmt):
            docs[name] = inspect.cleandoc(nxt.value.value)
    return docs


def _targets(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    if isinstance(stmt, ast.Assign):
        names: list[str] = []
        for t in stmt.targets:
            elts = t.elts if isinstance(t, ast.Tuple) else [t]
            names += [e.id for e in elts if isinstance(e, ast.Name)]
        return names
    return []


def _assignment(stmt: ast.stmt, name: str) -> str:
    """``name: annotation = value`` from the source text."""
    if isinstance(stmt, ast.AnnAssign):
        value = f" = {ast.unparse(stmt.value)}" if stmt.value is not None else ""
        return f"{name}: {ast.unparse(stmt.annotation)}{value}"
    assert isinstance(stmt, ast.Assign)
    if isinstance(stmt.targets[0], ast.Tuple):
        return f"{name} = …"
    return f"{name} = {ast.unparse(stmt.value)}"


def split_attributes(doc: str) -> tuple[str, dict[str, str]]:
    """A class docstring without its ``Attributes:``/``Class attributes:`` sections, and the
    description of each name those sections list (``low, high: …`` gives both)."""
    lines = doc.splitlines()
    kept: list[str] = []
    entries: dict[str, str] = {}
    i = 0
    while i < len(lines):
        if not _ATTR_SECTION.match(lines[i]):
            kept.append(lines[i])
            i += 1
            continue
        i += 1
        current: list[str] = []
        indent = None
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            line = lines[i]
            i += 1
            if not line.strip():
                continue
            here = len(line) - len(line.lstrip())
            indent = here if indent is None else indent
            m = _ENTRY.match(line.strip()) if here == indent else None
            if m:
                current = [m.group(2)]
                for name in re.split(r",\s*", m.group(1)):
                    entries[name] = current  # type: ignore[assignment]
            elif current:
                current.append(line.strip())
        while kept and not kept[-1].strip():
            kept.pop()
        if i < len(lines):
            kept.append("")
    text = {k: " ".join(v) for k, v in entries.items()}  # type: ignore[arg-type]
    return "\n".join(kept).strip(), text


def _module_tree(module: ModuleType) -> ast.Module:
    return ast.parse(inspect.getsource(module))


def _find_class(obj: type) -> tuple[ast.ClassDef, ast.Module]:
    tree = _module_tree(sys.modules[obj.__module__])
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == obj.__name__:
            return node, tree
    raise LookupError(f"class {obj.__qualname__} not found in {obj.__module__}")


def _class_docs(cls: type) -> tuple[str, dict[str, str], dict[str, str], ast.ClassDef]:
    """(class text, attribute-section entries, attribute docstrings, class node) of ``cls``."""
    node, _ = _find_class(cls)
    text, entries = split_attributes(ast.get_docstring(node) or "")
    return text, entries, _attribute_docs(node.body), node


def _inherited_doc(cls: type, name: str, method: bool) -> str:
    """The first description of ``name`` along ``cls``'s MRO (contract classes only)."""
    for base in cls.__mro__:
        if base.__module__.split(".")[0] != "codec_lab" or base is object:
            continue
        try:
            _, entries, attr_docs, node = _class_docs(base)
        except (LookupError, OSError, TypeError):
            continue
        if method:
            for stmt in node.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == name:
                    doc = ast.get_docstring(stmt)
                    if doc:
                        return doc
        else:
            if name in attr_docs:
                return attr_docs[name]
            if name in entries:
                return entries[name]
    return ""


def _class_member(cls: type, display: str | None = None) -> Member:
    text, entries, attr_docs, node = _class_docs(cls)
    bases = ", ".join(ast.unparse(b) for b in node.bases)
    decorators = "".join(f"@{ast.unparse(d)}\n" for d in node.decorator_list)
    signature = f"{decorators}class {cls.__name__}({bases})".replace("()", "")
    member = Member(display or cls.__name__, "class", signature, text, owner=cls.__module__)
    seen: set[str] = set()
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            name = stmt.name
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            doc = ast.get_docstring(stmt) or _inherited_doc(cls, name, method=True)
            if _is_property(stmt):
                ret = f": {ast.unparse(stmt.returns)}" if stmt.returns is not None else ""
                member.members.append(Member(name, "property", f"{name}{ret}", doc, cls.__name__))
            else:
                member.members.append(Member(name, "method", _unparse_args(stmt, True), doc, cls.__name__))
            continue
        for name in _targets(stmt):
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            doc = attr_docs.get(name) or entries.get(name) or _inherited_doc(cls, name, method=False)
            member.members.append(Member(name, "attribute", _assignment(stmt, name), doc, cls.__name__))
    for name, doc in entries.items():  # listed in the docstring, set elsewhere (e.g. in __init__)
        if name not in seen and not name.startswith("*"):
            seen.add(name)
            member.members.append(Member(name, "attribute", name, doc, cls.__name__))
    member.members.sort(key=lambda m: m.kind == "method")  # attributes first, each in source order
    return member


def _alias_member(module: ModuleType, name: str) -> Member:
    tree = _module_tree(module)
    docs = _attribute_docs(tree.body)
    for stmt in tree.body:
        if name in _targets(stmt):
            return Member(name, "alias", _assignment(stmt, name), docs.get(name, ""), module.__name__)
    raise LookupError(f"{name} is not assigned in {module.__name__}")


def _contract(name: str) -> Member:
    contracts = importlib.import_module("codec_lab.contracts")
    obj = getattr(contracts, name)
    if isinstance(obj, type):
        return _class_member(obj)
    # a type alias: find the module that assigns it
    for mod_name in sorted(m for m in sys.modules if m.startswith("codec_lab.corelib")):
        module = sys.modules[mod_name]
        if getattr(module, name, None) is obj and name in getattr(module, "__all__", ()):
            try:
                return _alias_member(module, name)
            except (LookupError, OSError, TypeError):
                continue
    raise LookupError(f"cannot find the definition of codec_lab.contracts.{name}")


def hooks() -> list[Member]:
    """Every hook specification, in source order."""
    specs = importlib.import_module("codec_lab.registry.hookspecs")
    project = specs.PROJECT
    out = []
    for node in _module_tree(specs).body:
        if isinstance(node, ast.FunctionDef) and hasattr(getattr(specs, node.name, None), f"{project}_spec"):
            out.append(Member(node.name, "hook", _unparse_args(node, False), ast.get_docstring(node) or "",
                              specs.__name__))  # fmt: skip
    return out


def testing_module() -> ModuleType:
    """The public module of contract checks (``codec_lab.testing`` when it exists)."""
    try:
        return importlib.import_module("codec_lab.testing")
    except ModuleNotFoundError:
        return importlib.import_module("codec_lab.corelib.testing")


def _functions(module: ModuleType) -> list[Member]:
    """The public names of ``module`` (its ``__all__``), each rendered from where it is defined:
    functions, classes, and constants (from their assignment)."""
    out = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            out.append(_class_member(obj))
        elif inspect.isfunction(obj):
            tree = _module_tree(sys.modules[obj.__module__])
            node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == obj.__name__)
            out.append(Member(name, "function", _unparse_args(node, False), ast.get_docstring(node) or "",
                              module.__name__))  # fmt: skip
        else:
            corelib = [sys.modules[m] for m in sorted(sys.modules) if m.startswith("codec_lab.corelib")]
            homes = [module, *(m for m in corelib if getattr(m, name, None) is obj)]
            for home in homes:
                try:
                    out.append(_alias_member(home, name))
                    break
                except (LookupError, OSError, TypeError):
                    continue
    return out


def contracts() -> list[tuple[str, list[Member]]]:
    """The documented contract classes and types, by section."""
    return [(title, [_contract(n) for n in names]) for title, names in SECTIONS]


def undocumented() -> list[str]:
    """Hooks, contract classes and their public members that have no docstring."""
    missing = [f"hook {h.name}" for h in hooks() if not h.doc.strip()]
    for _, members in contracts():
        for m in members:
            if not m.doc.strip():
                missing.append(f"{m.kind} {m.name}")
            missing += [f"{m.name}.{sub.name}" for sub in m.members if not sub.doc.strip()]
    return missing


# ---------------------------------------------------------------------------- Markdown
def markdown(doc: str) -> str:
    """A Google-style reST-flavoured docstring as Markdown: roles and double backticks become
    code spans, ``::`` blocks fenced code, ``name: text`` entries of a section bullets, and
    deeper-indented continuation lines are joined (so nothing turns into a code block)."""
    doc = _ROLE.sub(lambda m: f"``{m.group(1)}``", doc)
    doc = re.sub(r"``([^`]+?)``", r"`\1`", doc)  # a span may wrap a line
    lines = doc.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.endswith("::"):
            head = stripped[:-2].rstrip()
            if head:
                out.append(" " * min(indent, 2) + head + ":")
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```python", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        i += 1
        if indent >= 4 and stripped:
            m = _ENTRY.match(stripped)
            if m and indent == 4:
                out.append(f"- `{m.group(1)}`: {m.group(2)}".rstrip())
            elif out and out[-1].strip():
                out[-1] = f"{out[-1]} {stripped}"
            else:
                out.append(stripped)
            continue
        if _SECTION.match(line) and out and out[-1].strip():
            out.append("")  # a section starts a paragraph
        out.append(line.rstrip())
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9_ -]", "", text.lower()).replace(" ", "-")


def _render_member(m: Member, level: int) -> list[str]:
    out = [f"{'#' * level} `{m.name}`", "", f"```python\n{m.signature}\n```", ""]
    if m.doc:
        out += [markdown(m.doc), ""]
    attrs = [s for s in m.members if s.kind in ("attribute", "property")]
    methods = [s for s in m.members if s.kind == "method"]
    if attrs:
        out += ["Attributes:", ""]
        for a in attrs:
            desc = " ".join(markdown(a.doc).split("\n")) if a.doc else ""
            prop = " (read-only property)" if a.kind == "property" else ""
            out.append(f"- `{a.signature}`{prop}" + (f" — {desc}" if desc else ""))
        out.append("")
    for meth in methods:
        out += [f"{'#' * (level + 1)} `{m.name}.{meth.name}`", "", f"```python\n{meth.signature}\n```", ""]
        if meth.doc:
            out += [markdown(meth.doc), ""]
    return out


def render() -> str:
    """The whole reference, as Markdown."""
    specs = importlib.import_module("codec_lab.registry.hookspecs")
    testing = testing_module()
    sections = contracts()
    out = [
        f"<!-- Generated from the docstrings by `{COMMAND}`; do not edit by hand. -->",
        "",
        "# Plugin reference: hooks, contracts and checks",
        "",
        "Generated from the code's docstrings. The guide, with a complete example per kind, is "
        "[Writing a plugin](plugins.md).",
        "",
        "* [Hooks](#hooks) — " + ", ".join(f"[`{h.name}`](#{_anchor(h.name)})" for h in hooks()),
    ]
    for title, members in sections:
        out.append(f"* [{title}](#{_anchor(title)}) — "
                   + ", ".join(f"[`{m.name}`](#{_anchor(m.name)})" for m in members))  # fmt: skip
    out += [f"* [Contract checks](#contract-checks) (`{testing.__name__}`)", ""]
    intro = markdown(ast.get_docstring(_module_tree(specs)) or "")
    out += ["## Hooks", "", f"`{specs.__name__}`. {intro}", ""]
    for h in hooks():
        out += _render_member(h, 3)
    for title, members in sections:
        out += [f"## {title}", "", "Imported from `codec_lab.contracts`.", ""]
        for m in members:
            out += _render_member(m, 3)
    out += ["## Contract checks", "", f"`{testing.__name__}`. " + markdown(inspect.getdoc(testing) or ""), ""]
    for f in _functions(testing):
        out += _render_member(f, 3)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m codec_lab.registry.hookdoc [--write | --check] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m codec_lab.registry.hookdoc",
                                     description=(__doc__ or "").split("\n")[0])  # fmt: skip
    parser.add_argument("--write", action="store_true", help="write the reference to --out")
    parser.add_argument("--check", action="store_true", help="exit 1 when --out differs from the code")
    parser.add_argument("--out", type=Path, default=DOC_PATH,
                        help=f"the reference file (default: {DOC_PATH})")  # fmt: skip
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        if not args.out.parent.is_dir():
            print(f"no folder {args.out.parent} (a source checkout's docs/): pass --out FILE",
                  file=sys.stderr)  # fmt: skip
            return 2
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
