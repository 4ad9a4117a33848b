"""What every tab shares: the session state, the common controls, and the steps to run after a new analysis."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import gradio as gr

from .redraw import Redraw

if TYPE_CHECKING:
    from .model_sources import SourcePolicy
    from .models import ModelCache
    from .store import InspectionStore

NO_IMAGE_HINT = "Upload an image on the left (or pick one of the examples under it) to see {what}."


@dataclass
class Step:
    """One handler chained after every analysis (new image or new model), so each tab refreshes itself."""

    fn: Callable
    inputs: list
    outputs: list
    requires: str | None = None  # a capabilities view (detr_core.family.capabilities); skipped where unavailable


@dataclass(frozen=True)
class ViewSlot:
    """A tab's content and the hint shown in its place while there is no image, or, for a model this view does
    not apply to (`requires`, a capabilities view, is unavailable), the line saying why (`why`, else the
    model's own reason)."""

    hint: gr.Markdown
    body: gr.Column
    what: str
    requires: str | None = None
    why: str = ""


@dataclass
class AppContext:
    session: gr.State  # Session | None
    input_image: gr.Image
    threshold: gr.Slider
    alpha: gr.Slider
    cmap: gr.Dropdown
    models: "ModelCache"  # the process's models, for views that re-run one (never a second copy)
    store: "InspectionStore"  # the process's inspections, for views that keep an extra forward pass
    data_roots: tuple[Path, ...] = ()  # folders whose data sets the page may open (teaching views)
    policy: "SourcePolicy | None" = None  # which models the page may open (the compare view's second model)
    groups: gr.Tabs | None = None  # the top level of tabs: "Inspect" and "Teach"
    inspect_tabs: gr.Tabs | None = None  # detections, decoder, encoder
    after_analysis: list[Step] = field(default_factory=list)
    views: list[ViewSlot] = field(default_factory=list)
    exports: list[gr.File] = field(default_factory=list)  # emptied on every new image: no stale figure on offer
    redraws: list[Redraw] = field(default_factory=list)  # wired by redraw.wire, one listener per trigger

    @property
    def display(self) -> list:
        """The heatmap display controls, in the order handlers take them (alpha, cmap)."""
        return [self.alpha, self.cmap]

    def redraw(self, triggers: list, fn: Callable, inputs: list, outputs: list, api_name: str) -> None:
        """Redraw `outputs` with `fn(*inputs)` on any of `triggers` (e.g. the colormap's .input). Never bind such
        a listener directly: several views share the page's controls, and each control event must have exactly
        one listener (see redraw.py); `api_name` names the view's own endpoint for scripts."""
        self.redraws.append(Redraw(tuple(triggers), fn, tuple(inputs), tuple(outputs), api_name))

    @contextmanager
    def view(self, label: str, tab_id: str, what: str, requires: str | None = None,
             why: str = "") -> Iterator[gr.Tab]:
        """A tab whose content appears once an image has been analysed; before that a one-line hint stands in
        its place, so opening a view early shows what to do instead of an error. With `requires` (a view of
        detr_core.family.capabilities), a model without it gets one line saying why instead of the content."""
        with gr.Tab(label, id=tab_id) as tab:
            hint = gr.Markdown(NO_IMAGE_HINT.format(what=what), elem_classes=["no-image-hint"],
                               elem_id=f"{tab_id}-hint")
            with gr.Column(visible=False) as body:
                yield tab
        self.views.append(ViewSlot(hint, body, what, requires, why))

    def export_controls(self, view_id: str) -> tuple[gr.Button, gr.File]:
        """The folded "export this view" row every inspect tab has: a button and the file it makes."""
        with gr.Accordion("Export this view as a PNG figure", open=False, elem_id=f"{view_id}-export"):
            button = gr.Button("Make figure", size="sm", elem_id=f"{view_id}-export-button")
            file = gr.File(label="Figure (PNG)", elem_id=f"{view_id}-export-file")
        self.exports.append(file)
        return button, file
