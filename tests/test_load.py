"""benchmarks/load.py as a correctness test: eight concurrent gradio_client sessions on the tiny model, a memory
budget so small that the sessions' analyses evict each other, every answer checked against a direct inspection
of that session's own image. No timing is asserted (speed targets live in benchmarks/)."""
from __future__ import annotations

import pytest

from benchmarks import load

pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    # 600x800 images: views draw on the image itself, so each session keeps its image (an 11 KB PNG), its
    # inspection (with the image, 1.9 MB) and a gallery thumbnail; 0.3 MB (5.1 MB less 0.6 MB of Gradio state for
    # each of 8 pages) holds every image and less than one analysis, so analyses are evicted and run again
    return load.run("tiny", sessions=8, rounds=1, size=(600, 800), think=0.0,
                    app_args=("--no-compile", "--memory-budget-mb", "8.3", "--max-sessions", "8"),
                    folder=tmp_path_factory.mktemp("load"))


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


def test_many_visitors_stay_within_the_memory_budget(tmp_path):
    """benchmarks/visitors.py in small: 30 pages, each one analysis of its own 1333x1333 image (7.1 MB decoded) and
    one view, 8 at a time. Before the images were counted the server grew by about 7 MB a page whatever the budget
    (over 210 MB here). Now it grows by at most the budget (80 MB: Gradio's state of 80 pages, 40 MB, and 40 MB
    for images and analyses) and the working memory of the 8 requests in flight, which no budget holds (each
    decodes, draws or encodes a 1333x1333 image: 7.1 MB apiece; measured: 102 MB in all)."""
    from benchmarks.visitors import run_visitors
    report = run_visitors("tiny", visitors=30, size=(1333, 1333), concurrency=8,
                          app_args=("--memory-budget-mb", "80"), folder=tmp_path)
    assert report.errors == [] and report.budget_mb == 80
    in_flight_mb = 8 * 1333 * 1333 * 4 / 2**20
    grown = report.peak_mb - report.ready_mb
    assert grown <= report.budget_mb + in_flight_mb, f"grew by {grown:.0f} MB"
