"""The command lines as a user meets them: `python app.py` refusing what cannot work before it starts, the
scripting example of docs/app.md against a real server, `python -m viz.figures`, and what the package ships.

Servers listen on 127.0.0.1 only and are stopped by the tests.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path, PurePosixPath

import pytest

from webapp import cli
from webapp.models import NAMES
from webapp.served import app_process, free_port

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def shapes_server(tmp_path_factory):
    """`python app.py --model shapes` (the bundled offline model) on a free loopback port."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with app_process(["--model", "shapes", "--no-compile"], log, ENV) as app:
        yield app.port, app.url


@pytest.mark.parametrize("model", ["detr-r5O", "no/such/checkpoint.pth"])
def test_an_unknown_model_is_refused_at_start_with_every_valid_name(model, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", model, "--port", str(free_port())])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert model in error and "checkpoint" in error
    assert all(name in error for name in ("auto", "tiny", "shapes", "untrained", "detr-r50", "detr-r101-dc5"))
    assert set(NAMES) == {"auto", "detr-r50", "detr-r50-dc5", "detr-r101", "detr-r101-dc5", "shapes", "untrained",
                          "tiny", "shapes-deformable"}  # the bundled deformable model: by name, says when not bundled
    assert "shapes-deformable" in error


def test_a_second_app_on_a_busy_port_says_so_in_one_line(shapes_server, capsys):
    """The second start stops before it loads a model or imports gradio (in-process: the same code path as a
    second `python app.py`, which the first one's server makes busy)."""
    port, url = shapes_server
    with pytest.raises(SystemExit) as stop:
        cli.main(["--model", "tiny", "--port", str(port)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"port {port}" in err and "--port" in err, err
    urllib.request.urlopen(url, timeout=5).close()  # the first app is still serving


def _scripting_example() -> str:
    """The python block of docs/app.md's Scripting item, unindented."""
    text = (REPO / "docs" / "app.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())


def test_the_scripting_example_of_the_docs_runs_against_the_offline_model(shapes_server):
    port, url = shapes_server
    code = _scripting_example()
    assert 'Client("http://127.0.0.1:7860/")' in code
    done = subprocess.run([sys.executable, "-c", code.replace("http://127.0.0.1:7860/", url)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "`shapes` (resnet18, 3+3 layers, 8 heads" in done.stdout
    assert "['rank', 'query', 'class', 'score', 'x0', 'y0', 'x1', 'y1']" in done.stdout
    # what the block's last comment promises (shapes.jpg is 384x384 and the model sees 256x256 in 16-px cells)
    assert "pixel (128, 128) -> feature cell row 6/16, column 6/16, encoder layer 3: where this location looks." \
        in done.stdout


def test_viz_figures_runs_without_a_runtime_warning():
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "viz.figures", "--help"], cwd=REPO,
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "RuntimeWarning" not in done.stderr, done.stderr
    assert "python -m viz.figures" in done.stdout


def _glob_matches(path: str, pattern: str) -> bool:
    """setuptools' package-data glob: "*" stays within one folder."""
    path, pattern = PurePosixPath(path), PurePosixPath(pattern)
    return len(path.parts) == len(pattern.parts) and path.match(str(pattern))


def test_the_package_ships_every_bundled_file():
    """A non-editable install carries only the package data pyproject.toml lists: every bundled model file and
    example must match one of its patterns, or the installed app would miss it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, folder in (("detr_core", "assets"), ("webapp", "examples")):
        root = REPO / package
        files = [p.relative_to(root).as_posix() for p in (root / folder).rglob("*") if p.is_file()]
        assert files
        missing = [f for f in files if not any(_glob_matches(f, pattern) for pattern in config[package])]
        assert missing == [], f"{package}: not in [tool.setuptools.package-data]: {missing}"


def test_an_installed_copy_finds_its_model_and_examples_from_any_folder(tmp_path):
    """A non-editable install (pip, from a copy of the working tree: no network, the dependencies are this
    environment's) works from another folder: the packages are found there, with the bundled model and examples,
    and the console scripts call the command lines."""
    pytest.importorskip("setuptools", minversion="70.1")  # builds wheels without the `wheel` package
    source, target, elsewhere = tmp_path / "source", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "test-artifacts", "__pycache__", "build", "*.egg-info", "runs", "data", ".pytest_cache"))
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    # from another folder, without importing torch (slow): where the packages and their files are found
    code = ("import importlib.util, pathlib, webapp.bundled as b\n"
            "core = pathlib.Path(importlib.util.find_spec('detr_core').origin).parent\n"
            "print(core, (core / 'assets' / 'shapes.pth').is_file(), b.SHAPES_VAL.is_dir(),"
            " [p.name for p in b.example_images()])")
    shown = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env={**ENV, "PYTHONPATH": str(target)},
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{target / 'detr_core'} True True ['grace_hopper.jpg', 'shapes.jpg', "
                                   "'shapes_wide.jpg']"), shown.stdout
    for script, entry in (("detr-lens", "webapp.cli"), ("detr-lens-figures", "viz.slides"),
                          ("detr-lens-analyze", "analysis.cli")):
        assert f"from {entry} import main" in (target / "bin" / script).read_text()


def test_the_readme_lists_every_flag_of_the_app(capsys, monkeypatch):
    """The README's flag list had fallen behind the command line (--allow-hub-download, --auto-timeout)."""
    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps its help at the terminal's width, splitting flags
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"])
    flags = set(re.findall(r"(--[a-z][a-z0-9-]+)", capsys.readouterr().out)) - {"--help"}
    readme = (REPO / "README.md").read_text()
    listed = re.search(r"serves on 127\.0\.0\.1:7860 \(flags (.*?)\)", readme, re.S)
    assert listed, "the README's app section no longer has its flag list"
    assert flags and flags <= set(re.findall(r"--[a-z][a-z0-9-]+", listed.group(1))), sorted(flags)


def test_a_server_that_stops_at_start_is_reported_with_the_end_of_its_log(tmp_path):
    """webapp.served.app_process, which every served test and benchmark starts the app with: an app.py that exits
    before its page answers is an error quoting its log, not a wait until the time limit."""
    with pytest.raises(RuntimeError) as err:
        with app_process(["--model", "no/such/checkpoint.pth"], tmp_path / "app.log", ENV, timeout=120):
            pass
    message = str(err.value)
    assert message.startswith("app.py exited with code 2; the end of its log") and "no/such/checkpoint.pth" in message
