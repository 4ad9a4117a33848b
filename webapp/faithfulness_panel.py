"""The decoder tab's panel "How faithful is this map?": deletion and insertion curves of every explanation of the
chosen query (detr_core.faithfulness), with random, box and centre baselines, and D-RISE on its own button.

Nothing is kept after a run (the curves are drawn and returned), so the panel adds nothing to the inspection
store's memory budget; its perturbed batches run inside the store's forward_pass, one heavy run at a time."""
from __future__ import annotations

import gradio as gr

import viz.faithfulness
from detr_core.faithfulness import compare_explanations

from .context import AppContext, Step
from .controls import require, user_errors
from .models import ModelCache
from .session import Session
from .teach_common import chosen_query, session_model

EXPLANATION = ("Does a map show what the detection depends on? Delete the map's most salient pixels first: if it "
               "is right, the detection's score falls fast (low deletion area); restore them first from a blurred "
               "copy: the score should come back fast (high insertion area). A random map, the detection's own "
               "box and a centre prior anchor the scale; D-RISE (random masks, one forward each) is the "
               "model-agnostic reference.")
DEFAULT_STEPS, DEFAULT_MASKS, MAX_MASKS = 6, 200, 4000  # 6 steps: 102 forwards per detection (benchmark)
SMALL_INPUT = 512 * 512  # pixels: below it, batches of 16 were fastest for the bundled model (benchmark)


def batch_size(input_size: tuple[int, int]) -> int:
    """16 perturbed images per forward for small inputs; 4 at DETR-R50 sizes (800x1066: a batch of 16 would hold
    gigabytes of activations, and 4 was already the fastest measured)."""
    return 16 if input_size[0] * input_size[1] <= SMALL_INPUT else 4


def faithfulness_handler(models: ModelCache, store, with_drise: bool):
    @user_errors
    def run(session: Session | None, query, steps, masks, progress=gr.Progress()):
        """-> (curves image, AUC table rows, summary line)."""
        session = require(session)
        ins = session.inspection
        steps, masks = int(steps or DEFAULT_STEPS), int(masks or 0) if with_drise else 0
        if with_drise and not 1 <= masks <= MAX_MASKS:
            raise ValueError(f"masks={masks}: choose 1..{MAX_MASKS}")

        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"{done} of {total} forwards")

        progress(0.0, desc="Perturbing the image...")
        with store.forward_pass():  # one heavy run at a time; its scratch memory given back after
            comparison = compare_explanations(session_model(models, session), ins, chosen_query(ins, query),
                                              steps=steps, batch_size=batch_size(ins.input_size), random_seeds=2,
                                              drise_masks=masks, progress=report)
        return viz.faithfulness.curves_image(comparison), viz.faithfulness.table_rows(comparison), \
            viz.faithfulness.summary_line(comparison)
    return run


@user_errors
def refresh(session: Session | None):
    """After a new analysis: the previous image's curves withdrawn."""
    require(session)
    return None, None, "Choose a query above and press **Test every map**."


def build(ctx: AppContext, query: gr.Number) -> None:
    """The panel, folded, inside the decoder tab's view; `query` is the tab's chosen query."""
    with gr.Accordion("How faithful is this map?", open=False, elem_id="faithful"):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            steps = gr.Slider(4, 20, value=DEFAULT_STEPS, step=1, label="Steps", elem_id="faithful-steps", scale=2)
            button = gr.Button("Test every map", variant="primary", elem_id="faithful-run", scale=1)
        with gr.Row():
            masks = gr.Number(DEFAULT_MASKS, precision=0, minimum=1, maximum=MAX_MASKS, label="D-RISE masks "
                              "(one forward each)", elem_id="faithful-masks", scale=2)
            drise = gr.Button("Test with a D-RISE map too", elem_id="faithful-drise", scale=1)
        info = gr.Markdown(elem_id="faithful-info")
        plot = gr.Image(label="Deletion | insertion", interactive=False, format="png", elem_id="faithful-plot",
                        show_label=False)
        table = gr.Dataframe(headers=viz.faithfulness.TABLE_HEADERS, label="Area under each curve",
                             interactive=False, elem_id="faithful-table")
        gr.Markdown(viz.faithfulness.CAVEAT, elem_id="faithful-caveat")
    inputs = [ctx.session, query, steps, masks]
    button.click(faithfulness_handler(ctx.models, ctx.store, False), inputs, [plot, table, info],
                 api_name="faithfulness", concurrency_limit=1, concurrency_id="forward")
    drise.click(faithfulness_handler(ctx.models, ctx.store, True), inputs, [plot, table, info],
                api_name="faithfulness_drise", concurrency_limit=1, concurrency_id="forward")
    ctx.after_analysis.append(Step(refresh, [ctx.session], [plot, table, info]))
