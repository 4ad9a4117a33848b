"""The app served on a free loopback port for a while, and always stopped: as a child process (`python app.py`,
what a user starts) or in this process (a page built by `build_demo`). The tests, benchmarks and screenshot
scripts that drive a real server all start it here, so the port, the wait and the stopping are written once.
Only 127.0.0.1: nothing here listens on another address."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr

REPO = Path(__file__).resolve().parents[1]  # where app.py is
LOG_TAIL = 3000  # characters of the server's log quoted when it did not come up


@dataclass(frozen=True)
class ServedApp:
    """A running `python app.py`: its URL ("http://127.0.0.1:PORT/"), port and process."""

    url: str
    port: int
    process: subprocess.Popen


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 120.0,
                  log: Path | None = None) -> float:
    """Seconds until `url` answers. RuntimeError if `process` exits first, TimeoutError after `timeout` s; both
    quote the end of `log` when given."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"app.py did not answer at {url} within {timeout:.0f} s{_tail(log)}")


@contextmanager
def app_process(args: list[str] | tuple[str, ...], log: Path | None = None, env: dict | None = None,
                timeout: float = 120.0) -> Iterator[ServedApp]:
    """`python app.py --port PORT *args` run from the repository, its output in `log` (None: discarded); yields
    once the page answers; terminated (killed after 15 s) on the way out, also after an error."""
    port = free_port()
    out = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_up(url, process, timeout, log)
            yield ServedApp(url, port, process)
        finally:
            stop(process)
    finally:
        if log is not None:
            out.close()


def stop(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Terminate, then kill if it is still there after `grace_s`."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def launched(demo: gr.Blocks) -> Iterator[str]:
    """`demo` served from this process (queue on) at http://127.0.0.1:PORT/, which it yields; closed afterwards."""
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return f"; the end of its log ({log}):\n{log.read_text(errors='replace')[-LOG_TAIL:]}"
