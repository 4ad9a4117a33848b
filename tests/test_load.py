"""benchmarks/load.py as a correctness test: eight concurrent gradio_client sessions on the tiny model, a memory
budget so small that the sessions' analyses evict each other, every answer checked against a direct inspection
of that session's own image. No timing is asserted (speed targets live in benchmarks/)."""
from __future__ import annotations

import pytest

from benchmarks import load

pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # 600x800 images: views draw on the image itself, so each session keeps only its inspection and a gallery
    # thumbnail; 0.3 MB holds about two sessions' worth, so the others are evicted and run again
    return load.run("tiny", sessions=8, rounds=1, size=(600, 800), think=0.0,
                    app_args=("--no-compile", "--memory-budget-mb", "0.3"), folder=tmp_path_factory.mktemp("load"))


def test_every_session_gets_the_answers_for_its_own_image(report):
    assert report.errors == [] and report.crosstalk == []
    sessions = {c.session for c in report.calls}
    assert sessions == set(range(8))
    per_session = {i: [c.kind for c in report.calls if c.session == i] for i in sessions}
    assert all(kinds.count("analyse") == 1 and "revisit: encoder" in kinds for kinds in per_session.values())


def test_evicted_analyses_were_run_again_and_the_page_was_told(report):
    again = [c for c in report.calls if c.reanalysed]  # the note reached the client in the call's log
    assert again and all(c.kind != "analyse" for c in again)


def test_analyses_queue_in_order_and_each_one_that_waited_was_shown_its_position(report):
    analyses = [c for c in report.calls if c.kind == "analyse"]
    assert load.order_violations(report.calls) == 0
    assert max(max(c.ranks) for c in analyses) >= 1  # eight at once, one at a time: some waited behind others
    waited = [c for c in analyses if c.started - c.queued > 0.5]
    assert waited and all(c.ranks for c in waited)  # and were told where they stood (0: next; the page adds 1)


def test_the_app_was_stopped(report):
    assert report.server_exit is not None
    print(load.table(report))  # shown with -s
