"""Selector values as the page shows them, parsed into what detr_core and viz take; user-facing errors."""
from __future__ import annotations

import functools
import html

import gradio as gr

from detr_core.family import capabilities

from .session import Session

# Head selector values are what the page shows, so a script (gradio_client) passes exactly the label it sees.
MEAN, MAX, GRID = "mean over heads", "max over heads", "all heads (grid)"
LOOKS_FROM = "where this location looks"
LOOKED_AT = "which locations look here"
DIRECTIONS = (LOOKS_FROM, LOOKED_AT)
NO_IMAGE = "Upload an image first (or pick one of the examples)."


def head_choices(heads: int) -> list[str]:
    """Dropdown choices: mean, max, each head (1-based), grid of all heads."""
    return [MEAN, MAX, *(f"head {h}" for h in range(1, heads + 1)), GRID]


def parse_head(value: str | int | None, heads: int):
    """A head choice -> None (mean), "max", GRID or a 0-based index (what Inspection takes).

    Also takes the short forms "mean", "max", "grid" and a bare head number "3".
    """
    if value in (None, "", MEAN, "mean"):
        return None
    if value in (MAX, "max"):
        return "max"
    if value in (GRID, "grid"):
        return GRID
    text = str(value).removeprefix("head ").strip()
    if not text.isdigit():
        raise ValueError(f"head={value!r}: choose {MEAN!r}, {MAX!r}, {GRID!r} or 'head 1'..'head {heads}'")
    if not 1 <= int(text) <= heads:
        raise ValueError(f"head={value!r}: this model has heads 1..{heads}")
    return int(text) - 1


def fitted_head(value, heads: int) -> str:
    """The head choice kept after a new analysis: the same one if this model has it, else the mean."""
    return value if value in head_choices(heads) else MEAN


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
        raise gr.Error(NO_IMAGE, print_exception=False)
    return session


def skip_before_image(fn, outputs: int):
    """For events that redraw a view without the user aiming at it (the threshold slider, opening a tab):
    before any image they leave the page alone instead of reporting an error. The session is the first input."""
    @functools.wraps(fn)
    def wrapper(session, *args, **kwargs):
        if session is None:
            return gr.skip() if outputs == 1 else tuple(gr.skip() for _ in range(outputs))
        return fn(session, *args, **kwargs)
    return wrapper


def user_errors(fn):
    """Bad selector values and bad points reach the user as a plain gr.Error, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:  # already worded for the page (gr.Error is a ValueError whose str() is its repr)
            raise
        except ValueError as err:
            raise gr.Error(html.escape(str(err), quote=False), print_exception=False) from None
    return wrapper


def unavailable(session: Session | None, view: str | None) -> str | None:
    """Why the session's model has no `view` (a detr_core.family.capabilities view), or None if it has it
    (or there is no session or no view to ask about)."""
    if session is None or view is None:
        return None
    return capabilities(session.inspection).reason(view)


def not_for_model(title: str, reason: str) -> str:
    """The one line a view shows instead of its content for a model it does not apply to."""
    return f"**Not available for {title}:** {reason}."
