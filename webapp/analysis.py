"""The only handlers that run the model: a new image, or a new model for the current image.

They never leave the page in an error state: a file that is not an image or a model that cannot load is
reported once, whole, in a toast, and the page stays usable (the upload box empty and ready, the model menu
on the model actually in use).
"""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from .models import LoadedModel, ModelCache, describe
from .session import Session, analyze
from .store import InspectionStore, PageLimitError

LOAD_FAILED = "Could not load the model"
SERVER_FULL = "The server is full"


def tell(title: str, message: str) -> None:
    """One toast that stays until closed (the message may hold a URL or a path to copy). The toast renders
    HTML, so the message is escaped: an error text such as "<urlopen error ...>" would swallow the rest."""
    gr.Warning(html.escape(message, quote=False), duration=None, title=title)


def _load(models: ModelCache, name: str) -> LoadedModel | None:
    try:
        return models.get(name)
    except (RuntimeError, ValueError, OSError) as err:
        tell(LOAD_FAILED, f"{LOAD_FAILED} {name!r}: {err}")
        return None


def status_line(loaded: LoadedModel, session: Session | None) -> str:
    return f"{describe(loaded)} {session.size_note()}" if session else describe(loaded)


def analyze_handler(models: ModelCache, store: InspectionStore | None = None):
    """fn(image path, model name, owner=None) -> (session, the analysed image for the input, status). `owner`: the
    Gradio session of the page, whose earlier analyses leave the store. `store`: where the inspections are kept
    (a store of its own by default).

    On failure: (None, None, status): the views empty, the upload box back to its drop zone.
    """
    store = InspectionStore() if store is None else store

    def analyze_image(path, model_name: str, owner: str | None = None):
        if path is None:
            tell("No image", "No image was received: upload a picture or pick an example.")
            return None, None, gr.skip()
        loaded = _load(models, model_name)
        if loaded is None:
            return None, None, gr.skip()
        try:
            session = analyze(models, store, loaded, path, owner=owner)
        except ValueError as err:  # named by the upload's own file name, not the server's copy of it
            tell("Could not read the image", str(err).replace(str(path), Path(path).name))
            return None, None, status_line(loaded, None)
        except PageLimitError as err:
            tell(SERVER_FULL, f"Your image was not analysed: {err}.")
            return None, None, status_line(loaded, None)
        # The input shows exactly the analysed image (upright, downscaled), so clicks arrive in its pixels.
        return session, session.image, status_line(loaded, session)
    return analyze_image


def switch_handler(models: ModelCache):
    """fn(menu name, menu name in use, session) -> (session re-run with that model or None without an image,
    status, menu value, menu name in use).

    Wired to the menu's change event, which also fires when this handler puts the menu back: choosing the
    name already in use does nothing.
    """
    def switch_model(model_name: str, current: str, session: Session | None):
        if model_name == current:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        loaded = _load(models, model_name)
        if loaded is None:
            return gr.skip(), gr.skip(), current, gr.skip()  # the menu goes back to the model in use
        if session is not None:  # the same analysed image, the upload's size remembered for the table
            try:
                session = analyze(models, session.store, loaded, session.image, session.upload_size, session.owner)
            except PageLimitError as err:
                tell(SERVER_FULL, f"The image was not analysed with {model_name}: {err}.")
                return gr.skip(), gr.skip(), current, gr.skip()
        return session, status_line(loaded, session), gr.skip(), model_name
    return switch_model


def status_handler(models: ModelCache, name: str):
    """fn() -> status line on page load (loads the default model if it is not loaded yet)."""
    def status():
        try:
            return status_line(models.get(name), None)
        except (RuntimeError, ValueError, OSError) as err:
            return (f"**Model `{name}` could not be loaded:** {html.escape(str(err), quote=False)}. "
                    "Choose another one in the menu.")
    return status


def readable_upload(component: gr.Image) -> gr.Image:
    """Let a corrupt upload reach the handler as its plain file: gradio opens an upload with PIL before any
    handler runs, and a failure there would leave the upload box in an error state with no drop zone."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:  # the handler reports it and empties the box
            return None if payload is None else payload.path

    component.preprocess = preprocess
    return component
