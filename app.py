"""DETR Lens web app: upload an image, see every query's attention and boxes, click a pixel for the encoder's.

    python app.py [--host 127.0.0.1] [--port 7860] [--model auto] [--share]

Layout and event wiring only: the views are tabs in `webapp/`, drawing is `viz/`, the model is `detr_core/`.
A new view is a module with `build(ctx)` added to TABS.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # start and run with no network

import gradio as gr  # noqa: E402

import detr_core  # noqa: E402
import viz  # noqa: E402
from webapp import decoder_tab, detections_tab, encoder_tab  # noqa: E402
from webapp import (teach_ablation, teach_explain, teach_layers, teach_matching, teach_pipeline,  # noqa: E402
                    teach_queries, teach_slots)
from webapp.analysis import readable_upload, status_handler  # noqa: E402
from webapp.context import AppContext, Step  # noqa: E402
from webapp.model_sources import (FREE_TEXT_HINT, HUB_FLAG, SourcePolicy, menu_choices,  # noqa: E402
                                  revert_handler, served_beyond_loopback)
from webapp.model_sources import analyze_handler as checked_analyze_handler  # noqa: E402
from webapp.model_sources import switch_handler as checked_switch_handler  # noqa: E402
from webapp.models import ModelCache  # noqa: E402
from webapp.session import MAX_SIDE  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
TABS = (detections_tab, decoder_tab, encoder_tab, teach_pipeline, teach_layers, teach_queries, teach_matching,
        teach_slots, teach_explain, teach_ablation)
FORWARD = "forward"  # concurrency group of the handlers that run the model: one at a time on a small CPU
INTRO = f"""# DETR Lens
Upload an image (or pick an example), then explore what DETR computed in its single forward pass:
the detections, where each object query looks (decoder cross-attention, every layer and head),
and, by clicking on the image, where each location looks (encoder self-attention).
Images larger than {MAX_SIDE} px on their longer side are downscaled to {MAX_SIDE} px before the model sees them."""


def _skip_without_session(step: Step):
    """A tab refresh that does nothing when there is no image yet (e.g. the model changed first)."""
    def run(session, *args):
        if session is None:
            return tuple(gr.skip() for _ in step.outputs) if len(step.outputs) > 1 else gr.skip()
        return step.fn(session, *args)
    run.__name__ = f"refresh_{step.fn.__module__.rsplit('.', 1)[-1]}"
    return run


def _chain(event, ctx: AppContext) -> None:
    """After a successful analysis every tab redraws itself from the new session."""
    for step in ctx.after_analysis:
        event.success(_skip_without_session(step), step.inputs, step.outputs, api_visibility="undocumented")


_VIEWS = (gr.Image, gr.Gallery, gr.AnnotatedImage, gr.Markdown, gr.HTML, gr.Plot)


def _clear_views(step: Step):
    """Empty what a tab shows (images, galleries, text) and leave its controls (layer, head...) alone."""
    def clear(*_):
        values = tuple(None if isinstance(c, _VIEWS) else gr.skip() for c in step.outputs)
        return values if len(values) > 1 else values[0]
    clear.__name__ = f"clear_{step.fn.__module__.rsplit('.', 1)[-1]}"
    return clear


def _examples() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def build_demo(models: ModelCache, model_name: str = "auto", data_roots: tuple[Path, ...] = (),
               hub_downloads: bool = True) -> gr.Blocks:
    """The page. `data_roots`: folders, besides examples/ and the working folder, whose data sets and models it
    may open. `hub_downloads`: whether the page may fetch Hub models that are not in the cache yet."""
    roots = (EXAMPLES_DIR, Path.cwd(), *data_roots)
    policy = SourcePolicy(roots, hub_downloads, frozenset({model_name}))
    menu = menu_choices(model_name)
    with gr.Blocks(title="DETR Lens", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        status = gr.Markdown("Loading the model...", elem_id="model-status")
        session = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                image = readable_upload(gr.Image(
                    type="filepath", image_mode=None, sources=["upload", "clipboard"], format="jpeg",
                    label="Image: upload, then click on it to see encoder attention", elem_id="input-image"))
                model = gr.Dropdown(menu, value=model_name, label="Model", elem_id="model", allow_custom_value=True,
                                    info=f"Pick one, {FREE_TEXT_HINT}")
                threshold = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Confidence threshold",
                                      elem_id="threshold")
                with gr.Accordion("Heatmap display", open=False):
                    alpha = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Heatmap opacity", elem_id="alpha")
                    cmap = gr.Dropdown(list(viz.COLORMAPS), value="inferno", label="Colormap", elem_id="cmap")
                examples = gr.Examples(_examples(), inputs=[image], label="Examples (no network needed)")
            with gr.Column(scale=3):
                with gr.Tabs() as tabs:
                    ctx = AppContext(session, image, threshold, alpha, cmap, tabs, models, roots)
                    for tab in TABS:
                        tab.build(ctx)

        analyze = checked_analyze_handler(models, policy)
        analysis_out = [session, image, status]
        _chain(image.upload(analyze, [image, model], analysis_out, api_name="analyze",
                            concurrency_limit=1, concurrency_id=FORWARD), ctx)
        _chain(examples.load_input_event.then(analyze, [image, model], analysis_out, api_name="analyze_example",
                                              concurrency_limit=1, concurrency_id=FORWARD), ctx)
        switched = model.input(checked_switch_handler(models, policy), [model, session], [session, status],
                               api_name="set_model", concurrency_limit=1, concurrency_id=FORWARD)
        switched.failure(revert_handler(model_name), session, model, api_visibility="undocumented")
        _chain(switched, ctx)
        cleared = image.clear(lambda: None, None, session, api_name="clear")
        for step in ctx.after_analysis:  # no stale heatmaps of an image that is gone
            cleared.then(_clear_views(step), None, step.outputs, api_visibility="undocumented")
        demo.load(status_handler(models, model_name), None, status, api_name="status")
    return demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DETR Lens: see inside DETR in your browser.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", default=os.environ.get("DETR_LENS_MODEL", "auto"),
                        help="auto (default), a model-zoo name, shapes, untrained, tiny (tests), a checkpoint"
                             " path, a Hugging Face model folder or Hub id (owner/name[@revision]);"
                             " env DETR_LENS_MODEL sets the default")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--no-optimize", action="store_true",
                        help="serve the plain eager model instead of the optimised copy (for comparisons)")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: approximate mode, backbone in bfloat16 (several times faster on CPUs with"
                             " AMX/AVX512-BF16; results differ by about 1%%, and the page says so)")
    parser.add_argument("--no-compile", action="store_true",
                        help="keep the optimised model eager: skip compiling its backbone in the background")
    parser.add_argument("--data-root", action="append", type=Path, default=[],
                        help="a folder whose COCO-format sets and model files the page may open (repeatable);"
                             " examples/ and the folder the app starts in are always allowed")
    parser.add_argument(HUB_FLAG, action="store_true",
                        help="let the page fetch Hugging Face Hub models that are not cached yet even when it is"
                             " served beyond loopback (--host other than 127.0.0.1, or --share)")
    parser.add_argument("--auto-timeout", type=float, default=2.0,
                        help="seconds to wait for the official weights' server when choosing 'auto'")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.precision == "bfloat16" and args.no_optimize:
        raise SystemExit("--precision bfloat16 applies to the optimised model; drop --no-optimize")
    if args.precision == "bfloat16" and not detr_core.bfloat16_is_fast():
        raise SystemExit("--precision bfloat16 needs a CPU with native bfloat16 (AMX or AVX512-BF16); "
                         "this one would be slower. Start without it.")
    models = ModelCache(auto_timeout=args.auto_timeout, optimize=not args.no_optimize,
                        compile_backbone=not args.no_compile, precision=args.precision)
    models.warm(args.model)  # in the background: the page is up at once, the first upload waits if needed
    hub_downloads = args.allow_hub_download or not served_beyond_loopback(args.host, args.share)
    demo = build_demo(models, args.model, tuple(args.data_root), hub_downloads)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
        footer_links=["api"])


if __name__ == "__main__":
    main()
