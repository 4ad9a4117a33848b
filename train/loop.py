"""The training loop: set up a run, train epoch by epoch, evaluate, log, checkpoint.

``train(run, info)`` is the library entry point; ``python -m train`` turns flags
into a ``RunConfig``. Only rank 0 writes (checkpoints, the JSON-lines log, the
progress bar); every rank computes the same reduced metrics.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm import tqdm

from detr_core import save_model
from detr_core.objective.criterion import LOSS_NAMES, SetCriterion, weighted_total
from detr_core.objective.matcher import HungarianMatcher

from . import checkpoints
from .attention_metric import attention_in_boxes
from .checkpoints import Progress
from .coco_file import DataSource
from .configs import TrainConfig
from .dataset import CocoDetection, epoch_batches, steps_per_epoch, train_loader
from .distributed import DistInfo, any_process, reduce_mean, weights_in_sync
from .evaluate import EvalResult, evaluate
from .group_detr import GroupCriterion, GroupDETR
from .model_setup import ModelSetup, finetuned_model, freeze_stem_if_pretrained, fresh_model, resumed_model
from .optim import build_optimizer, build_scheduler, clip_and_step
from .speed import autocast, compiled, grad_scaler, model_input, step_settings
from .transforms import eval_transforms, train_transforms

log = logging.getLogger(__name__)
LOG_FILE = "log.jsonl"
LOGGED = LOSS_NAMES + ("class_error", "cardinality_error")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass(frozen=True)
class RunConfig:
    """One training run, as the command line describes it."""

    data: DataSource
    output: Path
    recipe: TrainConfig
    val_data: DataSource | None = None
    init_from: str | None = None
    resume: Path | None = None
    dropout: float | None = None  # replaces an --init-from model's own rate (fresh runs: the recipe's)
    export_hf: Path | None = None  # also write the best (or, without validation, the last) model here, HF format
    max_steps: int | None = None
    max_minutes: float | None = None  # stop at the first step boundary after this much training time
    val_attention: bool = False  # also log the share of decoder attention inside the boxes
    seed: int = 42
    num_workers: int = 0
    progress_bar: bool = True
    precision: str | None = None  # float32 / bfloat16 / float16; None: the device's default (train/speed.py)
    compile: bool = False  # torch.compile the model for the step


@dataclass
class TrainResult:
    progress: Progress
    train_losses: dict = field(default_factory=dict)
    eval: EvalResult | None = None


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


class Trainer:
    """Holds a run's model, data and optimiser state; ``fit`` runs it to the end."""

    def __init__(self, run: RunConfig, info: DistInfo = DistInfo()):
        self.run, self.info = run, info
        self.settings = step_settings(info.device, run.precision, run.compile)
        self.scaler = grad_scaler(self.settings, info.device)
        ckpt = checkpoints.load_for_resume(run.resume) if run.resume else None
        self.recipe = run.recipe
        # a resumed run inherits where its weights came from: that decides whether the stem is
        # frozen, so losing it would make the next --resume build a different optimiser
        self.init_from = ckpt.get("init_from") if ckpt is not None else run.init_from
        if ckpt is None:
            seed_everything(run.seed)
        self.train_set = CocoDetection(run.data, train_transforms(self.recipe.augment),
                                       augment_seed=run.seed)
        self.setup = self._model_setup(ckpt)
        self.model = self.setup.model
        self.train_set.set_label_map(self.setup.label_map)
        self.val_set = self._val_set()
        self._build_optimisation(ckpt)

    def _model_setup(self, ckpt) -> ModelSetup:
        categories = self.train_set.categories
        if ckpt is not None:
            setup = resumed_model(ckpt, categories, str(self.run.resume))
        elif self.run.init_from:
            setup = finetuned_model(self.run.init_from, self.recipe.preprocess, categories,
                                    self.run.dropout)
        else:
            setup = fresh_model(self.recipe, categories)
        freeze_stem_if_pretrained(setup, self.recipe.optim.freeze_pretrained_stem)
        setup.model.to(self.info.device).train()
        return setup

    def _val_set(self) -> CocoDetection | None:
        if self.run.val_data is None:
            return None
        val = CocoDetection(self.run.val_data, eval_transforms(self.model.preprocess))
        val.set_label_map(self.setup.label_map)
        return val

    def _build_optimisation(self, ckpt) -> None:
        r = self.recipe
        self.criterion = SetCriterion(self.model.config.num_classes, HungarianMatcher(r.matching),
                                      r.losses).to(self.info.device)
        self.trainable, extra = self.model, []
        if r.query_groups > 1:
            self.trainable = GroupDETR(self.model, r.query_groups).to(self.info.device)
            self.criterion = GroupCriterion(self.criterion, r.query_groups)
            extra = [self.trainable.extra_queries]
            if ckpt is not None:
                self._restore_group_queries(ckpt)
            elif self.run.init_from:
                self._continue_group_queries(self.run.init_from)
        self.optimizer = build_optimizer(self.model, r.optim, extra)
        self.steps_per_epoch = steps_per_epoch(self.train_set, r.batch_size, self.info)
        self.scheduler = build_scheduler(self.optimizer, r.optim, self.steps_per_epoch)
        self.progress = Progress()
        if ckpt is not None:
            self._restore_training_state(ckpt)
        net = DistributedDataParallel(self.trainable) if self.info.enabled else self.trainable
        self.net = compiled(net, self.settings)
        log.info("training step: %s, channels-last input %s, compile %s", self.settings.precision,
                 self.settings.channels_last, self.settings.compile)

    def _restore_training_state(self, ckpt) -> None:
        """Optimiser, schedule, position and RNG: the last step, so nothing after it draws randoms."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["lr_scheduler"])
        self.progress = checkpoints.progress_of(ckpt)
        checkpoints.restore_rng(ckpt["rng"])
        log.info("resumed %s at epoch %d, step %d", self.run.resume, self.progress.epoch,
                 self.progress.step)

    def _restore_group_queries(self, ckpt) -> None:
        saved = ckpt.get("extra_state", {}).get("group_queries")
        expected = self.trainable.extra_queries.shape
        if saved is None or saved.shape != expected:
            found = 1 if saved is None else saved.shape[0] + 1
            raise ValueError(f"{self.run.resume} was trained with {found} query group(s), this run asks "
                             f"for {expected[0] + 1}; resume with the same --query-groups")
        self.trainable.extra_queries.data.copy_(saved)

    def _continue_group_queries(self, source: str) -> None:
        """Fine-tuning from a Group DETR checkpoint with as many groups keeps its extra groups
        (e.g. a low-learning-rate stage after a high one); otherwise they start random."""
        saved = checkpoints.group_queries_of(source)
        if saved is not None and saved.shape == self.trainable.extra_queries.shape:
            self.trainable.extra_queries.data.copy_(saved)
            log.info("init from %s: continuing its %d extra query groups", source, saved.shape[0])
        else:
            log.info("init from %s: the %d extra query groups start random", source,
                     self.trainable.extra_queries.shape[0])

    # --- the loop -------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        self._started = time.monotonic()
        result = TrainResult(self.progress)
        while self.progress.epoch < self.recipe.epochs and not self._max_steps_reached():
            started = time.perf_counter()
            losses, images = self.train_epoch(self.progress.epoch)
            partial = self.progress.epoch_step < self.steps_per_epoch
            if not partial:
                self.progress = Progress(self.progress.epoch + 1, 0, self.progress.step,
                                         self.progress.best_ap)
            result = self.end_epoch(losses, images, time.perf_counter() - started, partial)
        if not weights_in_sync(self.trainable, self.info):
            raise RuntimeError("the processes ended with different weights; gradients were not "
                               "synchronised (is every process running the same command?)")
        return result

    def _max_steps_reached(self) -> bool:
        """--max-steps or --max-minutes is used up (the time limit is for machines of unknown speed: the
        log records the steps it reached, which --max-steps then reproduces)."""
        if self.run.max_steps is not None and self.progress.step >= self.run.max_steps:
            return True
        return (self.run.max_minutes is not None
                and time.monotonic() - self._started >= 60 * self.run.max_minutes)

    def train_epoch(self, epoch: int) -> tuple[dict, int]:
        """Train from the current position to the end of ``epoch`` (or --max-steps);
        returns the mean logged losses (reduced over processes) and images seen."""
        self.train_set.set_epoch(epoch)
        batches = epoch_batches(self.train_set, self.recipe.batch_size, self.info, self.run.seed,
                                epoch)[self.progress.epoch_step:]
        sums: dict[str, float] = {}
        loader = train_loader(self.train_set, batches, self.run.num_workers,
                              pin_memory=self.info.device.type == "cuda")
        bar = tqdm(loader, total=len(batches), desc=f"epoch {epoch}", leave=False,
                   disable=not (self.run.progress_bar and self.info.is_main))
        n, started = 0, time.perf_counter()
        last = started
        for batch in bar:
            values = self.train_step(batch)
            sums = {k: sums.get(k, 0.0) + v for k, v in values.items()}
            n += 1
            now = time.perf_counter()
            images = self.recipe.batch_size * self.info.world_size  # every process's batch
            self._log_step(values, images / max(now - last, 1e-9), now - last)
            last = now
            bar.set_postfix({"img/s": f"{n * images / max(now - started, 1e-9):.1f}",
                             **{k.removeprefix("loss_"): f"{sums[k] / n:.3f}"
                                for k in ("loss",) + LOSS_NAMES if k in sums}})
            if self._max_steps_reached():
                break
        bar.close()
        means = reduce_mean({k: v / max(n, 1) for k, v in sums.items()}, self.info)
        return means, n * self.recipe.batch_size * self.info.world_size

    def train_step(self, batch) -> dict[str, float]:
        """One optimiser step; raises TrainingDiverged on a non-finite loss (on every rank).

        The forward runs in the step's precision (train/speed.py), the losses in float32; the
        logged numbers come back to the host in one transfer. The named ranges are what
        ``benchmarks.train_throughput --profile`` reports (free when no profiler runs)."""
        dev = self.info.device
        with record_function("to_device"):
            targets = [{k: (v.to(dev, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
                       for t in batch.targets]
            pixels = model_input(batch.pixel_values.to(dev, non_blocking=True), self.settings)
            mask = batch.pixel_mask.to(dev, non_blocking=True)
        with record_function("forward"), autocast(self.settings, dev):
            outputs = self.net(pixels, mask)
        with record_function("sync"):
            finite = bool(torch.stack([torch.isfinite(outputs[k]).all()
                                       for k in ("pred_logits", "pred_boxes")]).all())
        with record_function("loss"):
            losses = self.criterion(outputs, targets) if finite else {}
            total = weighted_total(losses, self.recipe.losses) if finite else torch.tensor(math.nan)
        with record_function("sync"):
            logged = torch.stack([total.detach()] + [losses[k].detach() for k in LOGGED]).tolist() \
                if finite else [math.nan] * (1 + len(LOGGED))
            if any_process(not math.isfinite(logged[0]), self.info):
                self._diverged(losses, total)
        with record_function("backward"):
            self.optimizer.zero_grad(set_to_none=True)
            (self.scaler.scale(total) if self.scaler else total).backward()
        with record_function("optimizer"):
            clip_and_step(self.trainable, self.optimizer, self.scheduler, self.recipe.optim.clip_max_norm,
                          self.scaler)
        p = self.progress
        self.progress = Progress(p.epoch, p.epoch_step + 1, p.step + 1, p.best_ap)
        return dict(zip(("loss",) + LOGGED, logged))

    def _log_step(self, values: dict, images_per_s: float, seconds: float) -> None:
        """One JSON line per step (``"kind": "step"``; the epoch lines have no "kind"): losses and images/s."""
        if not self.info.is_main:
            return
        entry = {"kind": "step", "epoch": self.progress.epoch, "step": self.progress.step,
                 "images_per_s": round(images_per_s, 2), "seconds": round(seconds, 4),
                 **{k: round(v, 5) for k, v in values.items()}}
        self.run.output.mkdir(parents=True, exist_ok=True)
        with open(self.run.output / LOG_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _diverged(self, losses: dict, total: torch.Tensor) -> None:
        last = self.run.output / checkpoints.LAST
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
        terms = {k: round(v.detach().item(), 4) for k, v in losses.items() if k in LOGGED}
        raise TrainingDiverged(
            f"loss became {total.item()} at epoch {self.progress.epoch}, step {self.progress.step} "
            f"(terms: {terms or 'model output not finite'}); training stopped and {kept}. "
            "Lower the learning rate (or raise warm-up) and --resume from that checkpoint."
        )

    # --- after an epoch -------------------------------------------------------------------

    def end_epoch(self, losses: dict, images: int, seconds: float, partial: bool) -> TrainResult:
        """Evaluate, append to the JSON-lines log, and write last (and best) checkpoints."""
        result = self._evaluate() if self.val_set is not None else None
        ap = result.stats["AP"] if result else None
        is_best = ap is not None and ap > self.progress.best_ap
        if is_best:
            p = self.progress
            self.progress = Progress(p.epoch, p.epoch_step, p.step, ap)
        if self.info.is_main:
            self._report(losses, images, seconds, partial, result)
            self._save(is_best)
        return TrainResult(self.progress, losses, result)

    def _evaluate(self) -> EvalResult:
        return evaluate(self.model, self.val_set, self.recipe.batch_size, self.info)

    def _report(self, losses, images, seconds, partial, result) -> None:
        epoch = self.progress.epoch - (0 if partial else 1)
        entry = {"epoch": epoch, "partial": partial, "step": self.progress.step,
                 "lr": self.optimizer.param_groups[0]["lr"], "train": losses,
                 "images_per_s": round(images / max(seconds, 1e-9), 3), "seconds": round(seconds, 1)}
        if result is not None:
            entry["val"] = result.stats
            entry.update(self._val_attention())
            log.info("epoch %d: COCO AP on %s\n%s", epoch, self.run.val_data.annotations, result.table)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in losses.items()})
        self.run.output.mkdir(parents=True, exist_ok=True)
        with open(self.run.output / LOG_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _val_attention(self) -> dict:
        """attention_metric.py's figure on the validation images, if asked for (rank 0 only)."""
        if not self.run.val_attention:
            return {}
        share = attention_in_boxes(self.model, [r.file for r in self.val_set.records])
        log.info("attention inside the boxes: %.3f over %d detections; per head %s",
                 share.mean_fraction, share.detections, [round(h, 2) for h in share.per_head])
        return {"val_attention_in_box": share.mean_fraction,
                "val_attention_in_box_per_head": list(share.per_head),
                "val_attention_detections": share.detections}

    def _extra_state(self) -> dict:
        if isinstance(self.trainable, GroupDETR):
            return {"group_queries": self.trainable.extra_queries.detach().cpu()}
        return {}

    def _save(self, is_best: bool) -> None:
        ckpt = checkpoints.training_checkpoint(
            self.model, self.optimizer, self.scheduler, self.progress, self.recipe.to_dict(),
            self.setup.label_map.category_to_label, self.init_from, self._extra_state())
        checkpoints.save(ckpt, self.run.output / checkpoints.LAST)
        if is_best:
            checkpoints.save(ckpt, self.run.output / checkpoints.BEST)
        if self.run.export_hf is not None and (is_best or self.val_set is None):
            save_model(self.model, self.run.export_hf, format="hf")
            log.info("wrote the %s model in the Hugging Face format to %s",
                     "best" if is_best else "last", self.run.export_hf)


def train(run: RunConfig, info: DistInfo = DistInfo()) -> TrainResult:
    """Run training as described by ``run``; see ``Trainer``."""
    return Trainer(run, info).fit()
