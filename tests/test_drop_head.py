"""DropHead on the decoder's cross-attention: whole heads dropped in training, nothing changed in eval."""
import pytest
import torch
from torch import nn

import detr_core
from detr_core import PreprocessConfig, tiny_config
from detr_core.drop_head import attention_with_drop_head, head_keep_scale


def _attention(heads=4, d=32):
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(d, heads, batch_first=True)
    q, kv = torch.randn(2, 5, d), torch.randn(2, 7, d)
    return attn, q, kv


def test_scale_keeps_at_least_one_head_and_the_expected_output():
    torch.manual_seed(0)
    draws = torch.stack([head_keep_scale(8, 0.5) for _ in range(4000)])  # [4000, 8]
    assert (draws.sum(1) > 0).all() and ((draws == 0) | (draws >= 1)).all()
    assert (draws > 0).float().mean() == pytest.approx(0.5, abs=0.03)
    assert draws.mean() == pytest.approx(1.0, abs=0.03)  # kept heads scaled like inverted dropout
    assert torch.equal(head_keep_scale(8, 0.0), torch.ones(8))
    with pytest.raises(ValueError, match="drop_head=1.0"):
        head_keep_scale(8, 1.0)


def test_nothing_dropped_equals_the_module():
    attn, q, kv = _attention()
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, -2:] = True
    got = attention_with_drop_head(attn, q, kv, kv, mask, p=0.0)
    assert torch.allclose(got, attn(q, kv, kv, key_padding_mask=mask)[0], atol=1e-6)


def test_dropped_heads_get_no_gradient_and_kept_heads_do():
    attn, q, kv = _attention(heads=4, d=32)
    torch.manual_seed(3)
    scale = head_keep_scale(4, 0.5)
    torch.manual_seed(3)  # the same draw inside the call
    attention_with_drop_head(attn, q, kv, kv, None, p=0.5).pow(2).sum().backward()
    q_rows = attn.in_proj_weight.grad[:32].reshape(4, 8, 32)  # query projection, per head
    per_head = q_rows.abs().sum((1, 2))
    assert 0 < int((scale > 0).sum()) < 4, "seed should keep some heads and drop others"
    assert torch.all(per_head[scale == 0] == 0) and torch.all(per_head[scale > 0] > 0)


def test_model_in_eval_mode_is_unchanged_and_training_is_stochastic():
    torch.manual_seed(0)
    plain = detr_core.build_model(tiny_config(), PreprocessConfig(64, 96))
    dropping = detr_core.build_model(tiny_config(drop_head=0.5), PreprocessConfig(64, 96))
    dropping.load_state_dict(plain.state_dict(), strict=True)  # same keys: inference is a plain DETR
    x, mask = torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64, dtype=torch.bool)
    plain.eval(), dropping.eval()
    with torch.no_grad():
        assert torch.equal(plain(x, mask)["pred_logits"], dropping(x, mask)["pred_logits"])
        dropping.train()
        runs = [dropping(x, mask)["pred_logits"] for _ in range(6)]
    assert any(not torch.allclose(runs[0], r) for r in runs[1:])
