"""The inference twin behind inspect_image: the plain model's numbers, never stale, the model left alone."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import detr_core
from detr_core.model import twin as twin_module
from detr_core.teaching import query_slots
from detr_core.teaching.explain import explain_detection

from test_optimize import _randomise_norms


@pytest.fixture
def model():
    """A tiny DETR with trainable batch norms whose statistics are not the identity, so folding matters."""
    torch.manual_seed(0)
    config = detr_core.tiny_config(frozen_bn=False, dropout=0.0)
    return _randomise_norms(detr_core.build_model(config, detr_core.PreprocessConfig(128, 213))).eval()


def _close(a: detr_core.Inspection, b: detr_core.Inspection) -> bool:
    return (np.abs(a.layer_logits - b.layer_logits).max() < 1e-4
            and np.abs(a.decoder_cross_attention - b.decoder_cross_attention).max() < 1e-5)


def _differ(a: detr_core.Inspection, b: detr_core.Inspection) -> bool:
    return np.abs(a.layer_logits - b.layer_logits).max() > 1e-3


def test_the_twin_gives_the_plain_numbers_and_leaves_the_model_alone(model, rgb_image, tmp_path):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    fast, plain = detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False)
    assert _close(fast, plain)
    twin = detr_core.inference_twin(model)
    assert twin is not model and twin.inference_only and detr_core.inference_twin(model) is twin  # built once
    assert model.training and not twin.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # nothing folded in the model
    detr_core.save_model(model, tmp_path / "m.pth")  # still the model a user saves (the twin would be refused)


def test_only_the_backbone_is_copied(model):
    twin = detr_core.inference_twin(model)
    layer, twin_layer = model.transformer.encoder.layers[0], twin.transformer.encoder.layers[0]
    assert twin_layer.self_attn.in_proj_weight is layer.self_attn.in_proj_weight
    assert twin.query_embed.weight is model.query_embed.weight and twin.class_embed.weight is model.class_embed.weight
    model_backbone = {id(p) for p in model.backbone[0].parameters()}
    assert not model_backbone & {id(p) for p in twin.backbone[0].parameters()}


@pytest.mark.parametrize("part", ["backbone", "everything"])
def test_inspecting_after_an_optimizer_step_sees_the_new_weights(model, rgb_image, part):
    # a backbone-only step is the one a stale twin would miss: everything after it is shared with the model
    before = detr_core.inspect_image(model, rgb_image)
    params = model.backbone.parameters() if part == "backbone" else model.parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    x = detr_core.image_to_tensor(detr_core.load_image(rgb_image), model.preprocess)[None]
    model(x)["pred_logits"].square().mean().backward()
    optimizer.step()
    after, plain = detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False)
    assert _differ(after, before) and _close(after, plain)


def test_batch_norm_statistics_updated_by_training_passes_are_seen(model, rgb_image):
    before = detr_core.inspect_image(model, rgb_image)
    model.train()
    with torch.no_grad():  # no optimizer: only the running statistics move
        model(torch.randn(2, 3, 96, 128) * 3 + 1)
    after, plain = detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False)
    assert _differ(after, before) and _close(after, plain)


def test_loaded_weights_and_replaced_modules_are_seen(model, rgb_image):
    detr_core.inspect_image(model, rgb_image)
    torch.manual_seed(5)
    other = _randomise_norms(detr_core.build_model(model.config, model.preprocess)).eval()
    model.load_state_dict(other.state_dict())
    assert _close(detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(other, rgb_image, fast=False))
    model.class_embed = torch.nn.Linear(model.config.hidden_dim, model.config.num_classes + 1)
    assert _close(detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False))


def test_after_writing_through_data_forget_the_twin(model, rgb_image):
    detr_core.inspect_image(model, rgb_image)
    with torch.no_grad():
        model.backbone[0].body.conv1.weight.data.mul_(-2)  # .data writes bypass PyTorch's version counter
    detr_core.forget_inference_twin(model)
    assert _close(detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False))


def test_hooks_on_the_model_see_the_pass(model, rgb_image):
    seen = []
    handle = model.transformer.encoder.register_forward_hook(lambda *args: seen.append(1))
    detr_core.inspect_image(model, rgb_image)
    assert seen == [1]
    handle.remove()
    detr_core.inspect_image(model, rgb_image)
    assert seen == [1]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in detr_core.inference_twin(model).modules())


def test_models_that_get_no_twin(model, rgb_image):
    fast = detr_core.optimize_for_inference(model)
    assert detr_core.inference_twin(fast) is fast
    model.use_inference_twin = False  # the plain path for every entry point (the app's --no-optimize)
    assert detr_core.inference_twin(model) is model
    a, b = detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False)
    np.testing.assert_array_equal(a.layer_logits, b.layer_logits)
    model.use_inference_twin = True
    assert detr_core.inference_twin(model.double()) is model  # float32 only: the twin's numbers must be the same


def test_the_twin_goes_with_its_model():
    model = detr_core.build_model(detr_core.tiny_config(), detr_core.PreprocessConfig(128, 213))
    twin = weakref.ref(detr_core.inference_twin(model))
    gc.collect()
    assert twin() is not None
    del model
    gc.collect()
    assert twin() is None


def test_threads_inspecting_one_model_share_one_twin(model):
    twins = []
    threads = [threading.Thread(target=lambda: twins.append(detr_core.inference_twin(model))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(twins) == 4 and all(t is twins[0] for t in twins)


def test_relevance_differentiates_through_the_twin(model, rgb_image):
    ins = detr_core.inspect_image(model, rgb_image)
    fast = explain_detection(model, ins, query=3)
    model.use_inference_twin = False
    plain = explain_detection(model, ins, query=3)
    assert np.abs(fast.relevance).max() > 0
    np.testing.assert_allclose(fast.relevance, plain.relevance, atol=1e-5)


def test_query_slots_run_the_twin(model, tmp_path):
    files = []
    for i in range(2):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (100, 140, 3), dtype=np.uint8)).save(files[-1])
    stats = query_slots.collect(model, files)
    with torch.inference_mode():
        x = detr_core.image_to_tensor(detr_core.load_image(files[1]), model.preprocess)[None]
        boxes = model(x)["pred_boxes"][0].numpy()  # [Q, 4] cx, cy, w, h
    np.testing.assert_allclose(stats.centres[1], boxes[:, :2], atol=1e-5)
    np.testing.assert_allclose(stats.sizes[1], boxes[:, 2:], atol=1e-5)


def test_a_compiled_twin_serves_inspect_image(model, rgb_image, monkeypatch):
    # compiling itself is tested in test_optimize (it takes seconds); here: it happens once, on the cached twin,
    # and inspect_image(model) then goes through the compiled graph
    compiled_calls, compiles = [], []

    def fake_compile(twin):
        wrapper = twin.backbone[0].body
        compiles.append(twin)
        wrapper.compiled = lambda x: compiled_calls.append(1) or wrapper.body(x)
    monkeypatch.setattr(twin_module, "compile_backbone_now", fake_compile)
    twin = detr_core.inference_twin(model, compile_backbone=True)
    assert detr_core.inference_twin(model, compile_backbone=True) is twin and compiles == [twin]
    assert _close(detr_core.inspect_image(model, rgb_image), detr_core.inspect_image(model, rgb_image, fast=False))
    assert compiled_calls == [1]


def test_nothing_is_compiled_by_default_and_the_environment_opts_in(model, rgb_image, monkeypatch):
    compiles = []

    def fake_compile(twin):
        compiles.append(twin)
        twin.backbone[0].body.compiled = twin.backbone[0].body.body
    monkeypatch.setattr(twin_module, "compile_backbone_now", fake_compile)
    monkeypatch.setattr(twin_module, "COMPILE_BY_DEFAULT", False)
    detr_core.forget_inference_twin(model)
    before = {t.ident for t in threading.enumerate()}
    detr_core.inspect_image(model, rgb_image)
    assert compiles == [] and {t.ident for t in threading.enumerate()} <= before  # no thread left behind
    monkeypatch.setattr(twin_module, "COMPILE_BY_DEFAULT", True)  # DETR_LENS_COMPILE=1
    detr_core.forget_inference_twin(model)
    twin = detr_core.inference_twin(model)
    assert compiles == [twin] and {t.ident for t in threading.enumerate()} <= before  # compiled in this thread
    assert detr_core.inference_twin(model) is twin and len(compiles) == 1  # once per twin
    detr_core.forget_inference_twin(model)
    detr_core.inference_twin(model, compile_backbone=False)  # callers that train on opt out
    assert len(compiles) == 1


SHORT_SCRIPT = """
import threading, detr_core
model = detr_core.load_model("shapes")
ins = detr_core.inspect_image(model, {image!r})
print(len(ins.detections(0.7)))
print(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()))
"""


def test_a_short_script_exits_cleanly_with_nothing_left_running(tmp_path):
    # The issue: a background compile still running at exit aborted the interpreter (status 134, 'terminate
    # called without an active exception'). The library's defaults, as a user's script gets them.
    image = Path(__file__).parent.parent / "webapp" / "examples" / "shapes.jpg"
    env = {k: v for k, v in os.environ.items() if k != "DETR_LENS_COMPILE"}
    done = subprocess.run([sys.executable, "-c", SHORT_SCRIPT.format(image=str(image))], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    count, threads = done.stdout.splitlines()
    assert int(count) > 0 and threads == "[]"
