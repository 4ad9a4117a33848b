"""Teaching tab: every query at once, to show that the model silences its own duplicates (no NMS)."""
from __future__ import annotations

import gradio as gr

import viz.all_queries
from detr_core.teaching.set_prediction import suppressed_duplicates

from .context import AppContext, Step
from .controls import require, skip_before_image, user_errors
from .session import Session

SIDE = 800
EXPLANATION = ("DETR always predicts a fixed number of boxes, one per query. Every box is drawn here, more opaque "
               "the less the query believes in \"no object\". Detectors with anchors produce many overlapping boxes "
               "per object and remove them with non-maximum suppression; DETR does not: its one-to-one matching "
               "loss taught the extra queries to say \"no object\".")


@user_errors
def render_queries(session: Session | None, threshold: float):
    """-> (every query's box faded by its object probability, one bar per query, Markdown summary)."""
    ins = require(session).inspection
    image = viz.all_queries.all_queries_image(ins, threshold, base=session.thumbnail(SIDE))
    duplicates = suppressed_duplicates(ins, threshold)
    return image, viz.all_queries.query_bars(ins, threshold), \
        viz.all_queries.describe_queries(ins, threshold, duplicates)


def build(ctx: AppContext) -> None:
    with ctx.view("All queries", "teach-queries", "every query's box at once (DETR needs no NMS)"):
        gr.Markdown(EXPLANATION)
        summary = gr.Markdown(elem_id="queries-summary")
        image = gr.Image(label="Every query's box (opacity: 1 - P(no object))", interactive=False, format="jpeg",
                         elem_id="queries-boxes")
        # no label badge: it would sit over the chart's "1.0" (the chart's own legend says what it shows)
        bars = gr.Image(label="Per query: best class, other classes, no object", show_label=False,
                        interactive=False, format="png", elem_id="queries-bars")
    inputs, outputs = [ctx.session, ctx.threshold], [image, bars, summary]
    ctx.redraw([ctx.threshold.input], skip_before_image(render_queries, len(outputs)), inputs, outputs,
               api_name="teach_queries")
    ctx.after_analysis.append(Step(render_queries, inputs, outputs))
