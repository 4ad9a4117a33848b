"""``python -m train``: train or fine-tune a DETR, or a DETR-family model (``--model``), on COCO-format data.

    python -m train --data DIR --val-data DIR --output DIR --config shapes
    python -m train --data ann.json --images DIR --init-from detr-r50 --config r50 ...
    python -m train --data DIR --init-from facebook/detr-resnet-50 --config r50 --export-hf hf-out ...
    python -m train --data DIR --model PekingU/rtdetr_r50vd ...   (DETR family, train/family_cli.py)
    torchrun --nproc_per_node 2 -m train ...        (same flags, several processes)

Flags become a ``RunConfig``; nothing below this file sees argparse.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from . import checkpoints
from .coco_file import DataSource
from .configs import NAMED_CONFIGS, TrainConfig, named_config
from .distributed import cleanup, init_distributed
from .family_cli import family_run_config, is_family_run
from .family_configs import NAMED_FAMILY
from .family_step import train_family
from .loop import RunConfig, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path,
                   help="training set: folder with annotations.json + images/, or an annotation file")
    p.add_argument("--images", type=Path, help="image folder when --data is an annotation file")
    p.add_argument("--val-data", type=Path, help="validation set, same forms as --data")
    p.add_argument("--val-images", type=Path, help="image folder when --val-data is a file")
    p.add_argument("--output", required=True, type=Path, help="checkpoints and log.jsonl go here")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS),
                   help="named recipe (model, sizes, optimiser); default shapes")
    p.add_argument("--model", help="a DETR-family model through transformers (train/family_step.py): a folder "
                                   "or Hub id to fine-tune, or a named configuration from scratch: "
                                   + ", ".join(sorted(NAMED_FAMILY)))
    p.add_argument("--epochs", type=int, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, help="per process; default: the recipe's")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--lr-backbone", type=float, help="override the recipe's backbone rate")
    p.add_argument("--warmup-steps", type=int, help="override the recipe's warm-up")
    p.add_argument("--lr-drop", type=int, help="multiply the learning rates by 0.1 every this many epochs"
                   " (default: the recipe's; a resumed run keeps the schedule it was started with)")
    p.add_argument("--dropout", type=float,
                   help="transformer dropout rate; default: the recipe's, or the --init-from model's")
    p.add_argument("--query-groups", type=int,
                   help="Group DETR: train this many query groups (training only; default: the recipe's)")
    p.add_argument("--train-stem", action="store_true",
                   help="with --init-from: also train conv1 and layer1 (the official recipe freezes them)")
    p.add_argument("--init-from", help='fine-tune from "detr-r50", "shapes", a checkpoint path, a Hugging Face'
                                       ' model folder or Hub id ("facebook/detr-resnet-50"): any load_model source')
    p.add_argument("--export-hf", type=Path, metavar="DIR",
                   help="also write the best checkpoint (the last, without --val-data) in the Hugging Face format"
                        " to DIR: transformers' from_pretrained opens it, `hf upload` shares it")
    p.add_argument("--resume", type=Path, help="continue a run from its last.pth")
    p.add_argument("--val-attention", action="store_true",
                   help="also log the share of decoder attention inside the detected boxes on "
                        "--val-data each epoch (train/attention_metric.py)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    p.add_argument("--max-minutes", type=float,
                   help="stop after this many minutes of training (evaluates and saves as usual)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("float32", "bfloat16", "float16"),
                   help="the forward's precision (losses and optimiser stay float32); default: bfloat16 on "
                        "CUDA cards and CPUs with native bfloat16 (AVX512-BF16/AMX), float32 on other CPUs; "
                        "float16 (CUDA only) adds a gradient scaler")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (pays on long GPU runs; compiling takes minutes on a small CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def recipe_from_args(args: argparse.Namespace) -> TrainConfig:
    """The named recipe, or the resumed run's own, with the flags' overrides applied."""
    if args.dropout is not None and args.resume is not None:
        raise ValueError("--dropout and --resume exclude each other: a resumed run keeps its own "
                         "dropout, so that it matches training straight through")
    if args.resume is not None:
        recipe = TrainConfig.from_dict(checkpoints.load_for_resume(args.resume)["train_config"])
    else:
        recipe = named_config(args.config or "shapes")
    optim = {k: v for k, v in (("lr", args.lr), ("lr_backbone", args.lr_backbone),
                               ("warmup_steps", args.warmup_steps), ("lr_drop_epochs", args.lr_drop))
             if v is not None}
    if args.train_stem:
        optim["freeze_pretrained_stem"] = False
    run = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                             ("query_groups", args.query_groups)) if v is not None}
    if any(v < 1 for v in run.values()):
        raise ValueError(f"--epochs, --batch-size and --query-groups must be at least 1, got {run}")
    if args.dropout is not None:
        run["model"] = dataclasses.replace(recipe.model, dropout=args.dropout)
    return recipe.replace(optim=dataclasses.replace(recipe.optim, **optim), **run)


def run_config(args: argparse.Namespace) -> RunConfig:
    if args.init_from and args.resume:
        raise ValueError("--init-from and --resume exclude each other: --resume continues a run "
                         "with its own weights")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps {args.max_steps}: must be at least 1")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise ValueError(f"--max-minutes {args.max_minutes}: must be positive")
    val = DataSource.from_paths(args.val_data, args.val_images) if args.val_data else None
    return RunConfig(
        data=DataSource.from_paths(args.data, args.images), output=args.output,
        recipe=recipe_from_args(args), val_data=val, init_from=args.init_from, resume=args.resume,
        dropout=args.dropout, export_hf=args.export_hf,
        max_steps=args.max_steps, max_minutes=args.max_minutes, val_attention=args.val_attention,
        seed=args.seed,
        num_workers=args.workers,
        progress_bar=not args.no_progress,
        precision=args.precision, compile=args.compile)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = init_distributed(args.device)
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if is_family_run(args):
            result = train_family(family_run_config(args), info)
        else:
            result = train(run_config(args), info)
    except (ValueError, RuntimeError) as err:  # bad input (2); diverged or unavailable model (3)
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 3
    finally:
        cleanup(info)
    if info.is_main:
        print(f"done: epoch {result.progress.epoch}, step {result.progress.step}; "
              f"checkpoints in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
