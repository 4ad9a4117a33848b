"""Teaching tab: switch off attention heads of one layer and see how the detections change."""
from __future__ import annotations

import gradio as gr

import viz.ablation
from detr_core.teaching.ablation import KINDS, HeadAblation, compare, inspect_ablated
from detr_core.family.capabilities import DETR_ONLY_TEACHING

from .context import AppContext, Step
from .controls import range_slider, require, skip_before_image, user_errors
from .layer_slider import LayerSlider
from .models import ModelCache
from .session import Session
from .teach_common import session_model

# The line shown instead of this view for a DETR-family model (detr_core.family)
WHY_NOT = "ablation switches off heads inside DETR's own attention modules"

EXPLANATION = ("Each attention layer has several heads that look at different things. Switch some off (their "
               "contribution is zeroed for one forward pass; the loaded model is not changed) and compare the "
               "detections: some heads matter a lot, many barely at all.")
LAYER_LABEL = "Layer"
KIND_CHOICES = [(viz.ablation.KIND_NAMES[k], k) for k in KINDS]


def _layers(ins, kind: str) -> int:
    return len(ins.encoder_attention) if kind == "encoder" else len(ins.decoder_cross_attention)


def ablation_handler(models: ModelCache):
    @user_errors
    def ablate(session: Session | None, kind: str, layer, heads, threshold: float, progress=gr.Progress()):
        """-> (detections before | after, table of the queries that changed most, summary)."""
        session = require(session)
        ins = session.inspection
        if layer is None or not 1 <= int(layer) <= _layers(ins, kind or "cross"):
            raise ValueError(f"layer={layer!r}: this model has layers 1..{_layers(ins, kind or 'cross')}")
        if not heads:
            raise ValueError("tick at least one head to switch off")
        ablation = HeadAblation(int(layer) - 1, tuple(int(h) - 1 for h in heads or ()), kind or "cross")
        progress(0.1, desc="Forward pass with the heads switched off...")
        after = inspect_ablated(session_model(models, session), ins.image, ablation)
        changes = compare(ins, after, threshold)
        summary = (f"**{viz.ablation.describe_ablation(ablation)}**: {len(ins.detections(threshold))} detections "
                   f"before, {len(after.detections(threshold))} after; {viz.ablation.describe_changes(changes)}.")
        return viz.ablation.ablation_image(ins, after, ablation, threshold), \
            viz.ablation.change_rows(changes), summary
    return ablate


@user_errors
def refresh(session: Session | None, kind: str, layer):
    """After a new analysis: layer and head choices fitted to the model."""
    ins = require(session).inspection
    layers, heads = _layers(ins, kind or "cross"), ins.decoder_cross_attention.shape[1]
    return (range_slider(layers, layer, LAYER_LABEL),
            gr.CheckboxGroup(choices=[str(h) for h in range(1, heads + 1)], value=[]))


def build(ctx: AppContext) -> None:
    models = ctx.models
    with ctx.view("Head ablation", "teach-ablation", "which detections depend on which attention heads",
                  requires=DETR_ONLY_TEACHING, why=WHY_NOT):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            kind = gr.Radio(KIND_CHOICES, value="cross", label="Attention", elem_id="ablation-kind")
            layer = LayerSlider(1, 6, value=6, step=1, label=LAYER_LABEL, elem_id="ablation-layer")
        heads = gr.CheckboxGroup([str(h) for h in range(1, 9)], label="Heads to switch off", elem_id="ablation-heads")
        button = gr.Button("Run with these heads off", variant="primary", elem_id="ablation-run")
        summary = gr.Markdown(elem_id="ablation-summary")
        image = gr.Image(label="Detections: all heads | heads off", interactive=False, format="jpeg",
                         elem_id="ablation-image", show_label=False)
        table = gr.Dataframe(headers=viz.ablation.CHANGE_HEADERS, label="Queries that changed most",
                             interactive=False, elem_id="ablation-table")
    button.click(ablation_handler(models), [ctx.session, kind, layer, heads, ctx.threshold], [image, table, summary],
                 api_name="teach_ablation", concurrency_limit=1, concurrency_id="forward")
    kind.input(skip_before_image(refresh, 2), [ctx.session, kind, layer], [layer, heads],
               api_name="teach_ablation_kind")
    ctx.after_analysis.append(Step(refresh, [ctx.session, kind, layer], [layer, heads], requires=DETR_ONLY_TEACHING))
