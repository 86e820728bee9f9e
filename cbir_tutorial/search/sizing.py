"""How good and how fast an approximate index is: its recall of the exact top k, against its latency, on a
gallery generated around real features; how the cost of a query grows with the gallery.

* :func:`ann_recall_at_k`, :func:`recall_and_latency` - one index against the exact top k;
* :func:`strongest_directions` - real features kept on their strongest principal directions (a smaller ``D``);
* :class:`GalleryAround` - new vectors between real ones and their neighbours: a large gallery with the
  clusters of real features, without extracting hundreds of thousands of photos;
* :func:`recall_latency_curves` - every index at each gallery size, its knob turned on the built index;
* :func:`vectors_compared` and :func:`growth_table` - about how many vectors a query compares with, and how its time
  and recall move when the gallery grows.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .backends import make_index
from .faiss_index import default_nlist
from .whitening import PCAWhitening, l2_normalise

#: The knob turned on a built index, and its values: ``nprobe`` for IVF, ``ef_search`` for HNSW.
KNOBS: dict[str, tuple[str, tuple[int, ...]]] = {"faiss-ivf": ("nprobe", (1, 2, 4, 8, 16, 32)),
                                                 "faiss-hnsw": ("ef_search", (16, 32, 64, 128))}
#: The settings :func:`growth_table` follows from one gallery size to the next.
GROWTH_SETTINGS: tuple[tuple[str, str], ...] = (("exact", "-"), ("faiss-ivf", "nprobe=16"),
                                                ("faiss-hnsw", "ef_search=64"))


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


def strongest_directions(features: np.ndarray, dim: int = 0) -> np.ndarray:
    """``(N, D)`` features → ``(N, d)`` float32 unit vectors: centred, on their ``d`` strongest principal
    directions (plain PCA: :class:`~cbir_tutorial.search.whitening.PCAWhitening` with ``power=0``), then
    L2-normalised again. ``d = min(dim, N - 1)``: ``N`` centred vectors span at most ``N - 1`` directions.
    ``dim`` 0, or at least ``D``: the features as they are (unit length, float32)."""
    features = np.asarray(features, dtype=np.float32)
    if not 0 < dim < features.shape[1]:
        return l2_normalise(features)
    return PCAWhitening(min(int(dim), len(features) - 1), power=0.0).fit_transform(features)


class GalleryAround:
    """Unit vectors generated around real ``seeds`` (``(N, D)``, unit length): each new vector mixes a seed
    with one of its ``n_neighbours`` nearest seeds (a uniform random share of each), plus Gaussian noise of
    length about ``noise_share`` x the median distance from a seed to its nearest seed, scaled back to
    length 1. New products between existing ones, in the same clusters.

    The neighbours come from the exact index, in blocks of rows (never an ``N x N`` matrix).
    ``seed``: of the random generator that :meth:`sample` draws from, call after call.
    """

    def __init__(self, seeds: np.ndarray, *, n_neighbours: int = 10, noise_share: float = 0.3, seed: int = 0):
        self.seeds = np.asarray(seeds, dtype=np.float32)
        if self.seeds.ndim != 2 or len(self.seeds) < 2:
            raise ValueError(f"seeds must be (N, D) with N >= 2, got shape {self.seeds.shape}")
        n_neighbours = min(int(n_neighbours), len(self.seeds) - 1)
        distances, self.neighbours = make_index("exact", self.seeds).search_stored(k=n_neighbours)
        self.noise = float(noise_share) * float(np.median(distances[:, 0]))
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return (f"GalleryAround({len(self.seeds):,} seeds x {self.seeds.shape[1]}, {self.neighbours.shape[1]} "
                f"neighbours each, noise length {self.noise:.3f})")

    def sample(self, n: int) -> np.ndarray:
        """``(n, D)`` float32 new unit vectors (see the class)."""
        rng, dim = self.rng, self.seeds.shape[1]
        first = rng.integers(0, len(self.seeds), n)
        second = self.neighbours[first, rng.integers(0, self.neighbours.shape[1], n)]
        share = rng.uniform(0, 1, (n, 1)).astype(np.float32)
        rows = share * self.seeds[first] + (1 - share) * self.seeds[second]
        rows += self.noise * rng.standard_normal((n, dim), dtype=np.float32) / np.sqrt(dim)
        return l2_normalise(rows)


def nlist_rule(n: int) -> str:
    """Which bound sets :func:`~cbir_tutorial.search.faiss_index.default_nlist` for ``n`` rows: ``"4 sqrt(N)"``
    (FAISS's rule of thumb), ``"the cap N // 39"`` (at least 39 training rows per list) or ``"the floor of 1"``."""
    if n // 39 < 1:
        return "the floor of 1"
    return "the cap N // 39" if n // 39 < 4 * np.sqrt(n) else "4 sqrt(N)"


def vectors_compared(index: str, n: int, *, nlist: int | None = None, nprobe: int | None = None) -> float:
    """Vectors one query is compared with, for a gallery of ``n`` rows: all ``n`` for ``"exact"``; for
    ``"faiss-ivf"`` an estimate, ``nlist + nprobe * n / nlist``: the ``nlist`` centroids (to find the nearest
    lists) plus ``nprobe`` lists assumed of equal size, ``n / nlist`` rows each (k-means lists are not:
    ``faiss.cvar.indexIVF_stats.ndis`` counts the real number); ``nlist`` by default :func:`default_nlist`.
    NaN for an index without such a model (HNSW's graph walk)."""
    if index == "exact":
        return float(n)
    if index == "faiss-ivf":
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if nprobe is None:
            raise ValueError("vectors_compared for faiss-ivf needs nprobe")
        return float(nlist + min(int(nprobe), nlist) * n / nlist)
    return float("nan")


def recall_latency_curves(gallery: np.ndarray, queries: np.ndarray, sizes: Sequence[int], k: int = 10, *,
                          knobs: Mapping[str, tuple[str, Sequence[int]]] = KNOBS, repeats: int = 3,
                          measures: Mapping[str, Callable] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each index of ``knobs`` (and the exact search) on the first ``n`` rows of ``gallery`` for each ``n`` of
    ``sizes``: ``(curves, builds)``.

    ``curves``: one row per index, size and knob value, columns ``rows, index, setting, recall, ms per query``
    (:func:`recall_and_latency` against the exact top ``k``) and ``vectors compared``
    (:func:`vectors_compared`, an estimate for IVF). The knob is turned on the built index
    (``set_search_options``); the other options are the package's defaults. ``builds``: one row per size and
    approximate index, columns ``rows, index, build s, nlist, nlist set by`` (the last two for IVF only).
    ``measures``: more columns of ``curves``, each ``measure(index, queries, k)`` on the index as searched there.
    """
    measures = measures or {}
    measured, builds = [], []
    for n in sizes:
        part = gallery[:n]
        exact = make_index("exact", part)
        reference = exact.search(queries, k)[1]
        measured.append({"rows": n, "index": "exact", "setting": "-",
                         **recall_and_latency(exact, queries, reference, k, repeats),
                         "vectors compared": vectors_compared("exact", n),
                         **{column: measure(exact, queries, k) for column, measure in measures.items()}})
        del exact
        for name, (knob, values) in knobs.items():
            start = time.perf_counter()
            index = make_index(name, part)
            build = {"rows": n, "index": name, "build s": time.perf_counter() - start}
            nlist = index.options.get("nlist") if name == "faiss-ivf" else None
            if nlist is not None:
                build.update({"nlist": int(nlist), "nlist set by": nlist_rule(n)})
            builds.append(build)
            for value in values:
                index.set_search_options(**{knob: value})
                measured.append({"rows": n, "index": name, "setting": f"{knob}={value}",
                                 **recall_and_latency(index, queries, reference, k, repeats),
                                 "vectors compared": (vectors_compared(name, n, nlist=nlist, nprobe=value)
                                                      if knob == "nprobe" else float("nan")),
                                 **{column: measure(index, queries, k) for column, measure in measures.items()}})
            del index
    builds = pd.DataFrame(builds, columns=["rows", "index", "build s", "nlist", "nlist set by"])
    return pd.DataFrame(measured), builds.astype({"nlist": "Int64"}).fillna({"nlist set by": "-"})


def growth_table(curves: pd.DataFrame, settings: Sequence[tuple[str, str]] = GROWTH_SETTINGS) -> pd.DataFrame:
    """How a query's cost moves from the smallest to the largest gallery of :func:`recall_latency_curves`'
    ``curves``, for each ``(index, setting)`` of ``settings``: indexed by ``index, setting``, columns ``ms,
    <small> rows``, ``ms, <large> rows``, ``ms growth`` (large / small), the same pairs for ``vectors compared``
    (growth NaN where there is no model) and ``recall``."""
    small, large = int(curves["rows"].min()), int(curves["rows"].max())
    by_size = curves.set_index(["index", "setting", "rows"])
    rows = []
    for name, setting in settings:
        a, b = by_size.loc[(name, setting, small)], by_size.loc[(name, setting, large)]
        rows.append({"index": name, "setting": setting,
                     f"ms, {small:,} rows": a["ms per query"], f"ms, {large:,} rows": b["ms per query"],
                     "ms growth": b["ms per query"] / a["ms per query"],
                     f"vectors compared, {small:,} rows": a["vectors compared"],
                     f"vectors compared, {large:,} rows": b["vectors compared"],
                     "vectors compared growth": b["vectors compared"] / a["vectors compared"],
                     f"recall, {small:,} rows": a["recall"], f"recall, {large:,} rows": b["recall"]})
    return pd.DataFrame(rows).set_index(["index", "setting"])
