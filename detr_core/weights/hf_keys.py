"""Parameter names between Hugging Face DETR checkpoints and this project's (official DETR) modules, both ways.

What `save_pretrained` writes (transformers 4.x and 5.x alike): `model.` before everything but the heads,
`model.backbone.conv_encoder.model.*` for the ResNet, `self_attn/encoder_attn.{q,k,v,out}_proj`, `fc1/fc2`,
`self_attn_layer_norm`, `encoder_attn_layer_norm`, `final_layer_norm`. transformers 5.x renames some modules in
memory (`o_proj`, `mlp.fc1`, `model.backbone.model`, `model.position_embedding`), so a `state_dict()` saved by hand
carries those: both are read. A DetrForSegmentation checkpoint nests the detector under `detr.`; its mask head
(`mask_head.*`, `bbox_attention.*`) has no counterpart here and is set aside.

The official model keeps q, k and v in one `in_proj_weight` [3d, d] (rows q, then k, then v).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

# (Hugging Face template, this project's template); {n} a layer number, {p} a parameter name
_RENAMES = [
    ("class_labels_classifier.{p}", "class_embed.{p}"),
    ("bbox_predictor.layers.{n}.{p}", "bbox_embed.layers.{n}.{p}"),
    ("model.query_position_embeddings.weight", "query_embed.weight"),
    ("model.input_projection.{p}", "input_proj.{p}"),
    ("model.backbone.position_embedding.row_embeddings.weight", "backbone.1.row_embed.weight"),
    ("model.backbone.position_embedding.column_embeddings.weight", "backbone.1.col_embed.weight"),
    ("model.encoder.layernorm.{p}", "transformer.encoder.norm.{p}"),
    ("model.decoder.layernorm.{p}", "transformer.decoder.norm.{p}"),
    ("model.encoder.layers.{n}.self_attn.out_proj.{p}", "transformer.encoder.layers.{n}.self_attn.out_proj.{p}"),
    ("model.encoder.layers.{n}.self_attn_layer_norm.{p}", "transformer.encoder.layers.{n}.norm1.{p}"),
    ("model.encoder.layers.{n}.final_layer_norm.{p}", "transformer.encoder.layers.{n}.norm2.{p}"),
    ("model.encoder.layers.{n}.fc1.{p}", "transformer.encoder.layers.{n}.linear1.{p}"),
    ("model.encoder.layers.{n}.fc2.{p}", "transformer.encoder.layers.{n}.linear2.{p}"),
    ("model.decoder.layers.{n}.self_attn.out_proj.{p}", "transformer.decoder.layers.{n}.self_attn.out_proj.{p}"),
    ("model.decoder.layers.{n}.encoder_attn.out_proj.{p}",
     "transformer.decoder.layers.{n}.multihead_attn.out_proj.{p}"),
    ("model.decoder.layers.{n}.self_attn_layer_norm.{p}", "transformer.decoder.layers.{n}.norm1.{p}"),
    ("model.decoder.layers.{n}.encoder_attn_layer_norm.{p}", "transformer.decoder.layers.{n}.norm2.{p}"),
    ("model.decoder.layers.{n}.final_layer_norm.{p}", "transformer.decoder.layers.{n}.norm3.{p}"),
    ("model.decoder.layers.{n}.fc1.{p}", "transformer.decoder.layers.{n}.linear1.{p}"),
    ("model.decoder.layers.{n}.fc2.{p}", "transformer.decoder.layers.{n}.linear2.{p}"),
]
# attention projections: (Hugging Face module, this project's nn.MultiheadAttention)
_ATTENTION = [
    ("model.encoder.layers.{n}.self_attn", "transformer.encoder.layers.{n}.self_attn"),
    ("model.decoder.layers.{n}.self_attn", "transformer.decoder.layers.{n}.self_attn"),
    ("model.decoder.layers.{n}.encoder_attn", "transformer.decoder.layers.{n}.multihead_attn"),
]
HF_BACKBONE = "model.backbone.conv_encoder.model."
OURS_BACKBONE = "backbone.0.body."
# transformers 5.x in-memory names -> the names save_pretrained writes
_GENERATION_5 = [(re.compile(r"^model\.backbone\.model\."), HF_BACKBONE),
                 (re.compile(r"^model\.position_embedding\."), "model.backbone.position_embedding."),
                 (re.compile(r"\.o_proj\."), ".out_proj."),
                 (re.compile(r"\.mlp\.(fc[12])\."), r".\1.")]
MASK_HEAD_PREFIXES = ("mask_head.", "bbox_attention.")
# transformers' ResNet (use_timm_backbone false) -> torchvision names
_HF_RESNET = [
    (re.compile(r"^embedder\.embedder\.convolution\.weight$"), lambda m: "conv1.weight"),
    (re.compile(r"^embedder\.embedder\.normalization\.(\w+)$"), lambda m: f"bn1.{m[1]}"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight$"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.weight"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(\w+)$"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.convolution\.weight$"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}.weight"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.normalization\.(\w+)$"),
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.{m[4]}"),
]


def _pattern(template: str) -> re.Pattern:
    """"a.{n}.{p}" -> a regex matching whole names, with named groups: {n} digits, {p} one name, {qkv} q, k or v."""
    parts = re.split(r"(\{\w+\})", template)
    groups = {"{n}": r"(?P<n>\d+)", "{p}": r"(?P<p>\w+)", "{qkv}": r"(?P<qkv>[qkv])"}
    return re.compile("^" + "".join(groups.get(part, re.escape(part)) for part in parts) + "$")


# The name tables are built per conversion, not at import: 23 regexes (re keeps the compiled ones) cost nothing
# next to a state dict, importing the package does no work for them, and the tests exercise _pattern itself.
def _forward() -> list[tuple[re.Pattern, str]]:
    return [(_pattern(hf), ours) for hf, ours in _RENAMES]


def _backward() -> list[tuple[re.Pattern, str]]:
    return [(_pattern(ours), hf) for hf, ours in _RENAMES]


def _hf_qkv() -> list[tuple[re.Pattern, str]]:
    return [(_pattern(hf + ".{qkv}_proj.{p}"), ours) for hf, ours in _ATTENTION]


def _ours_in_proj() -> list[tuple[re.Pattern, str]]:
    return [(_pattern(ours + ".in_proj_{p}"), hf) for hf, ours in _ATTENTION]


def normalise_hf_names(state: Mapping[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """Any generation's names -> the names save_pretrained writes, without `detr.`; and the mask-head keys set aside."""
    out, mask_head = {}, []
    for key, tensor in state.items():
        if key.startswith(MASK_HEAD_PREFIXES):
            mask_head.append(key)
            continue
        key = key.removeprefix("detr.")
        for pattern, replacement in _GENERATION_5:
            key = pattern.sub(replacement, key)
        out[key] = tensor
    return out, mask_head


def hf_to_detr_lens(state: Mapping[str, torch.Tensor], layout: str, where: str) -> dict:
    """Hugging Face names (save_pretrained's, without `detr.`) -> this project's state dict.

    layout: "timm" (backbone keeps torchvision names) or "transformers" (transformers' ResNet).
    ValueError naming every key that has no place in the model.
    """
    out, qkv, unknown = {}, {}, []
    forward, hf_qkv = _forward(), _hf_qkv()
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # frozen batch norm keeps no count
        target = (_backbone_name(key[len(HF_BACKBONE):], layout) if key.startswith(HF_BACKBONE)
                  else _rename(key, forward))
        if target is not None:
            out[target] = tensor
            continue
        for pattern, ours in hf_qkv:
            if m := pattern.match(key):
                qkv.setdefault((ours.format(n=m["n"]), m["p"]), {})[m["qkv"]] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
        raise ValueError(f"{where}: tensors with no place in a DETR: {unknown[:10]}{more}")
    for (module, param), parts in qkv.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise ValueError(f"{where}: {module} has only the {sorted(parts)} projections of q, k, v")
        out[f"{module}.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])  # [3d, d] or [3d]
    return out


def _backbone_name(rest: str, layout: str) -> str | None:
    if layout == "timm":
        return OURS_BACKBONE + rest
    for pattern, name in _HF_RESNET:
        if m := pattern.match(rest):
            return OURS_BACKBONE + name(m)
    return None


def _rename(key: str, table) -> str | None:
    for pattern, template in table:
        if m := pattern.match(key):
            return template.format(**m.groupdict())
    return None


def detr_lens_to_hf(state: Mapping[str, torch.Tensor]) -> dict:
    """This project's state dict -> the names save_pretrained writes (timm backbone layout); for export.

    The learned position embedding goes under `model.position_embedding.*`, where transformers 5.x looks for it.
    """
    out = {}
    backward, ours_in_proj = _backward(), _ours_in_proj()
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith(OURS_BACKBONE):
            out[HF_BACKBONE + key[len(OURS_BACKBONE):]] = tensor
            continue
        target = _rename(key, backward)
        if target is not None:
            out[target.replace("model.backbone.position_embedding.", "model.position_embedding.")] = tensor
            continue
        for pattern, hf in ours_in_proj:
            if m := pattern.match(key):
                module = hf.format(n=m["n"])
                for name, part in zip("qkv", tensor.chunk(3)):  # rows [:d], [d:2d], [2d:]
                    out[f"{module}.{name}_proj.{m['p']}"] = part.contiguous()
                break
        else:
            raise ValueError(f"{key}: this parameter has no place in a transformers DETR")
    return out
