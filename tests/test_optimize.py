"""optimize_for_inference: same detections and attention as the plain model, which it leaves untouched."""
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

import detr_core
from detr_core.inspection.compact import MAX_ERROR

from test_weights import reference_state_dict


def _randomise_norms(model):
    """Random weights give identity-like norms; real checkpoints don't, so make folding matter."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
            for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.2, 0.2), (m.running_mean, -0.2, 0.2),
                              (m.running_var, 0.5, 1.5)):
                t.data.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)
    return model


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_same_outputs_and_attention(frozen_bn, rgb_image):
    torch.manual_seed(0)
    model = _randomise_norms(detr_core.build_model(detr_core.tiny_config(frozen_bn=frozen_bn),
                                                   detr_core.PreprocessConfig(128, 213))).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = detr_core.optimize_for_inference(model)
    a, b = detr_core.inspect_image(model, rgb_image, fast=False), detr_core.inspect_image(fast, rgb_image)
    assert np.abs(a.layer_logits - b.layer_logits).max() < 1e-4
    assert np.abs(a.layer_boxes - b.layer_boxes).max() < 1e-4
    # both are stored in fixed point: float noise of 1e-8 can land on neighbouring codes, 2 * MAX_ERROR apart
    assert np.abs(np.asarray(a.encoder_attention) - np.asarray(b.encoder_attention)).max() < 1e-5 + 2 * MAX_ERROR
    assert np.abs(a.decoder_cross_attention - b.decoder_cross_attention).max() < 1e-5
    assert [d.query for d in a.detections(0.1)] == [d.query for d in b.detections(0.1)]
    for k, v in model.state_dict().items():  # the original is not modified
        assert torch.equal(v, before[k]), k
    assert not any(isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)) for m in fast.modules())


def test_official_r50_layout():
    """DETR-R50 exactly as the official checkpoints lay it out (keys checked in test_weights), random weights."""
    torch.manual_seed(0)
    model = detr_core.build_model(detr_core.DETRConfig())
    assert set(model.state_dict()) == set(reference_state_dict("detr-r50"))
    model = _randomise_norms(model.eval())
    fast = detr_core.optimize_for_inference(model)
    x = torch.randn(1, 3, 160, 224)
    with torch.inference_mode():
        plain, quick = model(x), fast(x)
    assert (plain["pred_logits"] - quick["pred_logits"]).abs().max() < 1e-3
    assert (plain["pred_boxes"] - quick["pred_boxes"]).abs().max() < 1e-3


def test_optimized_model_cannot_be_saved(tiny_model, tmp_path):
    fast = detr_core.optimize_for_inference(tiny_model)
    with pytest.raises(ValueError, match="optimize_for_inference"):
        detr_core.save_model(fast, tmp_path / "x.pth")


def test_compiled_backbone_gives_the_same_results_at_any_size(rgb_image):
    torch.manual_seed(0)
    model = _randomise_norms(detr_core.build_model(detr_core.tiny_config(frozen_bn=True),
                                                   detr_core.PreprocessConfig(128, 213))).eval()
    fast = detr_core.optimize_for_inference(model, compile_backbone=True)
    assert fast.backbone[0].body.compiled is not None
    wide = np.ascontiguousarray(np.tile(rgb_image, (1, 2, 1))[:, :300])  # another aspect ratio: dynamic shapes, no recompilation needed
    for image in (rgb_image, wide):
        a, b = detr_core.inspect_image(model, image, fast=False), detr_core.inspect_image(fast, image)
        assert np.abs(a.layer_logits - b.layer_logits).max() < 1e-4
        assert np.abs(a.layer_boxes - b.layer_boxes).max() < 1e-4
        assert np.abs(a.decoder_cross_attention - b.decoder_cross_attention).max() < 1e-5
        assert [d.query for d in a.detections(0.1)] == [d.query for d in b.detections(0.1)]
    # calls that need gradients (the relevance views) take the eager backbone, with the same weights
    x = detr_core.image_to_tensor(detr_core.load_image(rgb_image), model.preprocess)[None].requires_grad_()
    fast(x)["pred_logits"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_compiling_in_the_background_leaves_other_threads_on_the_eager_backbone(tiny_model, rgb_image):
    fast = detr_core.optimize_for_inference(tiny_model)
    expected = detr_core.inspect_image(fast, rgb_image).layer_logits
    worker = threading.Thread(target=detr_core.compile_backbone_now, args=(fast, (96, 128)))
    worker.start()
    seen = 0
    while worker.is_alive() or seen == 0:
        got = detr_core.inspect_image(fast, rgb_image).layer_logits
        assert np.abs(got - expected).max() < 1e-5
        seen += 1
    worker.join()
    assert fast.backbone[0].body.compiled is not None
    assert np.abs(detr_core.inspect_image(fast, rgb_image).layer_logits - expected).max() < 1e-5


def test_compile_needs_an_optimised_copy(tiny_model):
    with pytest.raises(RuntimeError, match="optimize_for_inference"):
        detr_core.compile_backbone_now(tiny_model)


@pytest.mark.cpu_dependent
@pytest.mark.skipif(not detr_core.bfloat16_is_fast(), reason="this CPU has no native bfloat16")
def test_bfloat16_mode_is_close_and_says_it_is_approximate(rgb_image):
    torch.manual_seed(0)
    model = _randomise_norms(detr_core.build_model(detr_core.tiny_config(frozen_bn=True),
                                                   detr_core.PreprocessConfig(128, 213))).eval()
    exact = detr_core.optimize_for_inference(model)
    approx = detr_core.optimize_for_inference(model, precision="bfloat16")
    assert not exact.approximate and approx.approximate
    assert next(approx.backbone[0].body.body.parameters()).dtype == torch.bfloat16
    a, b = detr_core.inspect_image(exact, rgb_image), detr_core.inspect_image(approx, rgb_image)
    assert b.layer_logits.dtype == np.float32 and b.decoder_cross_attention.dtype == np.float32
    difference = np.abs(a.layer_logits - b.layer_logits).max()
    assert 0 < difference < 0.05 * np.abs(a.layer_logits).max()  # bfloat16 keeps ~3 significant digits
    np.testing.assert_allclose(np.asarray(b.encoder_attention).sum(-1), 1, atol=1e-3)


def test_precision_is_checked(tiny_model, monkeypatch):
    with pytest.raises(ValueError, match="choose one of"):
        detr_core.optimize_for_inference(tiny_model, precision="float16")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="native bfloat16"):
        detr_core.optimize_for_inference(tiny_model, precision="bfloat16")


def test_a_padded_batch_keeps_its_mask_in_the_optimised_copy(tiny_model):
    # only an all-false mask may be dropped; with padding the masked cells must still get no attention
    gen = torch.Generator().manual_seed(3)
    x, mask = detr_core.pad_batch([torch.randn(3, 96, 128, generator=gen), torch.randn(3, 64, 96, generator=gen)])
    fast = detr_core.optimize_for_inference(tiny_model)
    with torch.inference_mode():
        plain, quick = tiny_model(x, mask), fast(x, mask)
    assert mask.any()
    assert (plain["pred_logits"] - quick["pred_logits"]).abs().max() < 1e-4
    assert (plain["pred_boxes"] - quick["pred_boxes"]).abs().max() < 1e-4


@pytest.mark.cpu_dependent  # only machines with a CUDA toolkit and no GPU can show the notice
def test_compiling_on_a_cpu_does_not_print_the_cuda_home_notice():
    """torch.utils.cpp_extension, imported by torch.compile, logs "No CUDA runtime is found, using CUDA_HOME=..."
    where it finds a CUDA toolkit (CUDA_HOME, nvcc on the PATH, /usr/local/cuda) but no GPU; a CPU compile never
    uses CUDA_HOME."""
    toolkit = os.environ.get("CUDA_HOME") or shutil.which("nvcc") or Path("/usr/local/cuda").exists()
    if not toolkit or torch.cuda.is_available() or not torch.cuda._is_compiled():
        pytest.skip("torch logs no such notice here (no CUDA toolkit, a GPU, or a CPU-only torch)")
    code = ("from detr_core.model.optimize import _quiet_cuda_home_notice\n_quiet_cuda_home_notice()\n"
            "import torch.utils.cpp_extension\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "No CUDA runtime is found" not in done.stderr, done.stderr
