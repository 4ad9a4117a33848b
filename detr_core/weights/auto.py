"""The "auto" model choice: the best model this machine can load now, and why."""
from __future__ import annotations

import threading
import urllib.request
from dataclasses import dataclass

from . import zoo
from .zoo import MODEL_ZOO, cached_path
from .loading import BUNDLED


@dataclass(frozen=True)
class AutoChoice:
    source: str  # a name load_model accepts
    reason: str  # one sentence for the user


def _reachable(url: str, timeout: float) -> bool:
    """True if a HEAD request answers within `timeout` s in all (DNS included, which urlopen cannot bound)."""
    answer: list[bool] = []

    def probe():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                answer.append(True)
        except Exception:  # any failure means "not now"; the reason does not change the choice
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def choose_model(timeout: float = 2.0, base_url: str | None = None, allow_download: bool = True) -> AutoChoice:
    """detr-r50 if its weights are cached or its server answers within `timeout` s (it then downloads on
    first use); else the bundled shapes model; else the untrained model. allow_download=False: no probe at all
    (a probe is a request too), only what is cached or bundled."""
    entry = MODEL_ZOO["detr-r50"]
    if cached_path(entry).is_file():
        return AutoChoice("detr-r50", "official DETR-R50 COCO weights found in the cache")
    if allow_download and _reachable((base_url or zoo.OFFICIAL_BASE_URL).rstrip("/") + "/" + entry.filename,
                                     timeout):
        return AutoChoice("detr-r50", "official DETR-R50 COCO weights are downloadable (about 160 MB, once)")
    why = "not cached, no network" if allow_download else "not cached, and downloads are not allowed"
    if BUNDLED["shapes"].is_file():
        return AutoChoice("shapes", f"no official weights ({why}): using the bundled shapes model")
    return AutoChoice("untrained", f"no official weights ({why}) and no bundled model yet:"
                                   " using an UNTRAINED model, its detections and attention are random")
