"""Writing export figures to files the page can offer for download."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

import viz

EXPORT_DIR = Path(tempfile.gettempdir()) / "detr-lens-exports"
# Gradio copies a returned file into its own cache (deleted by the app's --files-minutes) as the handler returns,
# so the copy here is needed for seconds only; without a clean-up every figure any visitor made would stay.
EXPORT_MAX_AGE_S = 600.0


def write_png(fig: Figure, stem: str) -> str:
    """Save the figure as a new PNG (unique name: several users may export at once) and return its path. Figures
    written more than EXPORT_MAX_AGE_S ago are deleted first."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    remove_old(EXPORT_DIR, EXPORT_MAX_AGE_S)
    with tempfile.NamedTemporaryFile(dir=EXPORT_DIR, prefix=f"{stem}-", suffix=".png", delete=False) as out:
        out.write(viz.figure_png(fig))
    return out.name


def remove_old(folder: Path, max_age_s: float) -> int:
    """Delete the PNG files in `folder` last modified more than `max_age_s` ago. -> how many."""
    cutoff, removed = time.time() - max_age_s, 0
    for path in folder.glob("*.png"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another thread's clean-up got there first
            pass
    return removed
