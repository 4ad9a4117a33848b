"""The DETR module: output shapes, the padding mask, variants, and agreement with an independent forward."""
import pytest
import torch

import detr_core
from detr_core.model.backbone import downsample_mask

from reference_forward import reference_transformer


def test_output_shapes(tiny_model):
    cfg = tiny_model.config
    out = tiny_model(torch.randn(2, 3, 96, 128))
    assert out["pred_logits"].shape == (2, cfg.num_queries, cfg.num_classes + 1)
    assert out["pred_boxes"].shape == (2, cfg.num_queries, 4)
    assert len(out["aux_outputs"]) == cfg.dec_layers - 1
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert aux["pred_boxes"].shape == out["pred_boxes"].shape
    assert 0 <= out["pred_boxes"].min() and out["pred_boxes"].max() <= 1


@pytest.mark.parametrize("overrides", [
    dict(pre_norm=True), dict(position_embedding="learned"), dict(dilation=True, backbone="resnet50"),
    dict(backbone_stages=3), dict(frozen_bn=False), dict(backbone="resnet34"),
])
def test_variants_build_and_run(overrides):
    model = detr_core.build_model(detr_core.tiny_config(**overrides)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out["pred_logits"].shape[:2] == (1, model.config.num_queries)
    stride = model.config.stride
    feats, mask, pos = model.backbone(torch.randn(1, 3, 64, 96), torch.zeros(1, 64, 96, dtype=torch.bool))
    assert feats.shape[-2:] == (-(-64 // stride), -(-96 // stride))
    assert pos.shape == (1, model.config.hidden_dim, *feats.shape[-2:])


def test_bad_input_shape_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny_model(torch.randn(3, 64, 64))


def test_padding_cells_get_no_attention(tiny_model):
    """In a padded batch, no encoder or decoder query attends to a padding cell, and the sine encoding of
    the smaller image's valid cells is the same as it would be alone."""
    values, mask = detr_core.pad_batch([torch.randn(3, 64, 96), torch.randn(3, 128, 160)])
    with torch.no_grad(), detr_core.capture_attention(tiny_model) as maps:
        tiny_model(values, mask)
        _, small_mask, pos = tiny_model.backbone(values, mask)
    padded = small_mask[0].flatten()  # [HW] for the smaller image
    assert padded.any() and not padded.all()
    for w in maps.encoder + maps.decoder_cross:
        assert w[0][..., padded].abs().max() == 0
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    alone = tiny_model.backbone[1](torch.zeros(1, 2, 3, dtype=torch.bool))
    torch.testing.assert_close(pos[0, :, :2, :3], alone[0])


def test_mask_downsampling_keeps_padding_cells():
    mask = torch.zeros(1, 64, 96, dtype=torch.bool)
    mask[:, :, 64:] = True
    small = downsample_mask(mask, (2, 3))
    assert small.tolist() == [[[False, False, True], [False, False, True]]]


def test_matches_independent_reference_forward(tiny_model):
    """Norm placement, positions on queries/keys only, query_pos in the decoder, shared final norm."""
    values, mask = detr_core.pad_batch([torch.randn(3, 64, 96), torch.randn(3, 96, 64)])
    with torch.no_grad(), detr_core.capture_attention(tiny_model) as maps:
        out = tiny_model(values, mask)
        features, small_mask, pos = tiny_model.backbone(values, mask)
        hs, ref_weights = reference_transformer(tiny_model, tiny_model.input_proj(features), small_mask, pos)
    torch.testing.assert_close(out["pred_logits"], tiny_model.class_embed(hs[-1]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["pred_boxes"], tiny_model.bbox_embed(hs[-1]).sigmoid(), atol=1e-5, rtol=1e-4)
    for kind in ("encoder", "decoder_self", "decoder_cross"):
        for ours, ref in zip(getattr(maps, kind), ref_weights[kind]):
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_sine_encoding_known_values():
    """With no padding, channel 0 of y is sin(2π·row/h) and channel 1 is cos of the same."""
    model = detr_core.build_model(detr_core.tiny_config()).eval()
    mask = torch.zeros(1, 4, 5, dtype=torch.bool)
    pos = model.backbone[1](mask)  # [1, d, 4, 5]
    rows = torch.arange(1, 5, dtype=torch.float32)[:, None].expand(4, 5)
    torch.testing.assert_close(pos[0, 0], torch.sin(rows / 4 * 2 * torch.pi), atol=1e-5, rtol=0)
    torch.testing.assert_close(pos[0, 1], torch.cos(rows / 4 * 2 * torch.pi), atol=1e-5, rtol=0)
    cols = torch.arange(1, 6, dtype=torch.float32)[None].expand(4, 5)
    half = model.config.hidden_dim // 2
    torch.testing.assert_close(pos[0, half], torch.sin(cols / 5 * 2 * torch.pi), atol=1e-5, rtol=0)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="backbone"):
        detr_core.DETRConfig(backbone="vgg16")
    with pytest.raises(ValueError, match="nheads"):
        detr_core.DETRConfig(hidden_dim=30, nheads=8)
    with pytest.raises(ValueError, match="bottleneck"):
        detr_core.DETRConfig(backbone="resnet18", dilation=True)
    with pytest.raises(ValueError, match="class names"):
        detr_core.build_model(detr_core.tiny_config(), class_names=["a"])


def test_config_dict_round_trip():
    cfg = detr_core.tiny_config(pre_norm=True, num_queries=7)
    assert detr_core.DETRConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        detr_core.DETRConfig.from_dict({**cfg.to_dict(), "bogus": 1})
