"""Images the page sends are written to Gradio's cache once, whole, and never rewritten while being read.

Why: Gradio (6.31; checked by hand: a second save of the same picture changes the file's mtime) stores every
image a handler returns at a path named by the hash of its encoded bytes and writes it with `Path.write_bytes`,
which first truncates the file. The page redraws often, and two redraws that
produce the same picture (a control moved back, a redraw right after an analysis that drew the same view) write
the same path again while the browser may still be downloading it: the server has announced the file's length,
then finds it empty or short ("h11 LocalProtocolError: Too little data for declared Content-Length" in the
server's log) and the browser keeps a broken image under a URL it will not fetch again. A path named by its
content already holds those bytes, so a file that exists is left alone, and a new one is written under a
temporary name and renamed into place (a rename is atomic: a reader sees the whole file or none).

`install()` swaps this in for `gradio.processing_utils.save_pil_to_cache`, through which Gradio's Image, Gallery
and AnnotatedImage save PIL images and numpy arrays alike; the path it returns is the one Gradio would return.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils
from PIL import Image

GRADIO_SAVE = processing_utils.save_pil_to_cache  # Gradio's own, kept for comparison in the tests

def save_pil_once(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's save_pil_to_cache (same arguments, same path returned), without rewriting an existing file."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():  # named by its content: it holds these bytes already
        return str(path)
    folder.mkdir(exist_ok=True, parents=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}-", suffix=".part", delete=False) as part:
        part.write(data)
    os.replace(part.name, path)
    return str(path)


def install() -> None:
    """Make Gradio save images through save_pil_once (idempotent; the app calls it when it builds a page)."""
    processing_utils.save_pil_to_cache = save_pil_once
