"""What a model source string names on this machine: an existing file or folder, or nothing.

A source comes from a command line, a script or a page's text box, so it can be anything: `~nosuchuser/x` (no such
home folder: pathlib raises RuntimeError), 5,000 characters (the system's ENAMETOOLONG), a NUL byte. Each is a
ValueError that says what is wrong with the name, never a generic error from deep inside pathlib.
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_SOURCE_LENGTH = 1024  # characters: longer than any model name, Hub id or sensible path


def existing_path(source: str | os.PathLike) -> Path | None:
    """The local file or folder `source` names (`~` expanded), or None when nothing exists there.

    ValueError for a name that cannot be a path here: too long, an unknown user's home, a NUL byte, or a path the
    system refuses to look at (permission, a component too long)."""
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"model source {source!r}: expected a name, a path or a Hub id (text)")
    text = os.fspath(source)
    if not isinstance(text, str):
        raise ValueError(f"model source {text!r:.80}: expected a text path, not bytes")
    if len(text) > MAX_SOURCE_LENGTH:
        raise ValueError(f"model source of {len(text):,} characters ({text[:40]!r}...): no model name, Hub id or"
                         f" path is longer than {MAX_SOURCE_LENGTH}")
    if "\0" in text:
        raise ValueError(f"model source {text!r:.80} holds a NUL character: not a path")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~user/..." for a user this machine does not have
        user = text[1:].split("/", 1)[0].split(os.sep, 1)[0]
        raise ValueError(f"model source {text!r:.80}: there is no user {user!r} on this machine, so"
                         f" ~{user} names no folder; give the full path") from None
    try:
        return path if path.exists() else None
    except OSError as err:  # ENAMETOOLONG, EACCES...: pathlib's exists() only ignores "not there"
        raise ValueError(f"model source {text!r:.80} cannot be a path here ({err.strerror})") from None
