"""Under CI=true a skip for a missing resource fails and says what is missing; CPU-dependent skips stay skips."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SAMPLE = '''
import pytest

def test_passes():
    pass

def test_needs_a_browser():
    pytest.skip("/usr/bin/chromium is missing")

@pytest.mark.skipif(True, reason="reference key list not available")
def test_needs_reference_files():
    pass

@pytest.mark.cpu_dependent
@pytest.mark.skipif(True, reason="this CPU has no native bfloat16")
def test_needs_bfloat16():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
'''


@pytest.fixture(scope="module")
def sample_project(tmp_path_factory):
    """This repository's pytest.ini and conftest around a sample test file, in a folder of its own."""
    root = tmp_path_factory.mktemp("project")
    (root / "tests").mkdir()
    shutil.copy(REPO / "pytest.ini", root)
    shutil.copy(REPO / "tests" / "conftest.py", root / "tests")
    (root / "tests" / "test_sample.py").write_text(SAMPLE)
    return root


def _run(root: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_outside_ci_skips_are_skips_and_listed(sample_project):
    result = _run(sample_project, ci=None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in result.stdout
    assert "SKIPPED [1] tests/test_sample.py:8: /usr/bin/chromium is missing" in result.stdout  # -rs


def test_in_ci_a_missing_resource_fails_and_names_it(sample_project):
    result = _run(sample_project, ci="true")
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in result.stdout
    # a skip inside the test fails it; a skipif mark, evaluated at setup, makes an error: both exit non-zero
    assert "CI=true and this test would skip, so something it needs is missing: " \
           "/usr/bin/chromium is missing. Install or provide it" in result.stdout
    assert "missing: reference key list not available" in result.stdout
    assert "SKIPPED [1] tests/test_sample.py:14: this CPU has no native bfloat16" in result.stdout



def test_in_ci_a_test_file_skipped_at_import_fails_and_names_it(tmp_path):
    """pytest.importorskip at module level skips during collection, before any test runs."""
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO / "pytest.ini", tmp_path)
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "tests")
    (tmp_path / "tests" / "test_needs_module.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_for_this_test")\n\ndef test_uses_it():\n    pass\n')
    (tmp_path / "tests" / "test_plain.py").write_text("def test_passes():\n    pass\n")
    outside = _run(tmp_path, ci=None)
    assert outside.returncode == 0 and "1 passed, 1 skipped" in outside.stdout, outside.stdout
    inside = _run(tmp_path, ci="true")
    assert inside.returncode != 0 and "1 error" in inside.stdout, inside.stdout
    assert "CI=true and tests/test_needs_module.py would be skipped whole, so something it needs is missing: " \
           "could not import 'no_such_module_for_this_test'" in inside.stdout
