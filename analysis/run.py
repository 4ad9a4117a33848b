"""One rank's loop: its images not yet recorded, one inspection each, every chosen analysis, one record."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import faithfulness_stats, head_stats, slot_stats
from .data import ImageSet
from .faithfulness_stats import FaithfulnessSettings
from .shards import ShardWriter, my_indices, read_records


def analyse_one(model, images: ImageSet, index: int, settings: dict) -> dict:
    """The record of image `index`: one forward with everything captured, then each analysis reads it."""
    import detr_core

    ins = detr_core.inspect_any(model, images.files[index])
    threshold = settings["score_threshold"]
    record = {"index": index, "file": images.files[index].name}
    if "faithfulness" in settings["analyses"]:
        gt = images.boxes(index, list(ins.class_names)) if images.coco is not None else np.zeros((0, 4))
        record["faithfulness"] = faithfulness_stats.record(
            model, ins, gt, threshold, FaithfulnessSettings(**settings["faithfulness"]))
    if "slots" in settings["analyses"]:
        record["slots"] = slot_stats.record(ins)
    if "heads" in settings["analyses"]:
        record["heads"] = head_stats.record(ins, threshold)
    return record


def analyse_images(model, images: ImageSet, out: Path, settings: dict, info, progress: bool = True) -> int:
    """This rank's share (image r, r + N, ...), skipping images any earlier run recorded. -> images done now."""
    total = len(images.files) if settings["limit"] is None else min(settings["limit"], len(images.files))
    todo = my_indices(total, info.rank, info.world_size, set(read_records(out)))
    bar = _bar(len(todo), progress)
    with ShardWriter(out, info.rank) as writer:
        for index in todo:
            writer.write(analyse_one(model, images, index, settings))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return len(todo)


def _bar(total: int, show: bool):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="rank 0 images", unit="img")
