r"""Query expansion and database augmentation: each vector moved towards its nearest neighbours.

- :func:`alpha_query_expansion` (αQE, Radenović et al. 2018): the query becomes
  :math:`q + \sum_{i \le n} \max(s_i, 0)^\alpha x_i` over its ``n`` nearest gallery items, renormalised;
- :func:`database_augmentation` (DBA, Arandjelović & Zisserman 2012): every gallery item becomes the
  same weighted sum over its own ``n`` neighbours (itself with weight 1).

:class:`ExpandedIndex` searches with DBA and αQE together, and keeps leave-one-out evaluation honest:
a gallery row used as a query is never one of its own expansion neighbours, and its contribution to
its neighbours' augmented vectors is taken out before they are ranked against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import Index, allowed_mask, checked_query, checked_rows, empty_results, make_index, result_width
from .exact import DEFAULT_CHUNK_ROWS, EuclideanIndex
from .filters import Filters
from .ranking import nearest_first
from .whitening import l2_normalise

#: Queries scored per step (``Q x N`` similarities held at once at most ``_BLOCK`` floats).
_BLOCK = 4_000_000
#: The neighbours' weight exponent α of DBA and αQE (3, as Radenović et al. 2018).
ALPHA = 3.0


def _expansion_weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(similarities, 0.0) ** alpha


class ExpandedIndex(Index):
    """Exact search by cosine similarity with optional DBA on the gallery and αQE on the queries.

    An :class:`~cbir_tutorial.search.backends.Index` (``make_index("expanded", features, qe_n=2)``);
    distances are Euclidean between the L2-normalised (expanded) vectors. ``dba_n`` / ``qe_n`` = 0 switch
    a step off. A stored id given in ``exclude_ids`` (a leave-one-out query) is neither one of its query's
    expansion neighbours nor counted inside its neighbours' augmented vectors. The vectors are kept in an
    exact index (in id order); every ``add`` or ``remove`` refits DBA on the whole current gallery (one
    ``N x N`` pass, blocked), so a changed index answers exactly as one built from scratch. Saved as its
    un-augmented gallery; DBA is recomputed on load (deterministic).
    """

    name = "expanded"

    def __init__(self, dim: int, *, qe_n: int = 0, dba_n: int = 0, alpha: float = ALPHA):
        self.qe_n, self.dba_n, self.alpha = int(qe_n), int(dba_n), float(alpha)
        self.store = EuclideanIndex(dim)
        self._fit()

    def _fit(self) -> None:
        """DBA over the current gallery: each row's neighbours, weights and augmented vector."""
        self.gallery = self.store.gallery
        n = len(self.gallery)
        if self.dba_n > 0 and n > 1:
            self._neighbours, self._weights = self._gallery_neighbours(min(self.dba_n, n - 1))
            sums = self.gallery + np.einsum("jm,jmd->jd", self._weights, self.gallery[self._neighbours])
        else:
            self._neighbours = np.zeros((n, 0), dtype=np.int64)
            self._weights = np.zeros((n, 0), dtype=np.float32)
            sums = self.gallery.copy()
        self._sums = sums.astype(np.float32)  # unnormalised augmented vectors S_j
        self._norms = np.linalg.norm(self._sums, axis=1)
        self.augmented = self._sums / np.maximum(self._norms, 1e-12)[:, None]
        # who counts row e among its neighbours: the (j, m) pairs with neighbours[j, m] == e, grouped by e
        flat = self._neighbours.ravel()
        self._pairs = np.argsort(flat, kind="stable")
        self._pair_starts = np.searchsorted(flat[self._pairs], np.arange(n + 1))

    def __len__(self) -> int:
        return len(self.store)

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def ids(self) -> np.ndarray:
        return self.store.ids

    def get_config(self) -> dict:
        return {"qe_n": self.qe_n, "dba_n": self.dba_n, "alpha": self.alpha}

    def add(self, vectors: np.ndarray, ids, metadata=None) -> None:
        """Store ``(n, D)`` vectors (L2-normalised here) under ``ids``, an id already stored replaced; DBA is
        refitted on the whole gallery (new rows may be anyone's neighbours)."""
        vectors, ids = checked_rows(self, vectors, ids, metadata)
        self.store.add(l2_normalise(vectors), ids, metadata)
        self._fit()

    def remove(self, ids) -> None:
        """Delete ``ids`` (KeyError naming those not stored, nothing removed); DBA is refitted."""
        self.store.remove(ids)
        self._fit()

    def _save_data(self, folder: Path) -> None:
        self.store._save_data(folder)

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "ExpandedIndex":
        index = cls(int(config["dim"]), **{key: config[key] for key in ("qe_n", "dba_n", "alpha") if key in config})
        index.store = EuclideanIndex._load_data(folder, {"dtype": "float32", "chunk_rows": DEFAULT_CHUNK_ROWS,
                                                         "dim": config["dim"]})
        index._fit()
        return index

    def __repr__(self) -> str:
        steps = [f"DBA(n={self.dba_n})"] if self.dba_n else []
        steps += [f"aQE(n={self.qe_n})"] if self.qe_n else []
        steps += [f"alpha={self.alpha:g}"] if steps else []
        return f"ExpandedIndex({len(self)} x {self.dim}, {' + '.join(steps) or 'no expansion'})"

    def _gallery_neighbours(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        neighbours = np.empty((len(self.gallery), n), dtype=np.int64)
        weights = np.empty((len(self.gallery), n), dtype=np.float32)
        step = max(1, _BLOCK // len(self.gallery))
        for start in range(0, len(self.gallery), step):
            rows = np.arange(start, min(start + step, len(self.gallery)))
            scores = self.gallery[rows] @ self.gallery.T
            scores[np.arange(len(rows)), rows] = -np.inf
            top = nearest_first(-scores, n)
            neighbours[rows] = top
            weights[rows] = _expansion_weights(np.take_along_axis(scores, top, axis=1), self.alpha)
        return neighbours, weights

    def _scores(self, queries: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """``(Q, N)`` cosine similarity to the augmented gallery, each query's own row taken out of it."""
        scores = queries @ self._sums.T
        norms = np.broadcast_to(self._norms, scores.shape).copy()
        for q in np.flatnonzero(exclude >= 0):
            e = exclude[q]
            pairs = self._pairs[self._pair_starts[e]:self._pair_starts[e + 1]]
            if len(pairs):
                j, m = np.divmod(pairs, self._neighbours.shape[1])
                w = self._weights[j, m]
                own = self.gallery[e]
                scores[q, j] -= w * (queries[q] @ own)
                corrected = self._sums[j] - w[:, None] * own
                norms[q, j] = np.linalg.norm(corrected, axis=1)
        scores /= np.maximum(norms, 1e-12)
        has = np.flatnonzero(exclude >= 0)
        scores[has, exclude[has]] = -np.inf
        return scores

    def _expanded(self, queries: np.ndarray, exclude: np.ndarray, scores: np.ndarray) -> np.ndarray:
        neighbours = nearest_first(-scores, min(self.qe_n, len(self) - 1 if (exclude >= 0).any() else len(self)))
        weights = _expansion_weights(np.take_along_axis(scores, neighbours, axis=1), self.alpha)
        vectors = self.augmented[neighbours]  # (Q, n, D)
        for q in np.flatnonzero(exclude >= 0):  # neighbours' vectors without the query's own contribution
            e = exclude[q]
            for slot, j in enumerate(neighbours[q]):
                hit = np.flatnonzero(self._neighbours[j] == e)
                if len(hit):
                    corrected = self._sums[j] - self._weights[j, hit[0]] * self.gallery[e]
                    vectors[q, slot] = corrected / max(np.linalg.norm(corrected), 1e-12)
        return l2_normalise(queries + np.einsum("qn,qnd->qd", weights, vectors))

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """The ``k`` nearest stored vectors of each query, as :meth:`EuclideanIndex.search`."""
        single, queries, exclude_ids, k = checked_query(self, queries, k, exclude_ids)
        allowed = allowed_mask(filters, self.store.table, self.ids)
        k = result_width(len(self), k, exclude_ids, allowed, self.ids)
        if k < 1:
            return empty_results(len(queries), single)
        queries = l2_normalise(queries)
        exclude = (np.full(len(queries), -1, dtype=np.int64) if exclude_ids is None
                   else self.store.rows_where_stored(exclude_ids))
        all_d, all_i = [], []
        step = max(1, _BLOCK // max(1, len(self)))
        for start in range(0, len(queries), step):
            q, e = queries[start:start + step], exclude[start:start + step]
            scores = self._scores(q, e)
            if self.qe_n > 0:
                q = self._expanded(q, e, scores)
                scores = self._scores(q, e)
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            top = nearest_first(-scores, k)
            similarity = np.take_along_axis(scores, top, axis=1)
            all_d.append(np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0)).astype(np.float32))
            all_i.append(top.astype(np.int64))
        distances, rows = np.concatenate(all_d), np.concatenate(all_i)
        found = self.ids[rows]
        return (distances[0], found[0]) if single else (distances, found)

    def vectors(self, ids=None) -> np.ndarray:
        """``(len(ids), D)`` float32 un-augmented gallery vectors of ``ids`` (all, in id order, when None)."""
        return self.store.vectors(ids)

    def expanded_queries(self, queries: np.ndarray, exclude_ids=None) -> np.ndarray:
        """``(Q, D)`` queries after αQE against this gallery (each its own ``exclude_ids`` id left out, -1: none)."""
        queries = l2_normalise(np.atleast_2d(queries))
        exclude = (np.full(len(queries), -1, dtype=np.int64) if exclude_ids is None
                   else self.store.rows_where_stored(np.asarray(exclude_ids).reshape(len(queries))))
        return self._expanded(queries, exclude, self._scores(queries, exclude))


def alpha_query_expansion(queries: np.ndarray, gallery: np.ndarray, n: int = 2, alpha: float = ALPHA,
                          exclude: np.ndarray | None = None) -> np.ndarray:
    """αQE: each ``(Q, D)`` query plus its ``n`` nearest ``(N, D)`` gallery items weighted by
    ``max(similarity, 0)^alpha``, renormalised. ``exclude``: ``(Q,)`` gallery row per query that may
    not be a neighbour (the query itself in leave-one-out; -1 for none)."""
    return make_index("expanded", gallery, qe_n=n, alpha=alpha).expanded_queries(queries, exclude)


def database_augmentation(gallery: np.ndarray, n: int = 2, alpha: float = ALPHA) -> np.ndarray:
    """DBA: every ``(N, D)`` gallery item plus its ``n`` nearest other items weighted by
    ``max(similarity, 0)^alpha``, renormalised."""
    return make_index("expanded", gallery, dba_n=n, alpha=alpha).augmented
