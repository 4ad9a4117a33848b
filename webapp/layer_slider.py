"""A layer slider that takes a value past its end as the model's last layer.

Why: the page's layer sliders are fitted to each model's layers after an analysis (`controls.range_slider`).
Gradio rebuilds the slider on the server as soon as that update is computed, while the browser still shows the
previous range until the update arrives; a control moved in between sends the previous value (the page's initial
layer 6, or the last layer of the model used before) and the stock slider refuses it ("Value 6 is greater than
maximum value 2"), so the user saw "Error" for a redraw that would have drawn the last layer a moment later
anyway. This slider reads such a value as the last layer, which is what the update sets. A value below the first
layer is still refused here, and a fraction by `controls.layer_index`: no stale page sends either.

Gradio keeps the class when it rebuilds a component from an update (`block.__class__(**kwargs)`), so the rule holds
for every session's fitted copy; `is_template` makes the browser draw it with Gradio's own slider.
"""
from __future__ import annotations

import gradio as gr


class LayerSlider(gr.Slider):
    """gr.Slider whose preprocess maps a value above `maximum` to `maximum` (see the module docstring)."""

    is_template = True  # the page draws it as a "slider"

    def preprocess(self, payload: float | None) -> float | None:
        if payload is not None and self.maximum is not None and payload > self.maximum:
            payload = self.maximum
        return super().preprocess(payload)
