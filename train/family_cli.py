"""``python -m train --model ...``: the command-line flags of a DETR-family run, as a ``RunConfig``.

    python -m train --model PekingU/rtdetr_r50vd --data my-set --val-data my-val --output runs/rt   # fine-tune
    python -m train --model shapes-deformable --data ... --output runs/sd                            # from scratch
    python -m train --resume runs/sd/last --data ... --output runs/sd                                # continue

The flags shared with DETR runs mean the same; those that only exist for this project's DETR are refused.
"""
from __future__ import annotations

import argparse
import dataclasses

from . import family_checkpoints as fck
from .coco_file import DataSource
from .family_configs import FamilyRecipe, default_recipe, named_family
from .loop import RunConfig

DETR_ONLY = (("query_groups", "--query-groups"), ("dropout", "--dropout"), ("export_hf", "--export-hf"),
             ("val_attention", "--val-attention"), ("init_from", "--init-from"), ("config", "--config"))


def is_family_run(args: argparse.Namespace) -> bool:
    """--model names the model, or --resume is a family run's checkpoint folder."""
    return args.model is not None or fck.is_family_checkpoint(args.resume)


def family_recipe(args: argparse.Namespace) -> FamilyRecipe:
    """The named configuration's recipe (fine-tuning: ``default_recipe``), or the resumed run's own, with the
    flags' overrides."""
    if args.resume is not None:
        recipe = FamilyRecipe.from_dict(fck.load_state(args.resume)["recipe"])
    else:
        named = named_family(args.model)
        recipe = named.recipe if named is not None else default_recipe()
    optim = {k: v for k, v in (("lr", args.lr), ("lr_backbone", args.lr_backbone),
                               ("warmup_steps", args.warmup_steps), ("lr_drop_epochs", args.lr_drop))
             if v is not None}
    run = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v is not None}
    if any(v < 1 for v in run.values()):
        raise ValueError(f"--epochs and --batch-size must be at least 1, got {run}")
    if args.train_stem:
        run["train_all"] = True
    return recipe.replace(optim=dataclasses.replace(recipe.optim, **optim), **run)


def family_run_config(args: argparse.Namespace) -> RunConfig:
    given = [flag for attr, flag in DETR_ONLY if getattr(args, attr, None) not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)}: not for a DETR-family run (--model / a family --resume); "
                         "those flags belong to this project's DETR")
    if args.model is not None and args.resume is not None:
        raise ValueError("--model and --resume exclude each other: --resume continues a run with its own model")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps {args.max_steps}: must be at least 1")
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise ValueError(f"--max-minutes {args.max_minutes}: must be positive")
    val = DataSource.from_paths(args.val_data, args.val_images) if args.val_data else None
    return RunConfig(data=DataSource.from_paths(args.data, args.images), output=args.output,
                     recipe=family_recipe(args), val_data=val, init_from=args.model, resume=args.resume,
                     max_steps=args.max_steps, max_minutes=args.max_minutes, seed=args.seed,
                     num_workers=args.workers, progress_bar=not args.no_progress)
