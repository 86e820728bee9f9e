"""The one check that feature vectors hold numbers: every extractor and every index backend calls it.

NaN or infinity in a vector (a diverged model, a corrupted cache, overflow) makes every distance to it
NaN, and a ranking over NaN distances is meaningless: refused here, loudly, before it is stored or searched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Rows checked per step: the ``isfinite`` temporary stays small whatever the array's size.
CHECK_ROWS = 16_384
#: Row numbers (or names) an error message lists.
SHOWN = 5


def check_finite(vectors: np.ndarray, *, what: str = "features", names: Sequence | None = None,
                 fix: str = "check the features") -> None:
    """Raise ValueError when ``(N, D)`` (or ``(D,)``) ``vectors`` hold NaN or infinity.

    One ``isfinite`` pass in blocks of :data:`CHECK_ROWS` rows; only on failure are the rows counted. The
    message says how many of ``what`` (e.g. ``"features"``, ``"queries"``) are not finite, the first
    :data:`SHOWN` of them (their ``names``, e.g. image paths, when given; else row numbers) and ``fix``.
    """
    array = np.asarray(vectors)
    if array.dtype.kind in "biu" or array.size == 0:
        return
    rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(1, -1)
    if all(np.isfinite(rows[s:s + CHECK_ROWS]).all() for s in range(0, len(rows), CHECK_ROWS)):
        return
    bad = np.concatenate([np.flatnonzero(~np.isfinite(rows[s:s + CHECK_ROWS]).all(axis=1)) + s
                          for s in range(0, len(rows), CHECK_ROWS)])
    shown = [str(names[r]) for r in bad[:SHOWN]] if names is not None else [str(r) for r in bad[:SHOWN]]
    more = f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
    which = "" if array.ndim == 1 else f" ({'' if names is not None else 'rows '}{', '.join(shown)}{more})"
    raise ValueError(f"{len(bad)} of {len(rows)} {what} hold NaN or infinity{which}: {fix}")
