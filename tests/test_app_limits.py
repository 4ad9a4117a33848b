"""A page open to strangers, against the running app: the upload size limit, the cap on pages holding an
analysis, an image of too many pixels refused from its header; and the command line's rules on where the page may
read from (never the whole file system) and on being public behind a reverse proxy.

The server listens on 127.0.0.1 and is stopped by the tests; its upload folder is the test's own.
"""
from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from webapp import cli, export
from webapp.bundled import EXAMPLES_DIR
from webapp.model_sources import SourcePolicy, allowed_roots
from webapp.served import app_process

gradio_client = pytest.importorskip("gradio_client")

EXAMPLE = EXAMPLES_DIR / "shapes.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` (tiny model) with a 1 MB upload limit and room for two pages; Gradio's upload folder is a
    folder of the test's own. Yields (url, process, upload folder)."""
    folder = tmp_path_factory.mktemp("limits")
    uploads = folder / "gradio"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "GRADIO_TEMP_DIR": str(uploads)}
    args = ["--model", "tiny", "--no-compile", "--max-upload-mb", "1", "--max-sessions", "2"]
    with app_process(args, folder / "server.log", env, timeout=180) as app:
        yield app.url, app.process, uploads


def _post_upload(url: str, name: str, payload: bytes) -> tuple[int, str]:
    """POST one file to /gradio_api/upload as a browser does (multipart) -> (HTTP status, body)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _stored(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def test_an_upload_over_the_limit_is_refused_and_nothing_is_stored(server):
    url, _, uploads = server
    before = _stored(uploads)
    # 1.2 MB of random bytes, the limit is 1 MB: Gradio's own check (a body far over it is refused while it is read,
    # tests/test_request_limit.py)
    status, body = _post_upload(url, "big.bin", os.urandom(1200 << 10))
    assert status == 413 and "maximum allowed size" in body
    assert _stored(uploads) == before
    status, body = _post_upload(url, "small.bin", os.urandom(100_000))  # under the limit: stored where we look
    assert status == 200
    stored = {path: size for path, size in _stored(uploads).items() if path not in before}
    assert list(stored.values()) == [100_000] and stored.popitem()[0] in body


def _analyse(client, image: Path) -> tuple[object, list[str]]:
    """/analyze as the page calls it -> (the image the page shows, or None; the toasts it was sent)."""
    job = client.submit(gradio_client.handle_file(str(image)), "tiny", api_name="/analyze")
    shown, _status = job.result(timeout=300)
    updates = []
    while not job.communicator.updates.empty():
        updates.append(job.communicator.updates.get_nowait())
    return shown, [u.log[0] for u in updates if getattr(u, "log", None)]


def _client(url: str):
    return gradio_client.Client(url, verbose=False, download_files=False, analytics_enabled=False)


def test_pages_past_the_session_cap_are_told_to_come_back_later(server):
    url, _, _ = server
    first, second, third = _client(url), _client(url), _client(url)
    assert _analyse(first, EXAMPLE)[0] is not None
    assert _analyse(second, EXAMPLE)[0] is not None
    shown, toasts = _analyse(third, EXAMPLE)
    assert shown is None
    assert any(t.startswith("Your image was not analysed: this server is already showing analyses to 2 pages, the"
                            " most it takes at once (set by whoever runs it with --max-sessions 2)") for t in toasts)
    assert _analyse(first, EXAMPLE)[0] is not None  # a page already counted goes on


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_an_image_of_144_megapixels_is_refused_without_the_server_growing(server, tmp_path):
    url, proc, _ = server
    huge = tmp_path / "huge.png"
    Image.new("1", (12000, 12000), 1).save(huge)  # a few hundred KB; 576 MB once decoded to RGB
    client = _client(url)
    _analyse(client, EXAMPLE)  # whatever a first analysis costs is spent before measuring
    before = _peak_rss_kb(proc.pid)
    shown, toasts = _analyse(client, huge)
    grown = _peak_rss_kb(proc.pid) - before
    assert shown is None
    assert any("huge.png' is 12000x12000 pixels (144.0 megapixels), more than the 40 megapixels" in t
               for t in toasts), toasts
    assert grown < 100 * 1024, f"the server grew by {grown / 1024:.0f} MB"


def test_started_from_the_file_system_root_the_app_needs_a_data_root(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir("/")
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(["--model", "tiny"])
    assert stop.value.code == 2
    assert "started from /, the file system's root: the page could open any file on this machine. Start it from" \
           " the folder that holds your data, or name that folder with --data-root FOLDER" in capsys.readouterr().err
    args = cli.parse_args(["--model", "tiny", "--data-root", str(tmp_path)])
    roots = allowed_roots(EXAMPLES_DIR, tuple(args.data_root), Path.cwd())
    assert roots == (EXAMPLES_DIR, tmp_path)  # / itself is not among them
    (tmp_path / "model.pth").write_bytes(b"")
    policy = SourcePolicy(roots)
    assert policy.check(str(tmp_path / "model.pth")) == str(tmp_path / "model.pth")
    with pytest.raises(ValueError, match="outside the folders this app may read models from"):
        policy.check("/etc/hostname")


def test_elsewhere_the_start_folder_is_allowed(tmp_path):
    assert allowed_roots(EXAMPLES_DIR, (), tmp_path) == (EXAMPLES_DIR, tmp_path)


def test_public_turns_off_what_a_loopback_page_may_do(tmp_path):
    assert cli.downloads_allowed(cli.parse_args(["--model", "tiny"]))  # loopback: the person at the machine
    public = cli.parse_args(["--model", "tiny", "--public"])
    assert public.host == "127.0.0.1" and not cli.downloads_allowed(public)
    assert cli.downloads_allowed(cli.parse_args(["--model", "tiny", "--public", "--allow-hub-download"]))


def test_the_limits_have_their_defaults_and_refuse_non_positive_values(capsys):
    args = cli.parse_args(["--model", "tiny"])
    assert (args.max_sessions, args.max_upload_mb, args.files_minutes) == (100, 20.0, 60.0)
    assert cli.delete_cache(60) == (900, 3600) and cli.delete_cache(2) == (60, 120)
    with pytest.raises(SystemExit):
        cli.parse_args(["--model", "tiny", "--max-sessions", "0"])
    assert "--max-sessions 0: must be a positive number" in capsys.readouterr().err


def test_old_exported_figures_are_deleted_when_a_new_one_is_written(tmp_path, monkeypatch):
    import matplotlib.figure
    monkeypatch.setattr(export, "EXPORT_DIR", tmp_path)
    old, recent = tmp_path / "old.png", tmp_path / "recent.png"
    old.write_bytes(b"x")
    recent.write_bytes(b"x")
    os.utime(old, (time.time() - export.EXPORT_MAX_AGE_S - 5,) * 2)
    new = export.write_png(matplotlib.figure.Figure(figsize=(1, 1)), "view")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["recent.png", Path(new).name])


def test_gradio_s_own_state_of_a_page_fits_what_the_budget_sets_aside_for_it():
    """Gradio copies the page's configuration for every page it keeps: measured here with tracemalloc, it must
    stay under GRADIO_PAGE_MB, the share of --memory-budget-mb the app sets aside for each page state."""
    import gc
    import tracemalloc

    from gradio.state_holder import SessionState

    from webapp.models import ModelCache
    from webapp.page import build_demo
    demo = build_demo(ModelCache(optimize=False), "tiny")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        states = [SessionState(demo) for _ in range(10)]
        gc.collect()
        grown = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert len(states) == 10 and 100_000 < grown / 10 < cli.GRADIO_PAGE_MB * 2**20


def test_the_budget_covers_gradio_s_page_states_and_must_leave_room_for_analyses(capsys):
    args = cli.parse_args(["--model", "tiny", "--memory-budget-mb", "100", "--max-sessions", "50"])
    assert cli.store_budget_bytes(args) == round((100 - 2 * 50 * 0.5) * 2**20)  # 50 MB for images and analyses
    with pytest.raises(SystemExit):
        cli.parse_args(["--model", "tiny", "--memory-budget-mb", "30", "--max-sessions", "50"])
    assert ("--memory-budget-mb 30 is too small for --max-sessions 50: Gradio's own state for 100 pages takes 50 MB"
            " of it; raise the budget or lower --max-sessions") in capsys.readouterr().err
