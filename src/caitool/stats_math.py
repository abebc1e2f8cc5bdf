"""Small statistics shared by the checks and the evaluation: an interval for a proportion and a correlation.

Hand-written because they are a few lines each and caitool's dependencies (numpy, but no scipy or
statsmodels) do not offer them; statsmodels' ``proportion_confint(method="wilson")`` gives the same interval.
At the bottom of the layers: it imports nothing from caitool.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion. For soft outcomes ``successes`` is the sum of probabilities:
    an outcome in [0, 1] with mean p has variance at most p(1 - p), so the interval is conservative."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson correlation of two equally long sequences; None when either is constant or too short."""
    if len(xs) != len(ys):
        raise ValueError("pearson: sequences of different lengths")
    if len(xs) < 3:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)
