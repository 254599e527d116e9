"""Shared by the ``tcae`` tests: tiny context networks and coders with random non-zero output
weights (a fresh network predicts the uniform distribution exactly, which would hide most bugs),
coding-order keys and mask cases."""

from __future__ import annotations

import torch

from codec_lab.corelib.streams import StreamSpec
from codec_lab.corelib.testing import setup_coder
from codec_lab.plugins.coders.common.trimmed import ContextNetwork
from codec_lab.plugins.coders.tcae import InclinedTcaeCoder, TcaeCoder

CODERS = {"raster": TcaeCoder, "inclined": InclinedTcaeCoder}
SMALL = {"width": 2, "map_width": 4, "kernel": 3, "out_kernel": 3, "res_blocks": 1}
GRIDS = [(3, 4, 5), (1, 5, 3), (4, 2, 6)]
EDGE_GRIDS = [(1, 1, 1), (2, 1, 4), (3, 3, 1)]  # a single symbol, a single row, a single column
# The raster coder decodes one symbol per step: keep its grids near 50 symbols.
CODE_SHAPES = {"raster": [(2, 5, 5), (1, 4, 7)], "inclined": [(3, 5, 6), (1, 7, 4)]}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomize_output(net: ContextNetwork, gen: torch.Generator) -> None:
    """Random non-zero output weights (a fresh output layer is all zeros: uniform logits)."""
    with torch.no_grad():
        net.out.weight.copy_(torch.randn(net.out.weight.shape, generator=gen))
        net.out.bias.copy_(torch.randn(net.out.bias.shape, generator=gen) * 0.5)


def small_net(order: str, blocks: int, alphabet: int = 5, kernel: int = 5, out_kernel: int = 3,
         res_blocks: int = 1, condition: int = 0, seed: int = 0) -> ContextNetwork:  # fmt: skip
    torch.manual_seed(seed)
    sizes = {"width": 2, "kernel": kernel, "out_kernel": out_kernel, "res_blocks": res_blocks}
    net = ContextNetwork(blocks, alphabet, **sizes, order=order, condition_channels=condition)  # type: ignore[arg-type]
    randomize_output(net, generator(seed + 1))
    return net.eval()


def coding_rank(order: str, c: int, h: int, w: int) -> torch.Tensor:
    """(C, H, W) coding-order key: the plane c + h + w, or the raster index."""
    t = torch.arange(c).view(-1, 1, 1)
    hh = torch.arange(h).view(1, -1, 1)
    ww = torch.arange(w).view(1, 1, -1)
    key = t + hh + ww if order == "inclined" else t * h * w + hh * w + ww
    return key.expand(c, h, w)


def small_coder(order: str, specs: list[StreamSpec], seed: int = 0, fit: bool = True) -> TcaeCoder:
    torch.manual_seed(seed)
    coder = CODERS[order](**SMALL)
    setup_coder(coder, specs)
    if fit:
        gen = generator(seed + 100)
        for net in coder.nets.values():
            randomize_output(net, gen)
        coder.fit_end()
    return coder.eval()


def mask_cases(shape: tuple[int, int, int], gen: torch.Generator) -> dict[str, torch.Tensor | None]:
    c = shape[0]
    channels = torch.zeros(c, 1, 1, dtype=torch.bool)
    channels[: max(1, c // 2 + c % 2)] = True
    return {
        "none": None,
        "random": torch.rand(shape, generator=gen) < 0.6,
        "all-false": torch.zeros(shape, dtype=torch.bool),
        "channels": channels,
    }


def check_decoded(dec: torch.Tensor, sym: torch.Tensor, mask: torch.Tensor | None) -> None:
    full = torch.ones_like(sym, dtype=torch.bool) if mask is None else mask.expand_as(sym)
    assert dec.dtype == torch.int64 and dec.shape == sym.shape
    assert torch.equal(dec[full], sym[full]), "not bit-exact"
    assert not dec[~full].any(), "masked positions must decode to 0"
