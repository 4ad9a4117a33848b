"""Tiny random-weight DETR-family models built from transformers' config classes (no download), with image
processors sized for them: d_model 32, 2 decoder layers, 4 heads, 10 queries, 5 classes, ~128-px inputs."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch
import transformers as T

from detr_core.family import FamilyModel, inspect_family
from detr_core.family.capture import deformable_attention_modules

_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 32, 32], depths=[1, 1, 1, 1],
               layer_type="basic")
_RT_RESNET = dict(_RESNET, model_type="rt_detr_resnet", out_features=["stage2", "stage3", "stage4"])
_HGNET = dict(model_type="hgnet_v2", embedding_size=8, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 32, 32],
              stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 32, 32], stage_mid_channels=[8, 8, 16, 16],
              stage_out_channels=[16, 32, 32, 32], stage_num_blocks=[1, 1, 1, 1], stage_numb_of_layers=[1, 1, 1, 1],
              out_features=["stage2", "stage3", "stage4"])
_DETR_LIKE = dict(encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                  encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, num_labels=5)
_RT_LIKE = dict(encoder_hidden_dim=32, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=4,
                decoder_attention_heads=4, decoder_layers=2, num_queries=10, decoder_n_points=2,
                decoder_in_channels=[32, 32, 32], num_denoising=0, num_labels=5)
_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=128, patch_size=16,
            out_features=["stage1", "stage2"])
_LW_LIKE = dict(d_model=32, decoder_ffn_dim=64, decoder_layers=2, decoder_self_attention_heads=2,
                decoder_cross_attention_heads=4, num_queries=10, decoder_n_points=2, group_detr=2, num_labels=5)
_DEFORMABLE = dict(backbone_config=dict(_RESNET, out_features=["stage2", "stage3", "stage4"]), d_model=32,
                   num_feature_levels=4, encoder_n_points=2, decoder_n_points=2, **_DETR_LIKE)
_SQUARE = {"height": 128, "width": 128}
_SHORT_EDGE = {"shortest_edge": 96, "longest_edge": 160}

# name -> (model class, config factory, processor factory)
TINY = {
    "conditional_detr": (T.ConditionalDetrForObjectDetection,
                         lambda: T.ConditionalDetrConfig(backbone_config=dict(_RESNET, out_features=["stage4"]),
                                                         d_model=32, **_DETR_LIKE),
                         lambda: T.ConditionalDetrImageProcessor(size=_SHORT_EDGE)),
    "dab-detr": (T.DabDetrForObjectDetection,
                 lambda: T.DabDetrConfig(backbone_config=dict(_RESNET, out_features=["stage4"]), hidden_size=32,
                                         **_DETR_LIKE),
                 lambda: T.DetrImageProcessor(size=_SHORT_EDGE)),
    "deformable_detr": (T.DeformableDetrForObjectDetection, lambda: T.DeformableDetrConfig(**_DEFORMABLE),
                        lambda: T.DeformableDetrImageProcessor(size=_SHORT_EDGE)),
    "deformable_detr_two_stage": (T.DeformableDetrForObjectDetection,
                                  lambda: T.DeformableDetrConfig(with_box_refine=True, two_stage=True,
                                                                 two_stage_num_proposals=10, **_DEFORMABLE),
                                  lambda: T.DeformableDetrImageProcessor(size=_SHORT_EDGE)),
    "rt_detr": (T.RTDetrForObjectDetection,
                lambda: T.RTDetrConfig(backbone_config=_RT_RESNET, encoder_in_channels=[16, 32, 32], **_RT_LIKE),
                lambda: T.RTDetrImageProcessor(size=_SQUARE)),
    "rt_detr_v2": (T.RTDetrV2ForObjectDetection,
                   lambda: T.RTDetrV2Config(backbone_config=_RT_RESNET, encoder_in_channels=[16, 32, 32], **_RT_LIKE),
                   lambda: T.RTDetrImageProcessor(size=_SQUARE)),
    "d_fine": (T.DFineForObjectDetection,
               lambda: T.DFineConfig(backbone_config=_HGNET, encoder_in_channels=[32, 32, 32], **_RT_LIKE),
               lambda: T.RTDetrImageProcessor(size=_SQUARE)),
    "deimv2": (T.Deimv2ForObjectDetection,
               lambda: T.Deimv2Config(backbone_config=_HGNET, encoder_in_channels=[32, 32, 32], **_RT_LIKE),
               lambda: T.RTDetrImageProcessor(size=_SQUARE)),
    "lw_detr": (T.LwDetrForObjectDetection,
                lambda: T.LwDetrConfig(backbone_config=dict(_VIT, model_type="lw_detr_vit", pretrain_image_size=128,
                                                            num_windows=1), projector_scale_factors=[1.0], **_LW_LIKE),
                lambda: T.DeformableDetrImageProcessor(size=_SQUARE)),
    "rf_detr": (T.RfDetrForObjectDetection,
                lambda: T.RfDetrConfig(backbone_config=dict(_VIT, model_type="rf_detr_dinov2", num_windows=2,
                                                            num_register_tokens=0), **_LW_LIKE),
                lambda: T.RfDetrImageProcessor(size=_SQUARE)),
}
DENSE = ("conditional_detr", "dab-detr")
DEFORMABLE = tuple(name for name in TINY if name not in DENSE)


def build_tiny(name: str, seed: int = 0) -> FamilyModel:
    """The tiny model `name` with random weights (seeded), eager attention, eval mode, and its processor.

    transformers initialises the deformable attention's offset and weight projections to zero (fixed offsets,
    uniform weights whatever the image): random values here make every point depend on the query."""
    model_class, config, processor = TINY[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = model_class._from_config(config(), attn_implementation="eager").eval()
        for attentions in deformable_attention_modules(model).values():
            for attention in attentions:
                torch.nn.init.normal_(attention.sampling_offsets.weight, std=0.05)
                torch.nn.init.normal_(attention.attention_weights.weight, std=0.5)
    return FamilyModel.from_transformers(model, processor(), source=f"tiny {name}")


# tools/mutation.py sets this: build per use, so that mutmut ties each build to every test that reads it (mutmut runs
# a mutant only under the tests that called its function while it collected its statistics)
FRESH = bool(os.environ.get("DETR_LENS_FRESH_FIXTURES"))


def built_on_first_use(build: Callable[[str], FamilyModel], image: np.ndarray) -> Callable:
    """name -> (FamilyModel, its inspection of `image`), built by `build(name)` on first use and kept (unless
    FRESH): what a test module's `family` fixture hands its tests."""
    built: dict = {}

    def get(name: str):
        if name not in built or FRESH:
            fm = build(name)
            built[name] = fm, inspect_family(fm, image)
        return built[name]
    return get
