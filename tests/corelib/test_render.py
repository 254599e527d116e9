"""Renderers: every table shows exactly the columns a rate declares, whatever they are; RD plots."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import pytest
import torch
from PIL import Image
from rich.console import Console

from codec_lab import hookimpl
from codec_lab.cli.commands import evaluate as eval_cmd
from codec_lab.corelib import render
from codec_lab.corelib.codec import Codec
from codec_lab.corelib.contracts import ReportColumn
from codec_lab.corelib.errors import OutputError
from codec_lab.corelib.evaluation import evaluate
from codec_lab.corelib.rdplot import Series, plot_rd
from codec_lab.corelib.render import grid, markdown_table, terminal_table
from codec_lab.corelib.results import CodecDescription, Results
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab.registry import runs
from codec_lab.registry.components import Registry
from codec_lab.registry.compose import assemble_config, build_codec
from codec_lab.registry.manager import make_plugin_manager
from tests.contract.checks import SMALL_PARAMS
from tests.helpers import TINY_MODEL, write_image

STANDARD = ["image", "size", "bytes", "bpp", "est. bpp", "PSNR", "MS-SSIM", "SSIM", "enc s", "dec s"]


class ZerosRate(ADMMRate):
    """ADMM declaring another of its scalars, and not ``kept``."""

    name = "admm-zeros"
    report_columns = (ReportColumn("zeros", "zero share", ".3f", "fraction of zero decoder inputs"),)


class _Plugin:
    @hookimpl
    def codec_register_rates(self) -> list[type]:
        return [ZerosRate]


def _text(table) -> str:
    console = Console(file=io.StringIO(), width=250, record=True)
    console.print(table)
    return console.export_text()


def _images(tmp_path: Path) -> list[Path]:
    return [write_image(tmp_path / "a.png", 48, 40, 1), write_image(tmp_path / "b.png", 40, 56, 2)]


@pytest.fixture(scope="module")
def zeros_codec() -> Codec:
    pm = make_plugin_manager(entry_points=False, extra=())
    pm.register(_Plugin(), name="test-plugin")
    registry = Registry(pm)
    model = {**TINY_MODEL, "rate": {"name": "admm-zeros", "cell": 32}}
    torch.manual_seed(0)
    return build_codec(assemble_config(registry, config={"model": model})["model"], registry).eval()


@pytest.fixture(scope="module")
def entropy_codec() -> Codec:
    registry = Registry()
    chosen = {**registry.get("rate", "entropy").cls.default_components, "rate": "entropy"}
    sets = {"model": {kind: dict(p) for (kind, name), p in SMALL_PARAMS.items() if chosen.get(kind) == name}}
    torch.manual_seed(0)
    codec = build_codec(assemble_config(registry, rate="entropy", sets=sets)["model"], registry)
    codec.update(force=True)
    return codec.eval()


def test_a_declared_column_is_shown_by_its_label(zeros_codec: Codec, tmp_path: Path) -> None:
    res = evaluate(zeros_codec, _images(tmp_path))
    assert "kept" in res.rows[0] and "zeros" in res.rows[0]  # both are in the rate's info
    g = grid(res)
    assert g.headers == [*STANDARD[:-2], "zero share", *STANDARD[-2:]]
    assert g.legend == ["zero share: fraction of zero decoder inputs"]
    share = [format(r["zeros"], ".3f") for r in res.rows]
    assert [row[g.headers.index("zero share")] for row in g.rows] == share
    for text in (_text(terminal_table(res, "t")), markdown_table(res)):
        assert "zero share" in text and "kept" not in text, text
        assert "a.png" in text and "mean" in text
    md = markdown_table(res)
    assert md.splitlines()[0].startswith("| image | size |") and "| **mean** |" in md


def test_a_rate_declaring_nothing_shows_nothing_rate_specific(entropy_codec: Codec, tmp_path: Path) -> None:
    res = evaluate(entropy_codec, _images(tmp_path))
    assert res.codec.columns == ()
    g = grid(res)
    assert g.headers == STANDARD and g.legend == []
    assert "kept" not in _text(terminal_table(res)) and "kept" not in markdown_table(res)


def test_several_streams_get_a_column_each() -> None:
    desc = CodecDescription("two", streams=("map", "y"))
    res = Results([{"image": "a", "bpp": 1.0, "bpp_map": 0.1, "bpp_y": 0.8}], codec=desc)
    assert grid(res).headers == ["image", "bpp", "map bpp", "y bpp"]
    assert grid(Results([{"image": "a", "bpp": 1.0, "bpp_y": 0.9}], codec=CodecDescription(streams=("y",)))
                ).headers == ["image", "bpp"]  # one stream: its bits are the file's  # fmt: skip


def test_codecs_side_by_side_show_the_union_of_declared_columns() -> None:
    a = Results([{"image": "x", "bpp": 0.5, "psnr": 30.0, "kept": 0.2, "zeros": 0.1}],
                codec=CodecDescription("a", columns=(ReportColumn("kept", "kept", ".2f"),)))  # fmt: skip
    b = Results([{"image": "x", "bpp": 0.4, "psnr": 29.0, "quality": 40}],
                codec=CodecDescription("b", columns=(ReportColumn("quality", "q", ".0f"),)))  # fmt: skip
    g = grid([a, b])
    assert g.headers == ["codec", "bpp", "PSNR", "kept", "q"]
    assert g.rows == [["a", "0.5000", "30.00", "0.20", ""], ["b", "0.4000", "29.00", "", "40"]]
    assert "only b" in markdown_table([a, b], labels=["a", "only b"])


def test_no_table_code_names_a_rate_scalar() -> None:
    for source in (inspect.getsource(render), inspect.getsource(eval_cmd), inspect.getsource(runs._report)):
        assert '"kept"' not in source and "'kept'" not in source


def test_rd_plot_writes_a_png(tmp_path: Path) -> None:
    def point(name: str, bpp: float, psnr: float) -> Results:
        return Results(codec=CodecDescription(name), means={"bpp": bpp, "psnr": psnr, "ms-ssim": 0.9})

    curve = Series("JPEG", [point("jpeg", b, 25 + 10 * b) for b in (0.2, 0.5, 0.9)])
    ours = Series("admm (ours)", [point("run-a", 0.3, 28.0), point("run-b", 0.6, 30.0)], annotate=True)
    png = plot_rd([curve, ours], tmp_path / "rd.png", title="test", max_bpp=1.0)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 100
    with pytest.raises(OutputError, match="already exists"):
        plot_rd([curve], png)
