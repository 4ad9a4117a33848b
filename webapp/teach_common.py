"""What the teaching tabs share: the model behind a session (for the views that re-run it), query choices, and
a plain message for a view whose data belongs to an earlier image."""
from __future__ import annotations

import gradio as gr
import numpy as np
import torch

from detr_core import Inspection

from .models import ModelCache
from .session import Session

def session_model(models: ModelCache, session: Session) -> torch.nn.Module:
    """The model that analysed `session`'s image (the resolved source, never "auto")."""
    try:
        return models.get(session.model_source).model
    except (RuntimeError, ValueError, OSError) as err:
        raise gr.Error(f"Could not load the model {session.model_source!r}: {err}") from None


def query_choices(ins: Inspection, limit: int = 100) -> list[tuple[str, int]]:
    """Dropdown (label, query) pairs, most confident first: "query 7: cat 0.98"."""
    probs = ins.probabilities  # [Q, C+1]
    scores = probs[:, :-1].max(-1)  # [Q]
    order = np.argsort(-scores, kind="stable")[:limit]
    return [(f"query {q}: {ins.class_name(int(probs[q, :-1].argmax()))} {scores[q]:.2f}", int(q)) for q in order]


def chosen_query(ins: Inspection, query) -> int:
    """A dropdown value -> a valid query index (the best one when nothing is chosen yet or it is out of range)."""
    if query is None or not str(query).lstrip("-").isdigit() or not 0 <= int(query) < ins.num_queries:
        return query_choices(ins, 1)[0][1]
    return int(query)


def query_dropdown_update(ins: Inspection, query) -> gr.Dropdown:
    """The query dropdown refitted to a new inspection, keeping the chosen query if it still exists."""
    return gr.Dropdown(choices=query_choices(ins), value=chosen_query(ins, query))
