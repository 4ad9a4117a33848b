"""Means with a 95% interval (Student's t over the per-detection values)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def mean_interval(values: Sequence[float]) -> tuple[float, list[float]]:
    """(mean, [low, high]) of the mean's 95% t-interval; one value: the interval is that value."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, [math.nan, math.nan]
    mean = float(v.mean())
    if v.size == 1:
        return mean, [mean, mean]
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, [mean - half, mean + half]
