"""The only handlers that run the model: a new image, or a new model for the current image."""
from __future__ import annotations

import gradio as gr

from .models import ModelCache, describe
from .session import Session, analyze

UNREADABLE = ("That file could not be read as an image. Upload a JPEG, PNG, WebP, BMP or TIFF picture.")


def _load(models: ModelCache, name: str):
    try:
        return models.get(name)
    except (RuntimeError, ValueError, OSError) as err:
        raise gr.Error(f"Could not load the model {name!r}: {err}") from None


def status_line(loaded, session: Session | None) -> str:
    note = f" Image {session.note}." if session and session.note else ""
    return f"{describe(loaded)}{note}"


def analyze_handler(models: ModelCache):
    """fn(image path, model name) -> (session, the analysed image for the input, status)."""
    def analyze_image(path, model_name: str):
        if path is None:
            raise gr.Error("No image was received: upload a picture or pick an example.")
        loaded = _load(models, model_name)
        try:
            session = analyze(loaded.model, loaded.source, path)
        except ValueError as err:
            raise gr.Error(f"{UNREADABLE} ({err})") from None
        # The input shows exactly the analysed image (upright, downscaled), so clicks arrive in its pixels.
        return session, session.inspection.image, status_line(loaded, session)
    return analyze_image


def switch_handler(models: ModelCache):
    """fn(model name, session) -> (session re-run with that model, or None without an image; status)."""
    def switch_model(model_name: str, session: Session | None):
        loaded = _load(models, model_name)
        if session is None:
            return None, status_line(loaded, None)
        session = Session(analyze(loaded.model, loaded.source, session.inspection.image).inspection,
                          loaded.source, session.note)
        return session, status_line(loaded, session)
    return switch_model


def status_handler(models: ModelCache, name: str):
    """fn() -> status line on page load (loads the default model if it is not loaded yet)."""
    def status():
        try:
            return status_line(models.get(name), None)
        except (RuntimeError, ValueError, OSError) as err:
            return f"**Model {name!r} could not be loaded:** {err}. Choose another one in the menu."
    return status


def readable_upload(component: gr.Image) -> gr.Image:
    """Make a corrupt upload a plain gr.Error: gradio opens the file with PIL before any handler runs."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception:
            raise gr.Error(UNREADABLE) from None

    component.preprocess = preprocess
    return component
