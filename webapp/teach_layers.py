"""Teaching tab: one query through the decoder, layer by layer (box, class and attention of every layer)."""
from __future__ import annotations

import gradio as gr

import viz.layers

from .context import AppContext, Step
from .controls import require, skip_before_image, user_errors
from .session import Session
from .teach_common import chosen_query, query_choices, query_dropdown_update

EXPLANATION = ("The class and box heads are shared by every decoder layer, so each layer's output can already be "
               "read as a prediction. Follow one query: early layers give a rough box and an unsure class; later "
               "layers refine both as the query {looks} and attends to the other queries.")
LOOKS = {False: "attends to the image (heatmap: that layer's cross-attention, mean over heads)",
         True: "samples the image (heatmap: that layer's sampling points, their weights splatted onto the image, "
               "mean over heads)"}


def explanation(session: Session | None) -> str:
    """The tab's text for the session's model: cross-attention, or sampling points for a deformable decoder."""
    deformable = session is not None and session.capabilities.is_deformable
    return EXPLANATION.format(looks=LOOKS[deformable])


@user_errors
def render_layers(session: Session | None, query, alpha: float, cmap: str):
    """-> (strip of one tile per decoder layer, table of each layer's prediction)."""
    ins = require(session).inspection
    q = chosen_query(ins, query)
    return viz.layers.layer_strip(ins, q, alpha, cmap, base=session.thumbnail(viz.layers.TILE_SIDE)), \
        viz.layers.layer_rows(ins, q)


@user_errors
def refresh(session: Session | None, query, alpha: float, cmap: str):
    """After a new analysis: the query list refitted, the most confident query shown, the text fitted to the
    model."""
    ins = require(session).inspection
    q = query_choices(ins, 1)[0][1]
    return (query_dropdown_update(ins, q), *render_layers(session, q, alpha, cmap), explanation(session))


def build(ctx: AppContext) -> None:
    with ctx.view("Layers", "teach-layers", "one query refined by each decoder layer"):
        text = gr.Markdown(explanation(None), elem_id="layers-explanation")
        query = gr.Dropdown([], label="Query (most confident first)", elem_id="layers-query")
        strip = gr.Image(label="Each decoder layer: its box and where it looks", interactive=False,
                         format="jpeg", elem_id="layers-strip", show_label=False)
        table = gr.Dataframe(headers=viz.layers.LAYER_HEADERS, label="Prediction after each layer",
                             interactive=False, elem_id="layers-table")
    inputs = [ctx.session, query, *ctx.display]
    ctx.redraw([query.input, ctx.alpha.input, ctx.cmap.input], skip_before_image(render_layers, 2), inputs,
               [strip, table], api_name="teach_layers")
    ctx.after_analysis.append(Step(refresh, inputs, [query, strip, table, text]))
