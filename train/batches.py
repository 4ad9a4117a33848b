"""Which images each process trains on, in which order, and from where to restart.

The order of an epoch depends only on (seed, epoch, world size), like
``DistributedSampler.set_epoch``; batches are cut from it explicitly so that a run
resumed in the middle of an epoch skips exactly the batches already trained on.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler

from .dataset import CocoDetection, collate
from .distributed import DistInfo


def epoch_batches(dataset: CocoDetection, batch_size: int, info: DistInfo, seed: int,
                  epoch: int) -> list[list[int]]:
    """This process's batches of dataset indices for ``epoch`` (incomplete last batch dropped)."""
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    full = len(indices) // batch_size
    return [indices[k * batch_size:(k + 1) * batch_size] for k in range(full)]


def steps_per_epoch(dataset: CocoDetection, batch_size: int, info: DistInfo) -> int:
    """Optimiser steps in one epoch; a ValueError if the data cannot fill one batch."""
    per_process = -(-len(dataset) // info.world_size)  # DistributedSampler pads up to this
    steps = per_process // batch_size
    if steps < 1:
        raise ValueError(
            f"{dataset.source.annotations}: {len(dataset)} images give {per_process} per process, "
            f"fewer than --batch-size {batch_size}; lower the batch size or add images"
        )
    return steps


def train_loader(dataset: CocoDetection, batches: list[list[int]], num_workers: int) -> DataLoader:
    """A loader over precomputed batches; its own generator keeps torch's global RNG untouched
    (creating an iterator would otherwise draw from it and shift dropout after a resume)."""
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))
