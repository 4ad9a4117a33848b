"""DETR Lens drawing: plain functions on numpy/PIL (fast, interactive) and matplotlib (export figures).

Usable from a notebook without Gradio:

    ins = detr_core.inspect_image(model, "photo.jpg")
    viz.draw_detections(ins.image, ins.detections(0.7))
    viz.overlay(ins.image, ins.decoder_map(query=5, layer=-1, head="mean"), ins.coords)
    viz.encoder_image(ins, x=200, y=150, layer=5)
    viz.sampling_image(ins, viz.card_for(ins, 5), layer=-1)   # deformable DETR-family models
    viz.pair_view(viz.Side(ins_a, 3), viz.Side(ins_b, 8))       # two models side by side (detr_core.compare)
"""
from .decoder import QueryCard, card_for, class_summary, head_grid, query_cards, query_image
from .detections import TABLE_HEADERS, Box, detection_boxes, detection_rows, draw_boxes, draw_detections
from .encoder import describe_point, encoder_head_grid, encoder_image
from .print_figures import decoder_figure, detections_figure, figure_png, view_figure
from .grid import tile_grid
from .heatmap import blend, colorize, draw_marker, enlarge, fit, heat_image, normalise, overlay, upsample
from .palette import COLORMAPS, box_colour, colormap_lut, level_colour
from .sampling import (draw_points, encoder_sampling_head_grid, encoder_sampling_image, level_names,
                       sampling_head_grid, sampling_image)
from .sampling_figure import sampling_figure
from .compare import PairView, Side, draw_pair, pair_view, pixel_density, same_grid

__all__ = [
    "QueryCard", "card_for", "class_summary", "head_grid", "query_cards", "query_image",
    "TABLE_HEADERS", "Box", "detection_boxes", "detection_rows", "draw_boxes", "draw_detections",
    "describe_point", "encoder_head_grid", "encoder_image",
    "decoder_figure", "detections_figure", "figure_png", "view_figure", "tile_grid",
    "blend", "colorize", "draw_marker", "enlarge", "fit", "heat_image", "normalise", "overlay", "upsample",
    "COLORMAPS", "box_colour", "colormap_lut", "level_colour",
    "draw_points", "encoder_sampling_head_grid", "encoder_sampling_image", "level_names", "sampling_head_grid", "sampling_image", "sampling_figure",
    "PairView", "Side", "draw_pair", "pair_view", "pixel_density", "same_grid",
]
