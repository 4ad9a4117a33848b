"""Export to the Hugging Face format: a folder that `transformers`' `from_pretrained` opens with the same outputs,
ready for `hf upload`. `detr_core.save_model(model, folder, format="hf")` calls this.

Post-norm models become `DetrForObjectDetection`, pre-norm ones `TableTransformerForObjectDetection` (transformers'
DETR with pre-norm layers). The backbone is written in the timm layout, whose parameter names are torchvision's.
A 4-stage backbone uses the top-level fields that transformers 4.x and 5.x both read (`use_timm_backbone`,
`backbone`, `dilation`); a 3-stage one (stride 16 without dilation) needs a 5.x `backbone_config`.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..model.config import DETRConfig, PreprocessConfig
from .hf_keys import detr_lens_to_hf
from .hf_model import CONFIG, PREPROCESSOR, WEIGHT_FILES


def hf_config(config: DETRConfig, class_names) -> dict:
    """DETRConfig + class names -> the config.json transformers reads."""
    architecture, model_type = (("TableTransformerForObjectDetection", "table-transformer") if config.pre_norm
                                else ("DetrForObjectDetection", "detr"))
    return {
        "architectures": [architecture], "model_type": model_type,
        "d_model": config.hidden_dim, "encoder_layers": config.enc_layers, "decoder_layers": config.dec_layers,
        "encoder_attention_heads": config.nheads, "decoder_attention_heads": config.nheads,
        "encoder_ffn_dim": config.dim_feedforward, "decoder_ffn_dim": config.dim_feedforward,
        "num_queries": config.num_queries, "activation_function": "relu",
        # one rate here for the residual, attention and FFN dropouts, as in the official DETR
        "dropout": config.dropout, "attention_dropout": config.dropout, "activation_dropout": config.dropout,
        "position_embedding_type": config.position_embedding, "auxiliary_loss": config.decoder_renorm,
        "num_channels": 3, "use_pretrained_backbone": False,
        "id2label": {str(i): name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
        **_backbone_fields(config),
    }


def _backbone_fields(config: DETRConfig) -> dict:
    if config.backbone_stages == 4:
        return {"use_timm_backbone": True, "backbone": config.backbone, "dilation": config.dilation,
                "backbone_config": None}
    return {"dilation": False, "backbone_config": {
        "model_type": "timm_backbone", "backbone": config.backbone, "out_indices": [1, 2, 3],
        "features_only": True, "use_pretrained_backbone": False, "num_channels": 3}}


def hf_preprocessor(preprocess: PreprocessConfig) -> dict:
    """PreprocessConfig -> the preprocessor_config.json of transformers' DetrImageProcessor."""
    return {
        "image_processor_type": "DetrImageProcessor", "format": "coco_detection",
        "do_resize": True, "size": {"shortest_edge": preprocess.min_size, "longest_edge": preprocess.max_size},
        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(preprocess.mean), "image_std": list(preprocess.std), "do_pad": True,
        "do_convert_annotations": True,
    }


def save_hf(model: torch.nn.Module, folder: str | os.PathLike) -> Path:
    """Write config.json, model.safetensors and preprocessor_config.json into `folder` (created if needed);
    each file is written beside its place and renamed, so a crash never leaves a half-written one."""
    if getattr(model, "inference_only", False):
        raise ValueError("this model was rewritten by optimize_for_inference (batch norms folded) and cannot be"
                         " exported; export the model you optimised instead")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # clone: q, k and v are row slices of one in_proj tensor, and safetensors refuses shared storage
    state = {k: v.detach().cpu().clone() for k, v in detr_lens_to_hf(model.state_dict()).items()}
    _atomic(folder / WEIGHT_FILES[0], lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    for name, data in ((CONFIG, hf_config(model.config, model.class_names)),
                       (PREPROCESSOR, hf_preprocessor(model.preprocess))):
        _atomic(folder / name, lambda tmp, data=data: Path(tmp).write_text(json.dumps(data, indent=2) + "\n"))
    return folder


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
