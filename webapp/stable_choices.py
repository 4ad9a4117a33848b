"""Selector values that stay the same when the page's wording changes.

Every selector's choices are (label, value) pairs: the label is what the page shows and may be reworded; the value
is what handlers receive and what a script (gradio_client) passes, and never changes. Earlier versions used other
spellings: the head selector's values were "mean", "max", "grid", "3" at first, then its labels "mean over heads",
"head 3"...; the feature level's values were its labels ("all levels", "level 2 (stride 16)"). Today's values are
the short ones ("mean", "3"; "all", "2": a value must not depend on the model's strides), and every older spelling
is still accepted, mapped to today's value, so that no scripted client breaks.

Those two Dropdowns allow custom values, since Gradio refuses any other value outside the choices (an older
spelling, or a head or level a script names before the page has fitted the choices to its model); the parse
functions check every value against the model. The Radios (direction, display) keep the values they have always had,
which equal their labels today: a Radio takes no custom values, so no other spelling could ever reach it (and
subclassing a Gradio component to allow some writes a .pyi stub beside the module at import).
"""
from __future__ import annotations

from typing import Mapping


def pairs(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """{value: label} -> Gradio choices [(label, value)], in the mapping's order."""
    return [(label, value) for value, label in labels.items()]


def former_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """{value: label} -> {label: value}: for selectors whose values were their labels before."""
    return {label: value for value, label in labels.items()}


def canonical(value, aliases: Mapping[str, str]):
    """An older spelling -> today's value; anything else unchanged (the caller checks it)."""
    return aliases.get(value, value) if isinstance(value, str) else value
