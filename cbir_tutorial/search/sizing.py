"""How big and how fast: memory of an index per storage, and recall@k against latency for any backend."""

from __future__ import annotations

import time

import numpy as np

#: Bytes per stored value.
BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


def index_bytes(n: int, dim: int, storage: str = "float32") -> int:
    """Bytes the exact index holds for ``n`` vectors of ``dim`` values: the stored gallery plus one float32
    squared norm per row (and int8's per-dimension scale and offset)."""
    if storage not in BYTES_PER_VALUE:
        raise ValueError(f"storage={storage!r}: use one of {', '.join(BYTES_PER_VALUE)}")
    extra = 8 * dim if storage == "int8" else 0
    return n * dim * BYTES_PER_VALUE[storage] + 4 * n + extra


def recall_at_k(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each query's reference top-k rows that ``found`` (``(Q, k)``) also returns."""
    found, reference = np.atleast_2d(found), np.atleast_2d(reference)
    if found.shape[0] != reference.shape[0]:
        raise ValueError(f"{found.shape[0]} result lists for {reference.shape[0]} reference lists")
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, reference)]))


def recall_and_latency(index, queries: np.ndarray, reference: np.ndarray, k: int = 10,
                       repeats: int = 3) -> dict:
    """``{"recall": recall@k vs reference rows, "ms per query": median time of one query at a time}``.

    ``index``: any backend (``search(queries, k)``); ``reference``: ``(Q, k)`` rows of the exact top ``k``.
    """
    found = index.search(queries, k)[1]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for query in queries:
            index.search(query, k)
        times.append((time.perf_counter() - start) / len(queries))
    return {"recall": recall_at_k(found, reference), "ms per query": 1e3 * float(np.median(times))}
