r"""Steps applied to features after the backbone: fusion, PCA whitening, query expansion, database augmentation.

Each works on ``(N, D)`` float32 L2-normalised features and can be used alone:

- :func:`fuse`: weighted concatenation of several backbones' normalised features, renormalised, so
  that the squared distance is the weighted sum of each backbone's squared distance;
- :class:`PCAWhitening`: fitted on the gallery (no labels); centres, keeps the ``dim`` strongest
  principal directions and divides each by ``λ^(power/2)`` (``power=1`` full whitening, ``0`` plain
  PCA). Directions shared by every photo (background, lighting) have large variance and are shrunk;
  rarer, more telling ones are lifted (Jégou & Chum 2012);
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
from typing import Sequence

import numpy as np

from .backends import Index, checked_rows, saved_arrays

#: Queries scored per step (``Q x N`` similarities held at once at most ``_BLOCK`` floats).
_BLOCK = 4_000_000


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def fuse(features: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """``[(N, D1), (N, D2), ...]`` → ``(N, D1 + D2 + ...)``: each part L2-normalised and scaled by
    ``sqrt(weight)``, the whole renormalised (equal weights by default)."""
    if not features:
        raise ValueError("fuse needs at least one feature array")
    weights = [1.0] * len(features) if weights is None else [float(w) for w in weights]
    if len(weights) != len(features) or min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"weights={weights}: give one non-negative weight per feature array, not all 0")
    if len({len(f) for f in features}) != 1:
        raise ValueError(f"feature arrays have different numbers of rows: {[len(f) for f in features]}")
    parts = [np.sqrt(w) * l2_normalise(f) for f, w in zip(features, weights)]
    return l2_normalise(np.concatenate(parts, axis=-1))


class PCAWhitening:
    """PCA whitening learned on a gallery: ``(N, D)`` → ``(N, dim)`` L2-normalised.

    ``dim``: components kept (``None``: all the gallery supports, at most ``N - 1``); ``power``: each
    component is divided by ``λ^(power/2)`` (1 = full whitening, 0.5 = "square-root" whitening,
    0 = PCA rotation only). ``eps`` (a fraction of the largest eigenvalue) keeps tiny components
    from exploding. Fit once on the gallery with :meth:`fit`; :meth:`transform` applies the same map
    to the gallery and to any later query. :meth:`state` / :meth:`from_state` save and restore it.
    """

    def __init__(self, dim: int | None = None, power: float = 1.0, eps: float = 1e-4):
        if dim is not None and int(dim) < 1:
            raise ValueError(f"dim={dim}: keep at least one component")
        if not 0 <= float(power) <= 2:
            raise ValueError(f"power={power}: use a value between 0 (no whitening) and 1 (full whitening)")
        self.dim = None if dim is None else int(dim)
        self.power = float(power)
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (D, dim), unit columns
        self.eigenvalues: np.ndarray | None = None  # (dim,), descending

    def __repr__(self) -> str:
        fitted = f"{self.components.shape[0]} -> {self.components.shape[1]}" if self.fitted else "not fitted"
        return f"PCAWhitening(dim={self.dim}, power={self.power:g}, {fitted})"

    @property
    def fitted(self) -> bool:
        return self.components is not None

    def fit(self, features: np.ndarray) -> "PCAWhitening":
        """Learn the mean and principal directions of ``(N, D)`` gallery ``features``; returns self."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"fit needs (N, D) features with N >= 2, got shape {x.shape}")
        rank = min(len(x) - 1, x.shape[1])
        dim = rank if self.dim is None else self.dim
        if dim > rank:
            raise ValueError(f"dim={dim} but {len(x)} gallery items of {x.shape[1]} dimensions give at most "
                             f"{rank} components: lower dim")
        self.mean = x.mean(axis=0)
        _, singular, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.eigenvalues = (singular[:dim] ** 2 / (len(x) - 1)).astype(np.float32)
        self.components = vt[:dim].T.astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``(Q, D)`` or ``(D,)`` features → whitened, L2-normalised ``(Q, dim)`` (or ``(dim,)``) float32."""
        if not self.fitted:
            raise RuntimeError("PCAWhitening is not fitted: call fit(gallery_features) first")
        x = np.asarray(features, dtype=np.float32)
        if x.shape[-1] != len(self.mean):
            raise ValueError(f"features have {x.shape[-1]} dimensions, the whitening was fitted on {len(self.mean)}")
        scale = (self.eigenvalues + self.eps * self.eigenvalues[0]) ** (-self.power / 2)
        return l2_normalise(((x - self.mean) @ self.components) * scale)

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        return self.fit(features).transform(features)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to reapply the fitted map, as arrays (e.g. for ``np.savez``)."""
        if not self.fitted:
            raise RuntimeError("PCAWhitening is not fitted")
        return {"mean": self.mean, "components": self.components, "eigenvalues": self.eigenvalues,
                "power": np.float32(self.power), "eps": np.float32(self.eps)}

    @classmethod
    def from_state(cls, state) -> "PCAWhitening":
        whitening = cls(dim=len(state["eigenvalues"]), power=float(state["power"]), eps=float(state["eps"]))
        whitening.mean = np.asarray(state["mean"], dtype=np.float32)
        whitening.components = np.asarray(state["components"], dtype=np.float32)
        whitening.eigenvalues = np.asarray(state["eigenvalues"], dtype=np.float32)
        return whitening


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """``(Q, n)`` column indices of the ``n`` largest scores per row, largest first (ties: lower index)."""
    n = min(n, scores.shape[1])
    part = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < scores.shape[1] else np.tile(
        np.arange(scores.shape[1]), (len(scores), 1))
    part.sort(axis=1)  # so a stable sort below breaks ties by index
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _expansion_weights(similarities: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(similarities, 0.0) ** alpha


def alpha_query_expansion(queries: np.ndarray, gallery: np.ndarray, n: int = 2, alpha: float = 3.0,
                          exclude: np.ndarray | None = None) -> np.ndarray:
    """αQE: each ``(Q, D)`` query plus its ``n`` nearest ``(N, D)`` gallery items weighted by
    ``max(similarity, 0)^alpha``, renormalised. ``exclude``: ``(Q,)`` gallery row per query that may
    not be a neighbour (the query itself in leave-one-out; -1 for none)."""
    queries = l2_normalise(np.atleast_2d(queries))
    gallery = np.asarray(gallery, dtype=np.float32)
    scores = queries @ gallery.T
    if exclude is not None:
        exclude = np.asarray(exclude).reshape(len(queries))
        has = exclude >= 0
        scores[np.flatnonzero(has), exclude[has]] = -np.inf
    neighbours = _top(scores, n)
    weights = _expansion_weights(np.take_along_axis(scores, neighbours, axis=1), alpha)
    return l2_normalise(queries + np.einsum("qn,qnd->qd", weights, gallery[neighbours]))


def database_augmentation(gallery: np.ndarray, n: int = 2, alpha: float = 3.0) -> np.ndarray:
    """DBA: every ``(N, D)`` gallery item plus its ``n`` nearest other items weighted by
    ``max(similarity, 0)^alpha``, renormalised."""
    return alpha_query_expansion(gallery, gallery, n, alpha, exclude=np.arange(len(gallery)))


class ExpandedIndex(Index):
    """Exact search by cosine similarity with optional DBA on the gallery and αQE on the queries.

    An :class:`~cbir_tutorial.search.backends.Index` (``make_index("expanded", features, qe_n=2)``);
    distances are Euclidean between the L2-normalised (expanded) vectors. ``dba_n`` / ``qe_n`` = 0 switch
    a step off. A gallery row given in ``exclude`` (a leave-one-out query) is neither one of its query's
    expansion neighbours nor counted inside its neighbours' augmented vectors. Saved as its un-augmented
    gallery; DBA is recomputed on load (deterministic).
    """

    name = "expanded"

    def __init__(self, features: np.ndarray, *, qe_n: int = 0, qe_alpha: float = 3.0, dba_n: int = 0,
                 dba_alpha: float = 3.0):
        self.gallery = l2_normalise(features)
        if self.gallery.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {self.gallery.shape}")
        self.qe_n, self.qe_alpha = int(qe_n), float(qe_alpha)
        self.dba_n, self.dba_alpha = int(dba_n), float(dba_alpha)
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

    @classmethod
    def build(cls, features, *, metadata=None, **options) -> "ExpandedIndex":
        return cls(features, **options)

    def __len__(self) -> int:
        return len(self.gallery)

    @property
    def dim(self) -> int:
        return self.gallery.shape[1]

    def get_config(self) -> dict:
        return {"qe_n": self.qe_n, "qe_alpha": self.qe_alpha, "dba_n": self.dba_n, "dba_alpha": self.dba_alpha}

    def add(self, features: np.ndarray, metadata=None) -> None:
        """Append ``(n, D)`` rows; every row's DBA neighbours are found again (new rows may be among them)."""
        features = checked_rows(self, features)
        self.__init__(np.concatenate([self.gallery, features]), **self.get_config())

    def _save_data(self, folder: Path) -> None:
        np.save(folder / "gallery.npy", self.gallery)

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "ExpandedIndex":
        options = {key: config[key] for key in ("qe_n", "qe_alpha", "dba_n", "dba_alpha")}
        return cls(saved_arrays(folder / "gallery.npy")[""], **options)

    def __repr__(self) -> str:
        steps = [f"DBA(n={self.dba_n}, alpha={self.dba_alpha:g})"] if self.dba_n else []
        steps += [f"aQE(n={self.qe_n}, alpha={self.qe_alpha:g})"] if self.qe_n else []
        return f"ExpandedIndex({len(self)} x {self.dim}, {' + '.join(steps) or 'no expansion'})"

    def _gallery_neighbours(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        neighbours = np.empty((len(self.gallery), n), dtype=np.int64)
        weights = np.empty((len(self.gallery), n), dtype=np.float32)
        step = max(1, _BLOCK // len(self.gallery))
        for start in range(0, len(self.gallery), step):
            rows = np.arange(start, min(start + step, len(self.gallery)))
            scores = self.gallery[rows] @ self.gallery.T
            scores[np.arange(len(rows)), rows] = -np.inf
            top = _top(scores, n)
            neighbours[rows] = top
            weights[rows] = _expansion_weights(np.take_along_axis(scores, top, axis=1), self.dba_alpha)
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
        neighbours = _top(scores, min(self.qe_n, len(self) - 1 if (exclude >= 0).any() else len(self)))
        weights = _expansion_weights(np.take_along_axis(scores, neighbours, axis=1), self.qe_alpha)
        vectors = self.augmented[neighbours]  # (Q, n, D)
        for q in np.flatnonzero(exclude >= 0):  # neighbours' vectors without the query's own contribution
            e = exclude[q]
            for slot, j in enumerate(neighbours[q]):
                hit = np.flatnonzero(self._neighbours[j] == e)
                if len(hit):
                    corrected = self._sums[j] - self._weights[j, hit[0]] * self.gallery[e]
                    vectors[q, slot] = corrected / max(np.linalg.norm(corrected), 1e-12)
        return l2_normalise(queries + np.einsum("qn,qnd->qd", weights, vectors))

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None):
        """The ``k`` nearest gallery rows of each query, as :meth:`EuclideanIndex.search`."""
        single = np.ndim(queries) == 1
        queries = l2_normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index has {self.dim}")
        if k < 1:
            raise ValueError(f"k={k}: must be at least 1")
        exclude = (np.full(len(queries), -1, dtype=np.int64) if exclude is None
                   else np.asarray(exclude, dtype=np.int64).reshape(len(queries)))
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool).reshape(len(self))
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
            kk = min(k, int(np.isfinite(scores).sum(axis=1).min()))
            top = _top(scores, kk) if kk > 0 else np.zeros((len(q), 0), dtype=np.int64)
            similarity = np.take_along_axis(scores, top, axis=1)
            all_d.append(np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0)).astype(np.float32))
            all_i.append(top.astype(np.int64))
        distances, indices = np.concatenate(all_d), np.concatenate(all_i)
        return (distances[0], indices[0]) if single else (distances, indices)

    def vectors(self, rows=None) -> np.ndarray:
        """``(len(rows), D)`` float32 un-augmented gallery vectors of ``rows`` (all when None)."""
        return self.gallery if rows is None else self.gallery[np.asarray(rows, dtype=np.int64)]

    def search_rows(self, rows: np.ndarray | None = None, k: int = 10, *, exclude_self: bool = True):
        """Gallery rows (all when None) as queries, by their original, un-augmented vectors; each leaves itself out."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        return self.search(self.gallery[rows], k, exclude=rows if exclude_self else None)
