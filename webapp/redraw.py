"""Views redrawn when a control changes, wired so that every control event has exactly one listener.

Why one: Gradio 6.31's page, when a listener in "always_last" mode finishes and a trigger arrived meanwhile,
dispatches the whole trigger event again, re-running every listener bound to it, not just the one that waited.
The colormap had four (decoder gallery, chosen query, encoder map, layer strip), and a pick in a dropdown fires
its .input twice: the second firing deferred the listeners the first had started; each one finishing re-dispatched
the event, which deferred the others still running, whose finishing re-dispatched it again, and so on. The
listeners re-triggered each other without end (about two requests a second, measured with a browser), and the
views they draw sat behind a spinner. The threshold (three views) and the decoder's layer and head (two) had the
same trap. With one listener per trigger event, the re-dispatch re-runs only that listener, once.

So tabs register what they redraw with `AppContext.redraw`; `wire` groups the registrations by trigger and binds
one listener per group of triggers that redraws every view concerned. Each registration also keeps its own
endpoint for scripts (gradio_client), bound to no trigger, under its api_name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr


@dataclass(frozen=True)
class Redraw:
    """One view's redraw: `fn(*inputs) -> outputs` (a single value for a single output), on any of `triggers`
    (event listeners such as `slider.input`)."""

    triggers: tuple
    fn: Callable
    inputs: tuple
    outputs: tuple
    api_name: str


def _trigger_key(trigger) -> tuple[int, str]:
    return trigger.__self__._id, trigger.event_name


def unique(components) -> list:
    """Components in first-seen order, each once (components compare by identity here)."""
    seen, out = set(), []
    for c in components:
        if id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def _run_one(r: Redraw, values: tuple, pick: list[int], problems: list[str]) -> list:
    """One redraw's outputs, as a list; a gr.Error (a bad value typed into one view) leaves its own outputs as
    they were and is collected in `problems` for one warning."""
    try:
        result = r.fn(*(values[i] for i in pick))
    except gr.Error as err:
        problems.append(str(err.message))
        result = tuple(gr.skip() for _ in r.outputs) if len(r.outputs) > 1 else gr.skip()
    return list(result) if len(r.outputs) > 1 else [result]


def _picks(redraws: list[Redraw], inputs: list) -> list[list[int]]:
    where = {id(c): i for i, c in enumerate(inputs)}
    return [[where[id(c)] for c in r.inputs] for r in redraws]


def all_views(redraws: list[Redraw], inputs: list) -> Callable:
    """fn(*values of `inputs`) -> every redraw's outputs, in order. A redraw that fails (a bad value typed into one
    view) leaves its own outputs as they were and is reported in a warning; the other views still redraw."""
    picks = _picks(redraws, inputs)

    def redraw_views(*values):
        out, problems = [], []
        for r, pick in zip(redraws, picks):
            out.extend(_run_one(r, values, pick, problems))
        if problems:
            gr.Warning(" ".join(problems))
        return tuple(out)
    redraw_views.__name__ = "redraw_" + "_".join(r.api_name for r in redraws)
    return redraw_views


def wire(redraws: list[Redraw]) -> None:
    """Bind each registration's script endpoint, then one page listener per group of triggers that share the
    same redraws (e.g. opacity and colormap: the four heatmap views)."""
    by_trigger: dict[tuple, list[int]] = {}
    triggers: dict[tuple, object] = {}
    for i, r in enumerate(redraws):
        gr.on([], r.fn, list(r.inputs), list(r.outputs), api_name=r.api_name)
        for t in r.triggers:
            by_trigger.setdefault(_trigger_key(t), []).append(i)
            triggers[_trigger_key(t)] = t
    groups: dict[tuple[int, ...], list] = {}
    for key, indices in by_trigger.items():
        groups.setdefault(tuple(indices), []).append(triggers[key])
    for indices, group_triggers in groups.items():
        chosen = [redraws[i] for i in indices]
        outputs = [c for r in chosen for c in r.outputs]
        assert len(unique(outputs)) == len(outputs), "two redraws of one trigger write the same component"
        inputs = unique(c for r in chosen for c in r.inputs)
        fn = chosen[0].fn if len(chosen) == 1 else all_views(chosen, inputs)
        gr.on(group_triggers, fn, inputs if len(chosen) > 1 else list(chosen[0].inputs), outputs,
              trigger_mode="always_last", api_visibility="undocumented")
