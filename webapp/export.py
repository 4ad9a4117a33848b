"""Writing export figures to files the page can offer for download."""
from __future__ import annotations

import tempfile
from pathlib import Path

from matplotlib.figure import Figure

import viz

EXPORT_DIR = Path(tempfile.gettempdir()) / "detr-lens-exports"


def write_png(fig: Figure, stem: str) -> str:
    """Save the figure as a new PNG (unique name: several users may export at once) and return its path."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=EXPORT_DIR, prefix=f"{stem}-", suffix=".png", delete=False) as out:
        out.write(viz.figure_png(fig))
    return out.name
