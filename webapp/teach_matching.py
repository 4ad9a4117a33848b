"""Teaching tab: the Hungarian matching explorer on an image with ground truth (a COCO-format set)."""
from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
from PIL import Image

import viz
import viz.matching
from detr_core import inspect_image, load_image
from detr_core.objective.criterion import LossWeights
from detr_core.teaching.ground_truth import CocoSet
from detr_core.objective.matcher import MatchWeights
from detr_core.teaching.matching_explorer import explain_matching
from detr_core.family.capabilities import DETR_ONLY_TEACHING

from .bundled import SHAPES_VAL
from .context import AppContext
from .controls import require, user_errors
from .models import ModelCache
from .session import Session
from .teach_common import session_model

# The line shown instead of this view for a DETR-family model (detr_core.family)
WHY_NOT = ("the explorer prices pairs with DETR's matching costs (a softmax class cost); this model was trained "
           "with sigmoid (focal) costs")

EXPLANATION = ("Training pairs each ground-truth object with exactly one query: the pairing with the smallest total "
               "cost (class + L1 + GIoU, weighted) over all one-to-one assignments, found by the Hungarian algorithm. "
               "Matched queries learn their object's class and box; every other query learns \"no object\". "
               "Change the weights to see the assignment change. Uses the model that analysed the current image.")


def _coco_set(data: str, roots: tuple[Path, ...]) -> CocoSet:
    """The set at `data`, which must lie under one of `roots`: the page must not read any file of the server."""
    if not data or not data.strip():
        raise ValueError("give a COCO-format set: a folder with annotations.json and images/, or a .json file")
    path = Path(data.strip()).expanduser().resolve()
    if not any(path.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ValueError(f"{data.strip()} is outside the folders this app may read ({allowed}); start the app "
                         "from the folder that holds your data, or add it with --data-root")
    return CocoSet(path)


def list_images_handler(roots: tuple[Path, ...]):
    @user_errors
    def list_images(data: str):
        """A data set path -> the image dropdown filled with its file names."""
        names = [Path(entry["file_name"]).name for entry in _coco_set(data, roots).images]
        return gr.Dropdown(choices=names, value=names[0] if names else None)
    return list_images


def _inspection(models: ModelCache, session: Session, file: Path, progress):
    """The model's inspection of the data set image, kept in the process's store per (model, file): every page
    that looks at the same image with the same model shares it."""
    def make():
        progress(0.2, desc=f"Running {session.model_source} on {file.name}...")
        return inspect_image(session_model(models, session), load_image(file))
    return session.store.get_or_make(("matching", session.model_source, str(file)), make)[0]


def match_handler(models: ModelCache, roots: tuple[Path, ...]):
    @user_errors
    def match(session: Session | None, data: str, name: str, w_class: float, w_bbox: float, w_giou: float,
              progress=gr.Progress()):
        """-> (matched pairs on the image, cost heatmaps, per-query table, loss Markdown)."""
        session = require(session)
        coco = _coco_set(data, roots)
        if not name:
            raise ValueError("choose an image of the data set")
        index = coco.index_of(name)
        ins = _inspection(models, session, coco.files()[index], progress)
        truth = coco.ground_truth(index, ins.class_names, by_position=True)
        weights = MatchWeights(float(w_class or 0), float(w_bbox or 0), float(w_giou or 0))
        loss_weights = LossWeights(ce=weights.cost_class, bbox=weights.cost_bbox, giou=weights.cost_giou)
        expl = explain_matching(ins, truth, weights, loss_weights)
        costs = Image.open(io.BytesIO(viz.figure_png(viz.matching.cost_figure(expl, truth.names), dpi=110)))
        note = (" *This model does not know the set's class names: category k is compared with class k.*"
                if truth.by_position else "")
        return (viz.matching.matching_image(ins, truth, expl), costs, viz.matching.match_rows(ins, expl),
                viz.matching.describe_losses(expl) + note)
    return match


def build(ctx: AppContext) -> None:
    models = ctx.models
    with ctx.view("Matching", "teach-matching", "how training pairs predictions with ground truth",
                  requires=DETR_ONLY_TEACHING, why=WHY_NOT):
        gr.Markdown(EXPLANATION)
        with gr.Row():
            data = gr.Textbox(str(SHAPES_VAL), label="COCO-format set (folder or annotations .json)",
                              elem_id="matching-data", scale=3)
            names = [Path(entry["file_name"]).name for entry in CocoSet(SHAPES_VAL).images]
            name = gr.Dropdown(names, value=names[0], label="Image", elem_id="matching-image", scale=1)
        with gr.Row():
            w_class = gr.Number(1.0, label="class cost weight", minimum=0, elem_id="matching-w-class")
            w_bbox = gr.Number(5.0, label="L1 cost weight", minimum=0, elem_id="matching-w-bbox")
            w_giou = gr.Number(2.0, label="GIoU cost weight", minimum=0, elem_id="matching-w-giou")
        button = gr.Button("Match predictions to ground truth", variant="primary", elem_id="matching-run")
        losses = gr.Markdown(elem_id="matching-losses")
        pairs = gr.Image(label="Ground truth (white), matched queries (colour), unmatched (grey)", interactive=False,
                         format="png", elem_id="matching-pairs")
        # the caption above the plot, not as the image's label badge, which covered the first plot's title
        gr.Markdown("**Costs**: targets x queries, the optimal assignment circled")
        costs = gr.Image(label="Costs: targets x queries, optimal assignment circled", show_label=False,
                         interactive=False, format="png", elem_id="matching-costs")
        # wrapped, and a third of the width for the prediction ("circle 0.93 / no object 0.05"): with Gradio's
        # even columns the last one was cut off at the right edge of the tab
        table = gr.Dataframe(headers=viz.matching.MATCH_HEADERS, label="Every query's training target",
                             interactive=False, elem_id="matching-table", wrap=True,
                             column_widths=["8%", "17%", "10%", "10%", "11%", "10%", "34%"])
    data.submit(list_images_handler(ctx.data_roots), data, name, api_name="teach_matching_images")
    gr.on([button.click, name.input, w_class.submit, w_bbox.submit, w_giou.submit],
          match_handler(models, ctx.data_roots), [ctx.session, data, name, w_class, w_bbox, w_giou],
          [pairs, costs, table, losses], api_name="teach_matching", concurrency_limit=1,
          concurrency_id="forward")
