"""What every tab shares: the session state, the common controls, and the steps to run after a new analysis."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gradio as gr

if TYPE_CHECKING:
    from .models import ModelCache


@dataclass
class Step:
    """One handler chained after every analysis (new image or new model), so each tab refreshes itself."""

    fn: Callable
    inputs: list
    outputs: list


@dataclass
class AppContext:
    session: gr.State  # Session | None
    input_image: gr.Image
    threshold: gr.Slider
    alpha: gr.Slider
    cmap: gr.Dropdown
    tabs: gr.Tabs
    models: "ModelCache"  # the process's models, for views that re-run one (never a second copy)
    data_roots: tuple[Path, ...] = ()  # folders whose data sets the page may open (teaching views)
    after_analysis: list[Step] = field(default_factory=list)

    @property
    def display(self) -> list:
        """The heatmap display controls, in the order handlers take them (alpha, cmap)."""
        return [self.alpha, self.cmap]
