"""Attention capture: complete, exact, scoped, and private to the thread that asked for it."""
import threading

import pytest
import torch

import detr_core
from detr_core.inspection.capture import attention_modules


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
               for mods in attention_modules(model).values() for m in mods)


def test_captures_every_layer_per_head(tiny_model):
    cfg = tiny_model.config
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), detr_core.capture_attention(tiny_model) as maps:
        tiny_model(x)
    hw = 2 * 3
    assert [tuple(w.shape) for w in maps.encoder] == [(1, cfg.nheads, hw, hw)] * cfg.enc_layers
    assert [tuple(w.shape) for w in maps.decoder_self] == [(1, cfg.nheads, cfg.num_queries, cfg.num_queries)] * cfg.dec_layers
    assert [tuple(w.shape) for w in maps.decoder_cross] == [(1, cfg.nheads, cfg.num_queries, hw)] * cfg.dec_layers
    for w in maps.encoder + maps.decoder_self + maps.decoder_cross:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))
        assert not torch.allclose(w[0, 0], w[0, 1])  # heads are kept apart, not averaged


def test_outputs_equal_with_and_without_capture(tiny_model):
    x = torch.randn(2, 3, 80, 112)
    with torch.no_grad():
        plain = tiny_model(x)
        with detr_core.capture_attention(tiny_model):
            captured = tiny_model(x)
    for key in ("pred_logits", "pred_boxes"):
        assert (plain[key] - captured[key]).abs().max() <= 1e-5


def test_hooks_removed_after_context_and_after_error(tiny_model):
    assert _hook_count(tiny_model) == 0
    with detr_core.capture_attention(tiny_model):
        assert _hook_count(tiny_model) > 0
    assert _hook_count(tiny_model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with detr_core.capture_attention(tiny_model):
            raise RuntimeError("boom")
    assert _hook_count(tiny_model) == 0
    with pytest.raises(ValueError):
        with detr_core.capture_attention(tiny_model):
            tiny_model(torch.randn(3, 64, 64))  # fails inside the forward
    assert _hook_count(tiny_model) == 0


def test_no_capture_outside_the_context(tiny_model):
    with detr_core.capture_attention(tiny_model) as maps:
        pass
    with torch.no_grad():
        tiny_model(torch.randn(1, 3, 64, 64))
    assert maps.encoder == [] and maps.decoder_cross == []


def test_two_threads_sharing_one_model_get_their_own_maps(tiny_model):
    inputs = {"a": torch.randn(1, 3, 64, 96), "b": torch.randn(1, 3, 96, 64)}
    results, barrier = {}, threading.Barrier(2)

    def work(name):
        with torch.no_grad(), detr_core.capture_attention(tiny_model) as maps:
            barrier.wait()  # both contexts are open at once
            for _ in range(3):
                tiny_model(inputs[name])
        results[name] = maps

    threads = [threading.Thread(target=work, args=(n,)) for n in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    enc_layers = tiny_model.config.enc_layers
    for name, x in inputs.items():
        maps = results[name]
        assert len(maps.encoder) == 3 * enc_layers  # only its own three passes
        with torch.no_grad(), detr_core.capture_attention(tiny_model) as alone:
            tiny_model(x)
        torch.testing.assert_close(maps.encoder[-1], alone.encoder[-1])
