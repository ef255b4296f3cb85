"""Small statistics over measured samples: median and nearest-rank percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], rank: float) -> float:
    """Return the nearest-rank percentile `rank` (0 to 100) of `samples`.

    Nearest rank never interpolates, so with 20 samples the p95 is the 19th smallest.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    index = max(math.ceil(rank / 100 * len(ordered)) - 1, 0)
    return ordered[index]
