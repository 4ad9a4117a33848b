"""Training a DETR-family model through transformers: the DETR loop (loop.py) with the family's model, step,
evaluation and checkpoints.

``FamilyTrainer`` reuses ``Trainer``'s epochs, progress bar, ``--max-steps`` / ``--max-minutes``, JSON-lines log,
divergence check and torchrun handling, and replaces what is DETR's own: the model is transformers'
``*ForObjectDetection``, whose loss (Hungarian matching, focal / varifocal, L1, GIoU, auxiliary and denoising
terms, as each model defines it) comes back as ``outputs.loss`` when ``labels`` are passed; nothing here
computes a loss. The log's terms are the model's own ``loss_dict`` entries of the last layer.
"""
from __future__ import annotations

import logging
import math
import re

import torch
from torch.nn.parallel import DistributedDataParallel

from . import family_checkpoints as fck
from .checkpoints import Progress
from .dataset import CocoDetection, steps_per_epoch
from .distributed import DistInfo, any_process
from .evaluate import EvalResult, evaluate
from .family_data import ProcessorInput, family_train_transforms, labels_for, model_inputs
from .family_eval import family_predict
from .family_configs import named_family
from .family_model import (FamilySetup, finetuned_model, param_groups, resumed_model, scratch_model,
                           set_trainable)
from .loop import RunConfig, Trainer, TrainResult, seed_everything
from .optim import build_scheduler, clip_and_step

log = logging.getLogger(__name__)
_LAYER_TERM = re.compile(r"_(\d+|aux_\d+|dn_\d+|enc_\d+|enc|dn)$")  # per-layer copies of a loss term


def main_terms(loss_dict: dict | None) -> dict[str, float]:
    """The model's loss terms of its last layer (loss_ce / loss_vfl, loss_bbox, loss_giou, ...), as floats."""
    return {k: float(v.detach()) for k, v in (loss_dict or {}).items() if not _LAYER_TERM.search(k)}


class FamilyTrainer(Trainer):
    """A family run: ``run.init_from`` is a named configuration, a folder or a Hub id; ``run.recipe`` a
    ``FamilyRecipe`` (a resumed run's own, from its training state)."""

    def __init__(self, run: RunConfig, info: DistInfo = DistInfo()):
        self.run, self.info, self.recipe = run, info, run.recipe
        state = fck.load_state(run.resume) if run.resume else None
        self.init_from = state["init_from"] if state is not None else run.init_from
        if state is None:
            seed_everything(run.seed)
        self.train_set = CocoDetection(run.data, None, augment_seed=run.seed)
        self.setup = self._family_setup(state)
        self.model, self.processor = self.setup.model.to(info.device), self.setup.processor
        self.train_set.transforms = family_train_transforms(self.processor, self.recipe)
        self.train_set.set_label_map(self.setup.label_map)
        self.val_set = self._val_set()
        self._build_family_optimisation(state)

    def _family_setup(self, state) -> FamilySetup:
        categories = self.train_set.categories
        if state is not None:
            setup = resumed_model(self.run.resume, state, categories)
        elif named_family(self.init_from) is not None:
            setup = scratch_model(self.init_from, named_family(self.init_from), categories, self.run.seed)
        else:
            setup = finetuned_model(self.init_from, categories, self.run.seed)
        self.frozen = set_trainable(setup.model, state["frozen"] if state else None, self.recipe.train_all)
        if self.frozen:
            log.info("%d parameter tensors stay fixed (%s ...)", len(self.frozen), self.frozen[0])
        return setup

    def _val_set(self) -> CocoDetection | None:
        if self.run.val_data is None:
            return None
        val = CocoDetection(self.run.val_data, ProcessorInput(self.processor))
        val.set_label_map(self.setup.label_map)
        return val

    def _build_family_optimisation(self, state) -> None:
        o = self.recipe.optim
        self.trainable = self.model
        self.optimizer = torch.optim.AdamW(param_groups(self.model, o.lr, o.lr_backbone), lr=o.lr,
                                           weight_decay=o.weight_decay, fused=True)
        self.steps_per_epoch = steps_per_epoch(self.train_set, self.recipe.batch_size, self.info)
        self.scheduler = build_scheduler(self.optimizer, o, self.steps_per_epoch)
        self.progress = Progress()
        if state is not None:
            self._restore_training_state(state)
        # some heads are used only in some steps (e.g. denoising with no target in the batch)
        self.net = (DistributedDataParallel(self.model, find_unused_parameters=True) if self.info.enabled
                    else self.model)

    # --- the step -------------------------------------------------------------------------

    def train_step(self, batch) -> dict[str, float]:
        """One optimiser step on the model's own loss; TrainingDiverged on a non-finite one (every rank)."""
        dev = self.info.device
        out = self.net(**model_inputs(self.model, batch, dev), labels=labels_for(self.model, batch, dev))
        total = out.loss
        terms = main_terms(out.loss_dict)
        if any_process(not math.isfinite(total.item()), self.info):
            self._diverged({k: v for k, v in (out.loss_dict or {}).items() if k in terms}, total)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip_and_step(self.model, self.optimizer, self.scheduler, self.recipe.optim.clip_max_norm)
        p = self.progress
        self.progress = Progress(p.epoch, p.epoch_step + 1, p.step + 1, p.best_ap)
        return {"loss": total.item(), **terms}

    def _evaluate(self) -> EvalResult:
        return evaluate(self.model, self.val_set, self.recipe.batch_size, self.info, predictor=family_predict)

    def _val_attention(self) -> dict:
        return {}

    # --- checkpoints ----------------------------------------------------------------------

    def _save(self, is_best: bool) -> None:
        state = fck.training_state(self.optimizer, self.scheduler, self.progress, self.recipe.to_dict(),
                                   self.setup.label_map.category_to_label, self.init_from, self.frozen)
        last = self.run.output / fck.LAST
        fck.save_folder(self.model, self.processor, state, last)
        if is_best:
            fck.copy_folder(last, self.run.output / fck.BEST)


def train_family(run: RunConfig, info: DistInfo = DistInfo()) -> TrainResult:
    """Train a DETR-family model as ``run`` describes (see ``FamilyTrainer``)."""
    return FamilyTrainer(run, info).fit()

