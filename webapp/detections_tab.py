"""Tab 1: the detections, as boxes on the image and as a table, filtered by the threshold without re-running."""
from __future__ import annotations

import gradio as gr

import viz

from .context import AppContext, Step
from .controls import require, skip_before_image, user_errors
from .export import write_png
from .session import Session


@user_errors
def render_detections(session: Session | None, threshold: float):
    """-> (annotated image, table rows with boxes in the uploaded image's pixels, one-line summary)."""
    ins = require(session).inspection
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be between 0 and 1")
    detections = ins.detections(threshold)
    count = f"{len(detections)} detection{'' if len(detections) == 1 else 's'}"
    summary = f"{count} with score above {threshold:.2f} out of {ins.num_queries} queries. {session.size_note()}"
    if not detections:
        summary += " " + nothing_found(session.model_source, ins.class_names, threshold)
    base = session.view_base()
    image = viz.draw_boxes(base, viz.detection_boxes(detections, base.width / ins.image.width))
    return image, viz.detection_rows(detections, session.table_boxes(detections)), summary


def nothing_found(model_source: str, class_names, threshold: float) -> str:
    """The line for an image with no detection: DETR said "no object" for every query, which is an answer,
    and for the bundled shapes model, what it can and cannot find."""
    line = (f"**No object above {threshold:.2f}:** every query answered \"no object\" (see each query's no-object"
            " probability in the Decoder tab with \"show all queries\").")
    if model_source == "shapes":
        line += (f" The bundled `shapes` model only knows {len(class_names)} shapes"
                 f" ({', '.join(class_names)}); for everyday objects choose `detr-r50` in the model menu"
                 " (one download of about 160 MB).")
    return line


@user_errors
def export_detections(session: Session | None, threshold: float) -> str:
    """-> path of a PNG figure of the current detections."""
    ins = require(session).inspection
    fig = viz.detections_figure(ins, ins.detections(threshold), f"{session.model_source}: score > {threshold:.2f}")
    return write_png(fig, "detections")


def build(ctx: AppContext) -> None:
    with ctx.view("Detections", "detections", "the objects the model found"):
        summary = gr.Markdown(elem_id="detections-summary")
        image = gr.Image(label="Detections", interactive=False, format="jpeg", elem_id="detections",
                         buttons=["download", "fullscreen"])
        table = gr.Dataframe(headers=viz.TABLE_HEADERS, label="Detections (box in the uploaded image's pixels)",
                             interactive=False, elem_id="detections-table")
        export, file = ctx.export_controls("detections")
    outputs = [image, table, summary]
    ctx.redraw([ctx.threshold.input], skip_before_image(render_detections, len(outputs)), [ctx.session, ctx.threshold],
               outputs, api_name="detections")
    export.click(export_detections, [ctx.session, ctx.threshold], file, api_name="export_detections")
    ctx.after_analysis.append(Step(render_detections, [ctx.session, ctx.threshold], outputs))
