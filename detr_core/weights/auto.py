"""The "auto" model choice: the best model this machine can load now, and why."""
from __future__ import annotations

import threading
import urllib.request
from dataclasses import dataclass

from .zoo import MODEL_ZOO, OFFICIAL_BASE_URL, cached_path
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


def choose_model(timeout: float = 2.0, base_url: str = OFFICIAL_BASE_URL) -> AutoChoice:
    """detr-r50 if its weights are cached or its server answers within `timeout` s (it then downloads on
    first use); else the bundled shapes model; else the untrained model."""
    entry = MODEL_ZOO["detr-r50"]
    if cached_path(entry).is_file():
        return AutoChoice("detr-r50", "official DETR-R50 COCO weights found in the cache")
    if _reachable(base_url.rstrip("/") + "/" + entry.filename, timeout):
        return AutoChoice("detr-r50", "official DETR-R50 COCO weights are downloadable (about 160 MB, once)")
    if BUNDLED["shapes"].is_file():
        return AutoChoice("shapes", "no official weights (not cached, no network): using the bundled shapes model")
    return AutoChoice("untrained", "no official weights (not cached, no network) and no bundled model yet:"
                                   " using an UNTRAINED model, its detections and attention are random")
