"""Which models the app offers, and a per-process cache that loads each one lazily, once."""
from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

import detr_core
from detr_core.family import FamilyModel, open_any
from detr_core.family.loading import BUNDLED_FAMILY, bundled_family_names
from detr_core.weights.hub import parse_hub_ref
from detr_core.weights.auto import AutoChoice, choose_model

log = logging.getLogger(__name__)

AUTO = "auto"
TINY = "tiny"  # a very small random model, for tests and quick demos (CLI only, not in the menu)
# the bundled family models join the menu once their folder is in the install (detr_core/assets/)
MENU = (AUTO, *detr_core.MODEL_ZOO, "shapes", *bundled_family_names(), "untrained")
# every name the app accepts (a bundled model not there yet says so when opened); else a path or Hub id
NAMES = (*MENU, *(n for n in BUNDLED_FAMILY if n not in MENU), TINY)


def check_source(name: str) -> str:
    """`name` if the app can try to load it (a name in NAMES, an existing path or a Hub id); else ValueError
    naming the valid names, so that a typo is refused when the app starts rather than on the page."""
    if name in NAMES or Path(name).expanduser().exists() or parse_hub_ref(name) is not None:
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
    """Models by name, each loaded on first use behind one lock (a load can take seconds)."""

    def __init__(self, auto_timeout: float = 2.0, optimize: bool = True, compile_backbone: bool = True,
                 precision: str = "float32"):
        self._auto_timeout = auto_timeout
        self._optimize = optimize  # serve detr_core.optimize_for_inference copies (same numbers, faster)
        self._precision = precision  # "bfloat16": the opt-in approximate mode, labelled on the page
        # compile each optimised backbone in the background; requests run eager until it is ready
        self._compile = optimize and compile_backbone
        self.compile_threads: list[threading.Thread] = []
        self._auto: AutoChoice | None = None
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str) -> AutoChoice:
        """The source behind a menu name (auto is decided once per process) and why."""
        if name != AUTO:
            return AutoChoice(name, "chosen by name")
        with self._lock:
            if self._auto is None:
                self._auto = choose_model(self._auto_timeout)
            return self._auto

    def get(self, name: str) -> LoadedModel:
        """The model for a menu name, a checkpoint path or "tiny". RuntimeError/ValueError if it cannot load."""
        choice = self.resolve(name)
        with self._lock:
            if choice.source not in self._loaded:
                self._loaded[choice.source] = LoadedModel(self._load(choice.source), choice.source, choice.reason)
            return self._loaded[choice.source]

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
            model = detr_core.untrained_model(tiny=True) if source == TINY else open_any(source)
        if isinstance(model, FamilyModel):
            return model  # transformers' own modules, run as they are: the inference copy is DETR's only
        if not self._optimize:
            model.use_inference_twin = False  # the plain model, also where detr_core would run its inference twin
            return model
        fast = detr_core.optimize_for_inference(model, precision=self._precision)
        if self._compile:
            thread = threading.Thread(target=_compile_quietly, args=(fast, source), daemon=True,
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
