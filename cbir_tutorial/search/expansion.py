r"""Query expansion and database augmentation: each vector moved towards its nearest neighbours.

- :func:`alpha_query_expansion` (αQE, Radenović et al. 2018): the query becomes
  :math:`q + \sum_{i \le n} \max(s_i, 0)^\alpha x_i` over its ``n`` nearest gallery items, renormalised;
- :func:`database_augmentation` (DBA, Arandjelović & Zisserman 2012, who averaged the neighbours with
  equal weights; the α-weighted form is from Radenović et al. 2018): every gallery item becomes the same
  weighted sum over its own ``n`` neighbours (itself with weight 1).

:class:`Expansion` does both over any :class:`~cbir_tutorial.search.backends.Index`: DBA is fitted on the
gallery (the index stores the augmented vectors), αQE searches twice. It keeps leave-one-out evaluation
honest: a gallery item used as a query is never one of its own expansion neighbours, and its contribution to
its neighbours' augmented vectors is taken out before they are ranked against it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .backends import Index, make_index
from .filters import Filters
from .ranking import nearest_first
from .whitening import l2_normalise

#: Gallery rows scored per step of DBA's neighbour search (``rows x N`` similarities held at once at most).
_BLOCK = 4_000_000
#: The neighbours' weight exponent α of DBA and αQE (3, as Radenović et al. 2018).
ALPHA = 3.0


def _expansion_weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(similarities, 0.0) ** alpha


def _similarities(distances: np.ndarray) -> np.ndarray:
    """Cosine similarities of L2-normalised vectors from their Euclidean ``distances``."""
    return 1.0 - 0.5 * np.square(distances.astype(np.float64))


class Expansion:
    """DBA fitted on a gallery and αQE at search time, over any index (no library we use has either).

    ``dba_n``/``qe_n``: neighbours of each gallery vector / each query (0 = off), weighted by
    ``max(similarity, 0) ** alpha``. :meth:`fit` learns DBA on the gallery's ``(N, D)`` L2-normalised
    vectors; :meth:`stored` gives the vectors an index must hold; :meth:`update` refits after products
    change and says which stored vectors moved (the changed products and those whose neighbours changed),
    so a changed index answers as one built from scratch; :meth:`search` runs αQE (two searches) and the
    leave-one-out correction over the index. With DBA the un-augmented gallery is kept here (``base``, in
    increasing id order: ties between neighbours go to the lower id); αQE alone keeps nothing.
    """

    def __init__(self, dba_n: int = 0, qe_n: int = 0, alpha: float = ALPHA):
        self.dba_n, self.qe_n, self.alpha = int(dba_n), int(qe_n), float(alpha)
        self.fit(np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64))

    def __repr__(self) -> str:
        steps = [f"DBA(n={self.dba_n})"] if self.dba_n else []
        steps += [f"aQE(n={self.qe_n})"] if self.qe_n else []
        return f"Expansion({' + '.join(steps) or 'nothing'}, alpha={self.alpha:g}, {len(self.ids)} gallery vectors)"

    def fit(self, vectors: np.ndarray, ids) -> "Expansion":
        """Learn DBA on the gallery: ``(N, D)`` vectors (L2-normalised here) under their ``(N,)`` int64 ids."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not self.dba_n:
            ids, vectors = ids[:0], np.zeros((0, np.shape(vectors)[1] if np.ndim(vectors) == 2 else 0), np.float32)
        vectors = np.asarray(vectors, dtype=np.float32)
        self._set_gallery(l2_normalise(vectors) if len(ids) else vectors[:0], ids)
        n, m = len(self.ids), self._width()
        self._neighbours, self._similarities = self._nearest(np.arange(n), m)
        self._augment()
        return self

    def _width(self) -> int:
        """Neighbours per gallery vector: ``dba_n``, at most all the others."""
        return max(0, min(self.dba_n, len(self.ids) - 1))

    def _set_gallery(self, base: np.ndarray, ids: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        self.ids, self.base = ids[order], base[order]
        self._rows = pd.Index(self.ids)

    def _nearest(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``(len(rows), m)`` positions and similarities of the ``m`` nearest other gallery vectors of ``rows``
        (ties: the lower id), a block of rows at a time."""
        neighbours = np.zeros((len(rows), m), dtype=np.int64)
        similarities = np.zeros((len(rows), m), dtype=np.float32)
        if m == 0:
            return neighbours, similarities
        step = max(1, _BLOCK // len(self.base))
        for start in range(0, len(rows), step):
            block = rows[start:start + step]
            scores = self.base[block] @ self.base.T
            scores[np.arange(len(block)), block] = -np.inf
            top = nearest_first(-scores, m)
            neighbours[start:start + len(block)] = top
            similarities[start:start + len(block)] = np.take_along_axis(scores, top, axis=1)
        return neighbours, similarities

    def _augment(self) -> None:
        """The augmented vectors from the neighbours and their similarities."""
        n = len(self.ids)
        self._weights = _expansion_weights(self._similarities, self.alpha).astype(np.float32)
        sums = self.base + np.einsum("jm,jmd->jd", self._weights, self.base[self._neighbours]) if n else self.base
        self._sums = np.asarray(sums, dtype=np.float32)  # unnormalised augmented vectors S_j
        self._norms = np.linalg.norm(self._sums, axis=1)
        self.augmented = self._sums / np.maximum(self._norms, 1e-12)[:, None]
        # who counts row e among its neighbours: the (j, m) pairs with neighbours[j, m] == e, grouped by e
        flat = self._neighbours.ravel()
        self._pairs = np.argsort(flat, kind="stable")
        self._pair_starts = np.searchsorted(flat[self._pairs], np.arange(n + 1))

    def rows(self, ids) -> np.ndarray:
        """Positions in :attr:`ids` of ``ids``; KeyError naming those the gallery does not hold."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = self._rows.get_indexer(ids)
        if (rows < 0).any():
            raise KeyError(f"ids not in the expansion's gallery: {ids[rows < 0][:10].tolist()}")
        return rows

    def stored(self, vectors: np.ndarray, ids) -> np.ndarray:
        """``(N, D)``: what an index stores for the gallery ``vectors`` under ``ids`` (the DBA-augmented vectors of
        those ids after :meth:`fit`; the vectors themselves without DBA)."""
        return self.augmented[self.rows(ids)] if self.dba_n else np.asarray(vectors, dtype=np.float32)

    def base_vectors(self, ids) -> np.ndarray:
        """``(n, D)`` un-augmented gallery vectors of ``ids`` (DBA only)."""
        return self.base[self.rows(ids)]

    def update(self, vectors: np.ndarray, ids, removed=()) -> tuple[np.ndarray, np.ndarray]:
        """DBA after ``ids`` were added or replaced by ``vectors`` and ``removed`` ids left, as :meth:`fit` on the
        new gallery gives it, at the cost of the rows it touches: the neighbours are searched again only for
        the new and changed products, those that had a changed or removed one among their neighbours, and those
        a new vector comes closer to than their last neighbour (``(those rows) x N`` similarities, not
        ``N x N``). Returns ``(ids, stored vectors)`` of every product whose stored vector moved (the new and
        changed ones, and those whose neighbours changed), for the index to replace."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not self.dba_n:
            return ids, np.asarray(vectors, dtype=np.float32)
        removed = np.asarray(removed, dtype=np.int64).reshape(-1)
        old = {"ids": self.ids, "stored": self.augmented, "neighbours": self.ids[self._neighbours],
               "similarities": self._similarities, "width": self._width()}
        incoming = l2_normalise(np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.base.shape[1]))
        keep = ~np.isin(self.ids, np.concatenate([ids, removed]))
        self._set_gallery(np.concatenate([self.base[keep], incoming]), np.concatenate([self.ids[keep], ids]))
        n, m = len(self.ids), self._width()
        was = pd.Index(old["ids"]).get_indexer(self.ids)  # each row's position before, -1 for the new ones
        fresh = np.isin(self.ids, ids)
        if m != old["width"] or m == 0:
            self._neighbours, self._similarities = self._nearest(np.arange(n), m)
        else:
            stayed = np.flatnonzero(~fresh)
            gone = np.concatenate([ids, removed])
            again = fresh.copy()
            again[stayed] = np.isin(old["neighbours"][was[stayed]], gone).any(axis=1)
            new_rows = np.flatnonzero(fresh)
            if len(new_rows):  # a new vector nearer than a row's last neighbour (ties: the lower id) enters its list
                last = old["similarities"][was[stayed], -1]
                last_id = old["neighbours"][was[stayed], -1]
                closer = self.base[stayed] @ self.base[new_rows].T
                enters = (closer > last[:, None]) | ((closer == last[:, None])
                                                     & (self.ids[new_rows][None, :] < last_id[:, None]))
                again[stayed[enters.any(axis=1)]] = True
            neighbours = np.zeros((n, m), dtype=np.int64)
            similarities = np.zeros((n, m), dtype=np.float32)
            kept = np.flatnonzero(~again)
            neighbours[kept] = self._rows.get_indexer(old["neighbours"][was[kept]].ravel()).reshape(len(kept), m)
            similarities[kept] = old["similarities"][was[kept]]
            redo = np.flatnonzero(again)
            neighbours[redo], similarities[redo] = self._nearest(redo, m)
            self._neighbours, self._similarities = neighbours, similarities
        self._augment()
        moved = fresh | (was < 0)
        rows = np.flatnonzero(~moved)
        if old["width"] != m:
            moved[:] = True
        else:
            moved[rows] = ((old["neighbours"][was[rows]] != self.ids[self._neighbours[rows]]).any(axis=1)
                           | (np.abs(old["stored"][was[rows]] - self.augmented[rows]).max(axis=1, initial=0) > 1e-6))
        return self.ids[moved], self.augmented[moved]

    def search(self, index: Index, queries: np.ndarray, k: int = 10, *, exclude_ids=None,
               filters: Filters | None = None, passes: Callable | None = None):
        """The ``k`` nearest of each query in ``index`` (which holds :meth:`stored` vectors), after αQE:
        ``(distances, ids)`` as :meth:`Index.search`. ``exclude_ids``: ``(Q,)`` id per query left out of its
        results and of its expansion (a gallery product queried in leave-one-out; its DBA contribution to
        other products is taken out too); ``passes``: ``ids -> (n,) bool`` of ``filters``, needed with
        ``filters`` to check products whose corrected score brings them in."""
        single = np.ndim(queries) == 1
        exclude = None if exclude_ids is None else np.asarray(exclude_ids, dtype=np.int64).reshape(-1)
        queries = self.expanded_queries(index, queries, exclude)
        distances, found = self._corrected(index, queries, k, exclude, filters, passes)
        return (distances[0], found[0]) if single else (distances, found)

    def expanded_queries(self, index: Index, queries: np.ndarray, exclude_ids=None) -> np.ndarray:
        """``(Q, D)`` L2-normalised queries after αQE over ``index`` (unchanged without it): each plus its ``qe_n``
        nearest stored vectors weighted by ``max(similarity, 0) ** alpha``, each query's ``exclude_ids`` id (and
        its DBA share) left out."""
        queries = l2_normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if not self.qe_n:
            return queries
        exclude = None if exclude_ids is None else np.asarray(exclude_ids, dtype=np.int64).reshape(-1)
        distances, found = self._corrected(index, queries, self.qe_n, exclude, None, None)
        weights = np.where(found >= 0, _expansion_weights(_similarities(distances), self.alpha), 0.0)
        neighbours = self._stored_of(index, found, exclude)
        return l2_normalise((queries + np.einsum("qn,qnd->qd", weights, neighbours)).astype(np.float32))

    def vectors_of(self, index: Index, ids) -> np.ndarray:
        """``(n, D)`` un-augmented gallery vectors of ``ids``: DBA's own copy, else what ``index`` stores."""
        return self.base_vectors(ids) if self.dba_n else index.vectors(ids)

    def _affected(self, excluded: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, weights)`` of the gallery products that count ``excluded`` (an id) among their DBA neighbours."""
        e = self._rows.get_indexer([excluded])[0]
        if e < 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        pairs = self._pairs[self._pair_starts[e]:self._pair_starts[e + 1]]
        j, m = np.divmod(pairs, self._neighbours.shape[1])
        return j, self._weights[j, m]

    def _without(self, rows: np.ndarray, weights: np.ndarray, excluded: int) -> np.ndarray:
        """``(n, D)`` unnormalised augmented vectors of ``rows`` without ``excluded``'s share in them."""
        return self._sums[rows] - weights[:, None] * self.base[self._rows.get_indexer([excluded])[0]]

    def _stored_of(self, index: Index, found: np.ndarray, exclude) -> np.ndarray:
        """``(Q, n, D)`` stored vectors of the ids ``found`` (zeros for -1), each query's excluded share taken out."""
        vectors = np.zeros((*found.shape, index.dim), dtype=np.float32)
        present = found >= 0
        if not present.any():
            return vectors
        if not self.dba_n:
            unique, inverse = np.unique(found[present], return_inverse=True)
            vectors[present] = index.vectors(unique)[inverse]
            return vectors
        vectors[present] = self.augmented[self.rows(found[present])]
        for q in range(len(found)) if exclude is not None else ():
            rows, weights = self._affected(exclude[q])
            for slot in np.flatnonzero(np.isin(found[q], self.ids[rows])):
                at = np.flatnonzero(self.ids[rows] == found[q, slot])
                corrected = self._without(rows[at], weights[at], exclude[q])[0]
                vectors[q, slot] = corrected / max(np.linalg.norm(corrected), 1e-12)
        return vectors

    def _corrected(self, index: Index, queries: np.ndarray, k: int, exclude, filters, passes):
        """``index.search`` with each excluded product's DBA share taken out of its neighbours' scores: the
        products whose stored vector holds that share are scored again, the others keep the index's score,
        and ``k`` + (their number) results are fetched so that the top ``k`` stays exact."""
        affected = [self._affected(e) for e in exclude] if exclude is not None and self.dba_n else []
        extra = max((len(rows) for rows, _ in affected), default=0)
        distances, found = index.search(queries, k + extra, exclude_ids=exclude, filters=filters)
        if not extra:
            return distances, found
        width = min(k, found.shape[1])
        out_d = np.full((len(queries), width), np.inf, dtype=np.float32)
        out_i = np.full((len(queries), width), -1, dtype=np.int64)
        for q, (rows, weights) in enumerate(affected):
            ids, scores = found[q], _similarities(distances[q])
            scores, ids = scores[ids >= 0], ids[ids >= 0]
            if len(rows):
                changed = self._without(rows, weights, exclude[q])
                new = (changed @ queries[q]) / np.maximum(np.linalg.norm(changed, axis=1), 1e-12)
                ok = np.ones(len(rows), dtype=bool) if filters is None else np.asarray(passes(self.ids[rows]))
                keep = ~np.isin(ids, self.ids[rows])
                ids = np.concatenate([ids[keep], self.ids[rows][ok]])
                scores = np.concatenate([scores[keep], new[ok]])
            order = np.lexsort((ids, -scores))[:width]
            out_i[q, :len(order)] = ids[order]
            out_d[q, :len(order)] = np.sqrt(np.maximum(2.0 - 2.0 * scores[order], 0.0))
        return out_d, out_i


def alpha_query_expansion(queries: np.ndarray, gallery: np.ndarray, n: int = 2, alpha: float = ALPHA,
                          exclude: np.ndarray | None = None) -> np.ndarray:
    """αQE: each ``(Q, D)`` query plus its ``n`` nearest ``(N, D)`` gallery items weighted by
    ``max(similarity, 0)^alpha``, renormalised. ``exclude``: ``(Q,)`` gallery row per query that may
    not be a neighbour (the query itself in leave-one-out; -1 for none)."""
    gallery = l2_normalise(np.asarray(gallery, dtype=np.float32))
    return Expansion(qe_n=n, alpha=alpha).expanded_queries(make_index("exact", gallery), queries, exclude)


def database_augmentation(gallery: np.ndarray, n: int = 2, alpha: float = ALPHA) -> np.ndarray:
    """DBA: every ``(N, D)`` gallery item plus its ``n`` nearest other items weighted by
    ``max(similarity, 0)^alpha``, renormalised."""
    return Expansion(dba_n=n, alpha=alpha).fit(gallery, np.arange(len(gallery))).augmented


class ExpandedSearch:
    """An index searched through an :class:`Expansion`: what an engine with DBA / αQE searches, for a gallery
    of vectors without an engine (``evaluate(expanded_search(vectors, dba_n=1, qe_n=2), labels, 10)``). Has
    ``search`` and the leave-one-out ``search_stored`` of an index, and its ``ids``."""

    def __init__(self, expansion: Expansion, index: Index):
        self.expansion, self.index = expansion, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def ids(self) -> np.ndarray:
        return self.index.ids

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None):
        """``(distances, ids)`` of the ``k`` nearest of each query, after αQE (see :meth:`Expansion.search`)."""
        return self.expansion.search(self.index, queries, k, exclude_ids=exclude_ids)

    def search_stored(self, ids=None, k: int = 10):
        """Leave-one-out: the stored products of ``ids`` (all when None) as queries, each left out of its own
        results, its expansion and its neighbours' DBA."""
        ids = self.index.ids if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        return self.search(self.expansion.vectors_of(self.index, ids), k, exclude_ids=ids)


def expanded_search(vectors: np.ndarray, ids=None, *, index: str = "exact", dba_n: int = 0, qe_n: int = 0,
                    alpha: float = ALPHA, **options) -> ExpandedSearch:
    """``(N, D)`` gallery ``vectors`` under ``ids`` (default ``0..N-1``) with DBA fitted on them, in an ``index``
    of that backend (``options``: its own), searched with αQE."""
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    expansion = Expansion(dba_n, qe_n, alpha).fit(vectors, ids)
    return ExpandedSearch(expansion, make_index(index, expansion.stored(vectors, ids), ids, **options))
