"""The compare view's data: the second model's inspection of the page's image, kept in the process's store beside
the first (both count against its memory budget, and either is run again if evicted), the pairing, and the rows
of its table.

A page keeps only the second model's name (a gr.State); its inspection lives in the store under the page's
session key, so it leaves with the session (a new image, a closed page) like the first model's.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import gradio as gr

import detr_core
from detr_core import Detection
from detr_core.inspection.compare import Comparison, same_name

from .session import REANALYSED, Session

PAIR, ONLY_A, ONLY_B = "pair", "only A", "only B"
TABLE_HEADERS = ["row", "kind", "A query", "A class", "A score", "A box", "B query", "B class", "B score", "B box",
                 "IoU"]


def second_inspection(session: Session, source: str):
    """The second model's inspection of the session's image: from the store, or made now (one forward pass, one at
    a time in the process) with a one-line note when it had been set aside. Its image is the session's own."""
    seconds = []

    def make():
        start = time.perf_counter()
        try:
            model = session.models.get(source).model
        except (RuntimeError, ValueError, OSError) as err:
            raise gr.Error(f"Could not load the model {source!r} to compare: {err}", print_exception=False) from None
        ins = dataclasses.replace(detr_core.inspect_any(model, session.image), image=session.image)
        seconds.append(time.perf_counter() - start)
        return ins

    key = (session.key, "compare", source)
    first_time = key not in session.store
    ins, made = session.store.get_or_make(key, make, session.key, session.owner, exclude=frozenset({id(session.image)}))
    if made and not first_time:
        gr.Info(REANALYSED.format(seconds[0]), duration=8, title="Analysed again")
    return ins


@dataclass(frozen=True)
class Selected:
    """One row of the table: a pair, or a detection only one model made (the other side is then the query of the
    other model whose box is closest, `nearest_iou` its IoU)."""

    kind: str
    query_a: int
    query_b: int
    detection_a: Detection | None
    detection_b: Detection | None
    iou: float


def _box_text(d: Detection | None) -> str:
    return "" if d is None else ", ".join(str(round(v)) for v in d.box)


def _side(d: Detection | None) -> list:
    return ["", "", "", ""] if d is None else [d.query, d.name, round(d.score, 3), _box_text(d)]


def table_rows(comparison: Comparison) -> list[list]:
    """Pairs (best score of A first), then A's unpaired detections, then B's; TABLE_HEADERS order."""
    rows = [[PAIR, *_side(p.a), *_side(p.b), round(p.iou, 3)] for p in comparison.pairs]
    rows += [[ONLY_A, *_side(d), *_side(None), ""] for d in comparison.only_a]
    rows += [[ONLY_B, *_side(None), *_side(d), ""] for d in comparison.only_b]
    return [[i + 1, *row] for i, row in enumerate(rows)]


def select(ins_a, ins_b, comparison: Comparison, row: int) -> Selected:
    """The table's row (1-based) as the two queries to show."""
    pairs, only_a, only_b = comparison.pairs, comparison.only_a, comparison.only_b
    total = len(pairs) + len(only_a) + len(only_b)
    if not isinstance(row, (int, float)) or int(row) != row or not 1 <= row <= total:
        raise ValueError(f"row={row!r}: choose a row of the table, 1..{total}" if total else
                         "no detection above the threshold in either model: lower the confidence threshold")
    i = int(row) - 1
    if i < len(pairs):
        p = pairs[i]
        return Selected(PAIR, p.a.query, p.b.query, p.a, p.b, p.iou)
    i -= len(pairs)
    if i < len(only_a):
        d = only_a[i]
        query, iou = detr_core.nearest_query(ins_b, d.box)
        return Selected(ONLY_A, d.query, query, d, None, iou)
    d = only_b[i - len(only_a)]
    query, iou = detr_core.nearest_query(ins_a, d.box)
    return Selected(ONLY_B, query, d.query, None, d, iou)


def describe(selected: Selected, comparison: Comparison, names: tuple[str, str]) -> str:
    """The line under the maps: what the pair is, or that nothing was paired and what the other side shows."""
    if selected.kind == PAIR:
        a, b = selected.detection_a, selected.detection_b
        agree = "the same class" if same_name(a.name, b.name) else "different classes"
        return (f"**Pair** (IoU {selected.iou:.2f}, {agree}): A = {names[0]} query {a.query}, {a.name} {a.score:.2f};"
                f" B = {names[1]} query {b.query}, {b.name} {b.score:.2f}.")
    found, other, d, query = ((0, 1, selected.detection_a, selected.query_b) if selected.kind == ONLY_A
                              else (1, 0, selected.detection_b, selected.query_a))
    side, other_side = "AB"[found], "AB"[other]
    return (f"**Nothing was paired:** only {side} ({names[found]}) found this {d.name} ({d.score:.2f}, query "
            f"{d.query}); {other_side} has no detection above {comparison.threshold:.2f} overlapping it with IoU >= "
            f"{comparison.min_iou:.2f}. Shown for {other_side}: its query {query}, whose box is closest "
            f"(IoU {selected.iou:.2f}).")


def summary(comparison: Comparison, names: tuple[str, str]) -> str:
    return (f"**{len(comparison.pairs)} pairs** above score {comparison.threshold:.2f} with IoU >= "
            f"{comparison.min_iou:.2f}; **{len(comparison.only_a)} only in A** (`{names[0]}`), "
            f"**{len(comparison.only_b)} only in B** (`{names[1]}`). Choose a row to see both models' maps.")
