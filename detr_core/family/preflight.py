"""Checks on a DETR-family folder before transformers builds anything from it.

`transformers` builds whatever a config.json describes, allocating as it goes, and may reach the Hub while doing
so: a `backbone` named by Hub id (or a timm `hf-hub:` name) makes it fetch that backbone's config, and a
`backbone` with no `backbone_config` makes it ask the Hub whether a repo of that name exists. So a folder is read
here first, as JSON, and refused with a message naming the field when it describes sizes beyond any real model
(detr_core/weights/size_limits.py), a model its weights file does not hold, odd preprocessing, or (unless
downloads are allowed) a backbone from the Hub. Then the model is built on the meta device (shapes, no memory)
to count its parameters. Nothing here allocates more than the JSON and the weights file's header.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..weights.hf_model import read_json, read_weights
from ..weights.size_limits import (check_config_sizes, check_image_side, check_normalisation,
                                   check_parameter_count, check_weights_cover)
from .registry import FamilySpec, spec_for

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # transformers' names, in the order it prefers them
# model types whose config turns a plain `backbone` name into a timm backbone without asking the Hub (their
# __post_init__ in transformers 5); for the others transformers first asks the Hub whether a repo has that name
_TIMM_NAME_TYPES = frozenset({"conditional_detr", "dab-detr", "deformable_detr"})
_SIDE_FIELDS = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")


@dataclass(frozen=True)
class CheckedFolder:
    """A family folder that passed: its parsed config.json, spec, and the transformers config built from it."""

    folder: Path
    config: dict
    spec: FamilySpec
    hf_config: Any  # the model class's config object (use_pretrained_backbone off)


def check_family_folder(folder: Path, allow_download: bool = True) -> CheckedFolder:
    """ValueError naming the file and field for anything this module refuses (see the module's text)."""
    where = str(folder / "config.json")
    config = read_json(folder / "config.json")
    spec = spec_for(str(config.get("model_type", "")))
    check_config_sizes(config, where)
    if not allow_download:
        config = with_local_backbone(config)
    hub = hub_backbone(config)
    if hub and (not allow_download or hub.startswith("local-dir:")):
        raise ValueError(f"{where}: backbone {hub!r} would be fetched from {_source(hub)} while the model is"
                         " built; downloads are not allowed for this load (the weights file holds the backbone"
                         " anyway: set backbone_config, or open it where downloads are allowed)")
    if (folder / "preprocessor_config.json").is_file():
        check_family_preprocessor(read_json(folder / "preprocessor_config.json"),
                                  str(folder / "preprocessor_config.json"))
    values = _weight_values(folder)
    hf_config = _model_config(spec, config, where)
    parameters = _parameter_count(spec, hf_config)
    check_parameter_count(parameters, where)
    check_weights_cover(parameters, values, where)
    return CheckedFolder(folder, config, spec, hf_config)


def hub_backbone(config: Mapping, top: bool = True) -> str | None:
    """The backbone name that transformers or timm would look up outside the folder when building `config`
    (at any nesting level), or None."""
    name = config.get("backbone")
    if isinstance(name, str) and (":" in name or "/" in name):  # hf-hub:owner/x, local-dir:/..., owner/x
        return name
    if top and name is not None and config.get("backbone_config") is None and (
            config.get("model_type") not in _TIMM_NAME_TYPES or config.get("use_timm_backbone") is False
            or config.get("backbone_kwargs")):
        return str(name)  # transformers asks the Hub whether `name` is a repo (hf_api().repo_exists)
    nested = config.get("backbone_config")
    return hub_backbone(nested, top=False) if isinstance(nested, Mapping) else None


def with_local_backbone(config: dict) -> dict:
    """`config` with a plain timm backbone name (e.g. "resnet50" with backbone_kwargs, as transformers 4.x saved
    Conditional/DAB/Deformable DETR configs) turned into the timm backbone_config that transformers builds for it,
    without the Hub look-up transformers makes first (a request, for a name that is no repo). Others unchanged."""
    name, kwargs = config.get("backbone"), config.get("backbone_kwargs") or {}
    if config.get("backbone_config") is not None or config.get("model_type") not in _TIMM_NAME_TYPES or \
            config.get("use_timm_backbone") is False or not isinstance(name, str) or ":" in name or "/" in name \
            or not isinstance(kwargs, Mapping):
        return config
    backbone = {"model_type": "timm_backbone", "backbone": name, "features_only": True,
                "use_pretrained_backbone": False, "out_indices": kwargs.get("out_indices", [1, 2, 3, 4]),
                "num_channels": kwargs.get("num_channels", kwargs.get("in_chans", config.get("num_channels", 3)))}
    if config.get("dilation") or kwargs.get("output_stride"):
        backbone["output_stride"] = kwargs.get("output_stride", 16)
    rest = {k: v for k, v in config.items() if k not in ("backbone", "backbone_kwargs", "use_timm_backbone")}
    return {**rest, "backbone_config": backbone}


def _source(name: str) -> str:
    return "the local folder it names" if name.startswith("local-dir:") else "the Hugging Face Hub"


def check_family_preprocessor(pp: Mapping, where: str) -> None:
    """Image sizes within 1..MAX_IMAGE_SIDE px, and a usable normalisation (3 means, 3 positive stds)."""
    size = pp.get("size")
    if isinstance(size, Mapping):
        for field in _SIDE_FIELDS:
            if size.get(field) is not None:
                check_image_side(size[field], f"size.{field}", where)
    elif size is not None:
        check_image_side(size, "size", where)
    for field in ("max_size", "crop_size"):
        if isinstance(pp.get(field), (int, float)):
            check_image_side(pp[field], field, where)
    if pp.get("do_normalize", True) is not False and ("image_mean" in pp or "image_std" in pp):
        check_normalisation(pp.get("image_mean", 0.5), pp.get("image_std", 0.5), where)


def _weight_values(folder: Path) -> int:
    """How many values the folder's weights file holds, read from its header (or a mapped .bin)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return sum(t.numel() for t in read_weights(folder / name, shapes_only=True).values())
    if (folder / "model.safetensors.index.json").is_file():
        raise ValueError(f"{folder}: a sharded checkpoint (model.safetensors.index.json); DETR Lens reads one"
                         " model.safetensors (DETR-family models are far below the sharding size)")
    raise ValueError(f"{folder} has config.json but no weights: expected {' or '.join(WEIGHT_FILES)}")


def _model_config(spec: FamilySpec, config: dict, where: str):
    import transformers

    model_class = getattr(transformers, spec.model_class)
    # the checkpoint holds the backbone's weights: never fetch pretrained ones (transformers 4.x would)
    values = {**config, "use_pretrained_backbone": False}
    try:
        return model_class.config_class.from_dict(values)
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{where}: transformers cannot read it as a {spec.title} config ({err})") from None


def _parameter_count(spec: FamilySpec, hf_config) -> int:
    import transformers

    try:
        with torch.device("meta"):  # modules and shapes only: nothing is allocated however large the config
            skeleton = getattr(transformers, spec.model_class)._from_config(hf_config, attn_implementation="eager")
    except (ValueError, TypeError, RuntimeError) as err:  # e.g. d_model not divisible by the heads
        raise ValueError(f"{spec.title} config: transformers cannot build it ({err})") from None
    return sum(p.numel() for p in skeleton.parameters())
