"""`load_detr(source)`: a DETR from official model-zoo names, the bundled `shapes` model, a checkpoint file, or a
Hugging Face DETR (a save_pretrained folder, a .safetensors file with its config.json, or a Hub id).

The front door is `detr_core.load_model` (detr_core/family/loading.py): it opens these and the DETR family."""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from .. import caller
from .checkpoint_io import read_checkpoint
from .hf_model import HFFiles, hf_files, read_hf_model
from .hub import fetch_model, parse_hub_ref
from .size_limits import check_config_sizes, check_parameter_count
from .sources import existing_path
from ..model.config import DETRConfig, PreprocessConfig, tiny_config
from ..model.detr import DETR, build_model
from .zoo import MODEL_ZOO, fetch_checkpoint

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "assets"
BUNDLED = {"shapes": BUNDLED_DIR / "shapes.pth"}
_ARGS_FIELDS = ("backbone", "dilation", "hidden_dim", "nheads", "enc_layers", "dec_layers",
                "dim_feedforward", "num_queries", "pre_norm", "position_embedding", "dropout")
_OFFICIAL_POSITION = {"sine": "sine", "v2": "sine", "learned": "learned", "v3": "learned"}
_PREPROCESS_FIELDS = ("min_size", "max_size")


def load_detr(source: str | os.PathLike, device: str | torch.device = "cpu", *, allow_download: bool = True,
              **overrides) -> DETR:
    """A DETR (never a family model: `detr_core.load_model` opens both) in eval mode with `class_names`,
    `preprocess` and `hf_origin` (None unless from Hugging Face).

    source: "detr-r50", "detr-r50-dc5", "detr-r101", "detr-r101-dc5" (official COCO weights, downloaded once),
    "shapes" (the bundled offline model), "untrained" (random weights, for demos without any weights),
    a path to an official, bare state-dict or DETR Lens checkpoint, a Hugging Face DETR (a save_pretrained
    folder, or a .safetensors / pytorch_model.bin file with its config.json beside it), or a Hugging Face Hub
    id such as "facebook/detr-resnet-50" or "owner/name@revision" (fetched once into the Hub cache).
    allow_download: False opens only what is on this machine (cached or local): no request of any kind.
    overrides: DETRConfig fields that cannot be read from weights (e.g. dilation=True for a DC5 state dict,
    nheads), and min_size / max_size for preprocessing.

    Sizes are checked before anything is built (detr_core/weights/size_limits.py): a config beyond any real
    model, or one its weights file does not fit, is a ValueError naming the field, within seconds.
    """
    if source == "untrained":
        return untrained_model(device=device)
    pre_overrides = {k: overrides.pop(k) for k in _PREPROCESS_FIELDS if k in overrides}
    origin = None
    hf = locate_hf(source, allow_download)
    if hf is not None:  # the tensors' shapes from the file's header first; their values once they fit
        shapes, config, preprocess, class_names, origin = read_hf_model(hf, overrides, shapes_only=True)
        where = f"{hf.weights} (architecture from {hf.config})"
        preprocess = _with_preprocess_overrides(preprocess, pre_overrides, where)
        check_before_building(config, preprocess, class_names, shapes, where)
        state = read_hf_model(hf, overrides)[0]
    else:
        path, hints = _resolve(source, allow_download)
        where = str(path)
        state, config, preprocess, class_names = interpret_checkpoint(read_checkpoint(path, mmap=True), where,
                                                                      {**hints, **overrides})
        preprocess = _with_preprocess_overrides(preprocess, pre_overrides, where)
        check_before_building(config, preprocess, class_names, state, where)
    model = build_model(config, preprocess, class_names)
    model.load_state_dict(state, strict=True)
    model.hf_origin = origin
    return model.eval().to(device)


def _with_preprocess_overrides(preprocess: PreprocessConfig, overrides: Mapping, where: str) -> PreprocessConfig:
    if not overrides:
        return preprocess
    try:
        return PreprocessConfig(**{**preprocess.to_dict(), **overrides})
    except (TypeError, ValueError) as err:
        raise ValueError(f"preprocessing overrides {dict(overrides)} for {where}: {err}") from None


def check_before_building(config: DETRConfig, preprocess: PreprocessConfig, class_names, state: Mapping,
                          where: str) -> None:
    """Refuse, before any memory is allocated for the model: sizes beyond any real model, a parameter count
    beyond MAX_PARAMETERS, and weights that do not fit (`state` may hold meta tensors: only shapes are read).
    The model is built on the meta device for this: its modules and shapes, no storage."""
    check_config_sizes(config.to_dict(), where)
    with torch.device("meta"):
        skeleton = build_model(config, preprocess, class_names)
    check_parameter_count(sum(p.numel() for p in skeleton.parameters()), where)
    check_fits(skeleton, state, where)


def locate_hf(source, allow_download: bool = True) -> HFFiles | None:
    """The Hugging Face files behind `source` (a local folder or file, or a Hub id not shadowed by a local
    path or a model name); None when `source` is something else. allow_download=False: a Hub id only from the
    cache."""
    if isinstance(source, str) and (source in MODEL_ZOO or source in BUNDLED):
        return None
    path = existing_path(source)
    if path is not None:
        return hf_files(path)
    ref = parse_hub_ref(str(source)) if isinstance(source, str) else None
    if ref is None:
        return None
    try:
        return fetch_model(ref, allow_download=allow_download)
    except (RuntimeError, ValueError) as err:
        raise type(err)(f"{err} (no local file or folder {str(source)!r} exists either)") from None


def untrained_model(seed: int = 0, device: str | torch.device = "cpu", tiny: bool = False) -> DETR:
    """A randomly initialised DETR with COCO names: the app's last resort when no trained weights are available
    (ResNet-18, d=64, 6+6 layers, 100 queries), or with tiny=True the test-size model (d=32, 2+2 layers,
    10 queries, 5 classes, 128-px input). Its detections mean nothing; its attention maps have real shapes."""
    caller.warn("using an UNTRAINED model: detections and attention are random")
    if tiny:
        config, preprocess = tiny_config(), PreprocessConfig(min_size=128, max_size=213)
    else:
        config = DETRConfig(backbone="resnet18", hidden_dim=64, nheads=8, enc_layers=6, dec_layers=6,
                            dim_feedforward=256, dropout=0.0)
        preprocess = PreprocessConfig(min_size=512, max_size=853)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(config, preprocess)
    return model.eval().to(device)


def _resolve(source, allow_download: bool = True) -> tuple[Path, dict]:
    if isinstance(source, str) and source in MODEL_ZOO:
        entry = MODEL_ZOO[source]
        return (fetch_checkpoint(entry, allow_download=allow_download),
                {"backbone": entry.backbone, "dilation": entry.dilation})
    if isinstance(source, str) and source in BUNDLED:
        if not BUNDLED[source].is_file():
            raise RuntimeError(
                f"the bundled {source!r} model is not bundled yet (expected at {BUNDLED[source]});"
                f" use one of {sorted(MODEL_ZOO)} or a checkpoint path"
            )
        return BUNDLED[source], {}
    path = existing_path(source)
    if path is None:
        names = sorted(MODEL_ZOO) + sorted(BUNDLED) + ["untrained"]
        raise ValueError(f"model source {str(source)!r} is neither a file, a Hugging Face folder or Hub id"
                         f" (owner/name), nor one of {names}")
    return path, {}


def interpret_checkpoint(ckpt, where: str, overrides: Mapping) -> tuple[dict, DETRConfig, PreprocessConfig, list | None]:
    """Any supported checkpoint layout -> (state_dict, config, preprocess, class_names or None)."""
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{where}: expected a dict of tensors or {{'model': state_dict}}, found {type(ckpt).__name__}")
    if "config" in ckpt and "model" in ckpt:  # this project's own format
        config = DETRConfig.from_dict({**ckpt["config"], **overrides})
        preprocess = PreprocessConfig.from_dict(ckpt.get("preprocess", {}))
        return _state(ckpt["model"], where), config, preprocess, ckpt.get("class_names")
    if "model" in ckpt and isinstance(ckpt["model"], Mapping):  # official: {"model": ..., ["args": ...]}
        state = _state(ckpt["model"], where)
        from_args = _config_from_args(ckpt.get("args"))
    else:
        state, from_args = _state(ckpt, where), {}
    inferred = infer_config(state)
    if not from_args and "dilation" not in overrides:
        caller.warn(
            f"{where}: DC5 (dilation) cannot be seen in the weights alone; assuming dilation=False."
            " Pass dilation=True for a DC5 checkpoint.")
    return state, DETRConfig(**{**inferred, **from_args, **overrides}), PreprocessConfig(), None


def _state(state, where: str) -> dict:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{where}: the state dict holds non-tensor values under {bad[:5]}; expected tensors only")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _config_from_args(args) -> dict:
    if args is None:
        return {}
    if not isinstance(args, argparse.Namespace):
        raise ValueError(f"checkpoint 'args' is a {type(args).__name__}, expected argparse.Namespace")
    found = {f: getattr(args, f) for f in _ARGS_FIELDS if hasattr(args, f)}
    if "position_embedding" in found:
        found["position_embedding"] = _OFFICIAL_POSITION.get(found["position_embedding"], found["position_embedding"])
    return found


def _count(state, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def infer_config(state: Mapping[str, torch.Tensor]) -> dict:
    """What the weights themselves say about the architecture (not dilation, not nheads)."""
    need = ["query_embed.weight", "class_embed.weight", "transformer.decoder.layers.0.linear1.weight"]
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"this does not look like a DETR state dict: missing {missing}")
    num_queries, hidden_dim = state["query_embed.weight"].shape
    body = "backbone.0.body."
    bottleneck = f"{body}layer1.0.conv3.weight" in state
    blocks3 = _count(state, f"{body}layer3.")
    backbone = {(True, 23): "resnet101", (True, 6): "resnet50", (False, 6): "resnet34"}.get(
        (bottleneck, blocks3), "resnet18")
    return {
        "backbone": backbone,
        "backbone_stages": 4 if _count(state, f"{body}layer4.") else 3,
        "frozen_bn": not any(k.endswith("num_batches_tracked") for k in state),
        "hidden_dim": int(hidden_dim),
        "enc_layers": _count(state, "transformer.encoder.layers."),
        "dec_layers": _count(state, "transformer.decoder.layers."),
        "dim_feedforward": int(state["transformer.decoder.layers.0.linear1.weight"].shape[0]),
        "num_queries": int(num_queries),
        "num_classes": int(state["class_embed.weight"].shape[0]) - 1,
        "pre_norm": "transformer.encoder.norm.weight" in state,
        "position_embedding": "learned" if "backbone.1.row_embed.weight" in state else "sine",
    }


def check_fits(model: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str, limit: int = 10) -> None:
    """ValueError (one line) naming every missing, unexpected or mis-shaped key (up to `limit` of each)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: expected {list(expected[k].shape)}, found {list(state[k].shape)}"
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong):
        return
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{title} ({len(items)}): " + "; ".join(items[:limit]) + more)
    raise ValueError(f"checkpoint {where} does not fit {model.config}: " + " | ".join(parts))
