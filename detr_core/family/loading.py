"""Open a DETR-family model from a folder (config.json + weights [+ preprocessor_config.json]) or a Hub id,
with the image processor its own preprocessor_config.json describes.

Only the `transformers` classes named in the registry are built, with `attn_implementation="eager"` (dense
attention weights are returned only by the eager implementation); never `trust_remote_code`. Weights load
through safetensors, or torch.load(weights_only=True) for `.bin` files (transformers' default).
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..weights.hub import parse_hub_ref
from ..weights.loading import BUNDLED_DIR
from .registry import PROCESSOR_CLASSES, FamilySpec, spec_for

# Family models this project trains itself and ships as save_pretrained folders (opened by name, offline).
BUNDLED_FAMILY = {"shapes-deformable": BUNDLED_DIR / "shapes-deformable"}


@dataclass
class FamilyModel:
    """A transformers DETR-family detector with the preprocessing it was trained with.

    model: the `*ForObjectDetection` module (eval mode, eager attention). processor: its image processor.
    processor_note: "" when the processor came from the folder's preprocessor_config.json, else why not.
    """

    model: torch.nn.Module
    processor: Any
    spec: FamilySpec
    class_names: list[str]
    source: str = ""
    processor_note: str = ""

    @classmethod
    def from_transformers(cls, model: torch.nn.Module, processor: Any = None, source: str = "") -> "FamilyModel":
        """Wrap an already built model (e.g. one made from a config in a notebook). Without `processor`,
        the model type's default image processor is used (and `processor_note` says so)."""
        spec = spec_for(getattr(model.config, "model_type", ""))
        note = ""
        if processor is None:
            processor = _default_processor(spec)
            note = f"no image processor given: using {spec.processor_class}() defaults"
        _ensure_eager(model)
        return cls(model.eval(), processor, spec, class_names(model.config), source, note)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare(self, image: Image.Image) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
        """RGB image -> (forward inputs on the model's device, input_size (h, w) before padding)."""
        batch = self.processor(images=image, return_tensors="pt")
        accepted = inspect.signature(self.model.forward).parameters
        inputs = {k: v.to(self.device) for k, v in batch.items()
                  if k in ("pixel_values", "pixel_mask") and k in accepted}
        pixels = batch["pixel_values"]  # [1, 3, h_pad, w_pad]
        if "pixel_mask" in batch:  # 1 on image pixels, 0 on padding
            mask = batch["pixel_mask"][0].bool()  # [h_pad, w_pad]
            return inputs, (int(mask.any(1).sum()), int(mask.any(0).sum()))
        return inputs, (int(pixels.shape[-2]), int(pixels.shape[-1]))


def class_names(config) -> list[str]:
    """Names by class index from the config's id2label, "class k" where it has none."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return [id2label.get(i, f"class {i}") for i in range(int(config.num_labels))]


def is_family_source(source) -> bool:
    """True for a folder whose config.json names a supported DETR-family model type."""
    config = Path(os.fspath(source)) / "config.json"
    if not config.is_file():
        return False
    try:
        return spec_for(json.loads(config.read_text()).get("model_type", "")) is not None
    except (ValueError, json.JSONDecodeError):
        return False


def open_any(source: str | os.PathLike, device: str | torch.device = "cpu"):
    """What `source` names, opened: a FamilyModel for a folder or Hub id whose config.json names a supported
    DETR-family model type, else whatever detr_core.load_model makes of it (a DETR: zoo names, bundled models,
    checkpoint files, Hugging Face DETR folders and Hub ids)."""
    from ..weights.loading import load_model, locate_hf

    if isinstance(source, str) and source in BUNDLED_FAMILY:
        return load_family_model(source, device)
    if is_family_source(source):
        return load_family_model(source, device)
    if isinstance(source, str) and not Path(source).exists() and parse_hub_ref(source) is not None:
        files = locate_hf(source)  # None for zoo and bundled names; a Hub id is fetched into the cache here
        if files is not None and is_family_source(files.config.parent):
            return load_family_model(source, device)
    return load_model(source, device)


def load_family_model(source: str | os.PathLike, device: str | torch.device = "cpu",
                      cache_dir: str | os.PathLike | None = None) -> FamilyModel:
    """A FamilyModel from a folder or a Hub id ("owner/name": the local cache first, else a download;
    cache_dir: the Hugging Face cache to use, default the standard one)."""
    folder = bundled_folder(source) if isinstance(source, str) and source in BUNDLED_FAMILY else Path(os.fspath(source))
    if not folder.is_dir():
        if not (isinstance(source, str) and parse_hub_ref(source)):
            raise ValueError(f"model source {str(source)!r} is neither a folder nor a Hub id like 'owner/name'")
        folder = hub_folder(source, cache_dir)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder} has no config.json: save the model with save_pretrained, or give its Hub id")
    spec = spec_for(json.loads(config_file.read_text()).get("model_type", ""))
    import transformers

    model = getattr(transformers, spec.model_class).from_pretrained(
        folder, attn_implementation="eager", local_files_only=True)
    processor, note = _processor_from(folder, spec)
    if note:
        warnings.warn(f"{source}: {note}", stacklevel=2)
    return FamilyModel(model.eval().to(device), processor, spec, class_names(model.config), str(source), note)


def bundled_folder(name: str) -> Path:
    """The folder of the bundled family model `name`; RuntimeError saying how to get it when it is not there."""
    folder = BUNDLED_FAMILY[name]
    if not (folder / "config.json").is_file():
        raise RuntimeError(
            f"the bundled {name!r} model is not bundled yet (expected a save_pretrained folder at {folder}): it is"
            f" trained with `python -m train --model {name} ...` (README, training section; tools/gpu_stage.sh on"
            " a GPU). Meanwhile open 'shapes' (the bundled DETR) or a DETR-family folder or Hub id")
    return folder


def bundled_family_names() -> tuple[str, ...]:
    """The bundled family models present in this install (those a menu can offer)."""
    return tuple(name for name, folder in BUNDLED_FAMILY.items() if (folder / "config.json").is_file())


def processor_for(folder: str | os.PathLike) -> tuple[Any, str]:
    """The image processor of the model folder `folder` (its preprocessor_config.json, or its type's default)
    and a note saying why when it is not the folder's own."""
    folder = Path(os.fspath(folder))
    spec = spec_for(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    return _processor_from(folder, spec)


def hub_folder(source: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local snapshot folder of Hub model `source` ("owner/name[@revision]"): from the cache if it is there,
    else downloaded once. Hub access, the cache and the offline errors are detr_core.weights.hub's, as for DETR."""
    from ..weights.hub import fetch_model

    ref = parse_hub_ref(source)
    if ref is None:
        raise ValueError(f"model source {source!r} is neither a folder nor a Hub id like 'owner/name'")
    return fetch_model(ref, cache_dir).config.parent  # config.json, weights and preprocessor share a snapshot


def _processor_from(folder: Path, spec: FamilySpec) -> tuple[Any, str]:
    """The folder's own image processor, or the model type's default and a note saying why."""
    import transformers

    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return _default_processor(spec), f"no preprocessor_config.json: using {spec.processor_class}() defaults"
    named = json.loads(config.read_text()).get("image_processor_type", "")
    if named not in PROCESSOR_CLASSES or not hasattr(transformers, named):
        default = getattr(transformers, spec.processor_class)
        return (default.from_pretrained(folder),
                f"preprocessor_config.json names {named!r}; reading it with {spec.processor_class}")
    return getattr(transformers, named).from_pretrained(folder), ""


def _default_processor(spec: FamilySpec):
    import transformers

    return getattr(transformers, spec.processor_class)()


def _ensure_eager(model: torch.nn.Module) -> None:
    """Dense attention maps come only from the eager attention implementation."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
