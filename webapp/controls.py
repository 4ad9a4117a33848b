"""Selector values as the page shows them, parsed into what detr_core and viz take; user-facing errors."""
from __future__ import annotations

import functools

import gradio as gr

from .session import Session

MEAN, MAX, GRID = "mean", "max", "grid"
LOOKS_FROM = "where this location looks"
LOOKED_AT = "which locations look here"
DIRECTIONS = (LOOKS_FROM, LOOKED_AT)
NO_IMAGE = "Upload an image first (or pick one of the examples)."


def head_choices(heads: int) -> list[tuple[str, str]]:
    """Dropdown (label, value) pairs: mean, max, each head (1-based), grid of all heads."""
    return ([("mean over heads", MEAN), ("max over heads", MAX)]
            + [(f"head {h}", str(h)) for h in range(1, heads + 1)]
            + [("all heads (grid)", GRID)])


def parse_head(value: str | int | None, heads: int):
    """'mean'/'max'/'grid'/'1'..'heads' -> None, 'max', GRID or a 0-based index (what Inspection takes)."""
    if value in (None, "", MEAN):
        return None
    if value in (MAX, GRID):
        return value
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"head={value!r}: choose mean, max, grid or a head number 1..{heads}") from None
    if not 1 <= index <= heads:
        raise ValueError(f"head={value!r}: this model has heads 1..{heads}")
    return index - 1


def layer_index(layer: float | int | None, layers: int) -> int:
    """1-based layer from a slider (None: the last) -> 0-based index."""
    if layer is None:
        return layers - 1
    if int(layer) != layer or not 1 <= layer <= layers:
        raise ValueError(f"layer={layer!r}: this model has layers 1..{layers}")
    return int(layer) - 1


def incoming(direction: str | None) -> bool:
    if direction in (None, LOOKS_FROM):
        return False
    if direction == LOOKED_AT:
        return True
    raise ValueError(f"direction={direction!r}: choose {LOOKS_FROM!r} or {LOOKED_AT!r}")


def require(session: Session | None) -> Session:
    if session is None:
        raise gr.Error(NO_IMAGE)
    return session


def user_errors(fn):
    """Bad selector values and bad points reach the user as a plain gr.Error, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as err:
            raise gr.Error(str(err)) from None
    return wrapper
