"""Selector values parsed into what detr_core and viz take, controls fitted to a model's ranges; user errors."""
from __future__ import annotations

import functools
import html

import gradio as gr

from detr_core.family import capabilities

from .session import Session
from .stable_choices import canonical, former_labels, pairs

# Stable selector values, separate from the labels the page shows (see stable_choices.py); the head selector's older
# spellings ("mean over heads", "head 3") are still accepted.
MEAN, MAX, GRID = "mean", "max", "grid"
HEAD_LABELS = {MEAN: "mean over heads", MAX: "max over heads", GRID: "all heads (grid)"}
LOOKS_FROM, LOOKED_AT = "where this location looks", "which locations look here"  # values since the first version
DIRECTION_LABELS = {LOOKS_FROM: "where this location looks", LOOKED_AT: "which locations look here"}
DIRECTIONS = (LOOKS_FROM, LOOKED_AT)
DIRECTION_CHOICES = pairs(DIRECTION_LABELS)
NO_IMAGE = "Upload an image first (or pick one of the examples)."


def head_choices(heads: int) -> list[tuple[str, str]]:
    """Dropdown (label, value) pairs: mean, max, each head (1-based: "head 3" -> "3"), grid of all heads."""
    return [(HEAD_LABELS[MEAN], MEAN), (HEAD_LABELS[MAX], MAX), *((f"head {h}", str(h)) for h in range(1, heads + 1)),
            (HEAD_LABELS[GRID], GRID)]


def head_value(value: str | int | None) -> str | None:
    """Any accepted spelling of a head choice -> its stable value: "mean over heads" -> "mean", "head 3", 3 -> "3".
    Text that is none of them comes back unchanged (parse_head names it)."""
    if value is None:
        return None
    value = canonical(str(value), former_labels(HEAD_LABELS))
    head = value.removeprefix("head ").strip()
    return head if head.isdigit() else value


def parse_head(value: str | int | None, heads: int):
    """A head choice (any accepted spelling) -> None (mean), "max", GRID or a 0-based index (what Inspection
    takes)."""
    head = head_value(value)
    if head in (None, "", MEAN):
        return None
    if head in (MAX, GRID):
        return head
    if not head.isdigit():
        raise ValueError(f"head={value!r}: choose {MEAN!r}, {MAX!r}, {GRID!r} or a head number '1'..'{heads}'")
    if not 1 <= int(head) <= heads:
        raise ValueError(f"head={value!r}: this model has heads 1..{heads}")
    return int(head) - 1


def fitted_head(value, heads: int) -> str:
    """The head choice kept after a new analysis: the same one if this model has it, else the mean."""
    head = head_value(value)
    return head if head in {v for _, v in head_choices(heads)} else MEAN


def fitted_layer(value, count: int) -> int:
    """The 1-based layer kept after a new analysis: the same one if this model has it, else its last."""
    return min(int(value or count), count)


def range_slider(count: int, value, label: str) -> gr.Slider:
    """The update of a 1..`count` slider (a model's layers) at fitted_layer(value, count).

    Gradio refuses a slider whose minimum is not below its maximum, and a model may have one layer (RT-DETR's
    and D-FINE's encoders have one by default): that slider stays at 1 but cannot be moved, its range 0..1 (a 0
    from a script is refused by layer_index, naming the one layer) and its label saying why."""
    if count == 1:
        return gr.Slider(minimum=0, maximum=1, value=1, step=1, interactive=False,
                         label=f"{label} (this model has only one)")
    return gr.Slider(minimum=1, maximum=count, value=fitted_layer(value, count), step=1, interactive=True, label=label)


def layer_index(layer: float | int | None, layers: int) -> int:
    """1-based layer from a slider (None: the last) -> 0-based index."""
    if layer is None:
        return layers - 1
    if int(layer) != layer or not 1 <= layer <= layers:
        raise ValueError(f"layer={layer!r}: this model has layers 1..{layers}")
    return int(layer) - 1


def direction_value(direction: str | None) -> str:
    """A direction choice -> itself (None: where the location looks); ValueError naming the choices."""
    if direction in (None, LOOKS_FROM, LOOKED_AT):
        return direction or LOOKS_FROM
    raise ValueError(f"direction={direction!r}: choose {LOOKS_FROM!r} or {LOOKED_AT!r}")


def incoming(direction: str | None) -> bool:
    return direction_value(direction) == LOOKED_AT


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
