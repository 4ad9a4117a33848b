"""A forward pre-hook for a plain function: see the arguments of every call, for the calling thread only.

RT-DETRv2 calls the module-level function `multi_scale_deformable_attention_v2`; D-FINE and DEIMv2 call it
through an instance attribute (`ms_deformable_attn_core`). Neither is an nn.Module, so no hook can be
registered on it. `tap(owner, name, record)` replaces `owner.name` by a wrapper that calls `record(arguments)`
(arguments bound to the function's own parameter names) and then the original function, unchanged.

One wrapper per (owner, name) is shared by every open `tap` context, in any thread, and counted: the original
is put back when the last context exits, also when the body raises. Calls from threads without an open
context pass straight through, so two threads inspecting one model each see only their own calls.
"""
from __future__ import annotations

import functools
import inspect
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

Recorder = Callable[[dict[str, Any]], None]
_LOCK = threading.Lock()
_TAPS: dict[tuple[int, str], "_Tap"] = {}


class _Tap:
    """The shared wrapper of one (owner, name) and the recorders of the threads using it."""

    def __init__(self, owner: Any, name: str):
        self.owner, self.name = owner, name
        self.original = getattr(owner, name)
        self.signature = inspect.signature(self.original)
        self.recorders: dict[int, list[Recorder]] = {}
        self.users = 0

        @functools.wraps(self.original)
        def wrapper(*args, **kwargs):
            stack = self.recorders.get(threading.get_ident())
            if stack:
                bound = self.signature.bind(*args, **kwargs)
                stack[-1](dict(bound.arguments))
            return self.original(*args, **kwargs)

        self.wrapper = wrapper

    def install(self) -> None:
        setattr(self.owner, self.name, self.wrapper)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.original)


@contextmanager
def tap(owner: Any, name: str, record: Recorder) -> Iterator[None]:
    """Within the context, calls of `owner.name` made by this thread are shown to `record` first."""
    key, thread = (id(owner), name), threading.get_ident()
    with _LOCK:
        shared = _TAPS.get(key)
        if shared is None:
            shared = _TAPS[key] = _Tap(owner, name)
            shared.install()
        shared.users += 1
        shared.recorders.setdefault(thread, []).append(record)
    try:
        yield
    finally:
        with _LOCK:
            stack = shared.recorders[thread]
            stack.remove(record)
            if not stack:
                del shared.recorders[thread]
            shared.users -= 1
            if shared.users == 0:
                shared.restore()
                del _TAPS[key]


def is_tapped(owner: Any, name: str) -> bool:
    """Whether `owner.name` is currently replaced by a tap (for tests and diagnostics)."""
    with _LOCK:
        return (id(owner), name) in _TAPS
