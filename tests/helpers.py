"""Small shared helpers: tiny model settings and synthetic images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

TINY_MODEL: dict[str, Any] = {
    "encoder": {"name": "cae", "channels": 8, "blocks": 0, "latent_channels": 4},
    "quantizer": {"name": "stochastic", "bound": 7},
    "rate": {"name": "admm", "cell": 32},
    "coder": {"name": "histogram"},
    "decoder": {"name": "cae", "channels": 8, "blocks": 0},
}
"""A codec small enough for a 2-core CPU: ~1k parameters, 4 latent channels, 15 symbols."""

TINY_TRAIN: dict[str, Any] = {"steps": 3, "batch_size": 2, "crop": 48, "device": "cpu"}

TINY_SETS: list[str] = [
    "--set", "model.encoder.channels=8",
    "--set", "model.encoder.blocks=0",
    "--set", "model.encoder.latent_channels=4",
    "--set", "model.decoder.channels=8",
    "--set", "model.decoder.blocks=0",
    "--set", "model.quantizer.bound=7",
    "--set", "model.rate.cell=32",
    "--set", "train.batch_size=2",
    "--set", "train.crop=48",
    "--set", "train.device=cpu",
]  # fmt: skip
"""The same tiny model as ``--set`` flags for ``codec build``."""


def image_array(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth-ish uint8 image (gradients + a little noise), like a photo more than noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = []
    for _ in range(channels):
        fx, fy, ph = rng.uniform(0.02, 0.2, 2).tolist() + [rng.uniform(0, 6.28)]
        base.append(127 + 90 * np.sin(fx * xx + fy * yy + ph))
    arr = np.stack(base, -1) + rng.normal(0, 12, (h, w, channels))
    arr = np.clip(arr.round(), 0, 255).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def image_tensor(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, h, w) float in [0, 1] on the 8-bit grid."""
    return torch.from_numpy(image_array(h, w, seed)).permute(2, 0, 1)[None].float() / 255.0


def write_image(path: Path, h: int = 48, w: int = 40, seed: int = 0, mode: str = "RGB") -> Path:
    """Write a synthetic image file; ``mode`` RGB, RGBA, L or P."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGBA":
        arr = image_array(h, w, seed, channels=4)
        arr[..., 3] = np.where(arr[..., 3] > 127, 255, 0)
        im = Image.fromarray(arr, "RGBA")
    elif mode == "L":
        im = Image.fromarray(image_array(h, w, seed, channels=1), "L")
    elif mode == "P":
        im = Image.fromarray(image_array(h, w, seed)).convert("P")
    else:
        im = Image.fromarray(image_array(h, w, seed))
    im.save(path)
    return path


def image_folder(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    """A folder of PNG images of the given (h, w) sizes."""
    for i, (h, w) in enumerate(sizes):
        write_image(folder / f"img{i}.png", h, w, seed=seed + i)
    return folder


FAKE_QUANTIZER_MODULE = '''
"""A third-party plugin module, as a separate distribution would ship it."""
import torch

from codec_lab.corelib.contracts import Quantizer
from codec_lab import hookimpl


class FakeQuantizer(Quantizer):
    """Ternary rounding with a straight-through gradient."""

    name = "{name}"
    summary = "fake third-party ternary quantizer"
    version = "1.2.3"
    alphabet_size = 3

    def forward(self, y):
        return y.clamp(-1, 1).round().detach() + (y - y.detach())

    def to_symbols(self, y_tilde):
        return torch.round(y_tilde.detach()).clamp(-1, 1).to(torch.int64) + 1

    def from_symbols(self, symbols):
        return (symbols - 1).to(torch.float32)


@hookimpl
def codec_register_quantizers():
    return [FakeQuantizer]
'''

DUPLICATE_RATE_MODULE = '''
from codec_lab.plugins.rates.admm import ADMMRate
from codec_lab import hookimpl


class OtherADMM(ADMMRate):
    name = "admm"


@hookimpl
def codec_register_rates():
    return [OtherADMM]
'''


def write_module(folder: Path, module: str, source: str) -> Path:
    """Write ``module.py`` into ``folder``."""
    path = folder / f"{module}.py"
    path.write_text(source)
    return path


def write_dist(folder: Path, dist: str, version: str, entry_points: dict[str, str]) -> Path:
    """Write an installed distribution's ``.dist-info`` with ``codec.plugins`` entry points."""
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[codec.plugins]\n{lines}")
    return info


DECODE_SCRIPT = """
import sys
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[1]))
from codec_lab.corelib.files import decode_bytes
from codec_lab.corelib.images import save_image, to_uint8
from codec_lab.registry.runs import load_run
codec = load_run(sys.argv[2])
x = decode_bytes(codec, open(sys.argv[3], "rb").read())
np.save(sys.argv[4], x.numpy())
save_image(x, sys.argv[5])
print(torch.get_num_threads())
"""


def decode_in_fresh_process(
    run: Path, data: bytes, tmp: Path, threads: int = 2
) -> tuple[torch.Tensor, subprocess.CompletedProcess[str]]:
    """Decode ``data`` here with one torch thread and in a new Python process with ``threads``.

    Returns this process's image; the other's is in ``tmp/there.npy`` and ``tmp/there.png``.
    """
    from codec_lab.corelib.files import decode_bytes
    from codec_lab.registry.runs import load_run

    (tmp / "img.cdl").write_bytes(data)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        here = decode_bytes(load_run(run), data)
    finally:
        torch.set_num_threads(before)
    proc = subprocess.run(
        [sys.executable, "-c", DECODE_SCRIPT, str(threads), str(run), str(tmp / "img.cdl"),
         str(tmp / "there.npy"), str(tmp / "there.png")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return here, proc
