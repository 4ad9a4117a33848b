"""Decoder cross-attention views: which queries to show, each query's heatmap with its box, all heads at once."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from detr_core import Detection, Inspection

from .detections import Box, draw_boxes
from .grid import grid_columns, tile_grid
from .heatmap import fit, overlay
from .palette import box_colour

HEAD_TILE_SIDE = 360  # longer side of each head's tile in a grid of all heads


@dataclass(frozen=True)
class QueryCard:
    """One query as the gallery shows it. rank orders all queries by score, so colours stay put."""

    rank: int
    detection: Detection
    no_object: float  # probability of the "no object" class

    @property
    def query(self) -> int:
        return self.detection.query

    @property
    def colour(self) -> tuple[int, int, int]:
        return box_colour(self.rank)

    def caption(self, with_no_object: bool = False) -> str:
        d = self.detection
        text = f"query {d.query}: {d.name} {d.score:.2f}"
        return text + f" | no object {self.no_object:.2f}" if with_no_object else text


def query_cards(ins: Inspection, threshold: float, show_all: bool = False) -> list[QueryCard]:
    """Detected queries above threshold, best first; with show_all every query (low scores included)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be between 0 and 1")
    no_object = ins.probabilities[:, -1]  # [Q]
    detections = ins.detections(threshold=-1.0 if show_all else threshold)
    return [QueryCard(rank, d, float(no_object[d.query])) for rank, d in enumerate(detections)]


def card_for(ins: Inspection, query: int) -> QueryCard:
    """The card of one query whatever its score (its rank among all queries fixes its colour)."""
    for card in query_cards(ins, 0.0, show_all=True):
        if card.query == query:
            return card
    raise ValueError(f"query={query} out of range 0..{ins.num_queries - 1}")


def query_image(ins: Inspection, card: QueryCard, layer: int = -1, head=None, alpha: float = 0.6,
                cmap: str = "inferno", max_side: int | None = None, base: Image.Image | None = None,
                label: bool = True, level: int | None = None) -> Image.Image:
    """The query's cross-attention (one layer; head None/'mean', 'max' or an index) over the image,
    with the query's final box in its colour. base: the image already fitted to max_side (saves a resize).
    level: for deformable models, only that feature level's sampling weight (None: every level)."""
    if base is None:
        base = ins.image if max_side is None else fit(ins.image, max_side)
    attention = (ins.decoder_map(card.query, layer, head) if level is None
                 else ins.decoder_map(card.query, layer, head, level))  # [fh, fw]
    heat = overlay(base, attention, ins.coords, alpha, cmap)
    scale = base.width / ins.image_size[1]
    box = Box(tuple(v * scale for v in card.detection.box), card.caption() if label else "", card.colour)
    return draw_boxes(heat, [box])


def head_grid(ins: Inspection, card: QueryCard, layer: int = -1, alpha: float = 0.6,
              cmap: str = "inferno", tile_side: int = HEAD_TILE_SIDE) -> Image.Image:
    """Every head of one decoder layer for one query, side by side, each labelled with its share of
    attention inside the query's box (grown by one cell)."""
    base = fit(ins.image, tile_side)
    shares = ins.attention_in_box(card.query, layer)  # [heads]
    tiles = [query_image(ins, card, layer, h, alpha, cmap, base=base, label=False) for h in range(len(shares))]
    columns = grid_columns(len(shares), base.width / base.height)
    return tile_grid(tiles, [f"head {h + 1}: {s:.0%} in box" for h, s in enumerate(shares)], columns)


def class_summary(ins: Inspection, query: int, top: int = 3) -> list[tuple[str, float]]:
    """The query's `top` most likely classes and "no object", as (name, probability), most likely first."""
    probs = ins.probabilities[query]  # [C+1]
    order = np.argsort(-probs[:-1], kind="stable")[:top]
    items = [(ins.class_name(int(c)), float(probs[c])) for c in order] + [("no object", float(probs[-1]))]
    return sorted(items, key=lambda item: -item[1])
