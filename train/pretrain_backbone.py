"""Pre-train the shapes model's backbone on the generator itself, before DETR training.

    python -m train.pretrain_backbone --out runs/shapes-backbone.pth [--minutes 20] [--seed 1000]

Why: there are no ImageNet weights offline, and DETR with a backbone from scratch barely moves in CPU-hours
(shared/notes/training-probe.md). A dense task converges in minutes, because every feature cell gets a target:
the class of the shape under the cell's centre (or background), and that shape's box. The result is a normal
DETR Lens checkpoint of the shapes recipe whose backbone is trained and whose transformer is still random;
`python -m train --init-from` it.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detr_core import build_model, save_model

from .configs import shapes_config
from .synthetic import CLASS_NAMES, SyntheticSpec, render_image

log = logging.getLogger(__name__)


@dataclass
class DenseTargets:
    """Per-cell targets of a batch: labels [B, fh, fw] (len(CLASS_NAMES) = background), boxes [B, fh, fw, 4]."""

    labels: torch.Tensor
    boxes: torch.Tensor


def cell_targets(objects, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Label and normalised x0, y0, x1, y1 box of the shape under each cell's centre pixel."""
    cells = -(-size // stride)
    centres = np.minimum(np.arange(cells) * stride + stride // 2, size - 1)
    labels = np.full((cells, cells), len(CLASS_NAMES), dtype=np.int64)
    boxes = np.zeros((cells, cells, 4), dtype=np.float32)
    for obj in objects:
        under = obj.mask[np.ix_(centres, centres)]  # [cells, cells]: visible masks are disjoint
        ys, xs = np.nonzero(obj.mask)
        labels[under] = obj.label
        boxes[under] = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / size
    return labels, boxes


class ImagePool:
    """Pre-rendered images (rendering costs ~9 ms each; a pool keeps the CPU on training)."""

    def __init__(self, count: int, seed: int, size: int, stride: int, mean, std):
        spec = SyntheticSpec(images=count, seed=seed, size=size)
        rendered = [render_image(spec, i) for i in range(count)]
        self.pixels = torch.from_numpy(np.stack([p for p, _ in rendered]))  # [N, H, W, 3] uint8
        targets = [cell_targets(objs, size, stride) for _, objs in rendered]
        self.labels = torch.from_numpy(np.stack([t[0] for t in targets]))  # [N, fh, fw]
        self.boxes = torch.from_numpy(np.stack([t[1] for t in targets]))  # [N, fh, fw, 4]
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def batch(self, index: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, DenseTargets]:
        x = self.pixels[index].permute(0, 3, 1, 2).float() / 255  # [B, 3, H, W]
        x = (x - self.mean) / self.std
        labels, boxes = self.labels[index].clone(), self.boxes[index].clone()
        x[flip] = x[flip].flip(-1)
        labels[flip] = labels[flip].flip(-1)
        flipped = boxes[flip].flip(-2)  # [b, fh, fw, 4]: mirror the grid, then the x coordinates
        boxes[flip] = torch.stack([1 - flipped[..., 2], flipped[..., 1], 1 - flipped[..., 0], flipped[..., 3]], -1)
        return x, DenseTargets(labels, boxes)


class DenseHead(nn.Module):
    """A 3x3 conv and two 1x1 predictors: per-cell class logits and box."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(channels, 128, 3, padding=1), nn.ReLU())
        self.cls = nn.Conv2d(128, num_classes + 1, 1)
        self.box = nn.Conv2d(128, 4, 1)

    def forward(self, features):
        h = self.trunk(features)
        return self.cls(h), self.box(h).sigmoid()  # [B, C+1, fh, fw], [B, 4, fh, fw]


def dense_loss(logits, boxes, targets: DenseTargets) -> tuple[torch.Tensor, float]:
    """Cross-entropy over all cells + L1 of the box on shape cells. -> (loss, foreground accuracy).

    Background cells are most of the grid; weighting them 0.1 (DETR's no-object weight) keeps the
    network from settling on "all background"."""
    weight = torch.ones(logits.shape[1], device=logits.device)
    weight[-1] = 0.1
    ce = F.cross_entropy(logits, targets.labels, weight=weight)
    fg = targets.labels < len(CLASS_NAMES)  # [B, fh, fw]
    pred_boxes = boxes.permute(0, 2, 3, 1)[fg]  # [N_fg, 4]
    l1 = F.l1_loss(pred_boxes, targets.boxes[fg]) if fg.any() else logits.sum() * 0
    accuracy = (logits.argmax(1)[fg] == targets.labels[fg]).float().mean().item() if fg.any() else 1.0
    return ce + 5 * l1, accuracy


def pretrain(out: Path, minutes: float, seed: int, pool_size: int, batch_size: int, lr: float) -> dict:
    torch.manual_seed(seed)
    recipe = shapes_config()
    config = recipe.model.__class__.from_dict({**recipe.model.to_dict(), "num_classes": len(CLASS_NAMES)})
    model = build_model(config, recipe.preprocess, list(CLASS_NAMES))
    body = model.backbone[0]
    size = recipe.preprocess.min_size
    pool = ImagePool(pool_size, seed, size, config.stride, recipe.preprocess.mean, recipe.preprocess.std)
    head = DenseHead(body.num_channels, len(CLASS_NAMES))
    params = list(body.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    body.train()
    start, step, history = time.monotonic(), 0, []
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros((batch_size, size, size), dtype=torch.bool)
    while time.monotonic() - start < minutes * 60:
        index = torch.randint(len(pool.pixels), (batch_size,), generator=gen)
        x, targets = pool.batch(index, torch.rand(batch_size, generator=gen) < 0.5)
        features, _ = body(x, mask)
        loss, acc = dense_loss(*head(features), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append((loss.item(), acc))
        step += 1
        if step % 50 == 0:
            recent = np.array(history[-50:])
            log.info("step %d  %.1f min  loss %.3f  fg-cell accuracy %.3f", step,
                     (time.monotonic() - start) / 60, recent[:, 0].mean(), recent[:, 1].mean())
    save_model(model, out)
    recent = np.array(history[-50:])
    return {"steps": step, "images": step * batch_size, "loss": float(recent[:, 0].mean()),
            "fg_cell_accuracy": float(recent[:, 1].mean()), "minutes": (time.monotonic() - start) / 60}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1000, help="image seed; keep it apart from train/val seeds")
    parser.add_argument("--pool", type=int, default=3000, help="pre-rendered images to cycle through")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = pretrain(args.out, args.minutes, args.seed, args.pool, args.batch_size, args.lr)
    print(f"pre-trained backbone: {summary}; wrote {args.out}")


if __name__ == "__main__":
    main()
