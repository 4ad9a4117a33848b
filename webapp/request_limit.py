"""How large a request body the server reads.

Why: Gradio's `max_file_size` bounds only files posted to /gradio_api/upload. An API call may also carry its image
inline, as a base64 `data:` URL in the call's JSON, and Gradio decodes and stores that too: before this limit a
3.6 MB PNG went through a server started with `--max-upload-mb 1` (a 4.8 MB POST to /gradio_api/queue/join,
queued, analysed and its views stored). FastAPI's own `max_body_size` (Starlette's RequestBodyLimitMiddleware,
FastAPI >= 0.165) bounds every request's body while it is read, so a larger one is refused with HTTP 413 before
anything is decoded or stored, whether or not it declares its length. The bound is what one file at the upload
limit takes inline (base64: 4/3 of its size) and room for the call's JSON, so nothing the upload allows is refused
when sent inline. Uploads keep Gradio's own check, and its message, up to that bound; beyond it, as for any
body, the answer is Starlette's own "413 Content Too Large" (the page itself checks a file's size before sending it:
only API clients get there, and HTTP 413 is what they expect).
"""
from __future__ import annotations

import math

from .store import MB

JSON_ROOM = 64 * 1024  # bytes of a call's JSON beside its inline file: the other inputs, ids, the field names


def max_body_bytes(max_upload_mb: float) -> int:
    """The largest request body read: a file of `max_upload_mb` as base64, plus JSON_ROOM."""
    if not max_upload_mb > 0:
        raise ValueError(f"max_upload_mb must be positive, got {max_upload_mb!r}")
    return math.ceil(max_upload_mb * MB * 4 / 3) + JSON_ROOM


def app_kwargs(max_upload_mb: float) -> dict:
    """Keyword arguments for Gradio's `launch(app_kwargs=...)`: they reach the FastAPI app Gradio builds."""
    return {"max_body_size": max_body_bytes(max_upload_mb)}
