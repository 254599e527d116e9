"""``codec build / compress / decompress / eval / plugins`` on tiny images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from codec_lab.corelib.files import decode_bytes
from codec_lab.corelib.images import sample_images, to_uint8
from codec_lab.registry.runs import load_run
from tests.cli.conftest import invoke
from tests.helpers import FAKE_QUANTIZER_MODULE, TINY_SETS, write_dist, write_module

RUN_FILES = ("config.yaml", "weights.safetensors", "train_log.csv", "metrics.json", "report.md",
             "checkpoint.pt")  # fmt: skip


def test_build_writes_a_complete_run_folder(cli_run: Path) -> None:
    for name in RUN_FILES:
        assert (cli_run / name).is_file(), name
    cfg = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert cfg["train"]["steps"] == 5 and cfg["model"]["encoder"]["channels"] == 8
    assert json.loads((cli_run / "run.json").read_text())["steps"] == 5
    doc = json.loads((cli_run / "metrics.json").read_text())
    assert {"name", "description", "results"} <= set(doc)
    for key in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"):
        assert isinstance(doc["results"][key][0], float), key
    stdout = (cli_run.parent / "build-stdout.txt").read_text()
    assert f"Run folder: {cli_run}" in stdout and "codec compress" in stdout and "codec eval" in stdout
    stderr = (cli_run.parent / "build-stderr.txt").read_text()
    assert "Training cae + admm + histogram" in stderr and "epoch 1/1" in stderr


def test_compress_reports_the_real_bpp(cli_run: Path, image_file, tmp_path: Path) -> None:
    img = image_file("photo.png", 50, 37)
    out = tmp_path / "photo.cdl"
    result = invoke("compress", img, "--model", cli_run, "-o", out)
    assert result.exit_code == 0, result.stderr
    m = re.search(r"→ (.+): ([\d,]+) bytes, ([\d.]+) bpp \((\d+)x(\d+)\)", result.stdout)
    assert m, result.stdout
    size = out.stat().st_size
    assert int(m.group(2).replace(",", "")) == size
    assert (int(m.group(4)), int(m.group(5))) == (37, 50)
    assert float(m.group(3)) == pytest.approx(size * 8 / (50 * 37), abs=5e-5)
    assert result.stderr == ""


def test_compress_then_decompress(cli_run: Path, image_file, tmp_path: Path) -> None:
    img = image_file("photo.png", 50, 37, seed=4)
    cdl, png = tmp_path / "p.cdl", tmp_path / "p-decoded.png"
    assert invoke("compress", img, "-m", cli_run, "-o", cdl).exit_code == 0
    result = invoke("decompress", cdl, "-m", cli_run, "-o", png)
    assert result.exit_code == 0, result.stderr
    assert "(37x50," in result.stdout
    decoded = np.asarray(Image.open(png))
    assert decoded.shape == (50, 37, 3) and decoded.dtype == np.uint8
    codec = load_run(cli_run)
    assert np.array_equal(decoded, to_uint8(decode_bytes(codec, cdl.read_bytes())))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-decoded.png", "p.cdl", "photo.png"]


def test_default_output_names(cli_run: Path, image_file, tmp_path: Path, monkeypatch) -> None:
    img = image_file("snap.png", 40, 48)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke("compress", img, "--model", cli_run)
    assert result.exit_code == 0, result.stderr
    assert (work / "snap.png.cdl").is_file()  # the image's file name + .cdl, as the help says
    assert "snap.png.cdl" in result.stdout
    result = invoke("decompress", "snap.png.cdl", "--model", cli_run)
    assert result.exit_code == 0, result.stderr
    assert Image.open(work / "snap.decoded.png").size == (48, 40)
    assert "snap.decoded.png" in result.stdout


@pytest.mark.parametrize(("mode", "word"), [("RGBA", "RGBA"), ("L", "converted L to RGB")])
def test_rgba_and_grayscale_convert_with_a_notice(cli_run: Path, image_file, tmp_path: Path,
                                                  mode: str, word: str) -> None:  # fmt: skip
    img = image_file(f"in-{mode}.png", 40, 40, mode=mode)
    result = invoke("compress", img, "-m", cli_run, "-o", tmp_path / "c.cdl")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("Notice: ") and word in result.stderr
    assert invoke("decompress", tmp_path / "c.cdl", "-m", cli_run, "-o", tmp_path / "c.png").exit_code == 0
    im = Image.open(tmp_path / "c.png")
    assert im.mode == "RGB" and im.size == (40, 40)


def test_eval_with_json(cli_run: Path, data_dirs, tmp_path: Path) -> None:
    js, keep = tmp_path / "res.json", tmp_path / "keep"
    result = invoke("eval", "--model", cli_run, "--data", data_dirs["val"], "--json", js, "--keep", keep,
                    env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "img0.png" in result.stdout and "mean" in result.stdout and "PSNR" in result.stdout
    doc = json.loads(js.read_text())
    assert doc["name"] == "cae+admm+histogram"
    assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"} <= set(doc["results"])
    rows = doc["per_image"]
    assert [r["image"] for r in rows] == ["img0.png", "img1.png"]
    for r in rows:
        assert r["bytes"] == (keep / f"{r['image']}.cdl").stat().st_size
        assert (keep / f"{r['image']}.decoded.png").is_file()
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (r["height"] * r["width"]))


def test_plugins_table() -> None:
    result = invoke("plugins")
    assert result.exit_code == 0
    for word in ("encoder", "quantizer", "rate", "coder", "decoder", "admm", "histogram", "built-in"):
        assert word in result.stdout


def test_plugins_json() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {(r["kind"], r["name"]) for r in rows} >= {("rate", "admm"), ("coder", "histogram"),
                                                      ("encoder", "cae"), ("decoder", "cae"),
                                                      ("quantizer", "stochastic")}  # fmt: skip
    assert set(rows[0]) == {"kind", "name", "version", "summary", "source", "module"}


def test_plugins_lists_an_installed_distribution(fake_site: Path, monkeypatch) -> None:
    write_module(fake_site, "fake_cli_plugin", FAKE_QUANTIZER_MODULE.replace("{name}", "cli-ternary"))
    write_dist(fake_site, "fake-cli-plugin", "0.4.2", {"cli": "fake_cli_plugin"})
    monkeypatch.delitem(__import__("sys").modules, "fake_cli_plugin", raising=False)
    rows = json.loads(invoke("plugins", "--json").stdout)
    row = next(r for r in rows if r["name"] == "cli-ternary")
    assert row["source"] == "fake-cli-plugin==0.4.2" and row["kind"] == "quantizer"


def test_build_dry_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("build", "--dry-run", *TINY_SETS)
    assert result.exit_code == 0, result.stderr
    assert "composed codec:" in result.stdout and "stream 'y': 4 channels, alphabet 15" in result.stdout
    cfg = yaml.safe_load(result.stdout.split("\ncomposed codec:")[0])["config"]
    assert cfg["model"]["encoder"]["channels"] == 8
    assert list(tmp_path.iterdir()) == [], "a dry run writes nothing"


def test_build_dry_run_json() -> None:
    result = invoke("build", "--dry-run", "--json", "--rate", "admm", "--set", "model.rate.keep=0.2",
                    *TINY_SETS)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["config"]["model"]["rate"]["keep"] == 0.2
    assert doc["codec"]["latent_shape"] == [4, 6, 6]  # crop 48 / 8
    assert doc["codec"]["streams"] == [{"name": "y", "channels": 4, "alphabet": 15}]


def test_build_from_a_config_file(tmp_path: Path, data_dirs) -> None:
    cfg = {"model": {"encoder": {"name": "cae", "channels": 8, "blocks": 0, "latent_channels": 4},
                     "decoder": {"name": "cae", "channels": 8, "blocks": 0},
                     "rate": {"name": "admm", "cell": 32, "keep": 0.2}},
           "train": {"batch_size": 2, "crop": 48, "device": "cpu", "steps": 2, "loss": "mse"},
           "data": {"train": str(data_dirs["train"]), "val": str(data_dirs["val"])}}  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    result = invoke("build", "--config", tmp_path / "c.yaml", "--out", out)
    assert result.exit_code == 0, result.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["loss"] == "mse" and saved["model"]["rate"]["keep"] == 0.2
    assert load_run(out).rate.extra_state_info()["template_kept"] == pytest.approx(0.2, abs=0.02)


def test_compress_a_shipped_sample(cli_run: Path, tmp_path: Path) -> None:
    sample = sample_images()[0]
    assert invoke("compress", sample, "-m", cli_run, "-o", tmp_path / "s.cdl").exit_code == 0
    assert invoke("decompress", tmp_path / "s.cdl", "-m", cli_run, "-o", tmp_path / "s.png").exit_code == 0
    assert Image.open(tmp_path / "s.png").size == (256, 256)

