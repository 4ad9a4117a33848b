"""The page: layout and event wiring. The views are tabs in this package, drawing is `viz/`, the model `detr_core/`.

Two levels of tabs keep every view one click away on a 1280-px screen: "Inspect" (what the one forward pass
computed: detections, decoder, encoder) and "Teach" (seven views on what makes DETR different). A new view is a
module with `build(ctx)` added to INSPECT or TEACH.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import gradio as gr

import viz

from . import compare_tab, decoder_tab, detections_tab, encoder_tab, gradio_cache, redraw
from . import (teach_ablation, teach_explain, teach_layers, teach_matching, teach_pipeline, teach_queries,
               teach_slots)
from .analysis import readable_upload, status_handler
from .bundled import EXAMPLES_DIR, example_images
from .context import NO_IMAGE_HINT, AppContext, Step, ViewSlot
from .controls import not_for_model, unavailable
from .model_sources import (FREE_TEXT_HINT, SourcePolicy, allowed_roots, analyze_handler, menu_choices,
                            preload_handler, switch_handler)
from .models import ModelCache
from .session import MAX_SIDE, Session
from .store import InspectionStore

log = logging.getLogger(__name__)
INSPECT = (detections_tab, decoder_tab, encoder_tab, compare_tab)
TEACH = (teach_pipeline, teach_layers, teach_queries, teach_matching, teach_slots, teach_explain, teach_ablation)
REFRESH_AFTER_ANALYSIS = "refresh_after_analysis"  # the one listener that redraws every view after an analysis
FORWARD = "forward"  # concurrency group of the handlers that run the model: one at a time on a small CPU
LOAD = "load"  # concurrency group of the model loads before them: any number at once, each for its own page
INTRO = f"""# DETR Lens
Upload an image (or pick an example), then explore what DETR computed in its single forward pass:
the detections, where each object query looks (decoder cross-attention, every layer and head),
and, by clicking on the image, where each location looks (encoder self-attention).
Images larger than {MAX_SIDE} px on their longer side are downscaled to {MAX_SIDE} px before the model sees them."""
_VIEWS = (gr.Image, gr.Gallery, gr.AnnotatedImage, gr.Markdown, gr.HTML, gr.Plot, gr.Dataframe)


def _refresh_or_clear(step: Step):
    """A tab's refresh after an analysis; with no image (cleared, unreadable) it empties what the tab shows
    (images, galleries, text, tables) and leaves its controls (layer, head...) alone."""
    def run(session, *args):
        if session is not None and unavailable(session, step.requires) is None:
            return step.fn(session, *args)
        if session is not None:  # a view this model does not have: hidden, its line says why (_views_for)
            values = tuple(gr.skip() for _ in step.outputs)
        else:
            values = tuple(None if isinstance(c, _VIEWS) else gr.skip() for c in step.outputs)
        return values if len(values) > 1 else values[0]
    run.__name__ = f"refresh_{step.fn.__module__.rsplit('.', 1)[-1]}"
    return run


def view_state(view: ViewSlot, session) -> tuple[str, bool]:
    """(the view's hint text, whether its content shows): the no-image hint while there is no image, one line
    saying why for a model the view does not apply to, else the content."""
    if session is None:
        return NO_IMAGE_HINT.format(what=view.what), False
    reason = unavailable(session, view.requires)
    if reason is None:
        return NO_IMAGE_HINT.format(what=view.what), True
    return not_for_model(session.inspection_title, view.why or reason), False


def _views_for(ctx: AppContext):
    """fn(session) -> each tab's hint shown and content hidden while there is no image (or while the model has
    no such view, with the reason), the reverse once there is one; and every export file emptied, so no figure
    of an earlier image stays on offer."""
    def show(session):
        slots = []
        for view in ctx.views:
            text, shown = view_state(view, session)
            slots += [gr.Markdown(text, visible=not shown), gr.Column(visible=shown)]
        return (*slots, *[None] * len(ctx.exports))
    return show


def _after_analysis(event, generation: gr.State) -> None:
    """After an analysis (or a clear, or a failed upload) the page's analysis generation takes a new value; the one
    listener of that (`_refresh_on_new_analysis`) redraws every view. A new value each time (a clock reading, not
    a count read from the page, which two quick analyses could both read as n and both set to n + 1), and
    trigger_mode "multiple", so that no analysis' mark is dropped while another's is on its way."""
    event.success(time.monotonic_ns, None, generation, api_visibility="undocumented", show_progress="hidden",
                  trigger_mode="multiple")


def _refresh_on_new_analysis(ctx: AppContext, generation: gr.State) -> None:
    """Every tab redraws itself from the session, or empties itself, in ONE listener with trigger_mode
    "always_last". Why one: a listener of the default mode ("once") drops a trigger that arrives while it is
    still running. With a listener per view chained on each analysis event, an unreadable upload made right
    after a good one had its clearing dropped by the views still drawing the good image, which then painted the
    previous image's detections back over the cleared page. Here a new analysis that arrives while the views
    are being drawn waits, and the listener runs again once it is done, reading the session as it is then: the
    page always ends on the newest analysis. (One listener per trigger also avoids Gradio's re-dispatch loop
    between always_last listeners, see redraw.py.)"""
    view_outputs = [c for view in ctx.views for c in (view.hint, view.body)] + ctx.exports
    parts = [redraw.Redraw((), _views_for(ctx), (ctx.session,), tuple(view_outputs), "views")]
    for step in ctx.after_analysis:
        fn = _refresh_or_clear(step)
        parts.append(redraw.Redraw((), fn, tuple(step.inputs), tuple(step.outputs), fn.__name__))
        # each tab's step keeps its own endpoint for scripts (/refresh_encoder_tab, ...), bound to no trigger
        gr.on([], fn, step.inputs, step.outputs, api_name=fn.__name__)
    inputs = redraw.unique([c for part in parts for c in part.inputs])
    outputs = [c for part in parts for c in part.outputs]
    assert len(redraw.unique(outputs)) == len(outputs), "two views refreshed after an analysis write one component"
    refresh = redraw.all_views(parts, inputs)
    refresh.__name__ = REFRESH_AFTER_ANALYSIS
    refresh.parts = tuple(part.api_name for part in parts)  # each tab's step, by name (refresh_encoder_tab, ...)
    generation.change(refresh, inputs, outputs, trigger_mode="always_last", api_visibility="undocumented")


def _input_column(menu: list[str], model_name: str):
    """The left column: upload, model menu, threshold, heatmap display, examples."""
    image = readable_upload(gr.Image(
        type="filepath", image_mode=None, sources=["upload", "clipboard"], format="jpeg",
        label="Image: upload, then click on it to see encoder attention", elem_id="input-image"))
    model = gr.Dropdown(menu, value=model_name, label="Model", elem_id="model", allow_custom_value=True,
                        info=f"Pick one, {FREE_TEXT_HINT}")
    threshold = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Confidence threshold", elem_id="threshold")
    with gr.Accordion("Heatmap display", open=False):
        alpha = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Heatmap opacity", elem_id="alpha")
        cmap = gr.Dropdown(list(viz.COLORMAPS), value="inferno", label="Colormap", elem_id="cmap")
    examples = gr.Examples([str(p) for p in example_images()], inputs=[image], label="Examples (no network needed)")
    return image, model, threshold, alpha, cmap, examples


def _view_tabs(ctx: AppContext) -> None:
    """The two levels of tabs, each view built by its module."""
    with gr.Tabs(elem_id="view-groups") as groups:
        ctx.groups = groups
        with gr.Tab("Inspect", id="inspect"):
            with gr.Tabs(elem_id="inspect-views") as inspect:
                ctx.inspect_tabs = inspect
                for tab in INSPECT:
                    tab.build(ctx)
        with gr.Tab("Teach", id="teach"):
            with gr.Tabs(elem_id="teach-views"):
                for tab in TEACH:
                    tab.build(ctx)


def _session_lifetime(store: InspectionStore):
    """(delete_callback for the session's gr.State, demo.unload handler): a page's entries leave the store when
    its tab closes, and whatever Gradio later forgets of a closed page (after an hour) is dropped too.

    No time_to_live on the State: Gradio counts it from the last *write*, so a user still looking at an image
    would lose the image itself; idleness is the store's own (see store.py), and costs only a re-analysis."""
    def forget(session: Session | None) -> None:
        if session is not None:
            store.release_group(session.key)

    def closed(request: gr.Request) -> None:
        freed = store.release_owner(request.session_hash)
        log.info("a page closed: %d of its entries left the store (now %s)", freed, store.summary())
    return forget, closed


def build_demo(models: ModelCache, model_name: str = "auto", data_roots: tuple[Path, ...] = (),
               hub_downloads: bool = True, store: InspectionStore | None = None,
               delete_cache: tuple[int, int] | None = None) -> gr.Blocks:
    """The page. `data_roots`: folders, besides the bundled examples and the working folder (unless that is /),
    whose data sets and models it may open. `hub_downloads`: whether the page may fetch Hub models that are not
    cached yet. `store`: where every page's inspections are kept, within its memory budget (default budget if
    None). `delete_cache`: Gradio's (frequency, age) in seconds for deleting old uploads and files sent out."""
    gradio_cache.install()  # the page's images are never rewritten while a browser reads them
    roots = allowed_roots(EXAMPLES_DIR, data_roots, Path.cwd())
    policy = SourcePolicy(roots, hub_downloads, frozenset({model_name}))
    menu = menu_choices(model_name)
    store = InspectionStore() if store is None else store
    forget, closed = _session_lifetime(store)
    with gr.Blocks(title="DETR Lens", analytics_enabled=False, delete_cache=delete_cache) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown("Loading the model...", elem_id="model-status")
        session = gr.State(None, delete_callback=forget)
        generation = gr.State(0)  # a new value after each analysis (or clear): every view redraws
        model_in_use = gr.State(model_name)  # the menu name in use: the menu returns to it if a model fails
        with gr.Row():
            with gr.Column(scale=5):  # 5:8 leaves the seven teaching tabs room on one row at 1280 px
                image, model, threshold, alpha, cmap, examples = _input_column(menu, model_name)
            with gr.Column(scale=8):
                ctx = AppContext(session, image, threshold, alpha, cmap, models, store, roots, policy)
                _view_tabs(ctx)
        redraw.wire(ctx.redraws)
        _refresh_on_new_analysis(ctx, generation)

        analyze = analyze_handler(models, policy, store)
        analysis_out = [session, image, status]
        # An upload runs the model the page already has (loaded when it was chosen, by the menu's preload below)
        # in ONE step, whose inputs are read when the upload happens; trigger_mode "multiple" queues an upload
        # made while the previous one is still being analysed instead of dropping it (the default, "once", left
        # the page on the previous image's analysis; "always_last" re-reads the image box later, by then holding
        # the previous analysis' output). The forward group runs them one at a time, in order.
        _after_analysis(image.upload(analyze, [image, model], analysis_out, api_name="analyze",
                                     concurrency_limit=1, concurrency_id=FORWARD, trigger_mode="multiple"),
                        generation)
        _after_analysis(examples.load_input_event.then(
            analyze, [image, model], analysis_out, api_name="analyze_example", concurrency_limit=1,
            concurrency_id=FORWARD, trigger_mode="multiple"), generation)
        # A new model is first loaded outside the forward group (LOAD, no limit; see preload_handler), so that a
        # load holds up only the page that asked for it.
        preload = dict(fn=preload_handler(models, policy), inputs=model, outputs=status, concurrency_limit=None,
                       concurrency_id=LOAD, api_visibility="undocumented")
        # .change, not .input: the menu fires .input twice for one pick with the mouse (gradio 6.31)
        _after_analysis(model.change(**preload).then(
            switch_handler(models, policy), [model, model_in_use, session], [session, status, model, model_in_use],
            api_name="set_model", concurrency_limit=1, concurrency_id=FORWARD, show_progress="hidden"), generation)
        _after_analysis(image.clear(lambda: None, None, session, api_name="clear"), generation)
        demo.load(status_handler(models, model_name), None, status, api_name="status")
        demo.unload(closed)
    return demo

