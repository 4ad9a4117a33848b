"""docs/family-sampling.png: the sampling-point slide figure, drawn by `python -m viz.figures --figure sampling`.

    python docs/family_figure.py [--image webapp/examples/grace_hopper.jpg] [--out docs/family-sampling.png]

No DETR-family weights can be downloaded on the machines this project is built on, so the model is a
Deformable DETR of the official R50 size (timm ResNet-50, 6+6 layers, 8 heads, 4 levels x 4 points, 300
queries) with transformers' own initialisation, seeded: what it shows is Deformable DETR's *initial* sampling
pattern (each head's points on a ray in its own direction, 1..4 steps from the reference point, equal
weights), not a learned one. With a trained checkpoint folder or Hub id, run the command in the docstring of
viz/slides.py instead.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the repo's packages come first


def untrained_deformable_detr(folder: Path) -> None:
    """Save a seeded, randomly initialised R50-sized Deformable DETR and its image processor to `folder`."""
    import transformers

    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = transformers.DeformableDetrConfig(num_labels=91)
        model = transformers.DeformableDetrForObjectDetection(config)
    model.save_pretrained(folder)
    transformers.DeformableDetrImageProcessor().save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(REPO / "webapp" / "examples" / "grace_hopper.jpg"))
    parser.add_argument("--out", default=str(REPO / "docs" / "family-sampling.png"))
    args = parser.parse_args()
    from viz.slides import main as figures

    with tempfile.TemporaryDirectory() as folder:
        untrained_deformable_detr(Path(folder))
        figures([args.image, "--model", folder, "--out", args.out, "--figure", "sampling", "--threshold", "0",
                 "--count", "3", "--dpi", "90", "--title", TITLE])
    Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)  # a README-sized file


TITLE = ("UNTRAINED Deformable DETR-R50 (transformers' initialisation): the initial sampling pattern, last decoder"
         " layer, all heads.\nDot area and opacity = weight (all equal before training), colour = feature level;"
         " below, the weights splatted onto the image grid")


if __name__ == "__main__":
    main()
