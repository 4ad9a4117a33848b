"""The process's inspections: one store with a memory budget and an idle time-out, least recently used out first.

One DETR-R50 inspection of an 800x1066 image holds about 90 MB (encoder attention 69 MB in 16-bit fixed point,
decoder cross-attention 16 MB), so a class of sixty would need 5.4 GB if every page kept its own. A page keeps
only a small `Session` in gr.State (its image, the model's name, a key); what is heavy lives here, under that key:
the inspection, the thumbnails drawn from the image, a teaching tab's extra forward pass. Whatever is evicted is
made again from the session's image on its next use (`get_or_make`), so eviction costs time, never an answer.

Like the model cache this is process-wide infrastructure, not per-user state: it holds nothing a page needs to
find again that its own Session cannot rebuild.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

MB = 1 << 20
# 1.5 GiB: sixteen DETR-R50 inspections at 800x1066. With the model, Gradio and one forward pass in flight the
# server should then stay under 4 GB resident: benchmarks/load.py measured a 2.9 GB peak for 16 R50 sessions
# holding 1.2 GB of it (README, "A class on one server"); a full budget under 60 sessions is not yet measured.
DEFAULT_BUDGET_MB = 1536
DEFAULT_IDLE_MINUTES = 20.0


def image_nbytes(image: Image.Image) -> int:
    """Bytes of a PIL image's pixels: Pillow keeps 8-bit images of several bands in 4 bytes a pixel."""
    bands = len(image.getbands())
    per_pixel = 4 if bands > 1 or image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") else 1
    return image.width * image.height * per_pixel


def measure(value: Any, exclude: frozenset[int] = frozenset()) -> int:
    """Bytes held by `value`'s arrays and images: numpy arrays and anything with an `nbytes` (such as
    QuantizedProbabilities), torch tensors, PIL images, and those inside dataclasses, lists, tuples and dicts.
    Each object counts once; objects whose id is in `exclude` (kept alive elsewhere anyway) count nothing."""
    seen: set[int] = set(exclude)

    def walk(obj) -> int:
        if obj is None or isinstance(obj, (str, bytes, int, float, bool)) or id(obj) in seen:
            return 0
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            return obj.element_size() * obj.nelement()
        if isinstance(obj, Image.Image):
            return image_nbytes(obj)
        if isinstance(obj, np.ndarray) or hasattr(obj, "nbytes"):
            return int(obj.nbytes)
        if dataclasses.is_dataclass(obj):
            return sum(walk(getattr(obj, f.name)) for f in dataclasses.fields(obj))
        if isinstance(obj, dict):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return walk(value)


@dataclass
class _Entry:
    value: Any
    nbytes: int
    group: Hashable  # the session it belongs to (its key), or None for entries any session may share
    owner: str | None  # the Gradio session (page) that made it, so that closing the page frees it
    last_used: float


class InspectionStore:
    """Values by key within `budget_bytes` in all (the newest one is kept even if it alone is larger), each
    dropped once unused for `idle_seconds`. Thread-safe; values are read-only once stored.

    Idle entries are swept on every call, so there is no timer thread: memory of idle pages comes back as soon as
    anyone uses the app, and closing a page frees its entries at once (`release_owner`, from demo.unload).
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_MB * MB, idle_seconds: float = DEFAULT_IDLE_MINUTES * 60,
                 clock: Callable[[], float] = time.monotonic):
        if budget_bytes <= 0 or idle_seconds <= 0:
            raise ValueError(f"budget_bytes={budget_bytes} and idle_seconds={idle_seconds} must be positive")
        self.budget_bytes, self.idle_seconds = budget_bytes, idle_seconds
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._used = 0
        self._lock = threading.Lock()  # guards the entries; held for microseconds
        self._making = threading.RLock()  # one heavy make (a forward pass) at a time, so they cannot pile up
        self.evictions = 0  # entries dropped for the budget or for idleness (not those released)

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def summary(self) -> str:
        return f"{len(self._entries)} entries, {self._used / MB:.0f} of {self.budget_bytes / MB:.0f} MB"

    def keys(self) -> list[Hashable]:
        """Keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: Hashable) -> Any | None:
        """The value, marked as just used; None if it is not (or no longer) here."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = self._clock()
                self._entries.move_to_end(key)
            dropped = self._sweep(keep=key)
        _free(dropped)
        return None if entry is None else entry.value

    def put(self, key: Hashable, value: Any, group: Hashable = None, owner: str | None = None,
            exclude: frozenset[int] = frozenset()) -> None:
        """Store `value` (its size measured by `measure`, not counting objects in `exclude`), evicting the least
        recently used entries while the budget is exceeded."""
        entry = _Entry(value, measure(value, exclude), group, owner, self._clock())
        with self._lock:
            old = self._entries.pop(key, None)
            self._used += entry.nbytes - (old.nbytes if old else 0)
            self._entries[key] = entry
            dropped = self._sweep(keep=key)
        if entry.nbytes > self.budget_bytes:
            log.warning("one entry (%.0f MB) is larger than the whole budget (%.0f MB); raise --memory-budget-mb",
                        entry.nbytes / MB, self.budget_bytes / MB)
        _free(dropped)

    def get_or_make(self, key: Hashable, make: Callable[[], Any], group: Hashable = None, owner: str | None = None,
                    heavy: bool = True, exclude: frozenset[int] = frozenset()) -> tuple[Any, bool]:
        """-> (value, whether it was made now). A heavy make (a forward pass) runs one at a time; threads that
        wanted the same key meanwhile find it made when their turn comes, instead of running it again."""
        value = self.get(key)
        if value is not None:
            return value, False
        if not heavy:
            value = make()
            self.put(key, value, group, owner, exclude)
            return value, True
        with self.forward_pass():
            value = self.get(key)
            if value is not None:
                return value, False
            value = make()
            self.put(key, value, group, owner, exclude)
        return value, True

    @contextmanager
    def forward_pass(self) -> Iterator[None]:
        """Around a forward pass (heavy makes run in one): one at a time in the process, and its scratch memory
        (hundreds of MB of activations at DETR-R50 size, left in the arena of whichever thread ran it) given
        back to the operating system afterwards."""
        with self._making:
            try:
                yield
            finally:
                _trim()

    def release_group(self, group: Hashable) -> int:
        """Drop every entry of one session (its page was closed, or a new analysis replaced it). -> entries."""
        return self._release(lambda e: e.group == group)

    def release_owner(self, owner: str, keep_group: Hashable = None) -> int:
        """Drop every entry a page made, except those of `keep_group` (its current session). -> entries."""
        return self._release(lambda e: e.owner == owner and e.group != keep_group)

    def _release(self, match: Callable[[_Entry], bool]) -> int:
        with self._lock:
            dropped = [(k, self._pop(k)) for k, e in list(self._entries.items()) if match(e)]
        count = len(dropped)
        _free(dropped)
        return count

    def _pop(self, key: Hashable) -> _Entry:
        entry = self._entries.pop(key)
        self._used -= entry.nbytes
        return entry

    def _sweep(self, keep: Hashable) -> list:
        """(Under the lock.) Pop idle entries and, while over budget, the least recently used; never `keep`."""
        now, dropped = self._clock(), []
        for key, entry in list(self._entries.items()):  # least recently used first
            idle = now - entry.last_used > self.idle_seconds
            if not idle and self._used <= self.budget_bytes:
                break
            if key != keep:
                dropped.append((key, self._pop(key)))
        self.evictions += len(dropped)
        return dropped


def _free(dropped: list) -> None:
    """Give the memory of dropped entries back to the operating system."""
    if dropped:
        dropped.clear()
        _trim()


def _trim() -> None:
    """glibc keeps freed blocks in per-thread arenas (Gradio runs handlers on many threads), so without a trim
    the resident size would not come down after an eviction or a forward pass (measured: 1.7 GB stayed 1.7 GB
    after dropping six R50 inspections, 0.98 GB after a trim). Fractions of a millisecond."""
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim, the allocator does its own
        return None


_TRIM = _malloc_trim()
