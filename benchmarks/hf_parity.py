"""One R50-sized Hugging Face DETR against this project's conversion of it: the numbers, not a speed.

    python -m benchmarks.hf_parity [--layout timm|transformers] [--dilation] [--size 800]

Builds a `DetrForObjectDetection` with the facebook/detr-resnet-50 architecture (ResNet-50, d=256, 6+6 layers,
8 heads, 100 queries, 91 classes) and random weights (every tensor drawn again, q/k projections scaled up so the
attention maps are peaked), saves it with `save_pretrained`, opens the folder with `detr_core.load_model`, and
prints the largest differences on a padded two-image batch: logits, boxes, and every encoder self-attention and
decoder cross-attention map per head, against transformers' eager attention with output_attentions=True.
The test suite checks the same on tiny models (tests/test_hf_parity.py): targets 1e-4 (logits, boxes) and 1e-5
(attention).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import detr_core

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hf_models import randomise  # noqa: E402  the same random draw the tests use


def hf_detr(layout: str, dilation: bool):
    from transformers import DetrConfig, DetrForObjectDetection

    backbone = dict(use_timm_backbone=True, backbone="resnet50", dilation=dilation) if layout == "timm" \
        else dict(use_timm_backbone=False)  # transformers' own ResNet-50 (the no_timm revisions)
    config = DetrConfig(use_pretrained_backbone=False, id2label={i: f"class {i}" for i in range(91)}, **backbone)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return randomise(DetrForObjectDetection(config), seed=0)


def padded_pair(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[2, 3, size, size*4/3] with the second image 3/4 as large and padded; mask True on padding."""
    h, w = size, size * 4 // 3
    gen = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(2, 3, h, w, generator=gen)
    mask = torch.zeros(2, h, w, dtype=torch.bool)
    mask[1, h * 3 // 4:, :] = True
    mask[1, :, w * 3 // 4:] = True
    pixel_values[1][:, mask[1]] = 0.0
    return pixel_values, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", choices=["timm", "transformers"], default="timm")
    parser.add_argument("--dilation", action="store_true", help="DC5 (timm layout only)")
    parser.add_argument("--size", type=int, default=800, help="input height; width is 4/3 of it")
    args = parser.parse_args()
    import transformers

    hf = hf_detr(args.layout, args.dilation)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        start = time.perf_counter()
        ours = detr_core.load_model(folder)
        load_s = time.perf_counter() - start
    pixel_values, mask = padded_pair(args.size)
    with torch.no_grad():
        ref = hf(pixel_values=pixel_values, pixel_mask=(~mask).long(), output_attentions=True)
        with detr_core.capture_attention(ours) as maps:
            out = ours(pixel_values, mask)
    enc = [(a - b).abs().max().item() for a, b in zip(maps.encoder, ref.encoder_attentions)]
    cross = [(a - b).abs().max().item() for a, b in zip(maps.decoder_cross, ref.cross_attentions)]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; layout {args.layout},"
          f" dilation {args.dilation}, input 2x3x{tuple(pixel_values.shape[-2:])}, load_model {load_s:.1f} s")
    print(f"config: {ours.config}")
    print(f"max |logits diff|           {(out['pred_logits'] - ref.logits).abs().max().item():.3g}  (target 1e-4)")
    print(f"max |boxes diff|            {(out['pred_boxes'] - ref.pred_boxes).abs().max().item():.3g}  (target 1e-4)")
    print(f"max |encoder attn diff|     {max(enc):.3g}  per layer {[f'{d:.2g}' for d in enc]}  (target 1e-5)")
    print(f"max |cross attn diff|       {max(cross):.3g}  per layer {[f'{d:.2g}' for d in cross]}  (target 1e-5)")
    print(f"largest attention weight    {maps.decoder_cross[-1].max().item():.3f} (the maps are not uniform)")


if __name__ == "__main__":
    main()
