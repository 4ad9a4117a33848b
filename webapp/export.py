"""Writing export figures to files the page can offer for download."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
from matplotlib.figure import Figure

import viz

EXPORT_DIR = Path(tempfile.gettempdir()) / "detr-lens-exports"


def write_png(fig: Figure, stem: str) -> str:
    """Save the figure as a new PNG (unique name: several users may export at once) and return its path."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=EXPORT_DIR, prefix=f"{stem}-", suffix=".png", delete=False) as out:
        out.write(viz.figure_png(fig))
    return out.name


def export_controls() -> tuple[gr.Button, gr.File]:
    """The folded "export this view" row every tab has: a button and the file it makes."""
    with gr.Accordion("Export this view as a PNG figure", open=False):
        return gr.Button("Make figure", size="sm"), gr.File(label="Figure (PNG)")
