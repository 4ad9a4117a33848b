"""Recipes for training DETR-family models through `transformers` (``python -m train --model ...``).

A ``FamilyRecipe`` holds what the run needs besides the model: augmentation sizes, optimiser, batch size and
epochs (the image size and normalisation come from the model's own image processor). The named configurations
build a small model from scratch: ``deformable-tiny`` and ``rtdetr-tiny`` (tests and smoke runs) and
``shapes-deformable`` (the bundled deformable model's architecture). Any other ``--model`` is a folder or Hub id
to fine-tune, with ``default_recipe``.

Why ``shapes-deformable`` is a Deformable DETR and not an RT-DETR: it is there to be looked at beside the dense
``shapes`` DETR, and Deformable DETR is deformable in both halves (the encoder view shows each location's
sampling points, as the decoder's), where RT-DETR's encoder is dense attention on its coarsest level. It keeps
the ``shapes`` model's sizes (ResNet-18 to stage 3 at 256 px, d=128, 3+3 layers, 8 heads) so the pair differs
in attention only, starts from that model's trained ResNet (train/backbone_transfer.py) rather than from
random weights that transformers' frozen batch norms would leave unnormalised, and uses iterative box
refinement with two-stage proposals, the variant of the paper that converges fastest. 20.0 MB as saved
(model.safetensors, 5.0 M parameters).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from .configs import OptimConfig
from .transforms import AugmentConfig


@dataclass(frozen=True)
class FamilyRecipe:
    """Everything a family run fixes besides the model (sizes come from its image processor)."""

    name: str
    optim: OptimConfig
    batch_size: int
    epochs: int
    crop_min_visible: float = 0.0  # see AugmentConfig: 0.5 for the shapes data
    flip_p: float = 0.5
    crop_p: float = 0.5
    train_all: bool = False  # train every weight; else transformers' own freezing of a pre-trained backbone

    def __post_init__(self):
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"need batch_size and epochs >= 1; got {self.batch_size}, {self.epochs}")

    def replace(self, **changes) -> "FamilyRecipe":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FamilyRecipe":
        return cls(**{**d, "optim": OptimConfig(**d["optim"])})

    def augment(self, min_size: int, max_size: int, mean, std) -> AugmentConfig:
        """The official DETR augmentation scaled to the processor's size (AugmentConfig.scaled)."""
        scaled = AugmentConfig.scaled(min_size, max_size, mean, std, self.crop_min_visible)
        return dataclasses.replace(scaled, flip_p=self.flip_p, crop_p=self.crop_p)


def default_recipe() -> FamilyRecipe:
    """Fine-tuning a pre-trained model: the rates of the Deformable DETR and RT-DETR papers' recipes."""
    return FamilyRecipe("fine-tune", OptimConfig(lr=1e-4, lr_backbone=1e-5, lr_drop_epochs=40), batch_size=4,
                        epochs=50)


@dataclass(frozen=True)
class NamedFamily:
    """A model built from scratch: its transformers class, config and image processor, and its recipe."""

    model_class: str  # a transformers class name
    config: Callable[[], Any]
    processor: Callable[[], Any]
    recipe: FamilyRecipe
    backbone_from: str | None = None  # a detr_core.load_model source whose ResNet starts the backbone


def _resnet(hidden_sizes, depths, embedding_size, out_features) -> dict:
    return dict(model_type="resnet", embedding_size=embedding_size, hidden_sizes=list(hidden_sizes),
                depths=list(depths), layer_type="basic", out_features=list(out_features))


def _deformable_tiny():
    import transformers as T

    return T.DeformableDetrConfig(
        backbone_config=_resnet([8, 16, 32], [1, 1, 1], 8, ["stage1", "stage2", "stage3"]), d_model=32,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=10, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, dropout=0.0, num_labels=5)


def _rtdetr_tiny():
    import transformers as T

    backbone = dict(model_type="rt_detr_resnet", embedding_size=8, hidden_sizes=[8, 16, 32, 32],
                    depths=[1, 1, 1, 1], layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    return T.RTDetrConfig(backbone_config=backbone, encoder_in_channels=[16, 32, 32], encoder_hidden_dim=32,
                          d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=4,
                          decoder_attention_heads=4, decoder_layers=2, num_queries=10, decoder_n_points=2,
                          decoder_in_channels=[32, 32, 32], num_denoising=6, freeze_backbone_batch_norms=False,
                          num_labels=5)


def _shapes_deformable():
    """ResNet-18 to stage 3 (strides 8 and 16, plus two extra levels at 32 and 64), d=128, 3+3 layers."""
    import transformers as T

    return T.DeformableDetrConfig(
        backbone_config=_resnet([64, 128, 256], [2, 2, 2], 64, ["stage2", "stage3"]), d_model=128,
        encoder_layers=3, decoder_layers=3, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=512, decoder_ffn_dim=512, num_queries=30, num_feature_levels=4, encoder_n_points=4,
        decoder_n_points=4, with_box_refine=True, two_stage=True, two_stage_num_proposals=30, dropout=0.0,
        num_labels=5)


def _edges(short: int, long: int):
    def make():
        import transformers as T

        return T.DeformableDetrImageProcessor(size={"shortest_edge": short, "longest_edge": long})
    return make


def _square(side: int):
    def make():
        import transformers as T

        return T.RTDetrImageProcessor(size={"height": side, "width": side})
    return make


_SCRATCH = OptimConfig(lr=1e-3, lr_backbone=1e-3, weight_decay=1e-4, lr_drop_epochs=200)
NAMED_FAMILY = {
    "deformable-tiny": NamedFamily("DeformableDetrForObjectDetection", _deformable_tiny, _edges(64, 107),
                                   FamilyRecipe("deformable-tiny", _SCRATCH, 2, 2, train_all=True)),
    "rtdetr-tiny": NamedFamily("RTDetrForObjectDetection", _rtdetr_tiny, _square(64),
                               FamilyRecipe("rtdetr-tiny", _SCRATCH, 2, 2, train_all=True)),
    # the shapes DETR's recipe (its rates, warm-up, batch and crop rule), the backbone at a tenth
    "shapes-deformable": NamedFamily(
        "DeformableDetrForObjectDetection", _shapes_deformable, _edges(256, 427),
        FamilyRecipe("shapes-deformable", OptimConfig(lr=2e-4, lr_backbone=2e-5, lr_drop_epochs=40,
                                                      warmup_steps=200), batch_size=8, epochs=60,
                     crop_min_visible=0.5, train_all=True),
        backbone_from="shapes"),
}


def named_family(name: str) -> NamedFamily | None:
    """The named configuration ``name``, or None when ``name`` is not one (a folder or Hub id, then)."""
    return NAMED_FAMILY.get(name)
