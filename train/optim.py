"""AdamW with a separate backbone learning rate, and the step-decay schedule with warm-up."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .configs import OptimConfig

BACKBONE_PREFIX = "backbone."


def param_groups(model: nn.Module, cfg: OptimConfig, extra: list | None = None) -> list[dict]:
    """Two AdamW groups: everything else (plus ``extra`` training-only parameters) at
    ``lr``, the ResNet at ``lr_backbone``.

    A zero backbone rate freezes the backbone (its parameters stop requiring grad),
    as in the official recipe.
    """
    backbone, rest = [], []
    for name, param in model.named_parameters():
        if name.startswith(BACKBONE_PREFIX) and cfg.lr_backbone == 0:
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        (backbone if name.startswith(BACKBONE_PREFIX) else rest).append(param)
    groups = [{"params": rest + list(extra or []), "lr": cfg.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr_backbone})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig, extra: list | None = None) -> torch.optim.AdamW:
    # fused: one kernel for all parameters, several times faster on CPU than the per-tensor loop
    return torch.optim.AdamW(param_groups(model, cfg, extra), lr=cfg.lr, weight_decay=cfg.weight_decay,
                             fused=True)


@dataclass
class StepWithWarmup:
    """Learning-rate factor at optimiser step ``s``: linear warm-up, then x gamma per drop.

    A callable object rather than a lambda, so LambdaLR's state_dict stores its
    fields and a resumed run rebuilds the same schedule.
    """

    warmup_steps: int
    drop_every_steps: int
    gamma: float

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warm * self.gamma ** (step // self.drop_every_steps)


def build_scheduler(optimizer, cfg: OptimConfig, steps_per_epoch: int):
    """LambdaLR stepped once per optimiser step; drops every ``lr_drop_epochs`` epochs."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch}: the training set gives no batch")
    schedule = StepWithWarmup(cfg.warmup_steps, cfg.lr_drop_epochs * steps_per_epoch, cfg.lr_gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def clip_and_step(model: nn.Module, optimizer, scheduler, max_norm: float,
                  scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """Clip the gradient norm (if max_norm > 0), step optimiser and schedule; returns the norm.

    The norm stays a (device) tensor: reading it back would synchronise every step. With a
    float16 ``scaler`` the gradients are unscaled before clipping, and a step whose gradients
    overflowed is skipped (the scaler lowers its scale instead)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return norm
