"""Head ablation: the detections with all heads and with some heads switched off, side by side, and what moved."""
from __future__ import annotations

from typing import Sequence

from PIL import Image

from detr_core import Inspection
from detr_core.teaching.ablation import HeadAblation, QueryChange

from .detections import draw_detections
from .grid import tile_grid
from .heatmap import fit

TILE_SIDE = 480
CHANGE_HEADERS = ["query", "before", "after", "score change", "box shift"]
KIND_NAMES = {"cross": "decoder cross-attention", "self": "decoder self-attention", "encoder": "encoder self-attention"}


def describe_ablation(ablation: HeadAblation) -> str:
    heads = ", ".join(str(h + 1) for h in ablation.heads) or "none"
    return f"{KIND_NAMES[ablation.kind]} layer {ablation.layer + 1}, heads off: {heads}"


def ablation_image(before: Inspection, after: Inspection, ablation: HeadAblation, threshold: float,
                   tile_side: int = TILE_SIDE) -> Image.Image:
    """Detections of the intact model (left) and with the heads switched off (right)."""
    tiles = [fit(draw_detections(ins.image, ins.detections(threshold)), tile_side) for ins in (before, after)]
    if tiles[0].size != tiles[1].size:
        raise ValueError("the two inspections are of different images")
    heads = ", ".join(str(h + 1) for h in ablation.heads) or "none"
    return tile_grid(tiles, ["all heads", f"heads {heads} off"], columns=2)


def describe_changes(changes: Sequence[QueryChange]) -> str:
    """Which queries changed their answer (class, or object vs no object), in words; score moves do not count."""
    changed = [c for c in changes if c.changed]
    if not changed:
        return "no query changed its answer (scores may still have moved: see the table)"
    items = "; ".join(f"query {c.query}: {c.answer_before} -> {c.answer_after}" for c in changed)
    one = len(changed) == 1
    return f"{len(changed)} {'query' if one else 'queries'} changed {'its' if one else 'their'} answer ({items})"


def change_rows(changes: Sequence[QueryChange], limit: int = 20) -> list[list]:
    """Table rows in CHANGE_HEADERS order, the first `limit` changes."""
    return [[c.query, c.before, c.after, round(c.score_change, 3), round(c.box_shift, 3)] for c in changes[:limit]]
