"""webapp.gradio_cache: Gradio's image cache written once per content, whole, never truncated under a reader."""
from __future__ import annotations

import os

import gradio as gr
import numpy as np
import pytest
from gradio import processing_utils
from PIL import Image

from webapp import gradio_cache
from webapp.models import ModelCache
from webapp.page import build_demo

OLD = 946684800  # 2000-01-01: an mtime no write made today can leave


def _picture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (40, 60, 3), dtype=np.uint8)


def test_the_same_picture_twice_leaves_the_first_file_untouched(tmp_path):
    image = Image.fromarray(_picture())
    path = gradio_cache.save_pil_once(image, str(tmp_path), format="jpeg")
    os.utime(path, (OLD, OLD))  # a browser may be downloading it now
    assert gradio_cache.save_pil_once(image, str(tmp_path), format="jpeg") == path
    assert os.stat(path).st_mtime == OLD, "the file was written again"
    assert Image.open(path).size == (60, 40)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_the_same_path_and_bytes_as_gradio_and_no_partial_files_left(tmp_path, fmt):
    image = Image.fromarray(_picture(1))
    ours = gradio_cache.save_pil_once(image, str(tmp_path / "ours"), name="view", format=fmt)
    theirs = gradio_cache.GRADIO_SAVE(image, str(tmp_path / "theirs"), name="view", format=fmt)
    assert os.path.relpath(ours, tmp_path / "ours") == os.path.relpath(theirs, tmp_path / "theirs")
    assert open(ours, "rb").read() == open(theirs, "rb").read()
    assert [p.name for p in (tmp_path / "ours").rglob("*") if p.is_file()] == [f"view.{fmt}"]


def test_the_page_installs_it_for_images_galleries_and_arrays():
    build_demo(ModelCache(compile_backbone=False), "tiny")
    assert processing_utils.save_pil_to_cache is gradio_cache.save_pil_once
    component = gr.Image(format="jpeg")
    first = component.postprocess(_picture(2)).path  # numpy arrays go through save_img_array_to_cache
    os.utime(first, (OLD, OLD))
    assert component.postprocess(_picture(2)).path == first and os.stat(first).st_mtime == OLD
    gallery = gr.Gallery(format="png").postprocess([Image.fromarray(_picture(3))])
    os.utime(gallery.root[0].image.path, (OLD, OLD))
    gr.Gallery(format="png").postprocess([Image.fromarray(_picture(3))])
    assert os.stat(gallery.root[0].image.path).st_mtime == OLD
