"""Many visitors, one after another and some at once: does the server's memory stay within its budget?

    python -m benchmarks.load --visitors 300 [--model tiny|shapes|PATH] [--size 1333x1333] [--concurrency 16]
                              [--app-arg=--memory-budget-mb=100 ...]

Starts the app (`--no-compile`, `--max-sessions` above the number of visitors so that none is refused), lets one
visitor analyse an image of the run's size (the model loaded, every code path's first-use costs paid: what any
server has paid after its first visitor), then notes its resident size ("ready"). Then every visitor, each its own Gradio
session (a new gradio_client Client), analyses an image of its own (a forward pass) and asks for one view (the
detections), `--concurrency` visitors at a time. gradio_client pages never close (they have no heartbeat), so
each page's image stays in the server: what a class leaving its tabs open does. The resident size is sampled all
along; the run passes if the peak stays within ready + the memory budget (which covers the pages' images and
analyses and Gradio's own state of each page). What no budget holds is the working memory of the requests in
flight (each decodes, draws or encodes its image), so the table also gives the peak beyond the budget.
"""
from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.load import ResidentSampler, synthetic_image
from webapp.served import app_process

DISTINCT_IMAGES = 16  # visitors take turns with these files; the server decodes and keeps each visit's own copy


@dataclass
class Visit:
    seconds: float
    error: str | None = None


@dataclass
class VisitorsReport:
    model: str
    visitors: int
    size: tuple[int, int]
    budget_mb: float
    ready_mb: float  # after start-up and the model's loading, before any analysis
    peak_mb: float
    final_mb: float
    wall_seconds: float
    visits: list[Visit]

    @property
    def errors(self) -> list[str]:
        return [v.error for v in self.visits if v.error]

    @property
    def within_budget(self) -> bool:
        return self.peak_mb <= self.ready_mb + self.budget_mb


def _budget(app_args: tuple[str, ...]) -> float:
    """The --memory-budget-mb among the app's flags (either spelling), else the app's default."""
    from webapp.store import DEFAULT_BUDGET_MB
    flat = [part for arg in app_args for part in arg.split("=", 1)]
    return float(flat[flat.index("--memory-budget-mb") + 1]) if "--memory-budget-mb" in flat else DEFAULT_BUDGET_MB


def visit(url: str, model: str, image: Path) -> Visit:
    """One visitor: a page of its own, one analysis, one view."""
    from gradio_client import Client, handle_file
    start = time.perf_counter()
    try:
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False,
                        httpx_kwargs={"timeout": 300})
        shown, status = client.predict(handle_file(str(image)), model, api_name="/analyze")
        if shown is None:
            return Visit(time.perf_counter() - start, f"not analysed: {status}")
        client.predict(0.7, api_name="/detections")
        client.close()
    except Exception as err:  # noqa: BLE001 (counted and reported)
        return Visit(time.perf_counter() - start, f"{type(err).__name__}: {err}")
    return Visit(time.perf_counter() - start)


def run_visitors(model: str = "tiny", visitors: int = 300, size: tuple[int, int] = (1333, 1333),
                 concurrency: int = 16, app_args: tuple[str, ...] = (), folder: Path | None = None) -> VisitorsReport:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if folder is None else Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        images = [work / f"visitor-{i}.png" for i in range(min(visitors, DISTINCT_IMAGES))]
        for i, path in enumerate(images):
            synthetic_image(i, size).save(path)
        synthetic_image(99, size).save(work / "warm-up.png")
        flags = ["--no-compile", "--max-sessions", str(visitors + 10), *app_args]
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        with app_process(["--model", model, *flags], work / "app.log", env, timeout=300) as app:
            pid, sampler = app.process.pid, ResidentSampler(app.process.pid)
            try:
                warm_up = visit(app.url, model, work / "warm-up.png")
                if warm_up.error:
                    raise RuntimeError(f"the first visit failed: {warm_up.error}")
                time.sleep(1.0)
                ready = ResidentSampler._field(pid, "VmRSS") / 1024
                _reset_peak(pid)  # the peak from here on, not start-up's
                sampler.start()
                start = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    visits = list(pool.map(lambda i: visit(app.url, model, images[i % len(images)]), range(visitors)))
                wall = time.perf_counter() - start
                time.sleep(0.5)
            finally:
                sampler.stop.set()
                if sampler.is_alive():
                    sampler.join()
        return VisitorsReport(model, visitors, size, _budget(tuple(flags)), ready, sampler.peak_kb / 1024,
                              sampler.last_kb / 1024, wall, visits)


def _reset_peak(pid: int) -> None:
    """Reset the kernel's peak resident size (VmHWM) of a process of ours to its current size."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the peak then includes start-up's (it can only overstate)
        pass


def visitors_table(reports: list[VisitorsReport]) -> str:
    rows = ["| model | visitors | image | budget MB | ready MB | peak MB | peak - ready MB | within budget |"
            " errors | visits/s |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    # "within budget": peak <= ready + budget
    for r in reports:
        h, w = r.size
        rows.append(f"| {r.model} | {r.visitors} | {w}x{h} | {r.budget_mb:g} | {r.ready_mb:.0f} | {r.peak_mb:.0f} |"
                    f" {r.peak_mb - r.ready_mb:.0f} | {'yes' if r.within_budget else '**no**'} | {len(r.errors)} |"
                    f" {r.visitors / r.wall_seconds:.1f} |")
    return "\n".join(rows)

