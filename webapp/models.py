"""Which models the app offers, and a per-process cache that loads each one lazily, once."""
from __future__ import annotations

import contextvars
import logging
import threading
import warnings
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import torch

import detr_core
from detr_core.family import FamilyModel
from detr_core.family.loading import BUNDLED_FAMILY, bundled_family_names
from detr_core.weights.hub import parse_hub_ref
from detr_core.weights.sources import existing_path
from detr_core.weights.auto import AutoChoice, choose_model

log = logging.getLogger(__name__)

AUTO = "auto"
TINY = "tiny"  # a very small random model, for tests and quick demos (CLI only, not in the menu)
# the bundled family models join the menu once their folder is in the install (detr_core/assets/)
MENU = (AUTO, *detr_core.MODEL_ZOO, "shapes", *bundled_family_names(), "untrained")
# every name the app accepts (a bundled model not there yet says so when opened); else a path or Hub id
NAMES = (*MENU, *(n for n in BUNDLED_FAMILY if n not in MENU), TINY)
# seconds a page waits for a model to load. Sizes beyond any real model are refused before anything is built
# (detr_core.weights.size_limits), so this is the backstop (a slow disk, a slow download), not the first defence
LOAD_TIMEOUT_S = 300.0
HUB_FLAG = "--allow-hub-download"  # the command line's flag that allows downloads on a page beyond loopback


def check_source(name: str) -> str:
    """`name` if the app can try to load it (a name in NAMES, an existing path or a Hub id); else ValueError
    naming the valid names, so that a typo is refused when the app starts rather than on the page."""
    if name in NAMES or existing_path(name) is not None or parse_hub_ref(name) is not None:
        return name
    raise ValueError(f"--model {name}: not a model name, no such file, and not a Hugging Face Hub id"
                     f" (owner/name). Choose one of {', '.join(NAMES)}, or give the path of a checkpoint file"
                     " or model folder")


@dataclass(frozen=True)
class LoadedModel:
    model: torch.nn.Module | FamilyModel  # a DETR, or a DETR-family model run through transformers
    source: str  # what was loaded: a zoo name, "shapes", "untrained", "tiny" or a path
    reason: str  # why, for the page


class ModelCache:
    """Models by name, each loaded on first use, once. A load holds no lock that another model's users wait on:
    pages whose model is loaded get it at once while another model loads, and pages asking for the model being
    loaded wait for that one load. A load that takes longer than `load_timeout` seconds is reported as an error
    to those waiting (it goes on in the background, and is used if it finishes)."""

    def __init__(self, auto_timeout: float = 2.0, optimize: bool = True, compile_backbone: bool = True,
                 precision: str = "float32", hub_downloads: bool = True, load_timeout: float = LOAD_TIMEOUT_S):
        self._auto_timeout = auto_timeout
        self._optimize = optimize  # serve detr_core.optimize_for_inference copies (same numbers, faster)
        self._precision = precision  # "bfloat16": the opt-in approximate mode, labelled on the page
        # compile each optimised backbone in the background; requests run eager until it is ready
        self._compile = optimize and compile_backbone
        self.hub_downloads = hub_downloads  # False: nothing is downloaded, not even to decide "auto"
        self._load_timeout = load_timeout
        self.compile_threads: list[threading.Thread] = []
        self._auto: AutoChoice | None = None
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, Future] = {}  # source -> the one load in progress
        self._lock = threading.Lock()  # guards the two dicts, held for no longer than a look-up
        self._auto_lock = threading.Lock()

    def resolve(self, name: str) -> AutoChoice:
        """The source behind a menu name (auto is decided once per process) and why."""
        if name != AUTO:
            return AutoChoice(name, "chosen by name")
        with self._auto_lock:
            if self._auto is None:
                self._auto = choose_model(self._auto_timeout, allow_download=self.hub_downloads)
            return self._auto

    def get(self, name: str) -> LoadedModel:
        """The model for a menu name, a checkpoint path or "tiny". RuntimeError/ValueError if it cannot load,
        or (RuntimeError) if it did not load within the time limit."""
        choice = self.resolve(name)
        with self._lock:
            if choice.source in self._loaded:
                return self._loaded[choice.source]
            pending = self._loading.get(choice.source)
            if pending is None:
                pending = self._loading[choice.source] = Future()
                # the caller's context goes along: Gradio finds the page's progress bar (download bars) there
                context = contextvars.copy_context()
                threading.Thread(target=context.run, args=(self._load_into, choice, pending), daemon=True,
                                 name=f"load-{choice.source[:40]}").start()
        try:
            return pending.result(timeout=self._load_timeout)
        except FutureTimeout:
            raise RuntimeError(f"loading {choice.source} took longer than {self._load_timeout:g} s, this app's limit"
                               " for a load; it goes on in the background, so try again in a while, or choose"
                               " another model") from None

    def _load_into(self, choice: AutoChoice, pending: Future) -> None:
        """Runs in its own thread: the load, its result (or error) to everyone waiting for it."""
        try:
            loaded = LoadedModel(self._load(choice.source), choice.source, choice.reason)
        except BaseException as err:  # handed to the waiting pages; a later request tries again
            with self._lock:
                self._loading.pop(choice.source, None)
            pending.set_exception(err)
            return
        with self._lock:
            self._loaded[choice.source] = loaded
            self._loading.pop(choice.source, None)
        pending.set_result(loaded)

    def warm(self, name: str) -> threading.Thread:
        """Start loading in the background so the first upload does not wait; errors surface on use."""
        def run():
            try:
                self.get(name)
            except Exception:  # reported to the user when they actually use the model
                pass
        thread = threading.Thread(target=run, daemon=True, name=f"load-{name}")
        thread.start()
        return thread

    def _load(self, source: str) -> torch.nn.Module | FamilyModel:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the page states the model and its caveats instead
            try:
                model = (detr_core.untrained_model(tiny=True) if source == TINY
                         else detr_core.load_model(source, allow_download=self.hub_downloads))
            except (RuntimeError, ValueError) as err:
                if self.hub_downloads or "downloads are not allowed" not in str(err):
                    raise
                raise type(err)(f"{err}. Whoever runs the app can allow downloads with {HUB_FLAG}") from None
        if isinstance(model, FamilyModel):
            return model  # transformers' own modules, run as they are: the inference copy is DETR's only
        if not self._optimize:
            model.use_inference_twin = False  # the plain model, also where detr_core would run its inference twin
            return model
        fast = detr_core.optimize_for_inference(model, precision=self._precision)
        if self._compile:
            # not a daemon: the interpreter waits for it at exit (seconds) instead of tearing it down mid-compile,
            # which aborts the process ('terminate called without an active exception')
            thread = threading.Thread(target=_compile_quietly, args=(fast, source), daemon=False,
                                      name=f"compile-{source}")
            thread.start()
            self.compile_threads.append(thread)
        return fast


def _compile_quietly(fast: torch.nn.Module, source: str) -> None:
    """Compile in the background; on failure (no compiler, say) the eager backbone simply stays."""
    try:
        seconds = detr_core.compile_backbone_now(fast)
        log.info("compiled the backbone of %s in %.1f s", source, seconds)
    except Exception as err:  # the optimised eager model keeps serving: nothing is lost
        log.warning("could not compile the backbone of %s (%s); staying on the eager backbone", source, err)


def describe(loaded: LoadedModel) -> str:
    """A line of Markdown for the page: which model, its size, and why it was chosen."""
    if isinstance(loaded.model, FamilyModel):
        return describe_family(loaded)
    config = loaded.model.config
    shape = (f"{config.backbone}, {config.enc_layers}+{config.dec_layers} layers, {config.nheads} heads,"
             f" {config.num_queries} queries")
    untrained = loaded.source in ("untrained", TINY) and "UNTRAINED" not in loaded.reason
    warning = " **Untrained: detections and attention are random.**" if untrained else ""
    origin = getattr(loaded.model, "hf_origin", None)
    if origin is not None and origin.mask_head_omitted:
        warning += (f" **Panoptic checkpoint ({origin.architecture}):** the lens shows its detection part; the"
                    " mask head is not shown.")
    if getattr(loaded.model, "approximate", False):
        warning += (" **Approximate mode:** the backbone runs in bfloat16, so scores, boxes and attention differ"
                    " slightly (about 1%) from the official float32 model.")
    return (f"**Model:** `{loaded.source}` ({shape}): {loaded.reason}. {known_classes(loaded.model.class_names)}."
            f"{warning}")


def known_classes(class_names, shown: int = 8) -> str:
    """What the model can find, in one sentence: a model only ever answers one of its classes or "no object"."""
    names = [n for n in class_names if n != "N/A"]  # the unused ids of the COCO-91 layout
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"It knows {len(names)} class{'' if len(names) == 1 else 'es'}: {listed}"


def describe_family(loaded: LoadedModel) -> str:
    """The status line for a DETR-family model: its type, how its decoder reads the image, its preprocessing."""
    fm = loaded.model
    config = fm.model.config
    layers = getattr(config, "decoder_layers", "?")
    queries = getattr(config, "num_queries", "?")
    note = f" **Preprocessing:** {fm.processor_note}." if fm.processor_note else ""
    return (f"**Model:** `{loaded.source}` ({fm.spec.title} through transformers, {layers} decoder layers,"
            f" {queries} queries; decoder: {fm.spec.decoder_view}): {loaded.reason}."
            f" {known_classes(fm.class_names)}.{note}")
