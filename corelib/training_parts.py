"""Pieces of the training engine (:mod:`.training`): where the loop stands (saved in every
checkpoint), the training forward DDP wraps, gradient averaging across processes, and
CompressAI's split of the parameters between two optimizers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from codec_lab.corelib.codec import Codec
from codec_lab.corelib.distributed import all_reduce_sum

__all__ = ["Loop", "TrainForward", "average_grads", "net_aux_split"]


@dataclass
class Loop:
    """Where the training loop stands; saved in every checkpoint (plain values only)."""

    epoch: int = 0
    """The epoch in progress (from 0); equals the epoch count once training is done."""
    in_epoch: int = 0
    """Steps taken in the epoch in progress."""
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    """Running sums of the logged values over the epoch in progress."""
    lr_scale: float = 1.0
    """The rate plugin's learning-rate scale already applied to the optimizer."""
    planned: bool = False
    """Whether the time limit has shortened the plan (done once, after the first epoch)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    """Seconds spent so far, over every process that worked on the run."""
    train_seconds: float = 0.0
    fit_seconds: float = 0.0
    fit_images: int = 0
    fit_steps: int = 0
    started: float = 0.0
    """``time.perf_counter()`` at the (virtual) start: now minus the seconds spent before."""

    def elapsed_now(self) -> float:
        return time.perf_counter() - self.started


class TrainForward(torch.nn.Module):
    """The training forward with the whole loss inside it.

    DDP synchronises the gradients of the parameters its forward's output depends on, so the
    loss, not the codec's outputs, is what it must return: during a warm-up without the rate
    loss the entropy model's parameters then count as unused (their gradients stay None, as
    in one process). The codec's outputs are kept in ``last`` for logging and the rate hooks.
    """

    def __init__(self, codec: Codec, loss_fn: Any) -> None:
        super().__init__()
        self.codec = codec
        self.loss_fn = loss_fn
        self.last: dict[str, Any] = {}
        self.last_dist: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, with_rate: bool) -> torch.Tensor:
        out = self.codec(x)
        dist = self.loss_fn(x, out["x_hat"])
        loss = dist + (out["rate_loss"] if with_rate else 0.0)
        coder_loss = self.codec.coder.loss(out["rate"].streams)
        if coder_loss is not None:
            loss = loss + coder_loss
        self.last, self.last_dist = out, dist
        return loss


def average_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Average the existing gradients over the processes (one collective); None stays None
    (whether a parameter has a gradient is the same in every process)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = all_reduce_sum(flat) / world
    for g in grads:
        n = g.numel()
        g.copy_(flat[:n].view_as(g))
        flat = flat[n:]


def net_aux_split(codec: Codec) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """CompressAI's split: parameters named ``*.quantiles`` get their own optimizer."""
    net, aux = [], []
    for name, p in codec.named_parameters():
        if p.requires_grad:
            (aux if name.endswith(".quantiles") else net).append(p)
    return net, aux
