"""A class on one server: N concurrent gradio_client sessions against `python app.py`, each with its own image.

    python -m benchmarks.load [--model r50|tiny|PATH] [--sessions 60] [--rounds 3] [--size 800x1066]
                              [--think 1.0] [--app-arg=--memory-budget-mb=1536 ...]
    python -m benchmarks.load --visitors 300 --model tiny [--size 1333x1333] [--concurrency 16] [--app-arg=...]

`--visitors N`: the many-visitors run instead (benchmarks/visitors.py): N pages, each one analysis and one view,
and whether the server's peak resident size stays within its memory budget.

Starts the app on a free loopback port (`--model r50`: a DETR-R50 with random weights, written here with
build_model(DETRConfig()) + save_model) and waits for it to compile its backbone (`--during-compile`: not),
then every session, at once, on its own thread and Gradio session:
analyses its image (a forward pass; they queue, one at a time), then for R rounds (`--think` seconds apart) asks for
the detections, the query gallery, the encoder map at its point (what a click on the image draws) and the views at
other layers and heads; once every session has analysed, each one comes back once more ("revisit"), when the
server may have evicted its analysis and must run it again. The server's resident size is sampled all along.

After stopping the app it checks every answer against a direct `detr_core.inspect_image` of that session's image
with the same model (scores within 2e-3, boxes within 1 px, texts equal, images within JPEG noise), and prints a
table of end-to-end times per interaction, errors, cross-talk, queue positions and peak RSS. A no-op call (the
status line) per round shows what gradio_client and Gradio take by themselves on the machine.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from webapp.served import app_process

ROOT = Path(__file__).resolve().parent.parent
MEAN, LOOKS_FROM, LOOKED_AT = "mean over heads", "where this location looks", "which locations look here"
FORWARD_KINDS = ("analyse",)
BASELINE = "no-op (the status line)"  # a call that does no work: what the client library and Gradio take
SHAPE = re.compile(r"(\d+)\+(\d+) layers, (\d+) heads")


@dataclass
class Call:
    """One interaction as its client saw it: end to end, from submit to result."""

    session: int
    kind: str
    args: tuple
    seconds: float
    output: object = None
    error: str | None = None
    reanalysed: bool = False  # the server ran the model again for it (the session's analysis had been evicted)
    ranks: list = field(default_factory=list)  # queue positions the client was shown
    started: float | None = None  # when the server started processing it (client clock)
    queued: float | None = None  # when the server put it in its queue (the first queue position seen)
    submitted: float = 0.0
    image: bytes | None = None  # the view's image, fetched after the timing


@dataclass
class Report:
    calls: list[Call]
    crosstalk: list[str]
    peak_rss_mb: float
    peak_children_mb: float
    final_rss_mb: float
    wall_seconds: float
    timeline: list[tuple[float, int]]  # the server's resident size over time: (s, kB)
    server_exit: int | None  # the app's exit status once stopped (None: still running, which must not happen)

    @property
    def errors(self) -> list[Call]:
        return [c for c in self.calls if c.error]


def synthetic_image(i: int, size: tuple[int, int]) -> Image.Image:
    """A smooth picture of its own for session i (a gradient and three shapes whose colours and places depend on
    i): JPEG keeps such images close, so served views compare tightly with a local rendering."""
    h, w = size
    rng = np.random.default_rng(1000 + i)
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, h)[:, None, None]  # [H, 1, 1]
    pixels = (top * (1 - ramp) + bottom * ramp).repeat(w, axis=1).astype(np.uint8)  # [H, W, 3]
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.uniform(0, 0.7) * w, rng.uniform(0, 0.7) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.3) * w, y0 + rng.uniform(0.1, 0.3) * h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    return image


def model_argument(model: str, folder: Path) -> str:
    """The app's --model: "r50" becomes a random-weight DETR-R50 checkpoint written into `folder`."""
    if model != "r50":
        return model
    import torch

    import detr_core
    torch.manual_seed(0)
    path = folder / "detr-r50-random.pth"
    detr_core.save_model(detr_core.build_model(detr_core.DETRConfig()), path)
    return str(path)


class ResidentSampler(threading.Thread):
    """Samples the server's resident size (and its child processes', e.g. compile workers) every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.children_peak_kb, self.last_kb = pid, 0, 0, 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, resident kB)
        self.stop = threading.Event()

    @staticmethod
    def _field(pid: int, name: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _children(self) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except OSError:
            return []

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stop.is_set():
            self.last_kb = self._field(self.pid, "VmRSS") or self.last_kb
            self.timeline.append((time.perf_counter() - start, self.last_kb))
            self.peak_kb = max(self.peak_kb, self._field(self.pid, "VmHWM"), self.last_kb)
            children = sum(self._field(c, "VmRSS") for c in self._children())
            self.children_peak_kb = max(self.children_peak_kb, children)
            self.stop.wait(0.2)


def _call(client, record: list, i: int, kind: str, *args, api_name: str, fetch: int | None = None) -> Call:
    """Submit one interaction, wait for it, note its queue positions, whether it ran the model again, and
    (after the timing) fetch the image output number `fetch`."""
    from gradio_client.utils import Status
    call = Call(i, kind, args, 0.0, submitted=time.time())
    start = time.perf_counter()
    try:
        job = client.submit(*args, api_name=api_name)
        call.output = job.result(timeout=3600)
    except Exception as err:  # noqa: BLE001 (every failure is counted and reported, none stops the run)
        call.error = f"{type(err).__name__}: {err}"
    call.seconds = time.perf_counter() - start
    if call.error is None:
        for update in _updates(job):
            if getattr(update, "type", "status") != "status":
                continue
            if update.code == Status.IN_QUEUE and update.rank is not None:
                call.ranks.append(update.rank)
                if call.queued is None and update.time is not None:
                    call.queued = update.time.timestamp()
            if update.code == Status.PROCESSING and call.started is None and update.time is not None:
                call.started = update.time.timestamp()
            if update.log and "run again" in update.log[0]:
                call.reanalysed = True
        if fetch is not None:
            call.image = _fetch(call.output[fetch])
    record.append(call)
    return call


def _updates(job) -> list:
    out, queue = [], job.communicator.updates
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def _fetch(file) -> bytes:
    with urllib.request.urlopen(file["url"], timeout=60) as response:
        return response.read()


def run_session(url: str, model: str, i: int, image: Path, size: tuple[int, int], rounds: int, think: float,
                everyone_analysed: threading.Barrier, record: list) -> None:
    """One student: analyse, R rounds of views, then (once everybody has analysed) one more look. A failure of
    the session itself (not of one call) is recorded as an error too."""
    h, w = size
    point = round(w * (0.2 + 0.6 * (i % 7) / 6)), round(h * (0.3 + 0.4 * (i % 5) / 4))
    client, analysed = None, None
    try:
        from gradio_client import Client, handle_file
        # a generous timeout: on a busy machine the page's config can take seconds to come
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False,
                        httpx_kwargs={"timeout": 120})
        analysed = _call(client, record, i, "analyse", handle_file(str(image)), model, api_name="/analyze")
        if analysed.error is None:
            _rounds(client, record, i, point, SHAPE.search(str(analysed.output)), rounds, think)
    except Exception as err:  # noqa: BLE001 (counted as an error of this session)
        record.append(Call(i, "session", (), 0.0, error=f"{type(err).__name__}: {err}"))
    finally:
        try:
            everyone_analysed.wait()
        except threading.BrokenBarrierError:
            pass
    try:
        if analysed is not None and analysed.error is None:
            _call(client, record, i, "revisit: detections", 0.0, api_name="/detections")
            _call(client, record, i, "revisit: encoder", *point, _layers(analysed)[0], MEAN, LOOKS_FROM, 0.6,
                  "inferno", api_name="/encoder_map", fetch=0)
    except Exception as err:  # noqa: BLE001
        record.append(Call(i, "session", (), 0.0, error=f"{type(err).__name__}: {err}"))
    if client is not None:
        client.close()


def _layers(analysed: Call) -> tuple[int, int, int]:
    """(encoder layers, decoder layers, heads) as the status line names them."""
    shape = SHAPE.search(str(analysed.output))
    return tuple(int(v) for v in shape.groups()) if shape else (1, 1, 1)


def _rounds(client, record: list, i: int, point: tuple[int, int], shape, rounds: int, think: float) -> None:
    """Detections, the gallery, the encoder map at the session's point (what a click draws), then the views at
    other layers and heads (each round its own), `think` seconds apart."""
    enc, dec, heads = (int(v) for v in shape.groups()) if shape else (1, 1, 1)
    for r in range(rounds):
        _call(client, record, i, BASELINE, api_name="/status")  # what the client library and Gradio take alone
        served = _call(client, record, i, "detections", 0.0, api_name="/detections").output
        table = served[1] if served else None
        scores = sorted((row[3] for row in table["data"]), reverse=True) if table and table["data"] else [0.0]
        top = max(0.0, scores[min(9, len(scores) - 1)] - 1e-4)  # about ten tiles, as a user would set it
        layer, head = 1 + r % dec, MEAN if r == 0 else f"head {1 + r % heads}"
        _call(client, record, i, "gallery", top, False, dec, MEAN, 0.6, "inferno", api_name="/query_gallery")
        _call(client, record, i, "encoder click", *point, enc, MEAN, LOOKS_FROM, 0.6, "inferno",
              api_name="/encoder_map", fetch=0)
        _call(client, record, i, "encoder layer/head", *point, 1 + r % enc, head, LOOKED_AT if r % 2 else LOOKS_FROM,
              0.6, "viridis", api_name="/encoder_map", fetch=0)
        best = table["data"][0][1] if table and table["data"] else 0
        _call(client, record, i, "query view layer/head", best, layer, head, 0.5, "magma", api_name="/query_view",
              fetch=0)
        _call(client, record, i, "gallery layer/head", top, False, layer, head, 0.5, "magma",
              api_name="/query_gallery")
        time.sleep(think)


def _expected_session(model, models, store, i: int, image: Path):
    """A local session around a direct inspection of the image: the views every answer must equal."""
    import detr_core
    from webapp.session import Session
    ins = detr_core.inspect_image(model, detr_core.load_image(image))
    return Session.start(store, models, ins, "expected", key=f"expected-{i}")


def _rows_differ(served: list, expected: list) -> str | None:
    """Table rows (rank, query, class, score, x0, y0, x1, y1) -> what differs beyond 2e-3 / 1 px, or None."""
    want = {row[1]: row for row in expected}
    if sorted(want) != sorted(row[1] for row in served):
        return f"queries {sorted(row[1] for row in served)[:5]}... != {sorted(want)[:5]}..."
    for row in served:
        ref = want[row[1]]
        if abs(row[3] - ref[3]) > 2e-3 or max(abs(a - b) for a, b in zip(row[4:], ref[4:])) > 1:
            return f"query {row[1]}: {row[3:]} != {ref[3:]}"
    return None


def _captions_differ(served: list, expected: list, threshold: float, scores: dict) -> str | None:
    """Gallery captions "query N: name 0.23": the same queries (bar those within 2e-3 of the threshold)."""
    def queries(captions):
        return {int(re.match(r"query (\d+)", c).group(1)) for c in captions}
    got, want = queries(item["caption"] for item in served), queries(c for _, c in expected)
    borderline = {q for q, score in scores.items() if abs(score - threshold) <= 2e-3}
    return None if (got ^ want) <= borderline else f"gallery queries {sorted(got)} != {sorted(want)}"


def _image_differs(served: bytes | None, expected: Image.Image) -> str | None:
    """A served JPEG against the local rendering: same size, mean difference within JPEG noise (6 levels)."""
    if served is None:
        return "no image"
    got = np.asarray(Image.open(io.BytesIO(served)).convert("RGB"), dtype=np.float32)
    want = np.asarray(expected.convert("RGB"), dtype=np.float32)
    if got.shape != want.shape:
        return f"image size {got.shape} != {want.shape}"
    diff = float(np.abs(got - want).mean())
    return None if diff <= 6 else f"image differs by {diff:.1f} levels on average"


def check_call(call: Call, session, size: tuple[int, int]) -> str | None:
    """None if the answer is the one this session's own image gives, else what differs."""
    from webapp import decoder_tab, detections_tab, encoder_tab
    kind, args, out = call.kind, call.args, call.output
    if kind.startswith("no-op"):
        return None if "**Model:**" in str(out) else f"status {out!r}"
    if kind == "analyse":
        h, w = size
        return None if f"Image {w}x{h};" in str(out) else f"status {out!r} names another size than {w}x{h}"
    if kind.endswith("detections"):
        return _rows_differ(out[1]["data"], detections_tab.render_detections(session, *args)[1])
    if kind.startswith("gallery"):
        ins = session.inspection
        scores = {d.query: d.score for d in ins.detections(-1.0)}
        return _captions_differ(out, decoder_tab.render_gallery(session, *args), args[0], scores)
    if kind.startswith("query view"):
        image, info = decoder_tab.render_query(session, *args)
        prefix = info.split(":")[0]
        return _image_differs(call.image, image) or (None if out[1].startswith(prefix) else f"{out[1][:60]!r}")
    image, info = encoder_tab.render_encoder(session, *args)  # encoder click, layer/head, revisit
    return _image_differs(call.image, image) or (None if out[1] == info else f"{out[1]!r} != {info!r}")


def verify(calls: list[Call], model_arg: str, images: list[Path], size: tuple[int, int]) -> list[str]:
    """Every answered call against a direct inspection of its session's image with the same model."""
    import detr_core
    from webapp.models import TINY, ModelCache
    from webapp.store import InspectionStore
    with warnings.catch_warnings():  # the tiny model is the run's own choice: its "untrained" warning tells nothing
        warnings.filterwarnings("ignore", message="using an UNTRAINED model")
        model = detr_core.untrained_model(tiny=True) if model_arg == TINY else detr_core.load_model(model_arg)
    # its inference twin built now, never compiled: a background compile would compete with the checks for the
    # CPU and, still running when the script ends, abort the interpreter ("terminate called without an active
    # exception")
    detr_core.inference_twin(model, compile_backbone=False)
    models, store, problems = ModelCache(optimize=False), InspectionStore(), []
    for i, image in enumerate(images):
        mine = [c for c in calls if c.session == i and c.error is None]
        session = _expected_session(model, models, store, i, image)
        for call in mine:
            problem = check_call(call, session, size)
            if problem:
                problems.append(f"session {i}, {call.kind} {call.args}: {problem}")
        store.release_group(session.key)
    return problems


def _wait_for_compile(log: Path, proc: subprocess.Popen, timeout: float = 1800) -> float:
    """Seconds until the app's log says the backbone is compiled (or could not be): compiling holds the server's
    interpreter for long stretches (minutes on a busy 2-core machine), which is not what a class meets if the
    teacher starts the app a few minutes early."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout and proc.poll() is None:
        text = log.read_text(errors="replace")
        if "compiled the backbone" in text or "could not compile" in text:
            return time.perf_counter() - start
        time.sleep(1)
    raise RuntimeError(f"the app did not finish compiling within {timeout} s (see {log})")


def run(model: str = "tiny", sessions: int = 8, rounds: int = 2, size: tuple[int, int] = (800, 1066),
        think: float = 0.0, app_args: tuple[str, ...] = (), folder: Path | None = None, check: bool = True,
        wait_for_compile: bool = True) -> Report:
    """Start the app (and, unless it runs with --no-compile or `wait_for_compile` is False, let it compile its
    backbone first), run the sessions, stop the app, verify every answer (unless `check` is False). `folder` keeps
    the images, the checkpoint, the app's log and its resident size over time (rss.csv)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if folder is None else Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        model_arg = model_argument(model, work)
        images = []
        for i in range(sessions):
            images.append(work / f"session-{i}.png")
            synthetic_image(i, size).save(images[-1])
        log = work / "app.log"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        with app_process(["--model", model_arg, *app_args], log, env, timeout=300) as app:
            sampler = ResidentSampler(app.process.pid)
            sampler.start()
            try:
                if wait_for_compile and "--no-compile" not in app_args:
                    _wait_for_compile(log, app.process)
                calls: list[Call] = []
                barrier = threading.Barrier(sessions, timeout=7200)
                start = time.perf_counter()
                threads = [threading.Thread(target=run_session, args=(app.url, model_arg, i, images[i], size, rounds,
                                                                      think, barrier, calls))
                           for i in range(sessions)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - start
                time.sleep(0.5)
            finally:
                sampler.stop.set()
                sampler.join()
        (work / "rss.csv").write_text("seconds,rss_mb\n" + "".join(f"{t:.1f},{kb / 1024:.0f}\n"
                                                                     for t, kb in sampler.timeline))
        problems = verify(calls, model_arg, images, size) if check else ["(answers not checked: --no-check)"]
        return Report(calls, problems, sampler.peak_kb / 1024, sampler.children_peak_kb / 1024,
                      sampler.last_kb / 1024, wall, sampler.timeline, app.process.poll())


def order_violations(calls: list[Call], margin: float = 0.5) -> int:
    """Pairs of analyses where the server started one queued more than `margin` s later first (first in the
    queue must be first served; the times are when the client heard of each, hence the margin)."""
    analyses = [c for c in calls if c.kind == "analyse" and c.error is None and None not in (c.started, c.queued)]
    return sum(1 for a in analyses for b in analyses if a.queued + margin < b.queued and a.started > b.started)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def table(report: Report) -> str:
    """The Markdown table of end-to-end times per interaction, and the run's summary lines."""
    rows = ["| interaction | calls | p50 ms | p95 ms | max ms |", "| --- | ---: | ---: | ---: | ---: |"]
    kinds = list(dict.fromkeys(c.kind for c in report.calls))
    groups = [(k, [c for c in report.calls if c.kind == k and not c.reanalysed and not c.error]) for k in kinds]
    groups += [(f"{k} (ran the model again)", [c for c in report.calls if c.kind == k and c.reanalysed])
               for k in kinds]
    views = [c for c in report.calls
             if c.kind not in (*FORWARD_KINDS, BASELINE, "session") and not c.reanalysed and not c.error]
    groups.append(("**all non-forward interactions**", views))
    for name, group in groups:
        if group:
            ms = [1000 * c.seconds for c in group]
            rows.append(f"| {name} | {len(ms)} | {_percentile(ms, 50):.0f} | {_percentile(ms, 95):.0f} |"
                        f" {max(ms):.0f} |")
    analyses = [c for c in report.calls if c.kind == "analyse" and not c.error]
    waited = [c for c in analyses if c.started is not None and c.started - c.submitted > 1.0]
    shown = [c for c in waited if c.ranks]
    lines = [*rows, "",
             f"errors: {len(report.errors)}; wrong answers (cross-talk): {len(report.crosstalk)}; "
             f"interactions that ran the model again after an eviction: {sum(c.reanalysed for c in report.calls)}",
             f"analyses that waited over 1 s: {len(waited)}, shown their queue position: {len(shown)} "
             f"(largest position {max((max(c.ranks) for c in shown), default=0) + 1}); "
             f"served out of order: {order_violations(report.calls)}",
             f"server peak RSS {report.peak_rss_mb:.0f} MB (at the end {report.final_rss_mb:.0f} MB; child "
             f"processes at most {report.peak_children_mb:.0f} MB); {report.wall_seconds / 60:.1f} min in all"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="r50", help="r50 (random weights, written here), tiny, or a model path")
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="800x1066", help="HxW of every session's image")
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a session's rounds")
    parser.add_argument("--app-arg", action="append", default=[], help="a flag for app.py, e.g. --app-arg=--no-compile")
    parser.add_argument("--keep", type=Path,
                        help="a folder to keep the images, checkpoint, the app's log and rss.csv (resident size) in")
    parser.add_argument("--during-compile", action="store_true",
                        help="start the sessions as soon as the page answers, while the backbone still compiles")
    parser.add_argument("--no-check", action="store_true",
                        help="skip checking the answers (one direct forward pass per session) in memory experiments")
    parser.add_argument("--visitors", type=int,
                        help="the many-visitors run: this many pages, each one analysis and one view (--size,"
                             " --concurrency, --app-arg and --keep apply)")
    parser.add_argument("--concurrency", type=int, default=16, help="visitors at a time in the --visitors run")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.visitors:
        from benchmarks.visitors import run_visitors, visitors_table
        report = run_visitors(args.model, args.visitors, (h, w), args.concurrency, tuple(args.app_arg), args.keep)
        print(visitors_table([report]))
        for error in report.errors[:10]:
            print("  ", error)
        return
    report = run(args.model, args.sessions, args.rounds, (h, w), args.think, tuple(args.app_arg), args.keep,
                 not args.no_check, not args.during_compile)
    print(table(report))
    for line in report.crosstalk[:10] + [f"{c.kind} {c.args}: {c.error}" for c in report.errors[:10]]:
        print("  ", line)


if __name__ == "__main__":
    main()
