"""Tab 2: decoder cross-attention, one gallery tile per query; choosing a tile shows it large (or all heads).

For deformable DETR-family models (Deformable DETR, RT-DETR, D-FINE, RF-DETR, ...) each query is drawn as its
sampling points (dots sized by weight, coloured by feature level, with its reference point and box) or, as the
alternative, their weights splatted into a heatmap; a level selector picks one feature level or all."""
from __future__ import annotations

import gradio as gr

import viz
from detr_core.family import capabilities

from . import faithfulness_panel
from .context import AppContext, Step
from .controls import (GRID, MEAN, fitted_head, fitted_layer, head_choices, layer_index, parse_head, range_slider,
                       require, skip_before_image, user_errors)
from .head_dropdown import HeadDropdown
from .layer_slider import LayerSlider
from .sampling_controls import ALL_LEVELS, POINTS, fitted, fitted_level, parse_level, points_shown, selectors
from .export import write_png
from .session import Session

TILE_SIDE = 200  # gallery thumbnails (shown ~150 px wide): even 100 of them must draw fast
LAYER_LABEL = "Decoder layer"
FIGURE_QUERIES = 6  # the export figure shows at most this many queries, like the paper's


def _selection(session: Session | None, layer, head):
    """-> (inspection, 0-based layer, head for Inspection or GRID) with the values checked."""
    caps = require(session).capabilities
    return session.inspection, layer_index(layer, caps.decoder_layers), parse_head(head, caps.heads)


def _tile(session: Session, card, layer: int, head, level, points: bool, alpha: float, cmap: str, base, label):
    """One query drawn: its sampling points (head None or "max": every head's) or its heatmap."""
    ins = session.inspection
    if points:
        return viz.sampling_image(ins, card, layer, head if isinstance(head, int) else None, level, base=base,
                                  label=label)
    return viz.query_image(ins, card, layer, head, alpha, cmap, base=base, label=label, level=level)


@user_errors
def render_gallery(session: Session | None, threshold: float, show_all: bool, layer, head,
                   alpha: float, cmap: str, display: str = POINTS, level: str = ALL_LEVELS) -> list:
    """-> gallery items [(thumbnail, caption)], one per query shown; the grid option shows the mean here.
    display / level: deformable models only (sampling points or heatmap; one feature level or all)."""
    ins, layer, head = _selection(session, layer, head)
    head = None if head == GRID else head
    points, level = points_shown(session, display), parse_level(session, level)
    base = session.thumbnail(TILE_SIDE)
    return [(_tile(session, card, layer, head, level, points, alpha, cmap, base, False), card.caption(show_all))
            for card in viz.query_cards(ins, threshold, show_all)]


@user_errors
def gallery_line(session: Session | None, threshold: float, show_all: bool) -> str:
    """The line above the gallery: what it shows, and what to do when nothing scores above the threshold (an
    empty gallery alone says nothing)."""
    ins = require(session).inspection
    if show_all:
        return f"**All {ins.num_queries} queries**, most confident first: choose one to enlarge it."
    shown = len(viz.query_cards(ins, threshold))
    if shown == 0:
        return (f"**No query scores above the threshold {threshold:.2f}**: lower the confidence threshold (left) or"
                " tick \"Show all queries\".")
    return f"**{shown} {'query scores' if shown == 1 else 'queries score'} above {threshold:.2f}**: choose one to" \
           " enlarge it."


@user_errors
def render_query(session: Session | None, query, layer, head, alpha: float, cmap: str, display: str = POINTS,
                 level: str = ALL_LEVELS):
    """-> (large view of one query: one map or all heads, Markdown with its class probabilities)."""
    ins, layer, head = _selection(session, layer, head)
    if query is None or int(query) != query:
        raise ValueError(f"query={query!r}: choose a tile in the gallery")
    card = viz.card_for(ins, int(query))
    points, level_index = points_shown(session, display), parse_level(session, level)
    if head == GRID:
        image = (viz.sampling_head_grid(ins, card, layer, level_index) if points
                 else viz.head_grid(ins, card, layer, alpha, cmap))
    else:
        image = _tile(session, card, layer, head, level_index, points, alpha, cmap, session.view_base(), True)
    probabilities = ", ".join(f"{name} {p:.3f}" for name, p in viz.class_summary(ins, card.query))
    return image, (f"**Query {card.query}** (decoder layer {layer + 1}): {probabilities}  \n"
                   + _in_box_line(ins, card.query, layer) + _points_line(session, points, head, level_index))


def _in_box_line(ins, query: int, layer: int) -> str:
    """Which heads look at the query's own object: their attention share inside its box."""
    shares = ins.attention_in_box(query, layer)  # [heads]
    per_head = " · ".join(f"{h + 1}: {s:.2f}" for h, s in enumerate(shares))
    what = "Sampling weight" if capabilities(ins).is_deformable else "Attention"
    return (f"{what} inside its box (grown by one feature cell), per head: {per_head}; "
            f"mean {shares.mean():.2f}")


def _points_line(session: Session, points: bool, head, level) -> str:
    """What the dots show, for deformable models: which heads and levels, and how to read them."""
    if not points:
        return ""
    caps = session.capabilities
    heads = f"head {head + 1}" if isinstance(head, int) else f"all {caps.heads} heads"
    levels = viz.level_names(session.inspection)[level] if level is not None else f"all {caps.levels} levels"
    return (f"  \nSampling points of {heads}, {levels}: dot area and opacity = weight, colour = level;"
            " green cross = reference point, white box = reference box.")


@user_errors
def select_tile(session: Session | None, threshold: float, show_all: bool, layer, head, alpha: float,
                cmap: str, display: str, level: str, evt: gr.SelectData):
    """Gallery click -> (query number, large view, its probabilities)."""
    ins = require(session).inspection
    cards = viz.query_cards(ins, threshold, show_all)
    if not isinstance(evt.index, int) or not 0 <= evt.index < len(cards):
        raise ValueError(f"no gallery tile at index {evt.index!r}")
    query = cards[evt.index].query
    return (query, *render_query(session, query, layer, head, alpha, cmap, display, level))


@user_errors
def refresh(session: Session | None, threshold: float, show_all: bool, layer, head, alpha: float, cmap: str,
            display: str = POINTS, level: str = ALL_LEVELS):
    """After a new analysis: selectors fitted to the model, gallery, and the best query shown large."""
    caps = require(session).capabilities
    layers, heads = caps.decoder_layers, caps.heads
    layer, head = fitted_layer(layer, layers), fitted_head(head, heads)
    row, display_update, level_update = fitted(session, display, level)
    level = fitted_level(session, level)  # an update object has no readable value inside a request
    query = viz.query_cards(session.inspection, 0.0, show_all=True)[0].query
    return (range_slider(layers, layer, LAYER_LABEL), gr.Dropdown(choices=head_choices(heads), value=head),
            render_gallery(session, threshold, show_all, layer, head, alpha, cmap, display, level), query,
            *render_query(session, query, layer, head, alpha, cmap, display, level), row, display_update,
            level_update)


@user_errors
def export_decoder(session: Session | None, threshold: float, show_all: bool, query, layer, head, cmap: str,
                   display: str = POINTS, level: str = ALL_LEVELS):
    """-> PNG path: the shown queries (at most 6) paper-style, or the chosen query's heads in grid mode; for
    deformable models showing points, their sampling points (as the Deformable DETR paper draws them)."""
    ins, layer_i, head_v = _selection(session, layer, head)
    title = f"{session.model_source}: decoder layer {layer_i + 1}"
    if head_v == GRID:
        image, _ = render_query(session, query, layer, head, 0.6, cmap, display, level)
        return write_png(viz.view_figure(image, f"{title}, query {int(query)}, every head", cmap), "decoder-heads")
    cards = viz.query_cards(ins, threshold, show_all)[:FIGURE_QUERIES]
    if not cards:
        raise ValueError("no query to export: lower the threshold or switch on \"show all queries\"")
    if points_shown(session, display):
        head_i = head_v if isinstance(head_v, int) else None
        return write_png(viz.sampling_figure(ins, cards, layer_i, head_i, title=title), "decoder-points")
    return write_png(viz.decoder_figure(ins, cards, layer_i, head_v, cmap, title), "decoder")


def build(ctx: AppContext) -> None:
    with ctx.view("Decoder", "decoder", "where each object query looks"):
        with gr.Row():
            layer = LayerSlider(1, 6, value=6, step=1, label=LAYER_LABEL, elem_id="decoder-layer")
            # custom values: see the encoder tab's head selector
            head = HeadDropdown(head_choices(8), value=MEAN, label="Head", elem_id="decoder-head",
                               allow_custom_value=True)
            show_all = gr.Checkbox(False, label="Show all queries (with no-object probability)",
                                   elem_id="show-all-queries")
        family_row, display, level = selectors("decoder")
        # the line above says what the gallery shows (the label badge would sit over its first row)
        line = gr.Markdown(elem_id="query-gallery-line")
        gallery = gr.Gallery(label="Queries", show_label=False, columns=4, height=420, format="jpeg",
                             allow_preview=False, object_fit="contain", elem_id="query-gallery")
        with gr.Row():
            query = gr.Number(label="Query", precision=0, minimum=0, elem_id="query-number", scale=1)
            info = gr.Markdown(elem_id="query-info")
        # no label badge: it would sit over the first head's caption in the grid (the text above names the view)
        view = gr.Image(label="Chosen query", show_label=False, interactive=False, format="jpeg",
                        elem_id="query-view")
        export, file = ctx.export_controls("decoder")
        faithfulness_panel.build(ctx, query)  # "How faithful is this map?" for the chosen query

    s, d = ctx.session, ctx.display
    gallery_in = [s, ctx.threshold, show_all, layer, head, *d, display, level]
    query_in = [s, query, layer, head, *d, display, level]
    # .input, not .change: refresh() sets these selectors, and that must not redraw everything twice.
    ctx.redraw([ctx.threshold.input, show_all.input, layer.input, head.input, ctx.alpha.input, ctx.cmap.input,
                display.input, level.input],
               skip_before_image(render_gallery, 1), gallery_in, [gallery], api_name="query_gallery")
    ctx.redraw([ctx.threshold.input, show_all.input], skip_before_image(gallery_line, 1), gallery_in[:3], [line],
               api_name="query_gallery_line")
    ctx.redraw([query.submit, layer.input, head.input, ctx.alpha.input, ctx.cmap.input, display.input, level.input],
               skip_before_image(render_query, 2), query_in, [view, info], api_name="query_view")
    gallery.select(select_tile, gallery_in, [query, view, info], api_name="select_query")
    export.click(export_decoder, [s, ctx.threshold, show_all, query, layer, head, ctx.cmap, display, level], file,
                 api_name="export_decoder")
    ctx.after_analysis.append(Step(refresh, gallery_in, [layer, head, gallery, query, view, info, family_row,
                                                         display, level]))
    ctx.after_analysis.append(Step(gallery_line, gallery_in[:3], [line]))
