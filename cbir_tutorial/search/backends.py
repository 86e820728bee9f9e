"""Index backends behind one small interface, chosen by name (like TF Similarity's ``search/``).

Every backend holds the gallery once and answers ``search(queries, k, exclude=, allowed=)`` with
``(distances, rows)``: Euclidean distances (not squared, float32) and gallery row numbers (int64), nearest
first. ``add`` appends rows, ``vectors`` gives rows back as float32, ``get_config`` + ``save`` / ``load``
reopen a built index without the features it was built from.

==============  ==========================================  =====================================
name            backend                                     exact?
==============  ==========================================  =====================================
``exact``       :class:`~.exact.EuclideanIndex` (numpy)     yes (float32; bfloat16 / int8 storage)
``faiss-flat``  FAISS ``IndexFlatL2`` (GPU when available)  yes
``faiss-ivf``   FAISS ``IndexIVFFlat`` / ``IndexIVFPQ``     approximate: ``nprobe`` of ``nlist``
``faiss-hnsw``  FAISS ``IndexHNSWFlat``                     approximate: ``ef_search``
``milvus``      Milvus Lite file or a Milvus server         FLAT index: yes; others approximate
``expanded``    :class:`~.expansion.ExpandedIndex`          yes, after DBA / αQE (recipes use it)
==============  ==========================================  =====================================
"""

from __future__ import annotations

import abc
import importlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..models.finite import check_finite

#: Index names and the ``module:class`` implementing each; FAISS and Milvus are imported on first use.
INDEXES = {
    "exact": ("exact", "EuclideanIndex", {}),
    "faiss-flat": ("faiss_index", "FaissIndex", {"kind": "flat"}),
    "faiss-ivf": ("faiss_index", "FaissIndex", {"kind": "ivf"}),
    "faiss-hnsw": ("faiss_index", "FaissIndex", {"kind": "hnsw"}),
    "milvus": ("milvus_index", "MilvusIndex", {}),
    "expanded": ("expansion", "ExpandedIndex", {}),  # a recipe's own index (DBA / αQE), not a CLI choice
}
#: The backends a user chooses by name (``"expanded"`` is chosen by a recipe that expands queries).
SEARCH_BACKENDS = tuple(name for name in INDEXES if name != "expanded")
#: Name of the file holding an index's config in its saved folder.
CONFIG_FILE = "index.json"
#: What an index says to do about vectors holding NaN or infinity.
CHECK_FEATURES = ("check the features: NaN or infinity usually means a model that diverged in training (retrain "
                  "it with a lower learning rate); an index neither stores nor searches them")


class Index(abc.ABC):
    """What every backend does. Rows are numbered ``0..N-1`` in the order they were added."""

    #: The name under which :data:`INDEXES` knows the backend.
    name: str = ""

    @classmethod
    @abc.abstractmethod
    def build(cls, features: np.ndarray, *, metadata=None, **options) -> "Index":
        """An index over ``(N, D)`` ``features`` (``metadata``: a table of ``N`` rows, for backends that
        filter on it): how :func:`make_index` builds every backend, whatever its constructor takes."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def dim(self) -> int: ...

    @abc.abstractmethod
    def add(self, features: np.ndarray, metadata=None) -> None:
        """Append ``(n, D)`` rows (``metadata``: a table of ``n`` rows, used by backends that filter on it)."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None):
        """``(distances, rows)`` of the ``k`` nearest rows; see :meth:`.exact.EuclideanIndex.search`."""

    @abc.abstractmethod
    def vectors(self, rows=None) -> np.ndarray:
        """``(len(rows), D)`` float32 stored vectors of ``rows`` (all when None), as the index sees them."""

    @abc.abstractmethod
    def get_config(self) -> dict:
        """JSON-serialisable options that rebuild an empty index of the same kind."""

    @abc.abstractmethod
    def _save_data(self, folder: Path) -> None: ...

    @classmethod
    @abc.abstractmethod
    def _load_data(cls, folder: Path, config: dict) -> "Index": ...

    def save(self, folder) -> Path:
        """Write the index into ``folder`` (created): ``index.json`` plus the backend's data files."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_data(folder)
        config = {"index": self.name, **self.get_config(), "rows": len(self), "dim": self.dim}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        return folder

    def search_rows(self, rows: np.ndarray | None = None, k: int = 10, *, exclude_self: bool = True):
        """Use stored rows (all when ``rows`` is None) as queries; leave each one out of its own results."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        return self.search(self.vectors(rows), k, exclude=rows if exclude_self else None)


def index_class(name: str):
    """The class and fixed options behind index ``name`` (see :data:`INDEXES`)."""
    if name not in INDEXES:
        raise ValueError(f"index={name!r} is not known; use one of: {', '.join(INDEXES)}")
    module, cls, fixed = INDEXES[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls), fixed


def make_index(name: str, features: np.ndarray, *, metadata=None, **options) -> Index:
    """An index ``name`` (see :data:`INDEXES`) over ``(N, D)`` ``features``; ``options`` go to its class."""
    cls, fixed = index_class(name)
    return cls.build(features, metadata=metadata, **fixed, **options)


def load_index(folder, *, uri: str | None = None) -> Index:
    """Reopen an index written by :meth:`Index.save`.

    ``uri``: where a saved Milvus index's rows are (a saved folder's own ``uri`` is not trusted, see
    :meth:`.milvus_index.MilvusIndex._load_data`); refused for the other backends.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} holds no saved index")
    config = json.loads(path.read_text())
    cls, _ = index_class(config["index"])
    if uri is None:
        return cls._load_data(folder, config)
    if config["index"] != "milvus":
        raise ValueError(f"index_uri={uri!r} is for a Milvus index; {folder} holds a {config['index']!r} index")
    return cls._load_data(folder, config, uri=uri)


def saved_arrays(path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file (or the one array of a ``.npy`` file, under ``""``) that a ``save`` wrote.

    Read without pickles; ValueError naming ``path`` for anything else (object arrays, another format,
    a truncated file), FileNotFoundError when it is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the saved folder is incomplete; save it again")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            return {"": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not an array file written by save ({error}); save it again") from None


def checked_query(index: "Index", queries, k: int, exclude, allowed):
    """``(single, queries, exclude, allowed, k)`` for a search of ``index``: ``queries`` as ``(Q, D)`` float32
    (``single``: one ``(D,)`` query was given), the filters checked by :func:`check_filters`, and ``k``
    capped at the rows a query may return. ValueError for a wrong dimension, ``k < 1`` or a query holding NaN
    or infinity (:func:`~cbir_tutorial.models.finite.check_finite`)."""
    single = np.ndim(queries) == 1
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if queries.shape[1] != index.dim:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the index has {index.dim}")
    check_finite(queries, what="query vectors", fix=CHECK_FEATURES)
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    exclude, allowed = check_filters(len(index), len(queries), exclude, allowed)
    return single, queries, exclude, allowed, min(k, n_candidates(len(index), exclude, allowed))


def checked_rows(index: "Index", features) -> np.ndarray:
    """``features`` to add to ``index`` as ``(n, D)`` C-contiguous float32; ValueError for a wrong dimension or
    rows holding NaN or infinity (:func:`checked_gallery`)."""
    features = np.ascontiguousarray(np.atleast_2d(features), dtype=np.float32)
    if features.shape[1] != index.dim:
        raise ValueError(f"features have {features.shape[1]} dimensions, the index has {index.dim}")
    return checked_gallery(features)


def checked_gallery(features: np.ndarray) -> np.ndarray:
    """``features`` unchanged, after :func:`~cbir_tutorial.models.finite.check_finite`: ValueError naming the
    rows that hold NaN or infinity, which no index stores."""
    check_finite(features, what="vectors given to the index", fix=CHECK_FEATURES)
    return features


def check_filters(n: int, n_queries: int, exclude, allowed):
    """``exclude`` as ``(Q,)`` int64 (or None) and ``allowed`` as ``(N,)`` bool (or None), shapes checked."""
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64).reshape(n_queries)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (n,):
            raise ValueError(f"allowed has shape {allowed.shape}; it must be ({n},), one flag per gallery row")
    return exclude, allowed


def n_candidates(n: int, exclude, allowed) -> int:
    """How many rows a query may return at most, given its filters (the worst case over queries)."""
    if allowed is not None:
        count = int(allowed.sum())
        if exclude is not None:
            count -= int(allowed[exclude[exclude >= 0]].any())
        return count
    return n - (1 if exclude is not None else 0)


def drop_excluded(distances, rows, exclude, k):
    """Top ``k`` of over-fetched ``(Q, k+1)`` results, without each query's ``exclude`` row and -1 padding.

    Returns ``(Q, k)`` arrays, padded with ``inf`` / -1 where a query has fewer results.
    """
    out_d = np.full((len(rows), k), np.inf, dtype=np.float32)
    out_i = np.full((len(rows), k), -1, dtype=np.int64)
    for q in range(len(rows)):
        keep = rows[q] >= 0
        if exclude is not None:
            keep &= rows[q] != exclude[q]
        found_d, found_i = distances[q][keep][:k], rows[q][keep][:k]
        out_d[q, :len(found_i)], out_i[q, :len(found_i)] = found_d, found_i
    return out_d, out_i
