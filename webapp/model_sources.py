"""Which models a page may open, and the model box's handlers that ask first.

A page is a door into the server. Local model paths are accepted only under the folders the app may read
(examples/, the folder it started in, --data-root folders), as the matching tab does for data sets. On a page served
beyond loopback (--host other than loopback, or --share) a Hub id opens only if it is already in the server's
Hugging Face cache, unless whoever started the app allowed downloads with --allow-hub-download.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from detr_core.weights.hub import HUB_MODELS, cached_model, parse_hub_ref
from detr_core.weights.sources import existing_path
from detr_core.weights.zoo import MODEL_ZOO, cached_path

from . import analysis
from .models import HUB_FLAG, MENU, NAMES, ModelCache
from .store import InspectionStore

ROOT_FLAG = "--data-root"
PUBLIC_FLAG = "--public"
# DETR-family models the menu offers (transformers' own implementations; ids from the transformers docs)
FAMILY_HUB_MODELS = ("SenseTime/deformable-detr", "PekingU/rtdetr_r50vd", "microsoft/conditional-detr-resnet-50")
FREE_TEXT_HINT = "or type a Hugging Face Hub id (owner/name, owner/name@revision) or a model folder or file"


def served_beyond_loopback(host: str, share: bool, public: bool = False) -> bool:
    """Whether people other than this machine's own users may reach the page: it listens beyond loopback, has a
    share link, or whoever runs it says so (`public`: behind a reverse proxy every visitor seems local)."""
    return public or share or not (host in ("localhost", "::1") or host.startswith("127."))


def is_filesystem_root(folder: Path) -> bool:
    """/ (or a drive's root): as an allowed folder it would allow every file."""
    resolved = folder.resolve()
    return resolved == Path(resolved.anchor)


def allowed_roots(examples: Path, data_roots: tuple[Path, ...], start: Path) -> tuple[Path, ...]:
    """The folders a page may open files under: the bundled examples, the start folder (never the file system's
    root: a service manager starts programs in /), and the --data-root folders."""
    return (examples, *(() if is_filesystem_root(start) else (start,)), *data_roots)


@dataclass(frozen=True)
class SourcePolicy:
    """What a page may ask the server to open. `preapproved`: sources the person who started the app named."""

    roots: tuple[Path, ...]
    hub_downloads: bool = True  # False: only Hub ids already in the cache
    preapproved: frozenset = field(default_factory=frozenset)

    def check(self, source: str | None) -> str:
        """`source` stripped, if the page may open it; ValueError saying why not and what to do."""
        text = (source or "").strip()
        if not text:
            raise ValueError(f"choose a model from the menu, {FREE_TEXT_HINT}")
        if text in self.preapproved:
            return text
        if text in NAMES:
            return self._named(text)
        path = existing_path(text)  # ValueError for a name no path can have (~nosuchuser, too long...)
        ref = parse_hub_ref(text) if path is None else None  # ValueError for an invalid repo id or revision
        if path is not None or ref is None:
            return self._local(text, path)
        if not self.hub_downloads and cached_model(ref) is None:
            raise ValueError(
                f"{ref} is not in this server's Hugging Face cache, and fetching models from the Hub is off on a"
                f" page served beyond the server's own machine. Whoever runs the app can allow it by starting it"
                f" with {HUB_FLAG}, or fill the cache on the server first (`hf download {ref.repo_id}`)")
        return text

    def _named(self, name: str) -> str:
        """An official zoo name opens without the flag only when its weights are cached: it is a download too."""
        entry = MODEL_ZOO.get(name)
        if entry is not None and not self.hub_downloads and not cached_path(entry).is_file():
            raise ValueError(f"the official {name} weights are not in this server's cache, and downloads are off"
                             f" on a page served beyond the server's own machine. Whoever runs the app can allow"
                             f" them by starting it with {HUB_FLAG}, or put {entry.filename} into"
                             f" {cached_path(entry).parent}")
        return name

    def _local(self, text: str, path: Path | None) -> str:
        """The folders first, existence second: a page must not learn what exists outside them."""
        resolved = Path(text).expanduser().resolve()  # symlinks followed: a link inside must not lead outside
        if not any(resolved.is_relative_to(root.resolve()) for root in self.roots):
            allowed = ", ".join(str(r) for r in self.roots)
            raise ValueError(f"{text} is outside the folders this app may read models from ({allowed}); start the"
                             f" app from the folder that holds it, or add that folder with {ROOT_FLAG}")
        if path is None:
            raise ValueError(f"{text} does not exist; give a menu name, {FREE_TEXT_HINT.removeprefix('or ')}")
        return text


def menu_choices(default_model: str) -> list[str]:
    """The menu: the app's own names, the official zoo, the Hugging Face ids (DETR, then the DETR family); and
    the default if it is none."""
    choices = [*MENU, *HUB_MODELS, *FAMILY_HUB_MODELS]
    return choices if default_model in choices else [*choices, default_model]


def _refused(policy: SourcePolicy, name: str | None) -> bool:
    """True (and the person told why, in one toast) if the page may not open ``name``."""
    try:
        policy.check(name)
    except ValueError as err:
        analysis.tell(analysis.LOAD_FAILED, f"Cannot open the model {name!r}: {err}")
        return True
    return False


def preload_handler(models: ModelCache, policy: SourcePolicy):
    """fn(menu name) -> nothing: loads the model the page asks for, before the event that runs it. The page wires
    it outside the one-at-a-time group of the forward passes, so that a load (a download, a large checkpoint)
    holds up only the page that asked for it, not the analyses of pages whose model is loaded. It says nothing:
    a refusal or a failed load is told by the event after it, which asks the cache again."""
    def preload(model_name: str, progress=gr.Progress(track_tqdm=True)):
        try:
            name = policy.check(model_name)
        except ValueError:
            return gr.skip()
        progress(0, desc=f"Loading {name}")
        try:
            models.get(name)
        except (RuntimeError, ValueError, OSError):
            pass
        return gr.skip()
    return preload


def analyze_handler(models: ModelCache, policy: SourcePolicy, store: InspectionStore | None = None):
    """analysis.analyze_handler, after the policy check; download and load progress shows on the page. The
    page's Gradio session owns the analysis, so that its earlier ones leave the store."""
    inner = analysis.analyze_handler(models, store)

    def analyze_image(path, model_name: str, request: gr.Request = None,
                      progress=gr.Progress(track_tqdm=True)):
        if _refused(policy, model_name):
            return None, None, gr.skip()
        progress(0, desc=f"Loading {model_name.strip()}")
        return inner(path, model_name.strip(), owner=getattr(request, "session_hash", None))
    return analyze_image


def switch_handler(models: ModelCache, policy: SourcePolicy):
    """analysis.switch_handler, after the policy check: a refused source puts the menu back on the model in
    use, as a failed load does. Download and load progress shows on the page."""
    inner = analysis.switch_handler(models)

    def switch_model(model_name: str, current: str, session, progress=gr.Progress(track_tqdm=True)):
        if model_name == current:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if _refused(policy, model_name):
            return gr.skip(), gr.skip(), current, gr.skip()
        progress(0, desc=f"Loading {model_name.strip()}")
        return inner(model_name.strip(), current, session)
    return switch_model
