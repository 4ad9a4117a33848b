"""COCO evaluation of a DETR-family model: ``evaluate(..., predictor=family_predict)`` (train/evaluate.py).

Scores follow the app (detr_core/family/scoring.py): one detection per query, its best class, scored by the
sigmoid of the focal-loss classifiers (softmax without the "no object" column for the others). transformers'
own post-processing may list a query several times with different classes (top-k over queries x classes),
which can give a somewhat higher AP; the figure here is the one for what a user of the app sees.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_convert

from .dataset import CocoDetection, LabelMap
from .family_data import ProcessorInput, boxes_to_pixels, model_inputs


def query_scores(model, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [Q, C] (sigmoid) or [Q, C+1] (softmax) -> (score [Q], label [Q]) of each query's best class."""
    if getattr(model.config, "use_focal_loss", True):
        probs = logits.sigmoid()
    else:
        probs = logits.softmax(-1)[:, :-1]
    return probs.max(-1)


@torch.no_grad()
def family_predict(model, loader, label_map: LabelMap, device) -> dict[int, list]:
    """image id -> its COCO result entries (xywh in original pixels), for this process's share of the data."""
    was_training = model.training
    model.eval()
    by_image: dict[int, list] = {}
    to_category = label_map.label_to_category
    for batch in loader:
        out = model(**model_inputs(model, batch, device))
        padded = tuple(batch.pixel_values.shape[-2:])
        for b, target in enumerate(batch.targets):
            scores, labels = query_scores(model, out.logits[b].float().cpu())
            xyxy = boxes_to_pixels(model, out.pred_boxes[b].float().cpu(), target, padded)
            xywh = box_convert(xyxy, "xyxy", "xywh")  # [Q, 4]
            by_image[target["image_id"]] = [
                {"image_id": target["image_id"], "category_id": to_category[label], "bbox": [round(v, 2) for v in box],
                 "score": score}
                for score, label, box in zip(scores.tolist(), labels.tolist(), xywh.tolist()) if label in to_category]
    model.train(was_training)
    return by_image


def family_dataset(source, fm) -> CocoDetection:
    """A COCO-format set prepared by the family model's own processor, its categories mapped by name."""
    dataset = CocoDetection(source, ProcessorInput(fm.processor))
    dataset.set_label_map(LabelMap.by_name(dataset.categories, fm.class_names))
    return dataset
