"""Index backends behind one small interface, chosen by name (like TF Similarity's ``search/``).

Every backend stores vectors under int64 **ids** (an engine's product keys, see
:func:`~.keys.product_keys`) with the products' filter fields, and answers
``search(queries, k, exclude_ids=, filters=)`` with ``(distances, ids)``: Euclidean distances (not
squared, float32) and ids (int64), nearest first, ties broken by the lower id. ``add(vectors, ids,
metadata)`` inserts (an id already stored is replaced), ``remove(ids)`` deletes (FAISS HNSW: marks them
deleted, see :class:`~.faiss_index.FaissIndex`), ``vectors(ids)`` reads
back, ``get_config`` + ``save`` / ``load_index`` reopen a built index without the features it was built from.
A :class:`~.filters.Filters` selects the same products on every backend: each turns it into its own mask or
expression (an approximate backend may return fewer than ``k`` of them). DBA and αQE work over any of them
(:class:`~.expansion.Expansion`).

==============  ==========================================  =====================================
name            backend                                     exact?
==============  ==========================================  =====================================
``exact``       :class:`~.exact.EuclideanIndex` (numpy)     yes (of the stored vectors: float32,
                                                            or bfloat16 / float16 / int8)
``faiss-flat``  FAISS ``IndexFlatL2`` (GPU when available)  yes
``faiss-ivf``   FAISS ``IndexIVFFlat`` / ``IndexIVFPQ``     approximate: ``nprobe`` of ``nlist``
``faiss-hnsw``  FAISS ``IndexHNSWFlat``                     approximate: ``ef_search``
``milvus``      Milvus Lite file or a Milvus server         FLAT index: yes; others approximate
==============  ==========================================  =====================================
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import json
import zipfile
from pathlib import Path

import numpy as np

from ..models.finite import check_finite
from .filters import Filters

#: Index names and the ``module:class`` implementing each; FAISS and Milvus are imported on first use.
INDEXES = {
    "exact": ("exact", "EuclideanIndex", {}),
    "faiss-flat": ("faiss_index", "FaissIndex", {"kind": "flat"}),
    "faiss-ivf": ("faiss_index", "FaissIndex", {"kind": "ivf"}),
    "faiss-hnsw": ("faiss_index", "FaissIndex", {"kind": "hnsw"}),
    "milvus": ("milvus_index", "MilvusIndex", {}),
}
#: The backends a user chooses by name.
SEARCH_BACKENDS = tuple(INDEXES)
#: Name of the file holding an index's config in its saved folder.
CONFIG_FILE = "index.json"
#: What an index says to do about vectors holding NaN or infinity.
CHECK_FEATURES = ("check the features: NaN or infinity usually means a model that diverged in training (retrain "
                  "it with a lower learning rate); an index neither stores nor searches them")


class Index(abc.ABC):
    """What every backend does. Configuration goes to the constructor (``cls(dim, **options)``: an empty
    index); vectors come with ``add``. A backend that learns from its first vectors (FAISS IVF's lists,
    int8 storage's range) does so on the first ``add``."""

    #: The name under which :data:`INDEXES` knows the backend.
    name: str = ""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def dim(self) -> int: ...

    @property
    @abc.abstractmethod
    def ids(self) -> np.ndarray:
        """``(N,)`` int64 ids of the stored vectors."""

    @abc.abstractmethod
    def add(self, vectors: np.ndarray, ids, metadata=None) -> None:
        """Store ``(n, D)`` ``vectors`` under ``(n,)`` ``ids`` (an id already stored is replaced) with
        ``metadata``: a table of ``n`` product rows whose :data:`~.filters.FIELDS` filters read (None: none)."""

    @abc.abstractmethod
    def remove(self, ids) -> None:
        """Delete the vectors of ``ids``; KeyError naming the ids not stored (then nothing is removed)."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """``(distances, ids)`` of the ``k`` nearest stored vectors; see :meth:`.exact.EuclideanIndex.search`."""

    @abc.abstractmethod
    def vectors(self, ids=None) -> np.ndarray:
        """``(len(ids), D)`` float32 stored vectors of ``ids`` (all, in :attr:`ids` order, when None), as the
        index sees them; KeyError naming ids not stored."""

    @abc.abstractmethod
    def get_config(self) -> dict:
        """JSON-serialisable options that rebuild an empty index of the same kind."""

    @abc.abstractmethod
    def _save_data(self, folder: Path) -> None: ...

    #: What :func:`load_index` may be told beside the saved folder (Milvus: ``uri``, where its rows are).
    LOAD_OPTIONS: tuple[str, ...] = ()

    @classmethod
    @abc.abstractmethod
    def _load_data(cls, folder: Path, config: dict, **options) -> "Index": ...

    def save(self, folder) -> Path:
        """Write the index into ``folder`` (created): ``index.json`` plus the backend's data files."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_data(folder)
        config = {"index": self.name, **self.get_config(), "rows": len(self), "dim": self.dim}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
        return folder

    def search_stored(self, ids=None, k: int = 10, *, exclude_self: bool = True):
        """Search with stored vectors (of ``ids``; all when None) as queries, each left out of its own results
        (leave-one-out evaluation); returns ``(distances, ids)`` as :meth:`search`."""
        ids = self.ids if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        return self.search(self.vectors(ids), k, exclude_ids=ids if exclude_self else None)


def index_class(name: str):
    """The class and fixed options behind index ``name`` (see :data:`INDEXES`)."""
    if name not in INDEXES:
        raise ValueError(f"index={name!r} is not known; use one of: {', '.join(INDEXES)}")
    module, cls, fixed = INDEXES[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls), fixed


def make_index(name: str, vectors: np.ndarray | None = None, ids=None, metadata=None, *, dim: int | None = None,
               **options) -> Index:
    """An index ``name`` (see :data:`INDEXES`) with ``options``, holding ``(N, D)`` ``vectors`` under ``ids``
    (default ``0..N-1``) with ``metadata`` (a table of ``N`` product rows for filters); empty, of ``dim``
    dimensions, without ``vectors``."""
    cls, fixed = index_class(name)
    if vectors is None:
        if dim is None:
            raise ValueError("make_index needs vectors or dim")
        return cls(int(dim), **fixed, **options)
    vectors = checked_gallery(np.atleast_2d(np.asarray(vectors)))  # checked before a backend replaces anything
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else checked_ids(ids, len(vectors))
    if metadata is not None and len(metadata) != len(vectors):
        raise ValueError(f"{len(metadata)} metadata rows for {len(vectors)} vectors")
    index = cls(vectors.shape[1] if vectors.ndim == 2 else 0, **fixed, **options)
    index.add(vectors, ids, metadata)
    return index


def load_index(folder, **options) -> Index:
    """Reopen an index written by :meth:`Index.save`.

    ``options``: what the backend needs beside the folder, among its ``LOAD_OPTIONS`` (Milvus: ``uri``, where
    its rows are; a saved folder's own ``uri`` is not trusted, see :meth:`.milvus_index.MilvusIndex._load_data`);
    ValueError naming an option the backend does not take.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {folder} holds no saved index")
    config = json.loads(path.read_text())
    cls, _ = index_class(config["index"])
    unknown = sorted(set(options) - set(cls.LOAD_OPTIONS))
    if unknown:
        takes = f"it takes {', '.join(cls.LOAD_OPTIONS)}" if cls.LOAD_OPTIONS else "it takes none"
        raise ValueError(f"{folder} holds a {config['index']!r} index: {', '.join(unknown)} cannot be given when it is "
                         f"loaded ({takes})")
    return cls._load_data(folder, config, **options)


def row_digests(vectors: np.ndarray) -> np.ndarray:
    """``(n,)`` uint64: an 8-byte BLAKE2b digest of each float32 row of ``(n, D)`` ``vectors`` (what a saved
    Milvus index's checksum and an engine's record of its products' extracted features compare)."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                     for row in rows], dtype=np.uint64)


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


def checked_ids(ids, n: int | None = None, *, what: str = "ids") -> np.ndarray:
    """``ids`` as ``(n,)`` int64; ValueError for another length, non-integers or an id given twice."""
    array = np.asarray(ids)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise ValueError(f"{what} must be integers (int64), got {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    if n is not None and len(array) != n:
        raise ValueError(f"{len(array)} {what} for {n} vectors: give one id per vector")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{what} given more than once: {unique[counts > 1][:5].tolist()}")
    return array


def unknown_ids(ids: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """The ``ids`` that are not among ``stored`` (both int64)."""
    return ids[~np.isin(ids, stored)]


def check_known(ids: np.ndarray, stored: np.ndarray, where: str) -> None:
    """KeyError naming (up to 10 of) the ``ids`` not among ``stored``."""
    missing = unknown_ids(ids, stored)
    if len(missing):
        shown = ", ".join(str(i) for i in missing[:10].tolist()) + (" ..." if len(missing) > 10 else "")
        raise KeyError(f"{len(missing)} id(s) not in {where}: {shown}; nothing was changed")


def checked_query(index: "Index", queries, k: int, exclude_ids):
    """``(single, queries, exclude_ids, k)`` for a search of ``index``: ``queries`` as ``(Q, D)`` float32
    (``single``: one ``(D,)`` query was given), ``exclude_ids`` as ``(Q,)`` int64 (-1: none) or None.
    ValueError for a wrong dimension, ``k < 1`` or a query holding NaN or infinity
    (:func:`~cbir_tutorial.models.finite.check_finite`)."""
    single = np.ndim(queries) == 1
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if queries.shape[1] != index.dim:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the index has {index.dim}")
    check_finite(queries, what="query vectors", fix=CHECK_FEATURES)
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    if exclude_ids is not None:
        exclude_ids = np.asarray(exclude_ids, dtype=np.int64).reshape(-1)
        if len(exclude_ids) != len(queries):
            raise ValueError(f"exclude_ids has {len(exclude_ids)} ids for {len(queries)} queries: give one per "
                             "query (-1 for none)")
    return single, queries, exclude_ids, int(k)


def checked_rows(index: "Index", vectors, ids, metadata=None) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, ids)`` to add to ``index``: ``(n, D)`` C-contiguous float32 and ``(n,)`` int64; ValueError
    for a wrong dimension, ids not one per vector or given twice, metadata of another length, or rows
    holding NaN or infinity (:func:`checked_gallery`)."""
    vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if vectors.shape[1] != index.dim:
        raise ValueError(f"vectors have {vectors.shape[1]} dimensions, the index has {index.dim}")
    ids = checked_ids(ids, len(vectors))
    if metadata is not None and len(metadata) != len(vectors):
        raise ValueError(f"{len(metadata)} metadata rows for {len(vectors)} vectors")
    return checked_gallery(vectors), ids


def checked_gallery(features: np.ndarray) -> np.ndarray:
    """``features`` unchanged, after :func:`~cbir_tutorial.models.finite.check_finite`: ValueError naming the
    rows that hold NaN or infinity, which no index stores."""
    check_finite(features, what="vectors given to the index", fix=CHECK_FEATURES)
    return features


def allowed_mask(filters: "Filters | None", table, ids: np.ndarray) -> np.ndarray | None:
    """``(N,)`` bool: the stored rows (``table``: their :func:`~.filters.filter_table`, ``ids``: their ids) that
    ``filters`` lets through; None when it sets no filter."""
    return None if filters is None else filters.mask(table, ids)


def result_width(n: int, k: int, exclude_ids, allowed: np.ndarray | None, ids: np.ndarray) -> int:
    """How many results a query may have at most: ``k``, capped by the rows it may return (the worst case
    over the queries, given each one's excluded id)."""
    count = n if allowed is None else int(allowed.sum())
    if exclude_ids is not None and count:
        candidates = ids if allowed is None else ids[allowed]
        count -= int(np.isin(exclude_ids, candidates).any())
    return max(0, min(k, count))


def drop_excluded(distances, ids, exclude_ids, k):
    """Top ``k`` of over-fetched ``(Q, k+1)`` results, without each query's excluded id and -1 padding.

    Returns ``(Q, k)`` arrays, padded with ``inf`` / -1 where a query has fewer results.
    """
    keep = ids >= 0
    if exclude_ids is not None:
        keep &= ids != exclude_ids[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept first, in their order
    out_d = np.take_along_axis(distances, order, axis=1).astype(np.float32)
    out_i = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    dropped = ~np.take_along_axis(keep, order, axis=1)
    out_d[dropped], out_i[dropped] = np.inf, -1
    if out_d.shape[1] < k:
        pad = k - out_d.shape[1]
        out_d = np.pad(out_d, ((0, 0), (0, pad)), constant_values=np.inf)
        out_i = np.pad(out_i, ((0, 0), (0, pad)), constant_values=-1)
    return out_d, out_i


def empty_results(n_queries: int, single: bool):
    """``(distances, ids)`` with no column, shaped as a search of ``n_queries`` (one when ``single``)."""
    d, i = np.zeros((n_queries, 0), np.float32), np.zeros((n_queries, 0), np.int64)
    return (d[0], i[0]) if single else (d, i)


#: Results fetched beyond ``k`` by the backends that rank inside a library (FAISS, Milvus), so that vectors at
#: equal distance across the k-th place (duplicate photos) are ordered by id as the exact backend orders them.
TIE_MARGIN = 8

#: The file of a saved index holding its ids and filter fields (every backend but Milvus, which keeps them).
FIELDS_FILE = "fields.json"


def save_fields(folder: Path, ids: np.ndarray, table) -> None:
    """Write ``ids`` and their :func:`~.filters.filter_table` rows into ``folder / fields.json``."""
    frame = table.assign(id=np.asarray(ids, dtype=np.int64))
    frame.to_json(Path(folder) / FIELDS_FILE, orient="split", index=False, double_precision=15)


def saved_fields(folder: Path, n: int):
    """``(ids, table)`` that :func:`save_fields` wrote for ``n`` stored vectors; ValueError naming the file
    when it does not hold ``n`` rows of them."""
    import pandas as pd

    from .filters import FIELDS

    path = Path(folder) / FIELDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the saved folder is incomplete; save it again")
    try:
        frame = pd.read_json(path, orient="split", dtype=False)
    except ValueError as error:
        raise ValueError(f"{path}: not the fields a save wrote ({error}); save it again") from None
    if len(frame) != n or "id" not in frame.columns or any(f not in frame.columns for f in FIELDS):
        raise ValueError(f"{path} holds {len(frame)} rows of {list(frame.columns)}, not the ids and fields of the "
                         f"{n} stored vectors; save it again")
    table = pd.DataFrame({f: (frame[f].astype(float) if kind == "float" else frame[f].fillna("").astype(str))
                          for f, kind in FIELDS.items()})
    return frame["id"].to_numpy(dtype=np.int64), table
