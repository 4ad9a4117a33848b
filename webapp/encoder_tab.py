"""Tab 3: encoder self-attention of the feature cell under a clicked point of the input image.

DETR-family models answer where their encoder has an answer: dense maps (Conditional/DAB-DETR; RT-DETR's AIFI
on the coarsest level), or for a deformable encoder (Deformable DETR) the points the clicked location samples,
or their heatmap. Models without a transformer encoder (RF-DETR, LW-DETR) get one line saying so."""
from __future__ import annotations

import gradio as gr

import viz
from detr_core.family.capabilities import ENCODER, ENCODER_INCOMING

from .context import AppContext, Step
from .controls import (DIRECTION_CHOICES, DIRECTION_LABELS, GRID, LOOKS_FROM, MEAN, direction_value,
                       fitted_head, fitted_layer, head_choices, incoming, layer_index, not_for_model, parse_head,
                       range_slider, require, skip_before_image, user_errors)
from .export import write_png
from .head_dropdown import HeadDropdown
from .layer_slider import LayerSlider
from .sampling_controls import ALL_LEVELS, HEATMAP, POINTS, fitted, fitted_level, parse_level, selectors
from .session import Session

LAYER_LABEL = "Encoder layer"


def _point(session: Session, x, y) -> tuple[float, float]:
    if x is None or y is None:
        raise ValueError("click on the image (or type x and y) to choose a point")
    return float(x), float(y)


@user_errors
def render_encoder(session: Session | None, x, y, layer, head, direction: str, alpha: float, cmap: str,
                   display: str = POINTS, level: str = ALL_LEVELS):
    """-> (encoder attention at original pixel (x, y) over the image, or every head; a line naming the cell).
    A model whose encoder has no such answer gets (None, one line saying why)."""
    caps = require(session).capabilities
    ins = session.inspection
    into = incoming(direction)
    reason = caps.reason(ENCODER_INCOMING if into else ENCODER)
    if reason:
        return None, not_for_model(caps.title, reason)
    x, y = _point(session, x, y)
    layer, head = layer_index(layer, caps.encoder_layers), parse_head(head, caps.encoder_heads)
    if caps.has_deformable_encoder and display != HEATMAP:
        return _encoder_points(session, x, y, layer, head, parse_level(session, level))
    if head == GRID:
        image = viz.encoder_head_grid(ins, x, y, layer, into, alpha, cmap)
    else:
        image = viz.encoder_image(ins, x, y, layer, head, into, alpha, cmap, base=session.view_base())
    return image, (f"{viz.describe_point(ins, x, y)}, encoder layer {layer + 1}: "
                   f"{DIRECTION_LABELS[direction_value(direction)]}.")


def _encoder_points(session: Session, x: float, y: float, layer: int, head, level: int | None):
    """A deformable encoder: where the location at (x, y) (its finest-level cell) samples."""
    ins = session.inspection
    if head == GRID:
        image = viz.encoder_sampling_head_grid(ins, x, y, layer, level)
    else:
        image = viz.encoder_sampling_image(ins, x, y, layer, head if isinstance(head, int) else None, level,
                                           base=session.view_base())
    return image, (f"{viz.describe_point(ins, x, y)}, encoder layer {layer + 1}: the points this location"
                   " (its finest-level cell) samples; dot area = weight, colour = level.")


@user_errors
def click(session: Session | None, layer, head, direction: str, alpha: float, cmap: str, display: str,
          level: str, evt: gr.SelectData):
    """Click on the input image -> (x, y, encoder view, description, the encoder tab brought forward: the
    "Inspect" group and in it the encoder tab).

    The input image shows exactly the image that was analysed, so the event's pixel index is already in
    original-image pixels whatever size the browser displays it at.
    """
    require(session)
    if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2 or None in evt.index:
        raise ValueError("that click did not land on the image; click on the picture itself")
    x, y = evt.index
    return (x, y, *render_encoder(session, x, y, layer, head, direction, alpha, cmap, display, level),
            gr.Tabs(selected="inspect"),
            gr.Tabs(selected="encoder"))


@user_errors
def refresh(session: Session | None, layer, head, direction: str, alpha: float, cmap: str, display: str = POINTS,
            level: str = ALL_LEVELS):
    """After a new analysis: selectors fitted to the model, the point reset to the image centre."""
    caps = require(session).capabilities
    layers, heads = caps.encoder_layers, caps.encoder_heads
    layer, head = fitted_layer(layer, layers), fitted_head(head, heads)
    h, w = session.inspection.image_size
    x, y = w // 2, h // 2
    row, display_update, level_update = fitted(session, display, level, caps.has_deformable_encoder)
    return (range_slider(layers, layer, LAYER_LABEL), gr.Dropdown(choices=head_choices(heads), value=head), x, y,
            *render_encoder(session, x, y, layer, head, direction, alpha, cmap, display,
                            fitted_level(session, level)),
            row, display_update, level_update)


@user_errors
def export_encoder(session: Session | None, x, y, layer, head, direction: str, cmap: str, display: str = POINTS,
                   level: str = ALL_LEVELS) -> str:
    image, text = render_encoder(session, x, y, layer, head, direction, 0.6, cmap, display, level)
    if image is None:
        raise ValueError(text.replace("**", ""))
    return write_png(viz.view_figure(image, f"{session.model_source}: {text}", cmap), "encoder")


def build(ctx: AppContext) -> None:
    with ctx.view("Encoder", "encoder", "where each location looks (click on the image)", requires=ENCODER):
        gr.Markdown("Click anywhere on the input image (left) to see the encoder self-attention of the"
                    " feature cell under that point.")
        with gr.Row():
            layer = LayerSlider(1, 6, value=6, step=1, label=LAYER_LABEL, elem_id="encoder-layer")
            # custom values: a script may name a head before the page has fitted the choices to its model, or an
            # older spelling of one; parse_head checks it against the model's heads
            head = HeadDropdown(head_choices(8), value=MEAN, label="Head", elem_id="encoder-head",
                               allow_custom_value=True)
            direction = gr.Radio(DIRECTION_CHOICES, value=LOOKS_FROM, label="Direction",
                                       elem_id="encoder-direction")
        family_row, display, level = selectors("encoder")
        with gr.Row():
            x = gr.Number(label="x (pixels)", precision=0, minimum=0, elem_id="point-x")
            y = gr.Number(label="y (pixels)", precision=0, minimum=0, elem_id="point-y")
            info = gr.Markdown(elem_id="encoder-info")
        # no label badge: it would sit over the first head's caption in the grid (the text above names the view)
        view = gr.Image(label="Encoder attention", show_label=False, interactive=False, format="jpeg",
                        elem_id="encoder-map")
        export, file = ctx.export_controls("encoder")

    s, d = ctx.session, ctx.display
    view_in = [s, x, y, layer, head, direction, *d, display, level]
    ctx.redraw([x.submit, y.submit, layer.input, head.input, direction.input, ctx.alpha.input, ctx.cmap.input,
                display.input, level.input],
               skip_before_image(render_encoder, 2), view_in, [view, info], api_name="encoder_map")
    ctx.input_image.select(skip_before_image(click, 6), [s, layer, head, direction, *d, display, level],
                           [x, y, view, info, ctx.groups, ctx.inspect_tabs], api_name="encoder_click",
                           trigger_mode="always_last")
    export.click(export_encoder, [s, x, y, layer, head, direction, ctx.cmap, display, level], file,
                 api_name="export_encoder")
    ctx.after_analysis.append(Step(refresh, [s, layer, head, direction, *d, display, level],
                                   [layer, head, x, y, view, info, family_row, display, level], requires=ENCODER))
