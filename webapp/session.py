"""Per-user state: one image's inspection (a single forward pass), kept in gr.State and only read afterwards."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

import detr_core
from detr_core import Detection, Inspection
from detr_core.family import Capabilities, capabilities
from detr_core.inspection.coords import boxes_in_size
from viz import enlarge, fit

# Larger images are downscaled to this longer side before the model sees them: DETR's own input is at most
# 1333 px, so nothing is lost, and the views stay fast.
MAX_SIDE = 1333
# Views draw on at least this longer side: a small image drawn at its own size is scaled up by the page and
# its labels blur past reading.
VIEW_MIN_SIDE = 512


@dataclass
class Session:
    """What one user is looking at. Thumbnails are cached because every gallery redraw needs them."""

    inspection: Inspection  # or a DETR-family result (detr_core.family): views ask capabilities() first
    model_source: str
    upload_size: tuple[int, int] | None = None  # (H, W) of the upload before downscaling; None: the same
    _thumbnails: dict = field(default_factory=dict, repr=False)

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of the image as uploaded: the pixels the detections table reports boxes in."""
        return self.upload_size or self.inspection.image_size

    @property
    def capabilities(self) -> Capabilities:
        """What the model's result can show (layer/head/level counts, which views apply)."""
        return capabilities(self.inspection)

    @property
    def inspection_title(self) -> str:
        """The model kind in words: "DETR", "Deformable DETR", "RT-DETR", ..."""
        return self.capabilities.title

    @property
    def downscaled(self) -> bool:
        return self.original_size != self.inspection.image_size

    def size_note(self) -> str:
        """One sentence on the sizes: the upload, what the page analysed, what the model's input was."""
        (H, W), (h, w), (ih, iw) = self.original_size, self.inspection.image_size, self.inspection.input_size
        shown = f"Image {W}x{H}, downscaled to {w}x{h}" if self.downscaled else f"Image {W}x{H}"
        return f"{shown}; the model saw it resized to {iw}x{ih}."

    def table_boxes(self, detections: list[Detection]) -> np.ndarray:
        """[N, 4] x0, y0, x1, y1 of the detections in the uploaded image's pixels, clipped to it."""
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        return boxes_in_size(boxes, self.inspection.image_size, self.original_size)

    def thumbnail(self, max_side: int) -> Image.Image:
        if max_side not in self._thumbnails:
            self._thumbnails[max_side] = fit(self.inspection.image, max_side)
        return self._thumbnails[max_side]

    def view_base(self) -> Image.Image:
        """The image to draw full-size views on: the analysed image, enlarged if it is smaller than
        VIEW_MIN_SIDE (boxes and labels are drawn at the enlarged size, so they stay sharp)."""
        if "view" not in self._thumbnails:
            self._thumbnails["view"] = enlarge(self.inspection.image, VIEW_MIN_SIDE)
        return self._thumbnails["view"]


def prepare_image(source) -> tuple[Image.Image, tuple[int, int] | None]:
    """Upload (path, bytes, PIL, array) -> (upright RGB image at most MAX_SIDE px, its (H, W) before
    downscaling or None if it was not downscaled).

    ValueError with a plain message for anything that is not a readable image.
    """
    try:
        image = detr_core.load_image(source)
    except Image.DecompressionBombError:
        raise ValueError("this image has too many pixels to open safely; use a smaller image") from None
    if max(image.size) <= MAX_SIDE:
        return image, None
    return fit(image, MAX_SIDE), (image.height, image.width)


def analyze(model, model_source: str, source) -> Session:
    """Prepare the image and run the model once (DETR or a DETR-family model), keeping every attention map."""
    image, upload_size = prepare_image(source)
    return Session(detr_core.inspect_any(model, image), model_source, upload_size)
