"""The app's command line: `detr-lens` (installed) or `python app.py` in a clone.

    detr-lens [--host 127.0.0.1] [--port 7860] [--model auto] [--share] ...

Everything that can be checked before the page starts is checked here, with a one-line message and exit code 2:
an unknown model name or a missing checkpoint, a port that is already in use.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # start and run with no network

import detr_core  # noqa: E402

from .model_sources import HUB_FLAG, PUBLIC_FLAG, ROOT_FLAG, is_filesystem_root, served_beyond_loopback  # noqa: E402
from .models import NAMES, ModelCache, check_source  # noqa: E402
from .store import DEFAULT_BUDGET_MB, DEFAULT_IDLE_MINUTES, DEFAULT_MAX_PAGES, MB, InspectionStore  # noqa: E402

USAGE_ERROR = 2  # argparse's exit code for a bad command line
VIEW_THREADS = 120  # Gradio's default is 40: a class of 60 may have as many views waiting for a re-analysis
# Uploads: a phone's photo is 3-12 MB; Gradio has no limit of its own (a 300 MB file of random bytes was stored).
DEFAULT_MAX_UPLOAD_MB = 20.0
# Uploaded files and the files the page is sent (views, figures) are deleted once this old; checked every
# quarter of it, at least every minute. The page itself keeps its image in memory, not in these files.
DEFAULT_FILES_MINUTES = 60.0
# Gradio keeps a state of its own for every page that has called the server (a copy of the page's configuration:
# 281 KB for this page at first, 379 KB once the Compare view and the faithfulness panel joined it, measured with
# tracemalloc; tests/test_app_limits.py holds it under this), up to
# `state_session_capacity` pages, 10,000 by default: 2.8 GB outside any budget. The app keeps at most twice
# --max-sessions of them (the least recently used go first) and sets their memory aside from --memory-budget-mb.
GRADIO_PAGE_MB = 0.5
PAGE_STATES_PER_SESSION = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="DETR Lens: see inside DETR in your browser.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", default=os.environ.get("DETR_LENS_MODEL", "auto"),
                        help=f"one of {', '.join(NAMES)} (tiny: a very small random model for tests), a"
                             " checkpoint path, a Hugging Face model folder or Hub id (owner/name[@revision]);"
                             " default auto; env DETR_LENS_MODEL sets the default")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--no-optimize", action="store_true",
                        help="serve the plain eager model instead of the optimised copy (for comparisons)")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: approximate mode, backbone in bfloat16 (several times faster on CPUs with"
                             " AMX/AVX512-BF16; results differ by about 1%%, and the page says so)")
    parser.add_argument("--no-compile", action="store_true",
                        help="keep the optimised model eager: skip compiling its backbone in the background")
    parser.add_argument(ROOT_FLAG, action="append", type=Path, default=[],
                        help="a folder whose COCO-format sets and model files the page may open (repeatable);"
                             " the bundled examples and the folder the app starts in are always allowed (but"
                             " never the file system's root: started from /, the app needs --data-root)")
    parser.add_argument(HUB_FLAG, action="store_true",
                        help="let the server download models that are not cached yet (Hugging Face Hub ids, the"
                             " official zoo, the 'auto' probe, Hub backbones named in a config) even when it is"
                             " served beyond loopback (--host other than 127.0.0.1, or --share); without it such a"
                             " page downloads nothing")
    parser.add_argument(PUBLIC_FLAG, action="store_true",
                        help="the page is public even though it listens on loopback (behind a reverse proxy on this"
                             " machine, every visitor seems to come from 127.0.0.1): treat it as served beyond"
                             f" loopback, so that Hub downloads need {HUB_FLAG}")
    parser.add_argument("--auto-timeout", type=float, default=2.0,
                        help="seconds to wait for the official weights' server when choosing 'auto'")
    parser.add_argument("--memory-budget-mb", type=float, default=DEFAULT_BUDGET_MB,
                        help="memory for all pages together (default %(default)s MB: about 16 DETR-R50"
                             " analyses of 800x1066 images, their images, and Gradio's own state of the pages, 0.3"
                             " MB each for up to twice --max-sessions); beyond it the least recently used page's"
                             " analysis is set aside and run again when that page is next used")
    parser.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES,
                        help="set aside an analysis nobody has looked at for this long (default %(default)s)")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_PAGES,
                        help="pages that may hold an analysis at once (default %(default)s); a page counts until it"
                             " closes or goes unused for --idle-minutes; beyond it a new page is asked to come back"
                             " later")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                        help="largest file a page may upload (default %(default)s MB); larger ones are refused"
                             " before they are stored, also when an API call sends the file inline (base64)")
    parser.add_argument("--files-minutes", type=float, default=DEFAULT_FILES_MINUTES,
                        help="delete uploads and the files made for pages once this old (default %(default)s)")
    args = parser.parse_args(argv)
    for flag, value in (("--memory-budget-mb", args.memory_budget_mb), ("--idle-minutes", args.idle_minutes),
                        ("--max-sessions", args.max_sessions), ("--max-upload-mb", args.max_upload_mb),
                        ("--files-minutes", args.files_minutes)):
        if not value > 0:
            parser.error(f"{flag} {value:g}: must be a positive number")
    if store_budget_bytes(args) <= 0:
        parser.error(f"--memory-budget-mb {args.memory_budget_mb:g} is too small for --max-sessions"
                     f" {args.max_sessions}: Gradio's own state for {PAGE_STATES_PER_SESSION * args.max_sessions}"
                     f" pages takes {page_states_mb(args.max_sessions):g} MB of it; raise the budget or lower"
                     " --max-sessions")
    if is_filesystem_root(Path.cwd()) and not args.data_root:
        parser.error(f"started from {Path.cwd()}, the file system's root: the page could open any file on this"
                     f" machine. Start it from the folder that holds your data, or name that folder with"
                     f" {ROOT_FLAG} FOLDER (a service manager's WorkingDirectory= does the former)")
    try:
        check_source(args.model)
    except ValueError as err:
        parser.error(str(err))
    if args.precision == "bfloat16" and args.no_optimize:
        parser.error("--precision bfloat16 applies to the optimised model; drop --no-optimize")
    return args


def page_states_mb(max_sessions: int) -> float:
    """The part of the memory budget set aside for Gradio's own state of the pages it keeps."""
    return PAGE_STATES_PER_SESSION * max_sessions * GRADIO_PAGE_MB


def store_budget_bytes(args: argparse.Namespace) -> int:
    """What is left of --memory-budget-mb for the pages' images and analyses."""
    return int((args.memory_budget_mb - page_states_mb(args.max_sessions)) * MB)


def downloads_allowed(args: argparse.Namespace) -> bool:
    """Whether the page may fetch Hub models that are not cached yet: only on a loopback page, unless allowed."""
    return args.allow_hub_download or not served_beyond_loopback(args.host, args.share, args.public)


def delete_cache(minutes: float) -> tuple[int, int]:
    """Gradio's (frequency, age) in seconds: files older than `minutes`, checked every quarter of it (>= 60 s)."""
    age = max(1, round(minutes * 60))
    return max(60, age // 4), age


def port_in_use(host: str, port: int) -> bool:
    """Whether binding (host, port) fails now, e.g. because another server listens there. SO_REUSEADDR as
    the server itself binds, so a port left in TIME_WAIT by a server that just stopped counts as free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return True
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def _busy(host: str, port: int) -> str:
    return (f"detr-lens: port {port} on {host} is in use (is DETR Lens already running?); "
            f"choose another one with --port, e.g. --port {port + 1}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if port_in_use(args.host, args.port):
        print(_busy(args.host, args.port), file=sys.stderr)
        raise SystemExit(USAGE_ERROR)
    if args.precision == "bfloat16" and not detr_core.bfloat16_is_fast():
        raise SystemExit("--precision bfloat16 needs a CPU with native bfloat16 (AMX or AVX512-BF16); "
                         "this one would be slower. Start without it.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    from .page import build_demo  # gradio and every view: only once the command line is known to be good
    from .page_css import PAGE_CSS
    from .request_limit import app_kwargs

    models = ModelCache(auto_timeout=args.auto_timeout, optimize=not args.no_optimize,
                        compile_backbone=not args.no_compile, precision=args.precision,
                        hub_downloads=downloads_allowed(args))
    models.warm(args.model)  # in the background: the page is up at once, the first upload waits if needed
    store = InspectionStore(store_budget_bytes(args), args.idle_minutes * 60, max_pages=args.max_sessions)
    demo = build_demo(models, args.model, tuple(args.data_root), downloads_allowed(args), store,
                      delete_cache(args.files_minutes))
    try:
        # Forward passes have their own group (one at a time, in order, each page shown its place). Views are
        # short and get no limit: a view whose page's analysis was evicted waits for it to run again, and with a
        # limit it would hold up other pages' views of the same kind (measured: 20 s for a table otherwise ready
        # at once). The thread pool is widened so that such waits cannot use it up.
        demo.queue(default_concurrency_limit=None).launch(
            server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
            footer_links=["api"], max_threads=VIEW_THREADS, css=PAGE_CSS, max_file_size=int(args.max_upload_mb * MB),
            app_kwargs=app_kwargs(args.max_upload_mb),  # every request body bounded too, inline images included
            state_session_capacity=PAGE_STATES_PER_SESSION * args.max_sessions)
    except OSError:  # the port was taken between the check above and the launch
        print(_busy(args.host, args.port), file=sys.stderr, flush=True)
        os._exit(USAGE_ERROR)  # the model threads (loading, compiling) must neither hold nor abort the exit
