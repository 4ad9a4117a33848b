"""A Hugging Face DETR on disk: a `save_pretrained` folder, or one weights file with its `config.json` beside it,
read into this project's state dict, configuration and class names.

Safetensors files are read with `safetensors`, `.bin` files with `torch.load(weights_only=True)`; configs are
plain JSON. Nothing from a checkpoint or a config runs as code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..model.config import DETRConfig, PreprocessConfig
from .checkpoint_io import read_checkpoint
from .hf_config import read_config, read_preprocessor
from .hf_keys import hf_to_detr_lens, normalise_hf_names

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in the order transformers prefers them


@dataclass(frozen=True)
class HFFiles:
    """The files of one Hugging Face model, and how the user named it (a path, or a Hub id@revision)."""

    config: Path
    weights: Path
    preprocessor: Path | None
    location: str


@dataclass(frozen=True)
class HFOrigin:
    """Where a model opened from the Hugging Face format came from: `model.hf_origin`, None for other models."""

    location: str
    architecture: str  # e.g. "DetrForSegmentation"
    backbone_layout: str  # "timm" or "transformers"
    set_aside: tuple[str, ...] = ()  # parts of the checkpoint the lens does not show, e.g. ("mask head",)

    @property
    def mask_head_omitted(self) -> bool:
        return "mask head" in self.set_aside


def hf_files(path: Path, location: str | None = None) -> HFFiles | None:
    """The Hugging Face files behind an existing local path; None for a path that is not in that format
    (a .pth checkpoint). ValueError for a folder or .safetensors file that lacks its config.json."""
    location = location or str(path)
    if path.is_dir():
        if not (path / CONFIG).is_file():
            raise ValueError(f"folder {str(path)!r} has no {CONFIG}: expected a folder written by save_pretrained"
                             f" ({CONFIG} + {' or '.join(WEIGHT_FILES)}) or a checkpoint file"
                             + _checkpoints_found(path))
        return HFFiles(path / CONFIG, _weights_in(path), _optional(path / PREPROCESSOR), location)
    beside = path.parent / CONFIG
    if path.suffix == ".safetensors" and not beside.is_file():
        raise ValueError(f"{str(path)!r} has no {CONFIG} beside it: a safetensors file holds only tensors, and"
                         f" the architecture comes from the {CONFIG} that save_pretrained writes with it")
    if path.suffix in (".safetensors", ".bin") and beside.is_file():
        return HFFiles(beside, path, _optional(path.parent / PREPROCESSOR), location)
    return None


# files load_model opens alone (a .safetensors or .bin file needs the config.json that is missing here)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt")


def _checkpoints_found(folder: Path, shown: int = 5) -> str:
    """'; it holds the checkpoint files a.pth, b.pth: open one of them, e.g. ...' for a folder of checkpoints
    (a training run's output, say), else ''."""
    found = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if not found:
        return ""
    first = next((n for n in ("best.pth", "last.pth") if n in found), found[0])
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return (f"; it holds the checkpoint file{'s' if len(found) > 1 else ''} {', '.join(found[:shown])}{more}:"
            f" open one of them, e.g. load_model({str(folder / first)!r})")


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def _weights_in(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if (folder / "model.safetensors.index.json").is_file():
        raise ValueError(f"folder {str(folder)!r} holds a sharded checkpoint (model.safetensors.index.json);"
                         " DETR Lens reads one model.safetensors (DETRs are far below the sharding size)")
    raise ValueError(f"folder {str(folder)!r} has {CONFIG} but no weights: expected {' or '.join(WEIGHT_FILES)}")


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable JSON file ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a JSON {type(data).__name__}, expected an object")
    return data


def read_weights(path: Path, shapes_only: bool = False) -> dict[str, torch.Tensor]:
    """model.safetensors (safetensors) or pytorch_model.bin (torch.load, weights_only) -> {name: tensor}.

    shapes_only: meta tensors of the file's shapes, values left unread: a safetensors file's header alone, a .bin
    file mapped into memory rather than read (its pages are touched only for the pickled index)."""
    if path.suffix == ".safetensors":
        try:
            if shapes_only:
                with safe_open(path, framework="pt") as f:
                    return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
            return load_file(path)
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{str(path)!r} is not a complete safetensors file ({err}); a truncated download?"
                             " Fetch it again") from None
    state = read_checkpoint(path, mmap=shapes_only)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} is not a state dict of tensors, as save_pretrained writes")
    if shapes_only:
        return {k: torch.empty(v.shape, device="meta") for k, v in state.items()}
    return dict(state)


def read_hf_model(files: HFFiles, overrides: Mapping | None = None, shapes_only: bool = False
                  ) -> tuple[dict, DETRConfig, PreprocessConfig, list[str], HFOrigin]:
    """The files -> (state dict in this project's names, config, preprocessing, class names, origin).

    overrides: DETRConfig fields to replace (e.g. dropout for fine-tuning). shapes_only: the state dict holds
    meta tensors (shapes only, nothing read from the weights but their header)."""
    arch = read_config(read_json(files.config), str(files.config))
    pre = read_preprocessor(read_json(files.preprocessor) if files.preprocessor else None, str(files.preprocessor))
    named, mask_head = normalise_hf_names(read_weights(files.weights, shapes_only))
    state = hf_to_detr_lens(named, arch.backbone_layout, str(files.weights))
    config = arch.config
    if overrides:
        try:
            config = dataclasses.replace(config, **overrides)
        except (TypeError, ValueError) as err:
            raise ValueError(f"overrides {dict(overrides)} for {files.location}: {err}") from None
    has_mask_head = bool(mask_head) or arch.architecture == "DetrForSegmentation"
    origin = HFOrigin(files.location, arch.architecture, arch.backbone_layout,
                      ("mask head",) if has_mask_head else ())
    return state, config, pre, list(arch.class_names), origin
