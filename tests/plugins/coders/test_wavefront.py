"""The trimmed masks are causal, and the step-by-step wavefront computes the full pass's
logits, at any thread count (``tcae`` and ``inclined-tcae`` share it)."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from codec_lab.plugins.coders.common import wavefront_pool
from codec_lab.plugins.coders.common.trimmed import ORDERS, ContextNetwork, trimmed_mask
from codec_lab.plugins.coders.common.wavefront import Step, Wavefront, schedule, step_count
from tests.plugins.coders.tcae_helpers import (
    EDGE_GRIDS,
    GRIDS,
    coding_rank,
    generator,
    randomize_output,
    small_net,
)


# ---------------------------------------------------------------------------- masks
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("kernel", [3, 5])
def test_every_logit_depends_only_on_earlier_symbols(
    order: str, grid: tuple[int, int, int], kernel: int
) -> None:
    c, h, w = grid
    net = small_net(order, c, kernel=kernel, out_kernel=3 if kernel == 5 else 5, condition=1)
    n = c * h * w
    base = torch.rand(1, c, h, w, generator=generator(1))
    cond = torch.rand(1, 1, h, w, generator=generator(2)).expand(n, 1, h, w)
    x = base.repeat(n, 1, 1, 1)
    x.view(n, n)[torch.arange(n), torch.arange(n)] += 0.5  # image j perturbs (raster) position j
    with torch.no_grad():
        ref = net(base, cond[:1])
        out = net(x, cond)
    assert ref.abs().amax() > 0.1, "the logits must not be constant"
    diff = (out - ref).abs().amax(dim=2).view(n, n)  # [j, position]: largest logit change
    rank = coding_rank(order, c, h, w).reshape(n)
    changed_later = 0
    for j in range(n):
        earlier = rank <= rank[j]  # j itself and (inclined) its whole plane included
        assert float(diff[j][earlier].max()) <= 1e-5, (
            f"{order}: the input at {np.unravel_index(j, (c, h, w))} changes the logits of a position "
            f"at or before it in coding order"
        )
        if bool((~earlier).any()) and float(diff[j][~earlier].max()) > 1e-3:
            changed_later += 1
    assert changed_later > 0, "no input changes any later logit: the test would pass trivially"


@pytest.mark.parametrize("order", ORDERS)
def test_trimmed_mask_first_layer_strict_hidden_inclusive(order: str) -> None:
    blocks, g, k, r = 3, 2, 5, 2
    first = trimmed_mask(order, blocks, 1, g, k, strict=True)  # type: ignore[arg-type]
    hidden = trimmed_mask(order, blocks, g, g, k, strict=False)  # type: ignore[arg-type]
    assert first.shape == (blocks * g, blocks, k, k)
    assert hidden.shape == (blocks * g, blocks * g, k, k)
    for m in (first, hidden):
        assert set(m.unique().tolist()) <= {0.0, 1.0}
    for o in range(blocks * g):
        t = o // g
        assert first[o, t, r, r] == 0, "the first layer must not see the symbol itself"
        assert torch.all(hidden[o, t * g : (t + 1) * g, r, r] == 1), "hidden layers read their own position"
        # a later block is never read at its own position, an earlier one always is
        for m, gi in ((first, 1), (hidden, g)):
            if t + 1 < blocks:
                assert torch.all(m[o, (t + 1) * gi :, r, r] == 0)
            if t > 0:
                assert torch.all(m[o, : t * gi, r, r] == 1)
        # the next position in the same block (one column right) is never read
        assert first[o, t, r, r + 1] == 0 and torch.all(hidden[o, t * g : (t + 1) * g, r, r + 1] == 0)
        # the previous one (one column left) always is
        assert first[o, t, r, r - 1] == 1
    if order == "inclined":  # (dh, dw) = (+1, -1) lies on the symbol's own plane
        assert first[0, 0, r + 1, r - 1] == 0 and hidden[0, 0, r + 1, r - 1] == 1
    else:  # the whole row above is earlier in raster order, the row below later
        assert torch.all(first[0, 0, r - 1] == 1) and torch.all(first[0, 0, r + 1] == 0)
    with pytest.raises(ValueError, match="coding order"):
        trimmed_mask("zigzag", 2, 1, 1, 3, True)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- wavefront
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", GRIDS + EDGE_GRIDS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("net_size", [(5, 3, 1), (3, 5, 0), (3, 3, 2)], ids=["k5o3r1", "k3o5r0", "k3o3r2"])
def test_wavefront_equals_the_full_pass(order: str, grid: tuple[int, int, int],
                                        net_size: tuple[int, int, int]) -> None:  # fmt: skip
    c, h, w = grid
    kernel, out_kernel, res = net_size
    k = 5
    net = small_net(
        order, c, alphabet=k, kernel=kernel, out_kernel=out_kernel, res_blocks=res, condition=2, seed=3
    )
    x = torch.rand(1, c, h, w, generator=generator(4))
    x[torch.rand(x.shape, generator=generator(5)) < 0.3] = 0  # "masked" inputs, as the coder writes them
    cond = torch.rand(1, 2, h, w, generator=generator(6))
    with torch.no_grad():
        full = net(x, cond)[0]  # (C, K, H, W)
        wave = Wavefront(net, h, w, cond)
        got = torch.full_like(full, float("nan"))
        visits = torch.zeros(c, h, w, dtype=torch.int64)
        steps = 0
        for step in schedule(order, c, h, w):  # type: ignore[arg-type]
            logits, valid, t, hh, ww = _step(wave, step)
            assert logits.shape == (*valid.shape, k) and t.numel() == int(valid.sum()) > 0
            if order == "inclined":
                assert torch.all(t + hh + ww == steps), "a step is not one plane"
            visits[t, hh, ww] += 1
            got[t, :, hh, ww] = logits[valid]
            values = torch.zeros(valid.shape)
            values[valid] = x[0, t, hh, ww]  # the inputs become known only after their logits
            wave.write_values(step, values.numpy())
            steps += 1
    assert steps == step_count(order, c, h, w)  # type: ignore[arg-type]
    assert steps == (c + h + w - 2 if order == "inclined" else c * h * w)
    assert torch.all(visits == 1), "every position must be visited exactly once"
    assert torch.allclose(got, full, atol=1e-5), float((got - full).abs().max())


def _step(wave: Wavefront, step: Step) -> tuple[torch.Tensor, ...]:
    """A step's logits (T_a, rows, K), validity (T_a, rows) and valid cells' t, h, w, as tensors."""
    valid, t, h, w = wave.cells(step)
    return tuple(torch.from_numpy(a) for a in (wave.step_logits(step), valid, t, h, w))


def _wavefront_logits(
    net: ContextNetwork, order: str, x: torch.Tensor, cond: torch.Tensor | None, threads: int = 1
) -> torch.Tensor:
    """(C, K, H, W) logits of ``net`` computed step by step, inputs written as they become known."""
    c, h, w = x.shape[1:]
    got = torch.full((c, net.alphabet, h, w), float("nan"))
    with torch.no_grad():
        wave = Wavefront(net, h, w, cond, threads)
        for step in schedule(order, c, h, w):  # type: ignore[arg-type]
            logits, valid, t, hh, ww = _step(wave, step)
            got[t, :, hh, ww] = logits[valid]
            values = torch.zeros(valid.shape)
            values[valid] = x[0, t, hh, ww]
            wave.write_values(step, values.numpy())
    return got


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("grid", [(2, 13, 15), (1, 21, 20), (1, 41, 40)], ids=lambda g: "x".join(map(str, g)))
def test_wavefront_on_large_grids_and_wide_layers(order: str, grid: tuple[int, int, int]) -> None:
    """Up to 40 rows per block and step: every call of the kernel (32 rows, then 16, 4 or 1 for
    the rest; 17 rows left at the image's bottom: a 32-row call reaching 15 rows past them, as
    far as its spare rows allow) and layers wider than its 8 outputs per call (12 per block,
    19 logits: several chunks, the last padded)."""
    c, h, w = grid
    torch.manual_seed(12)
    net = ContextNetwork(c, 19, width=12, kernel=5, out_kernel=3, res_blocks=1, order=order,  # type: ignore[arg-type]
                         condition_channels=1).eval()  # fmt: skip
    randomize_output(net, generator(13))
    x = torch.rand(1, c, h, w, generator=generator(14))
    cond = torch.rand(1, 1, h, w, generator=generator(15))
    with torch.no_grad():
        full = net(x, cond)[0]
    got = _wavefront_logits(net, order, x, cond)
    assert torch.allclose(got, full, atol=1e-4), float((got - full).abs().max())


def test_threads_compute_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared among threads (numba's pool, blocks dealt round-robin, several chunks per layer,
    up to 20 rows per block), every logit is bit-identical to the one-thread kernel's; the pool
    really ran, and a second caller while it runs (another Python thread) gets the one-thread
    kernel, with the same bits."""
    c, h, w = 6, 20, 17
    torch.manual_seed(19)
    net = ContextNetwork(c, 19, width=12, kernel=5, out_kernel=3, res_blocks=1, order="inclined",
                         condition_channels=1).eval()  # fmt: skip
    randomize_output(net, generator(20))
    x = torch.rand(1, c, h, w, generator=generator(21))
    cond = torch.rand(1, 1, h, w, generator=generator(22))
    one = _wavefront_logits(net, "inclined", x, cond, threads=1)
    pooled = wavefront_pool.step_kernel_threads
    calls: list[int] = []

    def counted(*args):  # type: ignore[no-untyped-def]
        calls.append(args[-1])
        return pooled(*args)

    monkeypatch.setattr(wavefront_pool, "step_kernel_threads", counted)
    torch_threads = torch.get_num_threads()
    for threads in (2, 3, 7):
        calls.clear()
        got = _wavefront_logits(net, "inclined", x, cond, threads=threads)
        assert torch.equal(got.view(torch.int32), one.view(torch.int32)), threads
        assert calls and max(calls) == min(threads, c), "the pool was not used"
        # numba's OpenMP pool sets the process's OpenMP thread count: torch's must be restored
        assert torch.get_num_threads() == torch_threads
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: _wavefront_logits(net, "inclined", x, cond, threads=2), range(2)))
    for got in both:
        assert torch.equal(got.view(torch.int32), one.view(torch.int32))


FORK_SCRIPT = r"""
import os
import torch
from codec_lab.plugins.coders.common.trimmed import ContextNetwork
from codec_lab.plugins.coders.common.wavefront import Wavefront, schedule

torch.manual_seed(0)
net = ContextNetwork(6, 5, width=4, kernel=5, out_kernel=3, res_blocks=1, order="inclined").eval()
with torch.no_grad():
    net.out.weight.normal_()

def logits():
    torch.manual_seed(1)
    wave, out = Wavefront(net, 9, 8, None, threads=2), []
    for step in schedule("inclined", 6, 9, 8):
        out.append(torch.from_numpy(wave.step_logits(step)))
        valid = torch.from_numpy(wave.cells(step)[0])
        wave.write_values(step, (torch.rand(valid.shape) * valid).numpy())
    return out

before = logits()  # the thread pool now runs in this process
pid = os.fork()
if pid == 0:
    torch.set_num_threads(1)  # as DataLoader workers do: torch's own pool does not survive a fork
    same = all(torch.equal(a, b) for a, b in zip(before, logits()))
    os._exit(0 if same else 3)
print(os.waitpid(pid, 0)[1])
"""


def test_a_forked_child_computes_on_one_thread() -> None:
    """Numba terminates a child forked after its (GNU OpenMP) pool started if the child uses
    the pool again; the wavefront falls back to one thread there, with the same results."""
    env = {**os.environ, "CODEC_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=240,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "0", proc.stdout + proc.stderr[-3000:]


def test_wavefront_follows_weight_changes() -> None:
    """The kernel's weight tables are kept with the network while its parameters stay the
    same; an in-place change (an optimizer step, ``load_state_dict``) is seen."""
    net = small_net("inclined", 3, condition=1, seed=16)
    x = torch.rand(1, 3, 5, 4, generator=generator(17))
    cond = torch.rand(1, 1, 5, 4, generator=generator(18))
    first = _wavefront_logits(net, "inclined", x, cond)
    assert torch.equal(_wavefront_logits(net, "inclined", x, cond), first)
    with torch.no_grad():
        net.second.weight.mul_(2)
        net.out.bias.add_(1)
        full = net(x, cond)[0]
    again = _wavefront_logits(net, "inclined", x, cond)
    assert not torch.allclose(again, first)
    assert torch.allclose(again, full, atol=1e-5)
