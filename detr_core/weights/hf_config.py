"""A Hugging Face DETR's `config.json` and `preprocessor_config.json` -> DETRConfig, PreprocessConfig, class names.

Both generations of `transformers` configs are read: 4.x writes `use_timm_backbone`, `backbone`, `backbone_kwargs`
and `dilation` at the top level; 5.x folds the backbone into `backbone_config` (`model_type` "timm_backbone" or
"resnet"). A field this project cannot represent is an error naming the field and its value, never a guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .. import caller
from ..model.config import BACKBONES, DETRConfig, PreprocessConfig
from .size_limits import check_config_sizes, check_image_side, check_normalisation

# model_type -> pre-norm layers (Table Transformer is DETR with pre-norm layers and a final encoder norm)
MODEL_TYPES = {"detr": False, "table-transformer": True}
DETECTION_ARCHITECTURES = ("DetrForObjectDetection", "DetrForSegmentation", "TableTransformerForObjectDetection")
_DEFAULT_ARCHITECTURE = {"detr": "DetrForObjectDetection", "table-transformer": "TableTransformerForObjectDetection"}
# transformers' own defaults, used where a config.json leaves a field out (as transformers does)
_HF_DEFAULTS = {
    "d_model": 256, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
    "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048, "num_queries": 100,
    "activation_function": "relu", "position_embedding_type": "sine", "dropout": 0.1, "auxiliary_loss": False,
    "num_channels": 3, "dilation": False, "use_timm_backbone": True, "backbone": "resnet50",
}
# transformers' ResNet (use_timm_backbone false): (layer_type, depths) -> the torchvision ResNet it equals
_HF_RESNETS = {("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
               ("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34"}
_HF_RESNET_WIDTHS = {"bottleneck": [256, 512, 1024, 2048], "basic": [64, 128, 256, 512]}
_RESNET_DEFAULTS = {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "embedding_size": 64, "hidden_act": "relu",
                    "downsample_in_first_stage": False, "downsample_in_bottleneck": False, "num_channels": 3}


@dataclass(frozen=True)
class HFArchitecture:
    """What a config.json describes, in this project's terms."""

    config: DETRConfig
    class_names: tuple[str, ...]
    architecture: str  # e.g. "DetrForObjectDetection"
    backbone_layout: str  # "timm" (torchvision parameter names) or "transformers" (transformers' ResNet)


@dataclass(frozen=True)
class _Backbone:
    name: str
    dilation: bool
    stages: int
    layout: str


def read_config(cfg: Mapping, where: str) -> HFArchitecture:
    """A parsed config.json -> HFArchitecture; ValueError naming the field for anything not representable, or
    for a size beyond any real model (before anything is built)."""
    check_config_sizes(cfg, where)
    model_type = cfg.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{where}: model_type {model_type!r} is not a DETR; this reader opens model_type"
                         f" {sorted(MODEL_TYPES)} (DetrForObjectDetection, DetrForSegmentation,"
                         " TableTransformerForObjectDetection), and detr_core.load_model also opens the DETR"
                         " family (detr_core.FAMILY: RT-DETR, Deformable DETR, D-FINE, ...)")
    architecture = (cfg.get("architectures") or [_DEFAULT_ARCHITECTURE[model_type]])[0]
    if architecture not in DETECTION_ARCHITECTURES:
        raise ValueError(f"{where}: architectures {architecture!r} has no detection head; DETR Lens opens"
                         f" {list(DETECTION_ARCHITECTURES)}")
    value = _with_defaults(cfg, _HF_DEFAULTS)
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if value[a] != value[b]:
            raise ValueError(f"{where}: {a}={value[a]} and {b}={value[b]} differ; DETR Lens builds one size for both")
    _require(value, "activation_function", ("relu",), where)
    _require(value, "position_embedding_type", ("sine", "learned"), where)
    _require(value, "num_channels", (3,), where)
    backbone, names = _backbone(cfg, value, where), class_names(cfg, where)
    config = _detr_config(value, backbone, len(names), MODEL_TYPES[model_type], where)
    return HFArchitecture(config, tuple(names), architecture, backbone.layout)


def _with_defaults(cfg: Mapping, defaults: Mapping) -> dict:
    """transformers' value of each field: the config's, or the default where it is missing or null."""
    return {k: cfg[k] if cfg.get(k) is not None else d for k, d in defaults.items()}


def _detr_config(value: Mapping, backbone: _Backbone, num_classes: int, pre_norm: bool, where: str) -> DETRConfig:
    try:
        return DETRConfig(
            backbone=backbone.name, dilation=backbone.dilation, backbone_stages=backbone.stages, frozen_bn=True,
            hidden_dim=value["d_model"], nheads=value["encoder_attention_heads"],
            enc_layers=value["encoder_layers"], dec_layers=value["decoder_layers"],
            dim_feedforward=value["encoder_ffn_dim"], dropout=float(value["dropout"]),
            num_queries=value["num_queries"], num_classes=num_classes, pre_norm=pre_norm,
            position_embedding=value["position_embedding_type"], decoder_renorm=bool(value["auxiliary_loss"]),
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: {err}") from None


def _require(value: Mapping, key: str, allowed: tuple, where: str) -> None:
    if value[key] not in allowed:
        raise ValueError(f"{where}: {key}={value[key]!r}; DETR Lens supports {list(allowed)}")


def _backbone(cfg: Mapping, value: Mapping, where: str) -> _Backbone:
    sub = cfg.get("backbone_config")
    if isinstance(sub, Mapping):
        kind = sub.get("model_type")
        if kind == "timm_backbone":  # 5.x layout of a timm backbone
            return _timm(sub.get("backbone"), sub.get("out_indices"), sub.get("output_stride"),
                         sub.get("num_channels", 3), "backbone_config.", where)
        if kind == "resnet":
            return _transformers_resnet(sub, bool(value["dilation"]), where)
        raise ValueError(f"{where}: backbone_config.model_type {kind!r}; DETR Lens builds ResNet backbones only"
                         " (timm_backbone or resnet)")
    if sub is not None:
        raise ValueError(f"{where}: backbone_config must be an object or null, found {type(sub).__name__}")
    if value["use_timm_backbone"]:  # 4.x layout: top-level backbone name, backbone_kwargs, dilation
        kwargs = cfg.get("backbone_kwargs") or {}
        stride = kwargs.get("output_stride", 16 if value["dilation"] else None)
        return _timm(value["backbone"], kwargs.get("out_indices"), stride,
                     kwargs.get("in_chans", value["num_channels"]), "backbone_kwargs.", where)
    if cfg.get("backbone") not in (None, "resnet50"):
        raise ValueError(f"{where}: backbone {cfg.get('backbone')!r} with use_timm_backbone false names a Hub"
                         " backbone; DETR Lens reads a transformers backbone only from backbone_config")
    return _transformers_resnet({}, bool(value["dilation"]), where)  # 4.x: the default transformers ResNet-50


def _timm(name, out_indices, output_stride, in_chans, prefix: str, where: str) -> _Backbone:
    """timm's ResNets have torchvision's layout and parameter names; `resnet50.a1_in1k` is still a ResNet-50."""
    base = str(name or "").removeprefix("timm/").split(".")[0]
    if base not in BACKBONES:
        raise ValueError(f"{where}: backbone {name!r}; DETR Lens builds the plain ResNets {list(BACKBONES)}")
    last = max(out_indices or [4])
    if last not in (3, 4):
        raise ValueError(f"{where}: {prefix}out_indices {out_indices!r}; DETR uses the last ResNet stage, 3 or 4")
    if output_stride not in (None, 32, 16):
        raise ValueError(f"{where}: {prefix}output_stride {output_stride!r}; DETR Lens supports 32 or 16 (DC5)")
    if in_chans != 3:
        raise ValueError(f"{where}: {prefix}in_chans/num_channels {in_chans!r}; DETR Lens reads RGB images (3)")
    return _Backbone(base, output_stride == 16 and last == 4, last, "timm")


def _transformers_resnet(sub: Mapping, dilation: bool, where: str) -> _Backbone:
    value = _with_defaults(sub, _RESNET_DEFAULTS)
    key = (value["layer_type"], tuple(value["depths"]))
    if key not in _HF_RESNETS:
        raise ValueError(f"{where}: backbone_config layer_type={key[0]!r}, depths={list(key[1])} is not"
                         f" ResNet-18/34/50/101; DETR Lens builds only those")
    widths = sub.get("hidden_sizes") or _HF_RESNET_WIDTHS[key[0]]
    if list(widths) != _HF_RESNET_WIDTHS[key[0]]:
        raise ValueError(f"{where}: backbone_config.hidden_sizes={list(widths)}; a standard ResNet has"
                         f" {_HF_RESNET_WIDTHS[key[0]]}")
    for field, expected in (("embedding_size", 64), ("hidden_act", "relu"), ("downsample_in_first_stage", False),
                            ("downsample_in_bottleneck", False), ("num_channels", 3)):
        if value[field] != expected:
            raise ValueError(f"{where}: backbone_config.{field}={value[field]!r}; DETR Lens builds the standard"
                             f" ResNet ({field}={expected!r})")
    out = sub.get("out_features") or ["stage4"]
    if out[-1] != "stage4":
        raise ValueError(f"{where}: backbone_config.out_features={out!r}; DETR Lens reads this backbone up to stage4")
    if dilation:
        caller.warn(f"{where}: dilation=true, but transformers' own ResNet has no dilation, so transformers runs"
                      " this model at stride 32; loading it the same way")
    return _Backbone(_HF_RESNETS[key], False, 4, "transformers")


def class_names(cfg: Mapping, where: str) -> list[str]:
    """One name per class id, as transformers counts them: len(id2label) classes (num_labels when there is no
    id2label, LABEL_i names); ids missing from id2label become "N/A", as in the COCO list."""
    id2label = cfg.get("id2label")
    if id2label:
        try:
            labels = {int(k): str(v) for k, v in id2label.items()}
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"{where}: id2label must map integer ids to names, found {id2label!r:.80}") from None
        count = len(labels)
    else:
        count = int(cfg.get("num_labels") or 2)
        labels = {i: f"LABEL_{i}" for i in range(count)}
    beyond = sorted(i for i in labels if not 0 <= i < count)
    if beyond:
        caller.warn(f"{where}: id2label ids {beyond[:10]} are outside the model's {count} classes (transformers"
                      " gives it len(id2label) classes); those labels can never be predicted")
    return [labels.get(i, "N/A") for i in range(count)]


def read_preprocessor(pp: Mapping | None, where: str) -> PreprocessConfig:
    """preprocessor_config.json -> PreprocessConfig; None (no file) gives DETR's defaults (800/1333, ImageNet)."""
    if pp is None:
        return PreprocessConfig()
    if pp.get("do_rescale", True) is False or abs(float(pp.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
        raise ValueError(f"{where}: do_rescale={pp.get('do_rescale')!r}, rescale_factor={pp.get('rescale_factor')!r};"
                         " DETR Lens feeds pixels scaled to [0, 1] (rescale_factor 1/255)")
    defaults = PreprocessConfig()
    min_size, max_size = _sizes(pp, defaults, where)
    if pp.get("do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        check_normalisation(pp.get("image_mean", defaults.mean), pp.get("image_std", defaults.std), where)
        mean = _triple(pp.get("image_mean", defaults.mean), "image_mean", where)
        std = _triple(pp.get("image_std", defaults.std), "image_std", where)
    try:
        return PreprocessConfig(min_size=min_size, max_size=max_size, mean=mean, std=std)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _sizes(pp: Mapping, defaults: PreprocessConfig, where: str) -> tuple[int, int]:
    if pp.get("do_resize", True) is False:
        caller.warn(f"{where}: do_resize=false cannot be represented; images are resized to shortest edge"
                      f" {defaults.min_size}, longest {defaults.max_size} instead")
        return defaults.min_size, defaults.max_size
    size = pp.get("size", {"shortest_edge": defaults.min_size, "longest_edge": defaults.max_size})
    if isinstance(size, int):  # the old feature-extractor layout: size and max_size
        return _side(size, "size", where), _side(pp.get("max_size") or defaults.max_size, "max_size", where)
    if isinstance(size, Mapping) and "shortest_edge" in size and "longest_edge" in size:
        return (_side(size["shortest_edge"], "size.shortest_edge", where),
                _side(size["longest_edge"], "size.longest_edge", where))
    if isinstance(size, Mapping) and size.get("max_height") is not None and \
            size.get("max_height") == size.get("max_width"):
        # transformers' fine-tuning guide: fit inside a square, i.e. the longer side to that size (transformers
        # truncates where this project rounds: sizes can differ by a pixel)
        side = _side(size["max_height"], "size.max_height", where)
        return side, side
    raise ValueError(f"{where}: size={size!r}; DETR Lens resizes by shortest_edge and longest_edge (or a square"
                     " max_height = max_width)")


def _side(value, field: str, where: str) -> int:
    check_image_side(value, field, where)
    return int(value)


def _triple(values, name: str, where: str) -> tuple[float, float, float]:
    values = [values] * 3 if isinstance(values, (int, float)) else list(values)
    if len(values) != 3:
        raise ValueError(f"{where}: {name}={values!r}; expected one value per RGB channel")
    return tuple(float(v) for v in values)
