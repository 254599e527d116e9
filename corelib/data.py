"""Training data: random crops with flips (CAE-ADMM's BSDS500 recipe), images kept in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from codec_lab.corelib.images import list_images, load_image, sample_images

__all__ = ["CropSampler", "training_images", "validation_images"]

def training_images(folder: str | None) -> list[Path]:
    """Images of ``folder``, or the shipped training samples."""
    return list_images(folder) if folder else sample_images("train")


def validation_images(folder: str | None) -> list[Path]:
    """Images of ``folder``, or the held-out shipped samples (never trained on)."""
    return list_images(folder) if folder else sample_images("held-out")


class CropSampler:
    """Batches of random ``crop``² patches with random horizontal and vertical flips.

    Images smaller than the crop are edge-padded. One epoch of the paper is one crop
    per image; here ``batch(n)`` draws n crops from images in a shuffled cycle.

    Args:
        paths: image files (decoded once, kept as uint8).
        crop: patch size in pixels.
        seed: seeds the generator, so a run is reproducible.
    """

    def __init__(self, paths: list[Path], crop: int, seed: int = 0) -> None:
        self.images = [(load_image(p)[0][0] * 255).round().to(torch.uint8) for p in paths]
        self.crop = crop
        self.gen = torch.Generator().manual_seed(seed)
        self._order: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def _next_index(self) -> int:
        if not self._order:
            self._order = torch.randperm(len(self.images), generator=self.gen).tolist()
        return self._order.pop()

    def _patch(self, img: torch.Tensor, keep: bool = True) -> torch.Tensor | None:
        """One random crop; with ``keep=False`` only its random draws are made (another
        process of a distributed job takes it), so every process stays in the same sequence."""
        c = self.crop
        _, h, w = img.shape
        h, w = max(h, c), max(w, c)  # smaller images are edge-padded to the crop
        top = int(torch.randint(0, h - c + 1, (1,), generator=self.gen))
        left = int(torch.randint(0, w - c + 1, (1,), generator=self.gen))
        flip_x = bool(torch.rand((), generator=self.gen) < 0.5)
        flip_y = bool(torch.rand((), generator=self.gen) < 0.5)
        if not keep:
            return None
        if img.shape[1] < c or img.shape[2] < c:
            pad = (0, max(0, c - img.shape[2]), 0, max(0, c - img.shape[1]))
            img = F.pad(img[None].float(), pad, mode="replicate")[0]
        patch = img[:, top : top + c, left : left + c].float() / 255.0
        if flip_x:
            patch = patch.flip(-1)
        if flip_y:
            patch = patch.flip(-2)
        return patch

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler is in its random sequence (saved in checkpoints)."""
        return {"generator": self.gen.get_state(), "order": list(self._order)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next batches are those the saved sampler
        would have drawn."""
        self.gen.set_state(state["generator"])
        self._order = [int(i) for i in state["order"]]

    def batch(self, n: int, shard: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """A (n, 3, crop, crop) batch in [0, 1].

        ``shard=(rank, world)``: the global batch of ``n`` crops is drawn the same way in every
        process of a distributed job, and this one returns its ``n / world`` of them (crops
        ``rank, rank + world, …``). The samplers never diverge, so checkpoints stay valid for
        every rank and the data order equals a single process's with the same global batch.
        """
        rank, world = shard
        patches = [self._patch(self.images[self._next_index()], i % world == rank) for i in range(n)]
        return torch.stack([p for p in patches if p is not None])
