"""Training throughput (images per second) of the real training step, before and after issue 22.

    python -m benchmarks.train_throughput                                   # shapes: before vs after
    python -m benchmarks.train_throughput --query-groups 6 --batch-size 16  # the mixed recipe's step
    python -m benchmarks.train_throughput --profile after --steps 10        # where the step's time goes
    python -m benchmarks.train_throughput --device cuda --workers 12 --batch-size 32 --steps 200

Each variant is a ``train.loop.Trainer`` on a generated shapes data set (``--data DIR``, or N images
written to a temporary folder), stepping through its real data loader, augmentation, matcher, loss,
backward and optimiser. Variants step in turn (A/B/A/B, the first one rotating), so that a shared,
noisy machine slows them alike; the ratios are medians of the per-round ratios.

Variants:
  before   the step as it was: float32, contiguous input, a matching (and a host copy) per image and layer
  float32  the new step in float32 (exact path): batched matching, channels-last input
  after    the new step with this device's default precision (train/speed.py)
  bfloat16, float16, compiled   the new step with that precision / with torch.compile (default precision)
  official the official facebookresearch/detr trainer's criterion, matcher and optimiser (its SetCriterion,
           HungarianMatcher, non-fused AdamW, float32) on the project's model and data pipeline, i.e. the
           matched shape; needs --official-repo, a checkout of github.com/facebookresearch/detr
A script, not a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from detr_core.objective.matcher import HungarianMatcher, _assign, match_costs
from train.coco_file import DataSource
from train.configs import named_config
from train.dataset import epoch_batches, train_loader
from train.distributed import DistInfo
from train.group_detr import GroupCriterion
from train.loop import RunConfig, Trainer
from train.speed import PRECISIONS, default_precision
from train.synthetic import SyntheticSpec, write_dataset

from .train_profile import Labelled, format_profile, profile_steps, synchronize

VARIANTS = ("before", "float32", "after", "bfloat16", "float16", "compiled", "official")


class PerImageMatcher(HungarianMatcher):
    """The matcher as it was before issue 22: costs and a host copy per image and decoder layer."""

    def match_layers(self, layers, targets):
        return [[self._one(o["pred_logits"][b], o["pred_boxes"][b], t) for b, t in enumerate(targets)]
                for o in layers]

    @torch.no_grad()
    def _one(self, logits, boxes, target):
        if target["labels"].numel() == 0:
            return _assign(torch.zeros(logits.shape[0], 0).numpy())
        costs = match_costs(logits, boxes, target["labels"].to(logits.device),
                            target["boxes"].to(boxes.device), self.weights)
        return _assign(costs.total.cpu().numpy())


def make_trainer(variant: str, data: DataSource, out: Path, args) -> Trainer:
    recipe = named_config(args.config)
    recipe = recipe.replace(batch_size=args.batch_size or recipe.batch_size,
                            query_groups=args.query_groups or recipe.query_groups)
    device = torch.device(args.device)
    precision = {"before": "float32", "float32": "float32", "bfloat16": "bfloat16",
                 "float16": "float16", "official": "float32"}.get(variant, default_precision(device))
    run = RunConfig(data, out / variant, recipe, seed=0, num_workers=args.workers, progress_bar=False,
                    precision=precision, compile=variant == "compiled")
    trainer = Trainer(run, DistInfo(device=device))
    if variant in ("before", "official"):
        trainer.settings = dataclasses.replace(trainer.settings, channels_last=False)
    if variant == "before":
        criterion = getattr(trainer.criterion, "criterion", trainer.criterion)  # inside GroupCriterion
        criterion.matcher = PerImageMatcher(criterion.matcher.weights)
    if variant == "official":
        use_official_step(trainer, args.official_repo)
    return trainer


def use_official_step(trainer: Trainer, repo: Path | None) -> None:
    """Swap in the official trainer's SetCriterion, HungarianMatcher and AdamW (as its main.py builds them)."""
    if repo is None or not (repo / "models" / "detr.py").is_file():
        raise ValueError(f"--official-repo {repo}: the 'official' variant needs a checkout of "
                         "github.com/facebookresearch/detr (its models/ and util/ folders)")
    sys.path.insert(0, str(repo))
    from models.detr import SetCriterion as OfficialCriterion  # noqa: E402  (the official code)
    from models.matcher import HungarianMatcher as OfficialMatcher

    r = trainer.recipe
    matcher = OfficialMatcher(r.matching.cost_class, r.matching.cost_bbox, r.matching.cost_giou)
    weights = {"loss_ce": r.losses.ce, "loss_bbox": r.losses.bbox, "loss_giou": r.losses.giou}
    criterion = OfficialCriterion(trainer.model.config.num_classes, matcher, weights, r.losses.eos_coef,
                                  ["labels", "boxes", "cardinality"]).to(trainer.info.device)
    trainer.criterion = GroupCriterion(criterion, r.query_groups) if r.query_groups > 1 else criterion
    groups = [{"params": g["params"], "lr": g["lr"]} for g in trainer.optimizer.param_groups]
    trainer.optimizer = torch.optim.AdamW(groups, lr=r.optim.lr, weight_decay=r.optim.weight_decay)
    trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 1000)


def endless_batches(trainer: Trainer, label_augmentation: bool = False):
    """The trainer's batches, epoch after epoch, through its own data loader."""
    if label_augmentation:
        trainer.train_set.transforms = Labelled(trainer.train_set.transforms, "augmentation")
    epoch = 0
    while True:
        trainer.train_set.set_epoch(epoch)
        batches = epoch_batches(trainer.train_set, trainer.recipe.batch_size, trainer.info, 0, epoch)
        yield from train_loader(trainer.train_set, batches, trainer.run.num_workers,
                                pin_memory=trainer.info.device.type == "cuda")
        epoch += 1


def interleaved(trainers: dict, steps: int, warmup: int) -> dict:
    """Seconds of each timed step (data included) per variant, the variants taking turns."""
    feeds = {name: endless_batches(t) for name, t in trainers.items()}
    names, times = list(trainers), {name: [] for name in trainers}
    for i in range(warmup + steps):
        for name in names[i % len(names):] + names[:i % len(names)]:
            dev = trainers[name].info.device
            synchronize(dev)
            start = time.perf_counter()
            trainers[name].train_step(next(feeds[name]))
            synchronize(dev)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def report(times: dict, batch: int) -> str:
    """Medians per variant, and the median of the per-round ratios against "before" and "official"."""
    bases = [b for b in ("before", "official") if b in times] or [next(iter(times))]
    lines = ["| variant | median s/step | images/s | " + " | ".join(f"x {b}" for b in bases) + " |",
             "|---|---|---|" + "---|" * len(bases)]
    for name, t in times.items():
        med = statistics.median(t)
        ratios = [statistics.median(base / mine for mine, base in zip(t, times[b])) for b in bases]
        lines.append(f"| {name} | {med:.3f} | {batch / med:.2f} | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    return "\n".join(lines)


def dataset(args, tmp: Path) -> DataSource:
    if args.data:
        return DataSource.from_paths(args.data)
    write_dataset(SyntheticSpec(images=args.images, seed=1), tmp / "data", workers=args.render_workers)
    return DataSource.from_paths(tmp / "data")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["before", "after"], choices=VARIANTS)
    p.add_argument("--profile", choices=VARIANTS, help="profile this variant instead of comparing")
    p.add_argument("--config", default="shapes")
    p.add_argument("--batch-size", type=int, help="default: the recipe's (shapes: 8)")
    p.add_argument("--query-groups", type=int, help="default: the recipe's (mixed recipe: 6)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per variant")
    p.add_argument("--data", type=Path, help="a COCO-format folder; default: --images generated shapes")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--render-workers", type=int, default=1)
    p.add_argument("--official-repo", type=Path, help="a facebookresearch/detr checkout (variant 'official')")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, {args.threads} threads, default precision "
          f"{default_precision(device)}, config {args.config}, batch {args.batch_size or 'recipe'}, "
          f"query groups {args.query_groups or 'recipe'}, workers {args.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        data = dataset(args, Path(tmp))
        if args.profile:
            trainer = make_trainer(args.profile, data, Path(tmp), args)
            feed = endless_batches(trainer, label_augmentation=True)
            for _ in range(args.warmup):
                trainer.train_step(next(feed))
            result = profile_steps(trainer, feed, args.steps, PRECISIONS[trainer.settings.precision])
            print(format_profile(result, f"{args.profile} ({trainer.settings.precision}), {name}"))
            return
        trainers = {v: make_trainer(v, data, Path(tmp), args) for v in args.variants}
        times = interleaved(trainers, args.steps, args.warmup)
        batch = next(iter(trainers.values())).recipe.batch_size
        print(report(times, batch))


if __name__ == "__main__":
    main()
