"""A DETR or a DETR-family model seen as a function of its input pixels: a batch of (perturbed) inputs in,
every query's box, class probabilities and objectness out (what D-RISE compares).

Each batch is one forward of the model's own module (DETR: its inference twin, as inspect_image runs it;
the family: transformers' own forward); nothing of the model's arithmetic is copied here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.ops import box_convert

from ..inspection.coords import CoordinateMap
from ..inspection.inspection import eval_mode
from ..model.preprocess import ImageSource, image_to_tensor, load_image


@dataclass(frozen=True)
class Proposals:
    """Every query of a batch of forwards. boxes [B, Q, 4] x0, y0, x1, y1 normalised to the unpadded input;
    probs [B, Q, C] real-class probabilities; objectness [B, Q]."""

    boxes: torch.Tensor
    probs: torch.Tensor
    objectness: torch.Tensor


@dataclass(frozen=True)
class PreparedImage:
    """pixels [3, h, w]: the model's normalised input for the image, unpadded; image: the RGB original."""

    image: Image.Image
    pixels: torch.Tensor

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])


class Detector:
    """`Detector(model)` for a `detr_core.DETR` (or any module with `.preprocess` returning DETR's
    {"pred_logits" [B, Q, C+1], "pred_boxes" [B, Q, 4]}) or a `FamilyModel`.

    Objectness: DETR's softmax has a "no object" class, so O = 1 - p(no object) (the sum of the real-class
    probabilities); the family's sigmoid (focal-loss) classifiers have none, so O = the best class probability.
    """

    def __init__(self, model):
        from ..family.loading import FamilyModel  # here: family imports transformers lazily

        self.model = model
        self.family = isinstance(model, FamilyModel)
        self._template: dict | None = None

    def prepare(self, image: ImageSource) -> PreparedImage:
        pil = load_image(image)
        if not self.family:
            return PreparedImage(pil, image_to_tensor(pil, self.model.preprocess))  # [3, h, w]
        inputs, (h, w) = self.model.prepare(pil)
        self._template = inputs  # the padded batch of one; perturbed inputs are written into its top left
        return PreparedImage(pil, inputs["pixel_values"][0, :, :h, :w].detach().cpu().float())

    def coords(self, prepared: PreparedImage) -> CoordinateMap | None:
        """DETR's single feature grid (ceil(h / stride) x ceil(w / stride)); None for the family, whose
        grids are known only after a forward (pass an inspection's coords)."""
        stride = getattr(self.model, "stride", None)
        if self.family or stride is None:
            return None
        h, w = prepared.input_size
        image = (prepared.image.height, prepared.image.width)
        return CoordinateMap(image, (h, w), (-(-h // stride), -(-w // stride)), stride)

    def __call__(self, pixels: torch.Tensor) -> Proposals:
        """pixels [B, 3, h, w] (normalised, unpadded) -> Proposals of each image, on the CPU."""
        if self.family:
            return self._family(pixels)
        return self._detr(pixels)

    def _runner(self) -> torch.nn.Module:
        from ..model.detr import DETR
        from ..model.twin import inference_twin

        if isinstance(self.model, DETR) and self.model.use_inference_twin:
            return inference_twin(self.model)
        return self.model

    def _detr(self, pixels: torch.Tensor) -> Proposals:
        runner = self._runner()
        device = next(runner.parameters()).device
        with torch.inference_mode(), eval_mode(runner):
            out = runner(pixels.to(device))
        probs = out["pred_logits"].float().softmax(-1).cpu()  # [B, Q, C+1]
        boxes = box_convert(out["pred_boxes"].float().cpu(), "cxcywh", "xyxy")
        return Proposals(boxes, probs[..., :-1], 1.0 - probs[..., -1])

    def _family(self, pixels: torch.Tensor) -> Proposals:
        if self._template is None:
            raise RuntimeError("call Detector.prepare(image) before running a family model")
        fm, b = self.model, pixels.shape[0]
        h, w = pixels.shape[-2:]
        inputs = {k: v.expand(b, *v.shape[1:]).clone() for k, v in self._template.items()}
        inputs["pixel_values"][:, :, :h, :w] = pixels.to(inputs["pixel_values"])  # [B, 3, h_pad, w_pad]
        with torch.inference_mode(), eval_mode(fm.model):
            out = fm.model(**inputs)
        logits = out.logits.float().cpu()
        boxes = box_convert(out.pred_boxes.float().cpu(), "cxcywh", "xyxy")
        if getattr(fm.model.config, "use_focal_loss", True):
            probs = logits.sigmoid()  # [B, Q, C]
            return Proposals(boxes, probs, probs.max(-1).values)
        probs = logits.softmax(-1)  # [B, Q, C+1], the last "no object"
        return Proposals(boxes, probs[..., :-1], 1.0 - probs[..., -1])

