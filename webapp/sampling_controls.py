"""The selectors deformable DETR-family models add to the attention views: sampling points or their heatmap,
and which feature level. Stable values with labels beside them (stable_choices.py): the display keeps its values,
the level's are "all", "1".."L" (its labels, the values before, are still accepted)."""
from __future__ import annotations

import gradio as gr

import viz

from .session import Session
from .stable_choices import canonical, pairs

POINTS, HEATMAP = "sampling points", "heatmap (splatted weights)"  # values since the first version
DISPLAY_LABELS = {POINTS: "sampling points", HEATMAP: "heatmap (splatted weights)"}
DISPLAYS = (POINTS, HEATMAP)
ALL_LEVELS, ALL_LEVELS_LABEL = "all", "all levels"


def points_shown(session: Session, display: str | None) -> bool:
    """True where the view draws sampling points: a deformable model and the points display."""
    if display not in (None, *DISPLAYS):
        raise ValueError(f"display={display!r}: choose {POINTS!r} or {HEATMAP!r}")
    return session.capabilities.is_deformable and display in (None, POINTS)


def level_choices(session: Session) -> list[tuple[str, str]]:
    """(label, value) pairs: ("all levels", "all") then one per feature level, finest first: ("level 1 (stride 8)",
    "1"), ..."""
    names = viz.level_names(session.inspection) if session.capabilities.is_deformable else []
    return [(ALL_LEVELS_LABEL, ALL_LEVELS), *((name, str(i + 1)) for i, name in enumerate(names))]


def level_value(session: Session, value) -> str | None:
    """Any accepted spelling of a level choice -> its stable value: "all levels" -> "all", "level 2 (stride 16)"
    and 2 -> "2". Anything else comes back unchanged (parse_level names it)."""
    if isinstance(value, int):
        return str(value)
    return canonical(value, {label: v for label, v in level_choices(session)})


def parse_level(session: Session, value: str | int | None) -> int | None:
    """A level choice -> None (every level) or a 0-based level index; ValueError naming the choices."""
    level = level_value(session, value)
    if level in (None, "", ALL_LEVELS):
        return None
    values = [v for _, v in level_choices(session)[1:]]
    if level not in values:
        choices = ", ".join(f"{v!r} ({label})" for label, v in level_choices(session))
        raise ValueError(f"level={value!r}: this model's levels are {choices}")
    return values.index(level)


def fitted_level(session: Session, level) -> str:
    """The level choice kept after a new analysis: the same one if this model has it, else every level."""
    level = level_value(session, level)
    return level if level in {v for _, v in level_choices(session)} else ALL_LEVELS


def fitted(session: Session, display: str | None, level: str | None,
           visible: bool | None = None) -> tuple[gr.Row, gr.Radio, gr.Dropdown]:
    """After a new analysis: the row shown only for deformable models (or as `visible` says), the display kept,
    the level kept if this model has it."""
    shown = session.capabilities.is_deformable if visible is None else visible
    return (gr.Row(visible=shown), gr.Radio(value=display or POINTS),
            gr.Dropdown(choices=level_choices(session), value=fitted_level(session, level)))


def selectors(prefix: str) -> tuple[gr.Row, gr.Radio, gr.Dropdown]:
    """The row of the two selectors (hidden until a deformable model's result is shown)."""
    with gr.Row(visible=False) as row:
        display = gr.Radio(pairs(DISPLAY_LABELS), value=POINTS, label="Show", elem_id=f"{prefix}-display")
        # custom values allowed: a script names a level before the page has fitted the choices to the model;
        # parse_level checks it against the model's levels
        level = gr.Dropdown([(ALL_LEVELS_LABEL, ALL_LEVELS)], value=ALL_LEVELS, label="Feature level",
                            elem_id=f"{prefix}-level", allow_custom_value=True)
    return row, display, level
