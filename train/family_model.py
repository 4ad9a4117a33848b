"""The DETR-family model a run trains: a named configuration from scratch, a folder or Hub id fine-tuned, or a
resumed run's own folder. Always transformers' own ``*ForObjectDetection`` class (its loss included), never
``trust_remote_code``; the image processor travels with the model.

Fine-tuning onto categories the source does not know builds the model with the data set's class count
(``num_labels``, ``id2label``; ``ignore_mismatched_sizes`` for the heads whose size changes) and re-initialises
every class-dependent tensor, also when only the names differ: those are found by building the architecture
with one more class and comparing shapes, so no model type needs its head names listed here.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from detr_core.family.loading import class_names as names_of, hub_folder, processor_for
from detr_core.family.registry import spec_for
from detr_core.weights.hub import parse_hub_ref

from .backbone_transfer import load_backbone_from_detr
from .dataset import LabelMap
from .family_configs import NamedFamily, named_family

log = logging.getLogger(__name__)
BACKBONE_PREFIX = "model.backbone."


@dataclass(frozen=True)
class FamilySetup:
    """The transformers model to train, its image processor, and how categories map to its labels."""

    model: torch.nn.Module
    processor: Any
    label_map: LabelMap


def _label_config(label_map: LabelMap) -> dict:
    names = label_map.class_names
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)}}


def scratch_model(name: str, named: NamedFamily, categories: Sequence[dict], seed: int) -> FamilySetup:
    """A named configuration with random weights (its backbone from ``named.backbone_from`` if set)."""
    import transformers

    label_map = LabelMap.from_categories(categories)
    config = named.config()
    for key, value in _label_config(label_map).items():
        setattr(config, key, value)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = getattr(transformers, named.model_class)._from_config(config, attn_implementation="eager")
    if named.backbone_from is not None:
        load_backbone_from_detr(model.model.backbone.model, named.backbone_from)
    log.info("new %s (%s): %d classes %s", name, config.model_type, len(label_map.class_names),
             list(label_map.class_names))
    return FamilySetup(model.train(), named.processor(), label_map)


def model_folder(source: str) -> Path:
    """The local folder of a family model: ``source`` itself, or a Hub id's snapshot (cache, else download)."""
    folder = Path(os.fspath(source))
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ValueError(f"--model {source}: the folder has no config.json (save models with save_pretrained)")
        return folder
    if parse_hub_ref(str(source)) is None:
        raise ValueError(f"--model {source!r} is neither a named configuration, a folder nor a Hub id "
                         "(owner/name)")
    return hub_folder(str(source))


def _model_class(folder: Path):
    import transformers

    spec = spec_for(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    return getattr(transformers, spec.model_class)


def _processor(folder: Path):
    processor, note = processor_for(folder)
    if note:
        log.warning("%s: %s", folder, note)
    return processor


def finetuned_model(source: str, categories: Sequence[dict], seed: int) -> FamilySetup:
    """The source's architecture and weights; new class heads unless it already knows every category."""
    folder = model_folder(source)
    model_class = _model_class(folder)
    known = names_of(model_class.config_class.from_pretrained(folder))
    if LabelMap.covers(categories, known):
        log.info("init from %s: all %d data set categories are among its %d classes; keeping its class heads",
                 source, len(categories), len(known))
        model = model_class.from_pretrained(folder, attn_implementation="eager", local_files_only=True)
        return FamilySetup(model.train(), _processor(folder), LabelMap.by_name(categories, known))
    label_map = LabelMap.from_categories(categories)
    model = model_class.from_pretrained(folder, attn_implementation="eager", local_files_only=True,
                                        ignore_mismatched_sizes=True, **_label_config(label_map))
    fresh = reinitialise_class_heads(model, seed)
    log.warning("init from %s: %d class-dependent tensors re-initialised (source has %d classes, the data set "
                "%d: %s); every other weight loaded", source, len(fresh), len(known), len(label_map.class_names),
                list(label_map.class_names))
    return FamilySetup(model.train(), _processor(folder), label_map)


def class_dependent_keys(model: torch.nn.Module) -> list[str]:
    """The state-dict keys whose shape follows the class count (built on the meta device: no memory)."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_labels = model.config.num_labels + 1
    with torch.device("meta"):
        other = type(model)._from_config(config).state_dict()
    own = model.state_dict()
    return [k for k, v in own.items() if k in other and other[k].shape != v.shape]


def reinitialise_class_heads(model: torch.nn.Module, seed: int) -> list[str]:
    """Give ``model`` the class-dependent tensors of a freshly initialised copy; returns their keys."""
    keys = class_dependent_keys(model)
    if not keys:
        raise RuntimeError(f"{type(model).__name__}: found no tensor that depends on the class count")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = type(model)._from_config(model.config, attn_implementation="eager").state_dict()
    with torch.no_grad():
        own = model.state_dict()
        for key in keys:
            own[key].copy_(fresh[key])
    return keys


def resumed_model(folder: Path, state: dict, categories: Sequence[dict]) -> FamilySetup:
    """A run's own checkpoint folder, checked to have been trained on these categories."""
    model = _model_class(folder).from_pretrained(folder, attn_implementation="eager", local_files_only=True)
    label_map = LabelMap(tuple(names_of(model.config)), {int(k): int(v) for k, v in state["label_map"].items()})
    names = {c["id"]: c["name"] for c in categories}
    stored = {cat: label_map.class_names[label] for cat, label in label_map.category_to_label.items()}
    if names != stored:
        raise ValueError(f"{folder} was trained on categories {stored}, but the data set has {names}; resume on "
                         "the same data set, or use --model FOLDER to fine-tune from it")
    return FamilySetup(model.train(), _processor(folder), label_map)


def set_trainable(model: torch.nn.Module, frozen: Sequence[str] | None, train_all: bool) -> list[str]:
    """Freeze exactly ``frozen`` (a resumed run's list) or, for a new run, nothing when ``train_all`` and
    transformers' own choice otherwise (e.g. Deformable DETR's fixed ResNet stem); returns the frozen names."""
    if frozen is None:
        frozen = [] if train_all else [n for n, p in model.named_parameters() if not p.requires_grad]
    frozen_set = set(frozen)
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_set)
    return sorted(frozen_set)


def param_groups(model: torch.nn.Module, lr: float, lr_backbone: float) -> list[dict]:
    """Two AdamW groups, as for DETR: the backbone at ``lr_backbone`` (0 freezes it), the rest at ``lr``."""
    backbone, rest = [], []
    for name, param in model.named_parameters():
        if name.startswith(BACKBONE_PREFIX) and lr_backbone == 0:
            param.requires_grad_(False)
        if param.requires_grad:
            (backbone if name.startswith(BACKBONE_PREFIX) else rest).append(param)
    groups = [{"params": rest, "lr": lr}]
    if backbone:
        groups.append({"params": backbone, "lr": lr_backbone})
    return groups


def is_named(source: str | None) -> bool:
    return source is not None and named_family(source) is not None
