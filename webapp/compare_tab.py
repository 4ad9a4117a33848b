"""Inspect tab: two models side by side on the current image, their detections paired (detr_core.compare).

Pick a second model from the same menu (the same rules for what a page may open); the image runs through both,
both inspections kept in the process's store. A table lists the pairs and each model's unpaired detections; for
the chosen row both models' decoder maps are shown side by side at a layer and head of each, on one colour scale
by default, with their difference when both models share an architecture and grid. For an unpaired detection
the other model's query whose box is closest is shown, and a line says that nothing was paired.
"""
from __future__ import annotations

import gradio as gr

import viz
from detr_core import compare
from detr_core.family import capabilities

from .context import AppContext, Step
from .controls import GRID, MEAN, head_choices, layer_index, parse_head, require, skip_before_image, user_errors
from .comparison import TABLE_HEADERS, describe, second_inspection, select, summary, table_rows
from .head_dropdown import HeadDropdown
from .layer_slider import LayerSlider
from .model_sources import FREE_TEXT_HINT, menu_choices
from .sampling_controls import DISPLAYS, HEATMAP, POINTS
from .session import Session

INTRO = ("Run a second model on this image and pair the two models' detections (Hungarian matching on box overlap "
         "and class name). A classic lesson: DETR (dense attention over the whole image) against a deformable model "
         "(a few sampling points on the object).")
NO_SECOND = "Choose a second model above and press **Compare**."


def _heads(ins) -> list[str]:
    """Head choices without the grid: each side shows one map."""
    return head_choices(capabilities(ins).heads)[:-1]


def _side(ins, query: int, layer, head, name: str) -> viz.Side:
    caps = capabilities(ins)
    head_v = parse_head(head, caps.heads)
    if head_v == GRID:
        raise ValueError(f"head={head!r}: each side shows one map; choose the mean, the max or one head")
    return viz.Side(ins, query, layer_index(layer, caps.decoder_layers), head_v, name)


def _both(session: Session, source: str | None):
    """(A's inspection, B's): each fetched once per request (either may be run again if it was set aside)."""
    if not source:
        raise ValueError("choose a second model and press Compare first")
    return session.inspection, second_inspection(session, source)


def _view(session: Session, both, source: str, threshold: float, min_iou: float, row, layer_a, head_a, layer_b,
          head_b, shared: bool, display: str, alpha: float, cmap: str):
    """-> (boxes, A's map, B's map, difference update, the line under them) for the table's `row` (1-based)."""
    if display not in DISPLAYS:
        raise ValueError(f"display={display!r}: choose {POINTS!r} or {HEATMAP!r}")
    ins_a, ins_b = both
    comparison = compare(ins_a, ins_b, threshold, min_iou)
    chosen = select(ins_a, ins_b, comparison, row)
    view = viz.pair_view(_side(ins_a, chosen.query_a, layer_a, head_a, "A"),
                         _side(ins_b, chosen.query_b, layer_b, head_b, "B"), chosen.detection_a, chosen.detection_b,
                         base=session.view_base(), shared=bool(shared), alpha=alpha, cmap=cmap,
                         points=display == POINTS)
    scale = ("one colour scale for both maps (weight per image pixel)" if view.top is not None
             else "each map scaled by its own maximum")
    return (view.boxes, view.a, view.b, gr.Image(view.difference, visible=view.difference is not None),
            f"{describe(chosen, comparison, (session.model_source, source))}  \nMaps: {scale}."
            + ("  \nDifference: red where A attends more, blue where B does." if view.difference is not None else ""))


@user_errors
def render_pair(session: Session | None, source: str | None, threshold: float, min_iou: float, row, layer_a,
                head_a, layer_b, head_b, shared: bool, display: str, alpha: float, cmap: str):
    """-> (boxes, A's map, B's map, difference or None, the line under them) for the table's `row` (1-based)."""
    session = require(session)
    return _view(session, _both(session, source), source, threshold, min_iou, row, layer_a, head_a, layer_b, head_b,
                 shared, display, alpha, cmap)


def _table(session: Session, both, source: str, threshold: float, min_iou: float):
    comparison = compare(*both, threshold, min_iou)
    return summary(comparison, (session.model_source, source)), table_rows(comparison)


@user_errors
def render_table(session: Session | None, source: str | None, threshold: float, min_iou: float):
    """-> (summary line, table rows)."""
    session = require(session)
    return _table(session, _both(session, source), source, threshold, min_iou)


def _fitted(both, layer_a, head_a, layer_b, head_b) -> tuple[list, list]:
    """(the four selectors fitted to the two models, their values): choices kept where the model has them. The
    values apart: inside a request an update object has no readable value."""
    updates, values = [], []
    for ins, layer, head in ((both[0], layer_a, head_a), (both[1], layer_b, head_b)):
        layers, choices = capabilities(ins).decoder_layers, _heads(ins)
        values += [min(int(layer or layers), layers), head if head in {v for _, v in choices} else MEAN]
        updates += [gr.Slider(maximum=layers, value=values[-2]), gr.Dropdown(choices=choices, value=values[-1])]
    return updates, values


def compare_handler(ctx: AppContext):
    """The Compare button: check the second model against the page's rules, load it, run it on the image."""
    @user_errors
    def compare_models(session: Session | None, name: str, threshold: float, min_iou: float, layer_a, head_a,
                       layer_b, head_b, shared: bool, display: str, alpha: float, cmap: str,
                       progress=gr.Progress(track_tqdm=True)):
        session = require(session)
        source = ctx.policy.check(name) if ctx.policy is not None else (name or "").strip()
        progress(0, desc=f"Loading {source} and running it on this image")
        try:
            source = ctx.models.get(source).source  # "auto" resolved, as for the first model
        except (RuntimeError, ValueError, OSError) as err:
            raise ValueError(f"Could not load the model {source!r}: {err}") from None
        return _everything(session, source, threshold, min_iou, layer_a, head_a, layer_b, head_b, shared, display,
                           alpha, cmap)
    return compare_models


def _everything(session, source, threshold, min_iou, layer_a, head_a, layer_b, head_b, shared, display, alpha, cmap):
    """-> (source, summary, table, the four selectors, row 1, the pair view)."""
    both = _both(session, source)
    selectors, values = _fitted(both, layer_a, head_a, layer_b, head_b)
    text, rows = _table(session, both, source, threshold, min_iou)
    if not rows:
        return (source, text, rows, *selectors, None, None, None, None, gr.Image(None, visible=False),
                "No detection above the threshold in either model: lower the confidence threshold.")
    return (source, text, rows, *selectors, 1,
            *_view(session, both, source, threshold, min_iou, 1, *values, shared, display, alpha, cmap))


def refresh(session: Session | None, source: str | None, threshold: float, min_iou: float, layer_a, head_a,
            layer_b, head_b, shared: bool, display: str, alpha: float, cmap: str):
    """After a new analysis: if this page compares, the new image runs through the second model too."""
    if not source:
        return (gr.skip(), NO_SECOND, [], *[gr.skip()] * 4, None, None, None, None, gr.Image(None, visible=False),
                "")
    return user_errors(_everything)(session, source, threshold, min_iou, layer_a, head_a, layer_b, head_b, shared,
                                    display, alpha, cmap)


@user_errors
def select_row(session, source, threshold, min_iou, layer_a, head_a, layer_b, head_b, shared, display, alpha, cmap,
               evt: gr.SelectData):
    """A click in the table -> (its row number, the pair view)."""
    row = evt.index[0] + 1 if isinstance(evt.index, (list, tuple)) else None
    return (row, *render_pair(session, source, threshold, min_iou, row, layer_a, head_a, layer_b, head_b, shared,
                              display, alpha, cmap))


def _selectors(name: str, side: str):
    with gr.Column(min_width=200):
        layer = LayerSlider(1, 6, value=6, step=1, label=f"{name}: decoder layer", elem_id=f"compare-layer-{side}")
        head = HeadDropdown(head_choices(8)[:-1], value=MEAN, label=f"{name}: head",
                            elem_id=f"compare-head-{side}")
    return layer, head


def build(ctx: AppContext) -> None:
    with ctx.view("Compare", "compare", "two models side by side on this image"):
        gr.Markdown(INTRO)
        source = gr.State(None)  # the second model in use on this page (resolved source), None before Compare
        with gr.Row(equal_height=True):
            model_b = gr.Dropdown(menu_choices("shapes"), value="shapes", label="Second model (B)",
                                  allow_custom_value=True, elem_id="compare-model", info=f"Pick one, {FREE_TEXT_HINT}",
                                  scale=3)
            min_iou = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="IoU a pair needs", elem_id="compare-min-iou",
                                scale=2)
            button = gr.Button("Compare", variant="primary", elem_id="compare-run", scale=1)
        text = gr.Markdown(NO_SECOND, elem_id="compare-summary")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="compare-table", max_height=260)
        with gr.Row():
            layer_a, head_a = _selectors("A", "a")
            layer_b, head_b = _selectors("B", "b")
            with gr.Column(min_width=200):
                shared = gr.Checkbox(True, label="One colour scale for both maps", elem_id="compare-shared")
                display = gr.Radio(list(DISPLAYS), value=HEATMAP, label="Deformable models show",
                                   elem_id="compare-display")
                row = gr.Number(label="Row", precision=0, minimum=1, elem_id="compare-row")
        with gr.Row():
            map_a = gr.Image(label="A", interactive=False, format="jpeg", elem_id="compare-map-a")
            map_b = gr.Image(label="B", interactive=False, format="jpeg", elem_id="compare-map-b")
        with gr.Row():
            boxes = gr.Image(label="Both boxes", interactive=False, format="jpeg", elem_id="compare-boxes", scale=1)
            with gr.Column(scale=1):  # keeps the boxes at half width when there is no difference to show
                info = gr.Markdown(elem_id="compare-info")
                difference = gr.Image(label="A - B", interactive=False, format="jpeg", visible=False,
                                      elem_id="compare-difference")

    s, d = ctx.session, ctx.display
    controls = [layer_a, head_a, layer_b, head_b, shared, display, *d]
    view_out = [boxes, map_a, map_b, difference, info]
    everything_out = [source, text, table, layer_a, head_a, layer_b, head_b, row, *view_out]
    button.click(compare_handler(ctx), [s, model_b, ctx.threshold, min_iou, *controls], everything_out,
                 api_name="compare_models", concurrency_limit=1, concurrency_id="forward")
    # a new threshold or IoU floor changes the pairs: table and row 1 again (before a comparison: nothing)
    ctx.redraw([ctx.threshold.input, min_iou.input], _skip_without_second(refresh, len(everything_out)),
               [s, source, ctx.threshold, min_iou, *controls], everything_out, api_name="compare_refresh")
    ctx.redraw([row.submit, layer_a.input, head_a.input, layer_b.input, head_b.input, shared.input, display.input,
                ctx.alpha.input, ctx.cmap.input], _skip_without_second(render_pair, len(view_out)),
               [s, source, ctx.threshold, min_iou, row, *controls], view_out, api_name="compare_view")
    table.select(select_row, [s, source, ctx.threshold, min_iou, *controls], [row, *view_out],
                 api_name="compare_select")
    ctx.after_analysis.append(Step(refresh, [s, source, ctx.threshold, min_iou, *controls], everything_out))


def _skip_without_second(fn, outputs: int):
    """Controls moved before any comparison (or before any image) leave the view alone."""
    inner = skip_before_image(fn, outputs)

    def wrapper(session, source, *args):
        if not source:
            return tuple(gr.skip() for _ in range(outputs))
        return inner(session, source, *args)
    wrapper.__name__ = fn.__name__
    return wrapper
