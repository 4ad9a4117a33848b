"""Per-user state: which image a page analysed with which model. Kept in gr.State, and small on purpose: keys
and sizes, a few hundred bytes, however many pages Gradio keeps.

Everything heavy lives in the process's InspectionStore, counted in its one budget: the analysed image, as a
lossless PNG (a *source* entry: the store evicts it last), the image decoded, the inspection (tens of MB at DETR-R50
size). If the store evicted the inspection, the first view that needs it runs the model again on the very same
image (lossless: the same pixels, so the same answers) with the very same model, and says so in one line. Why PNG:
a 1333x1562 photo takes 2.3 MB so instead of the 8.3 MB Pillow holds it in, so a class's images fit the budget many
times over, and it encodes in a fraction of the forward pass's time. If the image itself had to go (the budget full
of images, an hour unused), the page asks for it again (IMAGE_GONE).
"""
from __future__ import annotations

import dataclasses
import io
import time
import uuid
from dataclasses import dataclass, field

import gradio as gr
import numpy as np
from PIL import Image

import detr_core
from detr_core import Detection, Inspection
from detr_core.family import Capabilities, capabilities
from detr_core.inspection.coords import boxes_in_size
from viz import enlarge, fit

from .models import LoadedModel, ModelCache
from .store import InspectionStore

# Larger images are downscaled to this longer side before the model sees them: DETR's own input is at most
# 1333 px, so nothing is lost, and the views stay fast.
MAX_SIDE = 1333
# Views draw on at least this longer side: a small image drawn at its own size is scaled up by the page and
# its labels blur past reading.
VIEW_MIN_SIDE = 512
REANALYSED = "This image's analysis had been set aside to save the server's memory; it was run again ({:.1f} s)."
IMAGE_GONE = ("This page's image was set aside to keep the server within its memory (or after an hour unused);"
              " upload it again, or pick an example.")


def encode_png(image: Image.Image) -> bytes:
    """Lossless and quick (zlib level 1): a session's image as the store keeps it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class Session:
    """What one page is looking at: keys only. `image` is the analysed image (upright RGB, at most MAX_SIDE px),
    from the store: the one the model saw, and the one it sees again after an eviction. `model_source` is the
    resolved source (never "auto"). Make one with `Session.start`.
    """

    key: str  # of its entries in the store; unique per analysis
    size: tuple[int, int]  # (H, W) of the analysed image
    model_source: str
    store: InspectionStore = field(repr=False, compare=False)
    models: ModelCache = field(repr=False, compare=False)
    upload_size: tuple[int, int] | None = None  # (H, W) of the upload before downscaling; None: the same
    owner: str | None = None  # the Gradio session (page), so that closing it frees the store's entries

    @classmethod
    def start(cls, store: InspectionStore, models: ModelCache, inspection: Inspection, model_source: str,
              key: str | None = None, upload_size: tuple[int, int] | None = None,
              owner: str | None = None) -> "Session":
        """A session around a fresh inspection: its image (as a PNG) and the inspection go into the store."""
        image = inspection.image
        session = cls(key or uuid.uuid4().hex, (image.height, image.width), model_source, store, models,
                      upload_size, owner)
        store.put((session.key, "source"), encode_png(image), session.key, owner, source=True)
        session.keep(inspection)
        return session

    @property
    def image(self) -> Image.Image:
        """The analysed image: the inspection's own while it is stored, else decoded from the stored PNG (and
        kept, counted, until the inspection holds it again). gr.Error (IMAGE_GONE) if that was set aside too."""
        ins = self.store.get(self.key)
        if ins is not None:
            return ins.image
        return self.store.get_or_make((self.key, "image"), self._decode, self.key, self.owner, heavy=False)[0]

    def _decode(self) -> Image.Image:
        png = self.store.get((self.key, "source"))
        if png is None:
            raise gr.Error(IMAGE_GONE, title="Image set aside", print_exception=False)
        with Image.open(io.BytesIO(png)) as image:
            return image.convert("RGB")

    @property
    def inspection(self) -> Inspection:
        """This image's inspection (or a DETR-family result: views ask `capabilities` first): from the store, or (after an eviction) made again, with a note to the page."""
        seconds = []

        def reanalyse() -> Inspection:
            start = time.perf_counter()
            try:
                model = self.models.get(self.model_source).model
            except (RuntimeError, ValueError, OSError) as err:
                raise gr.Error(f"Could not load the model {self.model_source!r} to analyse this image again: {err}",
                               print_exception=False) from None
            image = self.image
            ins = dataclasses.replace(detr_core.inspect_any(model, image), image=image)
            seconds.append(time.perf_counter() - start)
            return ins

        ins, made = self.store.get_or_make(self.key, reanalyse, self.key, self.owner)
        if made:
            self.store.discard((self.key, "image"))  # the inspection holds (and counts) the image now
            gr.Info(REANALYSED.format(seconds[0]), duration=8, title="Analysed again")
        return ins

    def keep(self, inspection: Inspection) -> None:
        """Store a fresh inspection of this session's image; its image counts in the budget with it."""
        self.store.put(self.key, inspection, self.key, self.owner)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the analysed image."""
        return self.size

    @property
    def original_size(self) -> tuple[int, int]:
        """(H, W) of the image as uploaded: the pixels the detections table reports boxes in."""
        return self.upload_size or self.image_size

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
        return self.original_size != self.image_size

    def size_note(self) -> str:
        """One sentence on the sizes: the upload, what the page analysed, what the model's input was."""
        (H, W), (h, w), (ih, iw) = self.original_size, self.image_size, self.inspection.input_size
        shown = f"Image {W}x{H}, downscaled to {w}x{h}" if self.downscaled else f"Image {W}x{H}"
        return f"{shown}; the model saw it resized to {iw}x{ih}."

    def table_boxes(self, detections: list[Detection]) -> np.ndarray:
        """[N, 4] x0, y0, x1, y1 of the detections in the uploaded image's pixels, clipped to it."""
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        return boxes_in_size(boxes, self.image_size, self.original_size)

    def thumbnail(self, max_side: int) -> Image.Image:
        """The image fitted within max_side, kept in the store: every gallery redraw needs it."""
        return self.store.get_or_make((self.key, "thumbnail", max_side), lambda: fit(self.image, max_side),
                                      self.key, self.owner, heavy=False)[0]

    def view_base(self) -> Image.Image:
        """The image to draw full-size views on: the analysed image, enlarged if it is smaller than
        VIEW_MIN_SIDE (boxes and labels are drawn at the enlarged size, so they stay sharp)."""
        if max(self.size) >= VIEW_MIN_SIDE:
            return self.image
        return self.store.get_or_make((self.key, "view"), lambda: enlarge(self.image, VIEW_MIN_SIDE),
                                      self.key, self.owner, heavy=False)[0]


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


def analyze(models: ModelCache, store: InspectionStore, loaded: LoadedModel, source,
            upload_size: tuple[int, int] | None = None, owner: str | None = None) -> Session:
    """Prepare the image and run the model once (one forward pass at a time in the process), keeping every
    attention map in the store. `upload_size`: the original upload's (H, W) when `source` is an image that was
    already downscaled (a new model for the same image). A page's earlier sessions leave the store."""
    image, size = prepare_image(source)
    with store.forward_pass():
        store.admit(owner)  # PageLimitError past --max-sessions; one at a time, like the passes themselves
        ins = detr_core.inspect_any(loaded.model, image)  # DETR or a DETR-family model
        session = Session.start(store, models, ins, loaded.source, upload_size=upload_size or size, owner=owner)
    if owner is not None:
        store.release_owner(owner, keep_group=session.key)
    return session
