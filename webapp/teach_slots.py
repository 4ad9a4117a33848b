"""Teaching tab: where each query slot puts its boxes over a data set (the paper's Fig. 7).

Reads a file precomputed by `python -m detr_core.teaching.query_slots` for the current model (webapp/examples/
query_slots/<model>.npz); without one, computes it over the bundled examples on request.
"""
from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

import viz.query_slots
from detr_core.teaching.ground_truth import CocoSet, image_folder
from detr_core.teaching.query_slots import QuerySlotStats, collect
from detr_core.family.capabilities import DETR_ONLY_TEACHING

from .bundled import EXAMPLES_DIR, QUERY_SLOTS_DIR, SHAPES_VAL
from .context import AppContext, Step
from .controls import require, skip_before_image, user_errors
from .models import ModelCache
from .session import Session
from .teach_common import session_model

# The line shown instead of this view for a DETR-family model (detr_core.family)
WHY_NOT = "slot statistics come from re-running a DETR checkpoint over a data set"

PRECOMPUTED = QUERY_SLOTS_DIR
EXPLANATION = ("DETR's queries are not anchors: nobody told them where to look. Over many images, each slot still "
               "specialises: a dot per image at the centre of the slot's box (green small boxes, red large wide, "
               "blue large tall). Slots with the highest mean score are shown.")


def precomputed_file(source: str) -> Path:
    """Where the precomputed statistics of a model source live: webapp/examples/query_slots/<name>.npz."""
    return PRECOMPUTED / (re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem) + ".npz")


def bundled_images() -> list[Path]:
    return image_folder(EXAMPLES_DIR) + CocoSet(SHAPES_VAL).files()


def _stats(session: Session, computed) -> QuerySlotStats | None:
    if computed is not None and computed.model == session.model_source:
        return computed
    file = precomputed_file(session.model_source)
    return QuerySlotStats.load(file) if file.is_file() else None


@user_errors
def render_slots(session: Session | None, computed, min_score: float):
    """-> (slot tiles or None, Markdown)."""
    session = require(session)
    stats = _stats(session, computed)
    if stats is None:
        name = precomputed_file(session.model_source).name
        return None, (f"No precomputed file for `{session.model_source}` ({name})."
                      f" Press the button to compute it over the {len(bundled_images())} bundled example images.")
    return viz.query_slots.slots_image(stats, min_score=min_score), viz.query_slots.describe_slots(stats, min_score)


def compute_handler(models: ModelCache):
    @user_errors
    def compute(session: Session | None, min_score: float, progress=gr.Progress()):
        """Run the model on every bundled example -> (statistics for this session, tiles, Markdown)."""
        session = require(session)
        files = bundled_images()

        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"{done}/{total} images")
        stats = collect(session_model(models, session), files, session.model_source, report)
        return (stats, *render_slots(session, stats, min_score))
    return compute


def build(ctx: AppContext) -> None:
    models = ctx.models
    with ctx.view("Query slots", "teach-slots", "where each query slot puts its boxes over a data set",
                  requires=DETR_ONLY_TEACHING, why=WHY_NOT):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Only predictions scoring above",
                                  elem_id="slots-min-score")
            button = gr.Button("Compute over the bundled examples", size="sm", elem_id="slots-run")
        info = gr.Markdown(elem_id="slots-info")
        image = gr.Image(label="Predicted box centres per slot", interactive=False, format="png",
                         elem_id="slots-image", show_label=False)
        computed = gr.State(None)
    ctx.redraw([min_score.input], skip_before_image(render_slots, 2), [ctx.session, computed, min_score],
               [image, info], api_name="teach_slots")
    button.click(compute_handler(models), [ctx.session, min_score], [computed, image, info],
                 api_name="teach_slots_compute", concurrency_limit=1, concurrency_id="forward")
    ctx.after_analysis.append(Step(render_slots, [ctx.session, computed, min_score], [image, info], requires=DETR_ONLY_TEACHING))
