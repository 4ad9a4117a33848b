"""Every request body is bounded, not only uploads: an image sent inline (a base64 `data:` URL in an API call's
JSON, which Gradio decodes and stores) passed `--max-upload-mb` before. Against the running app (tiny model,
`--max-upload-mb 1`), on 127.0.0.1, stopped by the fixture."""
from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from webapp import request_limit
from webapp.bundled import EXAMPLES_DIR
from webapp.served import app_process

LIMIT_MB = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py --max-upload-mb 1` -> (url, Gradio's upload folder)."""
    folder = tmp_path_factory.mktemp("request-limit")
    uploads = folder / "gradio"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(uploads)}
    with app_process(["--model", "tiny", "--no-compile", "--max-upload-mb", str(LIMIT_MB)], folder / "server.log",
                     env, timeout=180) as app:
        yield app.url, uploads


def _png_data_url(side: int) -> tuple[str, int]:
    """A PNG of random pixels (it does not compress) as a data: URL -> (URL, the PNG's size in bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(), buffer.tell()


def _analyze_call(url: str, data_url: str) -> bytes:
    """The JSON of a queued call to the page's /analyze with the image inline, as any HTTP client may send it."""
    config = json.load(urllib.request.urlopen(f"{url}config", timeout=60))
    fn_index = next(i for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "analyze")
    image = {"path": None, "url": data_url, "orig_name": "inline.png", "meta": {"_type": "gradio.FileData"}}
    return json.dumps({"data": [image, "tiny"], "fn_index": fn_index, "session_hash": uuid.uuid4().hex[:11],
                       "event_data": None, "trigger_id": None}).encode()


def _post(url: str, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    """POST `body` as a careful client sends a large one: headers first with `Expect: 100-continue`, the body only
    once the server asks for it. A server that refuses from the headers answers at once, and the test reads that
    answer rather than a connection reset while it was still sending (what a plain POST may get)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest("POST", f"/{path}")
        for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Expect", "100-continue")):
            connection.putheader(name, value)
        connection.endheaders()
        first = connection.sock.recv(4096, socket.MSG_PEEK)  # "100 Continue", or the answer itself
        if first.startswith(b"HTTP/1.1 100"):
            connection.sock.recv(len(first.split(b"\r\n\r\n")[0]) + 4)  # past the interim answer
            connection.send(body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _stored(folder) -> set[str]:
    return {str(p) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_the_bound_is_a_file_at_the_upload_limit_sent_as_base64_and_its_json():
    assert request_limit.max_body_bytes(1.0) == 1398102 + 65536  # ceil(2**20 * 4 / 3) + 64 KiB
    assert request_limit.max_body_bytes(20.0) == 27962027 + 65536
    with pytest.raises(ValueError, match="max_upload_mb must be positive, got 0"):
        request_limit.max_body_bytes(0)


def test_an_image_sent_inline_over_the_upload_limit_is_refused_before_it_is_queued(server):
    url, uploads = server
    data_url, png_bytes = _png_data_url(1100)
    assert png_bytes > LIMIT_MB * 2**20  # the file itself is over the limit, as an upload of it would be
    before = _stored(uploads)
    status, body = _post(url, "gradio_api/queue/join", _analyze_call(url, data_url), "application/json")
    assert status == 413 and "event_id" not in body  # refused from its headers: no call was queued
    assert _stored(uploads) == before


def test_an_image_sent_inline_under_the_upload_limit_is_queued(server):
    url, _ = server
    data_url = "data:image/jpeg;base64," + base64.b64encode((EXAMPLES_DIR / "shapes.jpg").read_bytes()).decode()
    status, body = _post(url, "gradio_api/queue/join", _analyze_call(url, data_url), "application/json")
    assert status == 200 and "event_id" in json.loads(body)


def test_a_body_that_does_not_say_its_length_is_counted_as_it_arrives():
    """In process (Starlette's TestClient, no socket): a server that refuses a chunked body part-way closes the
    connection while a real client may still be sending, so over a socket the answer can be lost to a reset."""
    from gradio.routes import App
    from starlette.testclient import TestClient

    from webapp.models import ModelCache
    from webapp.page import build_demo
    demo = build_demo(ModelCache(optimize=False), "tiny")
    app = App.create_app(demo, app_kwargs=request_limit.app_kwargs(LIMIT_MB))
    client = TestClient(app)

    def post_chunked(chunks: int) -> int:  # that many 64 KiB chunks of no valid JSON, sent without a length
        response = client.post("/gradio_api/queue/join", content=(b"x" * 65536 for _ in range(chunks)),
                               headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        return response.status_code

    assert post_chunked(40) == 413  # 2.5 MB: refused part-way
    assert post_chunked(2) == 422  # 128 KiB: read whole, then found not to be JSON


def test_an_upload_far_over_the_limit_is_refused_before_it_is_read(server):
    """Over the bound an upload is refused from its headers; between --max-upload-mb and the bound Gradio's own
    check answers (tests/test_app_limits.py). Nothing is stored either way."""
    url, uploads = server
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + os.urandom(3 << 20) + \
        f"\r\n--{boundary}--\r\n".encode()
    before = _stored(uploads)
    status, _ = _post(url, "gradio_api/upload", body, f"multipart/form-data; boundary={boundary}")
    assert status == 413
    assert _stored(uploads) == before
