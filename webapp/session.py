"""Per-user state: one image's inspection (a single forward pass), kept in gr.State and only read afterwards."""
from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

import detr_core
from detr_core import Inspection
from viz import fit

# Larger images are downscaled to this longer side before the model sees them: DETR's own input is at most
# 1333 px, so nothing is lost, and the views stay fast.
MAX_SIDE = 1333


@dataclass
class Session:
    """What one user is looking at. Thumbnails are cached because every gallery redraw needs them."""

    inspection: Inspection
    model_source: str
    note: str = ""  # e.g. "downscaled from 4000x3000"
    _thumbnails: dict = field(default_factory=dict, repr=False)

    def thumbnail(self, max_side: int) -> Image.Image:
        if max_side not in self._thumbnails:
            self._thumbnails[max_side] = fit(self.inspection.image, max_side)
        return self._thumbnails[max_side]


def prepare_image(source) -> tuple[Image.Image, str]:
    """Upload (path, bytes, PIL, array) -> upright RGB image at most MAX_SIDE px, and a note if downscaled.

    ValueError with a plain message for anything that is not a readable image.
    """
    try:
        image = detr_core.load_image(source)
    except Image.DecompressionBombError:
        raise ValueError("this image has too many pixels to open safely; use a smaller image") from None
    if max(image.size) <= MAX_SIDE:
        return image, ""
    note = f"downscaled from {image.width}x{image.height} to at most {MAX_SIDE} px"
    return fit(image, MAX_SIDE), note


def analyze(model, model_source: str, source) -> Session:
    """Prepare the image and run the model once, keeping every attention map."""
    image, note = prepare_image(source)
    return Session(detr_core.inspect_image(model, image), model_source, note)
