"""COCO evaluation of a DETR on a COCO-format data set (pycocotools ``COCOeval``).

``python -m train.evaluate --model SOURCE --data DIR [--images DIR] [--json-out FILE] [--attention]``
prints the AP table; ``--json-out`` writes the 12 summary numbers as JSON;
``--attention`` adds the share of decoder attention inside the detected boxes
(see attention_metric.py), stored in the JSON as "attention_in_box";
``--negatives DIR`` counts the detections on images with nothing to find (negatives.py).
Every query's prediction is scored (DETR needs no NMS), as in the official code. Beside the AP, the
result counts the confident detections (score above ``--score-threshold``) against the objects, so that
duplicates show: a model that answers each object once has a ratio near 1.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.ops import box_convert

from detr_core import postprocess
from detr_core.family import FamilyModel, load_model as open_model

from .attention_metric import attention_in_boxes
from .coco_file import DataSource
from .dataset import CocoDetection, LabelMap, collate
from .negatives import false_positives
from .distributed import DistInfo, broadcast_object, gather_objects
from .family_eval import family_dataset, family_predict
from .sampling_metric import sampling_in_boxes
from .transforms import eval_transforms

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


@dataclass(frozen=True)
class EvalResult:
    """COCO summary numbers (in STAT_NAMES order) and the printed table."""

    stats: dict
    table: str
    detections: int  # every scored query
    confident: int = 0  # detections scoring above the confidence threshold
    objects: int = 0  # ground-truth objects (crowd regions excluded)

    @property
    def confident_per_object(self) -> float:
        """Confident detections per ground-truth object: above 1 means duplicates (or false positives)."""
        return self.confident / self.objects if self.objects else float("nan")


def coco_results(outputs: dict, targets: list[dict], label_to_category: dict) -> list[dict]:
    """COCO result entries (xywh in original-image pixels) for one batch's outputs."""
    results = []
    for b, target in enumerate(targets):
        h, w = target["orig_size"].tolist()
        scores, labels, xyxy = postprocess(outputs["pred_logits"][b], outputs["pred_boxes"][b], (h, w))
        xywh = box_convert(xyxy, "xyxy", "xywh")  # [Q, 4]
        for score, label, box in zip(scores.tolist(), labels.tolist(), xywh.tolist()):
            if label in label_to_category:  # e.g. the "N/A" slots of COCO-91 have no category
                results.append({"image_id": target["image_id"], "category_id": label_to_category[label],
                                "bbox": [round(v, 2) for v in box], "score": score})
    return results


@torch.no_grad()
def predict(model, loader, label_map: LabelMap, device) -> dict[int, list]:
    """image id -> its COCO result entries, for this process's share of the data."""
    was_training = model.training
    model.eval()
    by_image: dict[int, list] = {}
    to_category = label_map.label_to_category
    for batch in loader:
        outputs = model(batch.pixel_values.to(device), batch.pixel_mask.to(device))
        outputs = {k: outputs[k].cpu() for k in ("pred_logits", "pred_boxes")}
        for t in batch.targets:
            by_image[t["image_id"]] = []
        for entry in coco_results(outputs, batch.targets, to_category):
            by_image[entry["image_id"]].append(entry)
    model.train(was_training)
    return by_image


def summarize(coco_gt, results: list[dict], image_ids: list[int], threshold: float = 0.7) -> EvalResult:
    """Run COCOeval and capture its printed table; count confident detections and objects."""
    objects = sum(1 for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=image_ids)) if not a.get("iscrowd", 0))
    confident = sum(1 for r in results if r["score"] > threshold)
    if not results:
        return EvalResult({k: 0.0 for k in STAT_NAMES}, "no detections: every AP is 0\n", 0, 0, objects)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    table = "\n".join(line for line in out.getvalue().splitlines() if line.startswith(" Average"))
    return EvalResult(dict(zip(STAT_NAMES, (float(v) for v in ev.stats))), table + "\n", len(results),
                      confident, objects)


def evaluate(model, dataset: CocoDetection, batch_size: int, info: DistInfo = DistInfo(),
             num_workers: int = 0, threshold: float = 0.7, predictor=predict) -> EvalResult:
    """COCO metrics of ``model`` on ``dataset``; with several processes each predicts a
    share, rank 0 runs COCOeval, and every process returns its result. ``predictor``: ``predict``'s
    signature, for models that are not a detr_core DETR (train/family_eval.py)."""
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=False)
    loader = DataLoader(dataset, batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=num_workers, generator=torch.Generator())
    by_image: dict[int, list] = {}
    for part in gather_objects(predictor(model, loader, dataset.label_map, info.device), info):
        by_image.update(part)  # the sampler repeats a few images to even out shares: dedupe by id
    result = None
    if info.is_main:
        results = [r for entries in by_image.values() for r in entries]
        result = summarize(dataset.coco, results, [r.image_id for r in dataset.records], threshold)
    return broadcast_object(result, info)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="COCO AP of a DETR on a COCO-format data set")
    parser.add_argument("--model", required=True,
                        help='"detr-r50", "shapes", a checkpoint path, or a DETR-family folder, Hub id or '
                             '"shapes-deformable" (its own processor; --attention then reports where its last '
                             'decoder layer samples)')
    parser.add_argument("--data", required=True, type=Path,
                        help="folder with annotations.json and images/, or an annotation file")
    parser.add_argument("--images", type=Path, help="image folder when --data is a file")
    parser.add_argument("--json-out", type=Path, help="write the 12 COCO summary numbers here")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attention", action="store_true",
                        help="also report the decoder attention share inside confident detections' boxes")
    parser.add_argument("--score-threshold", type=float, default=0.7,
                        help="a detection is confident above this score (the confident count, "
                             "--attention and --negatives)")
    parser.add_argument("--negatives", type=Path,
                        help="also count detections on the images in this folder, which hold none of the "
                             "model's classes")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> EvalResult:
    model = open_model(args.model, device=args.device)
    source = DataSource.from_paths(args.data, args.images)
    info = DistInfo(device=torch.device(args.device))
    if isinstance(model, FamilyModel):  # the model's own processor and scores (train/family_eval.py)
        dataset = family_dataset(source, model)
        result = evaluate(model.model, dataset, args.batch_size, info, threshold=args.score_threshold,
                          predictor=family_predict)
    else:
        dataset = CocoDetection(source, eval_transforms(model.preprocess))
        dataset.set_label_map(LabelMap.by_name(dataset.categories, model.class_names))
        result = evaluate(model, dataset, args.batch_size, info, threshold=args.score_threshold)
    print(f"{args.model} on {source.annotations} ({len(dataset)} images):")
    print(result.table, end="")
    print(f"{result.confident} detections above {args.score_threshold} for {result.objects} objects "
          f"({result.confident_per_object:.3f} per object)")
    out = dict(result.stats)
    out.update(confident_detections=result.confident, objects=result.objects,
               confident_per_object=result.confident_per_object)
    if args.negatives:
        negatives = false_positives(model, args.negatives, args.score_threshold)
        print(negatives.summary())
        out.update(negative_images=negatives.images, negative_detections=negatives.detections,
                   negative_detections_per_10_images=negatives.per_10_images)
    if args.attention and isinstance(model, FamilyModel):
        out.update(_sampling_figure(model, dataset, args.score_threshold))
    elif args.attention:
        att = attention_in_boxes(model, [r.file for r in dataset.records], args.score_threshold)
        print(f"decoder attention inside the box grown by one cell: {att.mean_fraction:.3f} "
              f"(mean over {att.detections} detections scoring > {args.score_threshold})")
        print("  the same, each head's own map: " + ", ".join(f"{v:.2f}" for v in att.per_head))
        print(f"head-mean map peaks inside the box for {att.peak_in_box:.1%} of those detections")
        out.update(attention_in_box=att.mean_fraction, attention_detections=att.detections,
                   attention_in_box_per_head=list(att.per_head), attention_peak_in_box=att.peak_in_box)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=1))
    return result


def _sampling_figure(fm, dataset: CocoDetection, threshold: float) -> dict:
    """--attention for a deformable family model: its last-layer sampling weight inside the grown boxes."""
    share = sampling_in_boxes(fm, [r.file for r in dataset.records], threshold)
    print(f"last decoder layer's sampling weight inside the box grown by a quarter: {share.mean_fraction:.3f} "
          f"(mean over {share.detections} detections scoring > {threshold})")
    print("  the same, each head's own points: " + ", ".join(f"{v:.2f}" for v in share.per_head))
    return {"sampling_in_box": share.mean_fraction, "sampling_detections": share.detections,
            "sampling_in_box_per_head": list(share.per_head)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(args)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
