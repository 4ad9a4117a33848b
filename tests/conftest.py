"""Shared fixtures: tiny models so the suite runs in minutes on 2 CPU cores, and nothing touches the network.

Under CI=true a skipped test fails instead (a missing chromium, Playwright or ../shared/reference must not
pass silently), except tests marked ``cpu_dependent``: those skip on CPUs without the feature, listed by -rs.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path

# Tiny models gain nothing from compiling, and every inference twin would start a compile thread: the suite's CPU
# goes to the tests (set before detr_core is imported; subprocesses inherit it).
os.environ.setdefault("DETR_LENS_COMPILE", "0")

import numpy as np
import pytest
import torch

import detr_core

TINY_PREPROCESS = detr_core.PreprocessConfig(min_size=128, max_size=213)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skip means a required resource is missing: report it as a failure that names it."""
    report = (yield).get_result()
    if report.skipped and in_ci() and not hasattr(report, "wasxfail") \
            and item.get_closest_marker("cpu_dependent") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (f"CI=true and this test would skip, so something it needs is missing: {reason}. "
                           "Install or provide it (or mark the test cpu_dependent if it depends on the CPU).")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole test file skipped at import (pytest.importorskip of transformers, Playwright...)."""
    report = (yield).get_result()
    if report.skipped and in_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (f"CI=true and {collector.nodeid} would be skipped whole, so something it needs is "
                           f"missing: {reason}. Install or provide it.")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run fastest on one intra-op thread, and on a shared 2-core machine extra threads
    oversubscribe the cores (a tiny model's step was measured 10-30x slower with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def _no_empty_download_folders():
    """gradio_client (2.x) downloads each file a server returns through a new folder in the temp dir, named by 40
    hex digits, and leaves it there empty: about 140 a run of this suite. The ones this session made go at its end."""
    temp = Path(tempfile.gettempdir())
    before = set(os.listdir(temp))
    yield
    for name in set(os.listdir(temp)) - before:
        folder = temp / name
        if re.fullmatch(r"[0-9a-f]{40}", name) and folder.is_dir() and not any(folder.iterdir()):
            with contextlib.suppress(OSError):  # filled or removed meanwhile: not ours to take
                folder.rmdir()


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Any connection to a non-loopback address fails the test instead of reaching the network."""
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")) \
                and sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def tiny_model():
    """A random tiny DETR (ResNet-18, d=32, 2+2 layers, 10 queries, 5 classes) in eval mode."""
    torch.manual_seed(0)
    return detr_core.build_model(detr_core.tiny_config(), TINY_PREPROCESS).eval()


@pytest.fixture(scope="module")
def module_tiny_model():
    """The same tiny DETR, built once per test module (for modules whose tests only read it)."""
    torch.manual_seed(0)
    return detr_core.build_model(detr_core.tiny_config(), TINY_PREPROCESS).eval()


@pytest.fixture
def rgb_image():
    """A 120x180 RGB uint8 image with some structure."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 180, 3), dtype=np.uint8)
    img[30:80, 40:120] = (220, 40, 40)
    return img
