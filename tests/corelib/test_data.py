"""Training data: random crops, flips, padding of small images, reproducibility."""

from __future__ import annotations

from pathlib import Path

import torch

from codec_lab.corelib.data import CropSampler, training_images, validation_images
from codec_lab.corelib.images import sample_images
from tests.helpers import write_image


def test_batches_have_the_crop_size(data_dirs) -> None:
    s = CropSampler(sorted(data_dirs["train"].iterdir()), 32, seed=0)
    assert len(s) == 3
    b = s.batch(5)
    assert b.shape == (5, 3, 32, 32) and b.dtype == torch.float32
    assert 0 <= float(b.min()) and float(b.max()) <= 1


def test_small_images_are_edge_padded(tmp_path: Path) -> None:
    p = write_image(tmp_path / "small.png", 20, 30)
    b = CropSampler([p], 48, seed=0).batch(2)
    assert b.shape == (2, 3, 48, 48)


def test_same_seed_same_crops(data_dirs) -> None:
    paths = sorted(data_dirs["train"].iterdir())
    assert torch.equal(CropSampler(paths, 32, seed=3).batch(4), CropSampler(paths, 32, seed=3).batch(4))
    assert not torch.equal(CropSampler(paths, 32, seed=3).batch(4), CropSampler(paths, 32, seed=4).batch(4))


def test_every_image_is_used_once_per_cycle(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", 16, 16, seed=i) for i in range(3)]
    s = CropSampler(paths, 16, seed=0)
    means = {round(float(s.batch(1).mean()), 5) for _ in range(3)}
    assert len(means) == 3  # three different images (flips keep the mean)


def test_default_images_are_the_samples_split() -> None:
    samples = sample_images()
    train, held_out = training_images(None), validation_images(None)
    assert len(train) == 6 and len(held_out) == 2
    assert sorted(train + held_out) == sorted(samples)
    assert not {p.name for p in train} & {p.name for p in held_out}  # never evaluated on training images
    assert {p.parent for p in held_out} == {held_out[0].parent} != {p.parent for p in train}


def test_folders(data_dirs) -> None:
    assert [p.name for p in training_images(str(data_dirs["train"]))] == ["img0.png", "img1.png", "img2.png"]
    assert len(validation_images(str(data_dirs["val"]))) == 2
