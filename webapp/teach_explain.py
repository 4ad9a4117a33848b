"""Teaching tab: beyond raw attention, for one detection: raw cross-attention, rollout and relevance."""
from __future__ import annotations

import gradio as gr

import viz.explain
from detr_core.teaching.explain import explain_detection
from detr_core.family.capabilities import DETR_ONLY_TEACHING

from .context import AppContext, Step
from .controls import require, user_errors
from .models import ModelCache
from .session import Session
from .teach_common import chosen_query, query_dropdown_update, session_model

# The line shown instead of this view for a DETR-family model (detr_core.family)
WHY_NOT = "rollout and relevance re-run DETR's own attention modules with gradients"

EXPLANATION = ("Raw attention shows where one layer looked, not what the prediction depended on. Attention rollout "
               "follows the attention back through the encoder; gradient-weighted relevance (Chefer et al., ICCV "
               "2021) also asks which attention raised this class score. Relevance needs one forward and one "
               "backward pass of the model, on the CPU.")


def explain_handler(models: ModelCache):
    @user_errors
    def explain(session: Session | None, query, alpha: float, cmap: str, progress=gr.Progress()):
        """-> (three maps side by side, Markdown on what each one answers)."""
        session = require(session)
        ins = session.inspection
        progress(0.1, desc="Forward and backward pass for the relevance...")
        explanation = explain_detection(session_model(models, session), ins, chosen_query(ins, query))
        return viz.explain.explanation_image(ins, explanation, alpha, cmap), \
            viz.explain.describe_explanation(explanation)
    return explain


@user_errors
def refresh(session: Session | None, query):
    """After a new analysis: the query list refitted; the maps wait for the button (they re-run the model)."""
    ins = require(session).inspection
    return query_dropdown_update(ins, None), None, "Choose a detection and press **Explain**."


def build(ctx: AppContext) -> None:
    models = ctx.models
    with ctx.view("Beyond attention", "teach-explain", "raw attention, rollout and relevance for one detection",
                  requires=DETR_ONLY_TEACHING, why=WHY_NOT):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            query = gr.Dropdown([], label="Detection (query, most confident first)", elem_id="explain-query", scale=3)
            button = gr.Button("Explain", variant="primary", elem_id="explain-run", scale=1)
        info = gr.Markdown(elem_id="explain-info")
        image = gr.Image(label="Raw attention | rollout | relevance", interactive=False, format="jpeg",
                         elem_id="explain-maps", show_label=False)
    button.click(explain_handler(models), [ctx.session, query, *ctx.display], [image, info],
                 api_name="teach_explain", concurrency_limit=1, concurrency_id="forward")
    ctx.after_analysis.append(Step(refresh, [ctx.session, query], [query, image, info], requires=DETR_ONLY_TEACHING))
