"""Teaching tab: the pipeline walk-through, one panel per stage from the resized input to the set of boxes.

The stage tensors (backbone features, positions, encoder output) are not part of the stored Inspection, so the
tab runs the model once more with stage hooks (detr_core.teaching.pipeline), only when the tab is opened, and keeps the
result for that image in the process's store beside the inspection (about 20 MB at DETR-R50 size, under the same
memory budget, made again if evicted).
"""
from __future__ import annotations

import gradio as gr

import viz.pipeline
from detr_core.family.capabilities import DETR_ONLY_TEACHING
from detr_core.teaching.pipeline import PipelineStages, inspect_with_stages

from .context import AppContext, Step
from .controls import require, skip_before_image, unavailable, user_errors
from .models import ModelCache
from .session import Session
from .teach_common import session_model

# The line shown instead of this view for a DETR-family model (detr_core.family)
WHY_NOT = ("the walk-through hooks DETR's own stages (its ResNet, encoder and decoder modules); this model runs "
           "through transformers")

STAGES = 6
INTRO = ("How DETR gets from pixels to a set of boxes, on your image. Opening this tab (or pressing the button) runs "
         "the model once more to keep the tensors between the stages.")


def stages_for(models: ModelCache, session: Session, progress) -> PipelineStages:
    """The stage tensors of the session's image: from the store, or made by one more forward pass."""
    def make() -> PipelineStages:
        progress(0.1, desc="Running the model with stage hooks...")
        return inspect_with_stages(session_model(models, session), session.image)[1]
    return session.store.get_or_make((session.key, "pipeline"), make, session.key, session.owner)[0]


def show_handler(models: ModelCache):
    @user_errors
    def show_pipeline(session: Session | None, opened, threshold: float, progress=gr.Progress()):
        """-> (True: the tab has been opened, six stage images, six stage texts)."""
        session = require(session)
        if unavailable(session, DETR_ONLY_TEACHING):  # opening the tab must not run a family model's stages
            return tuple(gr.skip() for _ in range(1 + 2 * STAGES))
        stages = stages_for(models, session, progress)
        panels = viz.pipeline.pipeline_panels(session.inspection, stages, threshold)
        return (True, *[p.image for p in panels], *[f"**{p.title}.** {p.text}" for p in panels])
    return show_pipeline


def refresh_handler(models: ModelCache):
    """After a new analysis: recompute only if this tab has been opened before."""
    show = show_handler(models)

    def refresh(session: Session | None, opened, threshold: float):
        if not opened:
            return (False, *[None] * STAGES, "Press the button above to walk through the pipeline for this image.",
                    *[""] * (STAGES - 1))
        return show(session, opened, threshold)
    return refresh


def build(ctx: AppContext) -> None:
    models = ctx.models
    with ctx.view("Pipeline", "teach-pipeline", "how DETR gets from pixels to boxes, stage by stage",
                  requires=DETR_ONLY_TEACHING, why=WHY_NOT) as tab:
        gr.Markdown(INTRO)
        button = gr.Button("Show the pipeline for this image", size="sm", elem_id="pipeline-run")
        opened = gr.State(False)  # whether this page has opened the tab: then a new image redraws it at once
        images, texts = [], []
        for i in range(STAGES):
            with gr.Row(equal_height=False):
                images.append(gr.Image(interactive=False, format="png", show_label=False, height=300,
                                       elem_id=f"pipeline-image-{i + 1}", scale=3))
                texts.append(gr.Markdown(elem_id=f"pipeline-text-{i + 1}"))
    inputs, outputs = [ctx.session, opened, ctx.threshold], [opened, *images, *texts]
    gr.on([tab.select, button.click], skip_before_image(show_handler(models), len(outputs)), inputs, outputs,
          api_name="teach_pipeline", concurrency_limit=1, concurrency_id="forward")
    ctx.after_analysis.append(Step(refresh_handler(models), inputs, outputs, requires=DETR_ONLY_TEACHING))
