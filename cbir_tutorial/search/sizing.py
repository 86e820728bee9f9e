"""How good and how fast an approximate index is: its recall of the exact top k, against its latency."""

from __future__ import annotations

import time

import numpy as np

def ann_recall_at_k(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each query's exact top-k rows ``reference`` that ``found`` (``(Q, k)``) also returns:
    the recall of an approximate index as ANN benchmarks report it (not
    :func:`~cbir_tutorial.evaluation.metrics.recall_at_k`, the share of *relevant* items retrieved)."""
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
    return {"recall": ann_recall_at_k(found, reference), "ms per query": 1e3 * float(np.median(times))}
