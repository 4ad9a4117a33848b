"""Training throughput (images per second) of the named recipes on this machine.

    python -m benchmarks.train_throughput                      # shapes and r50
    python -m benchmarks.train_throughput --configs shapes --steps 20 --threads 2

Times full optimiser steps (forward, Hungarian matching, set loss with auxiliary
terms, backward, clipping, fused AdamW) on random images of the recipe's largest
training size, with 1-3 random boxes per image. Data loading is excluded: it runs
in DataLoader workers in real training. A script, not a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

import torch

from detr_core import build_model
from detr_core.objective.criterion import SetCriterion, weighted_total
from detr_core.objective.matcher import HungarianMatcher
from train.configs import TrainConfig, named_config
from train.optim import build_optimizer, build_scheduler, clip_and_step

R50_IMAGE = (800, 1066)  # official shorter side 800 on a 4:3 COCO image


@dataclass(frozen=True)
class Throughput:
    config: str
    image_hw: tuple
    batch_size: int
    seconds_per_step: float

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds_per_step


def random_batch(batch: int, hw: tuple, num_classes: int, gen: torch.Generator):
    """Random pixels [B, 3, H, W], an all-valid mask, and 1-3 random boxes per image."""
    pixels = torch.randn(batch, 3, *hw, generator=gen)
    mask = torch.zeros(batch, *hw, dtype=torch.bool)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 4, (), generator=gen))
        boxes = torch.cat([torch.rand(n, 2, generator=gen) * 0.6 + 0.2,
                           torch.rand(n, 2, generator=gen) * 0.3 + 0.05], dim=1)  # [n, 4] cxcywh
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=gen), "boxes": boxes})
    return pixels, mask, targets


def measure(recipe: TrainConfig, hw: tuple, steps: int, warmup: int) -> Throughput:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(recipe.model, num_classes=5), recipe.preprocess).train()
    criterion = SetCriterion(5, HungarianMatcher(recipe.matching), recipe.losses)
    optimizer = build_optimizer(model, recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.optim, steps_per_epoch=1000)
    gen = torch.Generator().manual_seed(0)
    pixels, mask, targets = random_batch(recipe.batch_size, hw, 5, gen)
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        loss = weighted_total(criterion(model(pixels, mask), targets), recipe.losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_and_step(model, optimizer, scheduler, recipe.optim.clip_max_norm)
    return Throughput(recipe.name, hw, recipe.batch_size, (time.perf_counter() - started) / steps)


def largest_training_size(recipe: TrainConfig) -> tuple:
    if recipe.name == "r50":
        return R50_IMAGE
    side = max(recipe.augment.scales)
    return (side, side)  # the synthetic images are square


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["shapes", "r50"])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 10, r50: 2)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads")
    for name in args.configs:
        recipe = named_config(name)
        if args.batch_size:
            recipe = recipe.replace(batch_size=args.batch_size)
        steps = args.steps or (2 if name == "r50" else 10)
        t = measure(recipe, largest_training_size(recipe), steps, args.warmup)
        print(f"{t.config:8s} {t.image_hw[0]}x{t.image_hw[1]} batch {t.batch_size}: "
              f"{t.seconds_per_step:.2f} s/step, {t.images_per_s:.2f} images/s")


if __name__ == "__main__":
    main()
