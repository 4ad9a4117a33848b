"""Open a DETR-family model from a folder (config.json + weights [+ preprocessor_config.json]) or a Hub id,
with the image processor its own preprocessor_config.json describes.

Only the `transformers` classes named in the registry are built, with `attn_implementation="eager"` (dense
attention weights are returned only by the eager implementation); never `trust_remote_code`. Weights load
through safetensors, or torch.load(weights_only=True) for `.bin` files (transformers' default).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .. import caller
from ..weights.hf_model import read_json
from ..weights.hub import parse_hub_ref
from ..weights.sources import existing_path
from .preflight import check_family_folder
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
    """True for a folder whose config.json names a supported DETR-family model type. ValueError for a source
    that cannot be a path (see detr_core.weights.sources)."""
    path = existing_path(source)
    config = path / "config.json" if path is not None else None
    if config is None or not config.is_file():
        return False
    try:
        return spec_for(str(read_json(config).get("model_type", ""))) is not None
    except ValueError:  # not JSON, not an object, another model type: load_model says what it is
        return False


def load_model(source: str | os.PathLike, device: str | torch.device = "cpu", allow_download: bool = True,
               **overrides):
    """The one front door: whatever DETR Lens can open, opened, in eval mode.

    A DETR (`detr_core.DETR`) for official zoo names ("detr-r50", ...), the bundled models ("shapes"),
    "untrained", checkpoint files and Hugging Face DETR folders or Hub ids; a `FamilyModel` for a folder or Hub
    id whose config.json names a supported DETR-family model type (RT-DETR, Deformable DETR, D-FINE, ...).
    Inspect either with `detr_core.inspect_image`. allow_download=False: only what is on this machine (local, or
    in the caches), and no request of any kind, the family's Hub backbones included. overrides: DETRConfig
    fields the weights cannot show (e.g. dilation=True for a DC5 state dict) and min_size / max_size; DETR only
    (a family model's config says all).
    """
    from ..weights.loading import load_detr, locate_hf

    if isinstance(source, str) and source in BUNDLED_FAMILY:
        if overrides:
            raise ValueError(f"{sorted(overrides)}: overrides apply to DETR checkpoints only")
        return load_family_model(source, device, allow_download=allow_download)
    family = is_family_source(source)
    if not family and isinstance(source, str) and existing_path(source) is None and parse_hub_ref(source) is not None:
        files = locate_hf(source, allow_download)  # None for zoo and bundled names; a Hub id is fetched here
        family = files is not None and is_family_source(files.config.parent)
    if not family:
        return load_detr(source, device, allow_download=allow_download, **overrides)
    if overrides:
        raise ValueError(f"{sorted(overrides)}: overrides apply to DETR checkpoints only; the DETR-family model"
                         f" {str(source)!r} takes its whole architecture from its config.json")
    return load_family_model(source, device, allow_download=allow_download)


open_any = load_model  # its earlier name, kept for scripts that use it


def load_family_model(source: str | os.PathLike, device: str | torch.device = "cpu",
                      cache_dir: str | os.PathLike | None = None, allow_download: bool = True) -> FamilyModel:
    """A FamilyModel from a folder or a Hub id ("owner/name": the local cache first, else a download;
    cache_dir: the Hugging Face cache to use, default the standard one). allow_download=False: the cache only,
    and a config naming a Hub backbone is refused. The folder is checked before anything is built
    (detr_core/family/preflight.py): sizes, preprocessing, the weights file, the parameter count."""
    path = (bundled_folder(source) if isinstance(source, str) and source in BUNDLED_FAMILY
            else existing_path(source))
    if path is None or not path.is_dir():
        if not (isinstance(source, str) and parse_hub_ref(source)):
            raise ValueError(f"model source {str(source)!r} is neither a folder nor a Hub id like 'owner/name'")
        path = hub_folder(source, cache_dir, allow_download)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json: save the model with save_pretrained, or give its Hub id")
    checked = check_family_folder(path, allow_download)
    spec = checked.spec
    import transformers

    try:
        model = getattr(transformers, spec.model_class).from_pretrained(
            path, config=checked.hf_config, attn_implementation="eager", local_files_only=True)
    except RuntimeError as err:  # transformers' report of the mismatched tensors went to its log
        raise ValueError(f"{path}: its weights do not fit the {spec.title} that its config.json describes"
                         f" (model_type {spec.model_type!r}); transformers says: {str(err).splitlines()[0]}") from None
    processor, note = _processor_from(path, spec)
    if note:
        caller.warn(f"{source}: {note}")
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
    spec = spec_for(read_json(folder / "config.json").get("model_type", ""))
    return _processor_from(folder, spec)


def hub_folder(source: str, cache_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The local snapshot folder of Hub model `source` ("owner/name[@revision]"): from the cache if it is there,
    else downloaded once. Hub access, the cache and the offline errors are detr_core.weights.hub's, as for DETR."""
    from ..weights.hub import fetch_model

    ref = parse_hub_ref(source)
    if ref is None:
        raise ValueError(f"model source {source!r} is neither a folder nor a Hub id like 'owner/name'")
    # config.json, weights and preprocessor share a snapshot folder
    return fetch_model(ref, cache_dir, allow_download=allow_download).config.parent


def _processor_from(folder: Path, spec: FamilySpec) -> tuple[Any, str]:
    """The folder's own image processor, or the model type's default and a note saying why."""
    import transformers

    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return _default_processor(spec), f"no preprocessor_config.json: using {spec.processor_class}() defaults"
    named = read_json(config).get("image_processor_type", "")
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
