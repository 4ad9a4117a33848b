"""The selectors deformable DETR-family models add to the attention views: sampling points or their heatmap,
and which feature level. Values are the labels the page shows, so a script passes exactly what it sees."""
from __future__ import annotations

import gradio as gr

import viz

from .session import Session

POINTS, HEATMAP = "sampling points", "heatmap (splatted weights)"
DISPLAYS = (POINTS, HEATMAP)
ALL_LEVELS = "all levels"


def points_shown(session: Session, display: str | None) -> bool:
    """True where the view draws sampling points: a deformable model and the points display."""
    if display not in (None, *DISPLAYS):
        raise ValueError(f"display={display!r}: choose {POINTS!r} or {HEATMAP!r}")
    return session.capabilities.is_deformable and display in (None, POINTS)


def level_choices(session: Session) -> list[str]:
    """"all levels" then one label per feature level, finest first ("level 1 (stride 8)", ...)."""
    if not session.capabilities.is_deformable:
        return [ALL_LEVELS]
    return [ALL_LEVELS, *viz.level_names(session.inspection)]


def parse_level(session: Session, value: str | None) -> int | None:
    """A level choice -> None (every level) or a 0-based level index; ValueError naming the choices."""
    if value in (None, "", ALL_LEVELS):
        return None
    names = level_choices(session)[1:]
    if value not in names:
        raise ValueError(f"level={value!r}: this model's levels are {', '.join([ALL_LEVELS, *names])}")
    return names.index(value)


def fitted_level(session: Session, level: str | None) -> str:
    """The level choice kept after a new analysis: the same one if this model has it, else every level."""
    return level if level in level_choices(session) else ALL_LEVELS


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
        display = gr.Radio(list(DISPLAYS), value=POINTS, label="Show", elem_id=f"{prefix}-display")
        # custom values allowed: a script names a level before the page has fitted the choices to the model;
        # parse_level checks it against the model's levels
        level = gr.Dropdown([ALL_LEVELS], value=ALL_LEVELS, label="Feature level", elem_id=f"{prefix}-level",
                            allow_custom_value=True)
    return row, display, level
