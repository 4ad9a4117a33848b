"""A head selector that takes a head number past the model's heads as the mean, what the page's refit sets.

Why: as with the layer sliders (`layer_slider.py`), the page fits the head selectors to each model after an
analysis (`controls.fitted_head`: the same head if the model has it, else the mean), Gradio rebuilds the selector
on the server at once, and the browser shows the previous choices until the update arrives. A control moved in
between sends the previous head: after a switch from an 8-head model with "head 7" chosen to a model of 4 heads,
the decoder and encoder views said "head='7': this model has heads 1..4" and the Compare view Gradio's own "Value:
7 is not in the list of choices", for a redraw that would have drawn the mean a moment later anyway. This selector
reads a head number above its choices' heads as the mean. Any other value is left to the handlers' checks
(`controls.parse_head`), which name it.

Gradio keeps the class when it rebuilds a component from an update, so the rule holds for every session's fitted
copy; `is_template` makes the browser draw it with Gradio's own dropdown.
"""
from __future__ import annotations

import gradio as gr

from .controls import MEAN, head_value


class HeadDropdown(gr.Dropdown):
    """gr.Dropdown whose preprocess maps a head number above its choices' heads to the mean (module docstring)."""

    is_template = True  # the page draws it as a "dropdown"

    def preprocess(self, payload):
        head = head_value(payload) if isinstance(payload, (str, int)) else None
        if head is not None and head.isdigit() and int(head) > self.heads():
            payload = MEAN
        return super().preprocess(payload)

    def heads(self) -> int:
        """How many heads the current choices offer ("1".."N")."""
        return sum(1 for _, value in self.choices if str(value).isdigit())
