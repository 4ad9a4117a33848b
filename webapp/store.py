"""The process's inspections: one store with a memory budget and an idle time-out, least recently used out first.

One DETR-R50 inspection of an 800x1066 image holds about 90 MB (encoder attention 69 MB in 16-bit fixed point,
decoder cross-attention 16 MB), so a class of sixty would need 5.4 GB if every page kept its own. A page keeps
only a small `Session` in gr.State (its image, the model's name, a key); what is heavy lives here, under that key:
the analysed image itself (a lossless PNG copy, a *source* entry), the inspection, the thumbnails drawn from the
image, a teaching tab's extra forward pass. Everything a page holds counts in the one budget. Whatever is evicted
is made again from the session's image on its next use (`get_or_make`), so eviction costs time, never an answer;
source entries leave last, after every entry that can be made again, and only after an hour unused (Gradio
itself forgets a closed page's state after an hour), so a page loses its image only when the budget is full of
images, after an hour away, or when it closes; then it says so and asks for the image again.

The store also caps how many pages may hold an analysis at once (`max_pages`, the app's --max-sessions): a page
counts while it has used its entries within the idle time. Over the cap, a new page's analysis is refused with
`PageLimitError`; pages already counted go on as before.

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
# A class of sixty with room to spare. Each page's image takes up to 5.3 MB of the budget (a 1333x1333 PNG of noise;
# 2.3 MB for a 1333x1562 photo), so a full house of images still leaves two thirds of the default budget to analyses.
DEFAULT_MAX_PAGES = 100
SOURCE_IDLE_SECONDS = 3600.0  # a page's image is kept this long unused (or the idle time, if longer)


class PageLimitError(RuntimeError):
    """A new page's analysis was refused: as many pages as the store allows hold one already."""


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
        if obj is None or isinstance(obj, (str, int, float, bool)) or id(obj) in seen:
            return 0
        if isinstance(obj, (bytes, bytearray)):  # an encoded image, say
            return len(obj)
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
    source: bool = False  # what the others are made from (a page's image): evicted last, kept longer when idle


class InspectionStore:
    """Values by key within `budget_bytes` in all (the newest one is kept even if it alone is larger), each
    dropped once unused for `idle_seconds`. Thread-safe; values are read-only once stored.

    Idle entries are swept on every call, so there is no timer thread: memory of idle pages comes back as soon as
    anyone uses the app, and closing a page frees its entries at once (`release_owner`, from demo.unload).
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_MB * MB, idle_seconds: float = DEFAULT_IDLE_MINUTES * 60,
                 clock: Callable[[], float] = time.monotonic, max_pages: int = DEFAULT_MAX_PAGES):
        if budget_bytes <= 0 or idle_seconds <= 0 or max_pages <= 0:
            raise ValueError(f"budget_bytes={budget_bytes}, idle_seconds={idle_seconds} and max_pages={max_pages}"
                             " must be positive")
        self.budget_bytes, self.idle_seconds, self.max_pages = budget_bytes, idle_seconds, max_pages
        self.source_idle_seconds = max(idle_seconds, SOURCE_IDLE_SECONDS)
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # least recently used first
        self._used = 0
        self._source_bytes = 0  # of source entries, within _used
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
            exclude: frozenset[int] = frozenset(), source: bool = False) -> None:
        """Store `value` (its size measured by `measure`, not counting objects in `exclude`), evicting the least
        recently used entries while the budget is exceeded. `source`: nothing could make it again (see above)."""
        entry = _Entry(value, measure(value, exclude), group, owner, self._clock(), source)
        with self._lock:
            old = self._entries.pop(key, None)
            self._used += entry.nbytes - (old.nbytes if old else 0)
            self._source_bytes += (entry.nbytes if source else 0) - (old.nbytes if old and old.source else 0)
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

    def discard(self, key: Hashable) -> None:
        """Drop one entry if it is here (a copy that another entry now holds)."""
        self._release(lambda entry: False, keys={key})

    def active_pages(self) -> set[str]:
        """The pages (owners) that hold a source entry and used any of their entries within the idle time."""
        with self._lock:
            return self._active_pages(self._clock())

    def _active_pages(self, now: float) -> set[str]:
        last_used: dict[str, float] = {}
        for entry in self._entries.values():
            if entry.owner is not None:
                last_used[entry.owner] = max(last_used.get(entry.owner, entry.last_used), entry.last_used)
        holding = {e.owner for e in self._entries.values() if e.source and e.owner is not None}
        return {owner for owner in holding if now - last_used[owner] <= self.idle_seconds}

    def admit(self, owner: str | None) -> None:
        """Let page `owner` hold an analysis, or PageLimitError if `max_pages` other pages hold one (and have used
        it within the idle time). A page already counted, and code with no page (owner None), always pass."""
        if owner is None:
            return
        with self._lock:
            active = self._active_pages(self._clock())
        if owner not in active and len(active) >= self.max_pages:
            raise PageLimitError(
                f"this server is already showing analyses to {len(active)} pages, the most it takes at once (set"
                f" by whoever runs it with --max-sessions {self.max_pages}); try again in a few minutes, when a"
                " page has closed or gone unused for a while")

    def release_group(self, group: Hashable) -> int:
        """Drop every entry of one session (its page was closed, or a new analysis replaced it). -> entries."""
        return self._release(lambda e: e.group == group)

    def release_owner(self, owner: str, keep_group: Hashable = None) -> int:
        """Drop every entry a page made, except those of `keep_group` (its current session). -> entries."""
        return self._release(lambda e: e.owner == owner and e.group != keep_group)

    def _release(self, match: Callable[[_Entry], bool], keys: set = frozenset()) -> int:
        with self._lock:
            dropped = [(k, self._pop(k)) for k, e in list(self._entries.items()) if k in keys or match(e)]
        count = len(dropped)
        _free(dropped)
        return count

    def _pop(self, key: Hashable) -> _Entry:
        entry = self._entries.pop(key)
        self._used -= entry.nbytes
        self._source_bytes -= entry.nbytes if entry.source else 0
        return entry

    def _sweep(self, keep: Hashable) -> list:
        """(Under the lock.) Pop idle entries (sources only after longer), then, while over budget, the least
        recently used other than sources; sources only while they alone are over budget (so that making an
        entry again never costs a page its image; the newest entry may then pass the budget, as it may alone).
        Never `keep`."""
        now, dropped = self._clock(), []
        for key, entry in list(self._entries.items()):  # least recently used first
            unused = now - entry.last_used
            if unused <= self.idle_seconds:
                break  # and so is every entry after it
            if key != keep and unused > (self.source_idle_seconds if entry.source else self.idle_seconds):
                dropped.append((key, self._pop(key)))
        for sources in (False, True):
            for key, entry in list(self._entries.items()):
                if (self._source_bytes if sources else self._used) <= self.budget_bytes:
                    break
                if key != keep and entry.source == sources:
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
