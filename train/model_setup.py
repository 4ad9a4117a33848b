"""The model a run starts from: fresh, fine-tuned from any ``load_model`` source, or resumed.

Fine-tuning onto a data set whose categories the source model does not know
re-initialises exactly ``class_embed`` (every other weight must load, or the
run stops with the list of keys that did not), and says so in the log.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

from detr_core import DETR, DETRConfig, PreprocessConfig, build_model, load_model

from .configs import TrainConfig
from .dataset import LabelMap

log = logging.getLogger(__name__)
HEAD_PREFIX = "class_embed."


@dataclass(frozen=True)
class ModelSetup:
    """The model to train and how data set categories map to its labels."""

    model: DETR
    label_map: LabelMap
    pretrained: bool  # True when the weights came from somewhere (the stem is then frozen)


def fresh_model(recipe: TrainConfig, categories: Sequence[dict]) -> ModelSetup:
    """Random weights, one class per data set category."""
    label_map = LabelMap.from_categories(categories)
    config = dataclasses.replace(recipe.model, num_classes=len(label_map.class_names))
    model = build_model(config, recipe.preprocess, label_map.class_names)
    log.info("new model: %s, %d classes %s", config.backbone, config.num_classes,
             list(label_map.class_names))
    return ModelSetup(model, label_map, pretrained=False)


def finetuned_model(source: str, preprocess: PreprocessConfig, categories: Sequence[dict],
                    dropout: float | None = None) -> ModelSetup:
    """The source model's architecture and weights; a new ``class_embed`` if the classes differ.

    ``dropout`` replaces the source's dropout rate (it has no weights, so every weight still loads).
    """
    src = with_dropout(load_model(source), dropout, source)
    if LabelMap.covers(categories, src.class_names):
        log.info("init from %s: all %d data set categories are among its %d classes; "
                 "keeping every weight, class_embed included", source, len(categories),
                 len(src.class_names))
        src.preprocess = preprocess
        return ModelSetup(src.train(), LabelMap.by_name(categories, src.class_names), True)
    label_map = LabelMap.from_categories(categories)
    config = dataclasses.replace(src.config, num_classes=len(label_map.class_names))
    model = build_model(config, preprocess, label_map.class_names)
    load_all_but_head(model, src.state_dict(), source)
    log.warning("init from %s: class_embed re-initialised (source has %d classes, the data set "
                "%d: %s); every other weight loaded", source, src.config.num_classes,
                config.num_classes, list(label_map.class_names))
    return ModelSetup(model, label_map, True)


def with_dropout(model: DETR, dropout: float | None, source: str) -> DETR:
    """``model`` rebuilt with another dropout rate, all weights kept; ``model`` itself if unchanged."""
    if dropout is None or dropout == model.config.dropout:
        return model
    config = dataclasses.replace(model.config, dropout=dropout)
    rebuilt = build_model(config, model.preprocess, model.class_names)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    log.info("init from %s: dropout %g instead of its %g", source, dropout, model.config.dropout)
    return rebuilt


def load_all_but_head(model: DETR, state: dict, source: str) -> None:
    """Load ``state`` into ``model`` except ``class_embed``; any other mismatch is an error."""
    kept = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    result = model.load_state_dict(kept, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(HEAD_PREFIX)]
    if missing or result.unexpected_keys:
        raise ValueError(f"{source} does not fit the fine-tuned model: missing {missing[:10]}, "
                         f"unexpected {result.unexpected_keys[:10]}")


def resumed_model(ckpt: dict, categories: Sequence[dict], where: str) -> ModelSetup:
    """The checkpoint's model, checked to have been trained on these categories."""
    model = build_model(DETRConfig.from_dict(ckpt["config"]),
                        PreprocessConfig.from_dict(ckpt["preprocess"]), ckpt["class_names"])
    model.load_state_dict(ckpt["model"], strict=True)
    label_map = LabelMap(tuple(ckpt["class_names"]), dict(ckpt["label_map"]))
    names = {c["id"]: c["name"] for c in categories}
    stored = {cat: label_map.class_names[label] for cat, label in label_map.category_to_label.items()}
    if names != stored:
        raise ValueError(f"{where} was trained on categories {stored}, but the data set has "
                         f"{names}; resume on the same data set, or use --init-from to fine-tune")
    return ModelSetup(model, label_map, pretrained=ckpt.get("init_from") is not None)


def freeze_stem_if_pretrained(setup: ModelSetup, enabled: bool = True) -> None:
    """Official recipe: a pre-trained ResNet keeps conv1 and layer1 fixed. From scratch they must learn."""
    if setup.pretrained and enabled:
        setup.model.backbone[0].freeze_stem()
