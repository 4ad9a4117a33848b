"""Warnings that name the user's line: the first frame outside `detr_core`, however many of its own functions
the call went through (`load_model` -> `load_detr` -> `interpret_checkpoint`, say). A fixed `stacklevel` points
at the wrong line as soon as one more layer calls the function that warns.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parent)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """warnings.warn(message, category) attributed to the nearest caller outside detr_core."""
    frame, level = sys._getframe(1), 2  # level 2: the function that called warn()
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
