"""Milvus backend: an embedded Milvus Lite database file by default, the same code against a Milvus server.

``pip install "cbir-tutorial[scale]"`` (pymilvus, milvus-lite). ``uri``: a local ``.db`` path (Milvus Lite,
no server; default ``<cache>/milvus/cbir.db``) or a server URI such as ``http://host:19530`` (a Milvus
standalone or cluster, which is how a catalogue outgrows one machine). Each vector is stored under its int64
id (the primary key: an engine's product key) with the product's ``brand``, ``price`` (float, -1 when
unknown), ``category`` and ``gender`` (lower case) as fields (:func:`~.filters.filter_table`), so metadata
filters run inside Milvus as filter expressions (:meth:`~.filters.Filters.milvus_expression`).

A collection belongs to one engine: unless ``collection=`` is given, a new index gets a collection of its
own (``cbir_<16 hex>``, random), so a rebuild never writes into another engine's collection. A saved index
keeps its ids and the checksum of up to :data:`CHECKED_ROWS` of its vectors (spread over the sorted ids)
and reopens only while the collection holds exactly these ids and those sampled vectors; it reconnects only
to the ``uri`` the caller passes or to the default Milvus Lite file of this machine's cache, never to an
address read from the saved folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from .backends import (TIE_MARGIN, Index, row_digests, check_known, checked_ids, checked_query, checked_rows, drop_excluded,
                       empty_results, saved_arrays)
from .filters import FIELDS, MAX_TEXT, Filters, filter_table

#: Rows per insert (upsert) or delete request (well under gRPC's 64 MiB message at 2048 float32 dimensions).
INSERT_ROWS = 2_000
#: Milvus's largest ``limit`` and number of query vectors per request.
MAX_LIMIT = 16_384
#: Milvus Lite's exact search holds ``queries x rows x dim`` float32 differences at once: queries per
#: request are capped so that this stays under 1 GiB (one query at a time from about 130,000 x 2048).
LITE_SEARCH_BYTES = 2**30
#: Float32 bytes of query vectors sent, or of vectors read back, per request (under gRPC's 64 MiB message).
REQUEST_BYTES = 32 * 2**20
#: Ids read per request when the ids of a collection are listed (a reopened index reads them all).
ID_BATCH = 16_384
#: Vectors whose digests are compared when a saved index reopens (evenly spread over its sorted ids; all
#: of a smaller one).
CHECKED_ROWS = 2_048
#: The file beside ``index.json`` holding that checksum.
CHECKSUM_FILE = "milvus_rows.json"
#: The file beside ``index.json`` holding the saved index's ids (sorted int64).
IDS_FILE = "ids.npy"
#: Entries of a Milvus Lite database folder (milvus-lite 3): a folder of other files and none of these is not one.
LITE_FOLDER_MARKS = ("LOCK", "collections")
#: Where a refused Milvus Lite path sends the user.
ELSEWHERE = "choose another path (--index-uri)"


def is_lite(uri: str) -> bool:
    """True for a Milvus Lite database file (no ``scheme://``)."""
    return "://" not in str(uri)


def default_uri() -> str:
    """The Milvus Lite file in the cache folder."""
    from ..paths import cache_dir

    return str(cache_dir("milvus") / "cbir.db")


def milvus_client(uri: str):
    """A ``MilvusClient`` for ``uri``; RuntimeError in one line saying why a Milvus Lite file cannot be opened
    (:func:`lite_path_problem`, :func:`lite_open_problem`) or a server cannot be reached."""
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as error:
        raise ImportError('the milvus index needs pymilvus and milvus-lite: pip install "cbir-tutorial[scale]"') from error
    if is_lite(uri) and (problem := lite_path_problem(str(uri))):
        raise RuntimeError(f"Milvus Lite file {uri} cannot be opened: {problem}")
    logged = LoggedErrors()  # milvus-lite logs why it failed with a traceback, then pymilvus raises without it
    lite_log = logging.getLogger("milvus_lite")
    settings = lite_log.level, lite_log.propagate
    lite_log.setLevel(logging.ERROR)
    lite_log.propagate = False
    lite_log.addHandler(logged)
    try:
        return MilvusClient(uri)
    except MilvusException as error:
        if is_lite(uri):
            problem = lite_open_problem(logged.errors, error.message)
            raise RuntimeError(f"Milvus Lite file {uri} cannot be opened: {problem}") from None
        raise RuntimeError(f"Milvus server {uri} cannot be reached ({error.message}): start it or check "
                           "--index-uri") from None
    finally:
        lite_log.removeHandler(logged)
        lite_log.setLevel(settings[0])
        lite_log.propagate = settings[1]


class LoggedErrors(logging.Handler):
    """Keeps the exceptions of the records logged with a traceback (``errors``, oldest first)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


def lite_path_problem(uri: str) -> str | None:
    """Why the path ``uri`` cannot be a Milvus Lite database, seen before opening it (None: nothing seen):
    a name without ``.db``, a missing folder, or a folder of other files (milvus-lite 3 would write its own
    files among them)."""
    path = Path(uri)
    if not uri.endswith(".db"):
        example = path / "cbir.db" if path.is_dir() else path.with_suffix(".db")
        return (f"{'it is a folder; ' if path.is_dir() else ''}a Milvus Lite database is a path ending in .db, "
                f"such as {example} (--index-uri)")
    if not path.parent.exists():
        return f"its folder {path.parent} does not exist: create it (mkdir -p {path.parent}) or {ELSEWHERE}"
    if not path.parent.is_dir():
        return f"{path.parent} is a file, not a folder: {ELSEWHERE}"
    try:
        foreign = (path.is_dir() and not any((path / mark).exists() for mark in LITE_FOLDER_MARKS)
                   and any(path.iterdir()))
    except OSError:  # unreadable: opening it says why
        foreign = False
    if foreign:
        return f"it is a folder of other files, not a Milvus Lite database: {ELSEWHERE}"
    return None


def lite_open_problem(errors: list[BaseException], said: str) -> str:
    """Why milvus-lite could not open a database, from the exceptions it logged (``errors``)
    or, where it logged none, from pymilvus's message ``said``."""
    for cause in (cause for error in errors for cause in exception_chain(error)):
        if type(cause).__name__ == "DataDirLockedError" or isinstance(cause, BlockingIOError):
            return ("another process is using it (one process at a time); wait for it to finish, or use another "
                    ".db file or a Milvus server (--index-uri)")
        if isinstance(cause, PermissionError):
            return (f"no permission to write {cause.filename} ({cause.strerror}): choose a folder you may write "
                    "to (--index-uri) or change its permissions")
        if isinstance(cause, (FileExistsError, NotADirectoryError)):
            return (f"it is not a Milvus Lite database ({cause.filename} is a file where milvus-lite "
                    f"{lite_version()} keeps a folder; a database of milvus-lite 2 is such a file, which it "
                    f"cannot read): {ELSEWHERE}")
    if errors:
        return f"milvus-lite says {type(errors[-1]).__name__}: {errors[-1]}; {ELSEWHERE}"
    return f"milvus-lite gave no reason ({said}); {ELSEWHERE}"


def exception_chain(error: BaseException):
    """``error`` and the exceptions it was raised from or during, nearest first."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def lite_version() -> str:
    """The installed milvus-lite's version ("?" when unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("milvus-lite")
    except PackageNotFoundError:
        return "?"


def sampled_rows(n: int, count: int = CHECKED_ROWS) -> np.ndarray:
    """Up to ``count`` positions spread evenly over ``0..n-1`` (all of them when ``n <= count``)."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))


def rows_checksum(ids: np.ndarray, digests: np.ndarray) -> str:
    """SHA-256 (hex) of ``ids`` and their vectors' digests, in order."""
    digest = hashlib.sha256(np.asarray(ids, dtype="<i8").tobytes())
    digest.update(np.asarray(digests, dtype="<u8").tobytes())
    return digest.hexdigest()


def new_collection_name() -> str:
    """``cbir_<16 hex>``: a fresh collection name (random: no two indexes share one unless told to)."""
    return f"cbir_{uuid.uuid4().hex[:16]}"


def field_columns(metadata, n: int) -> dict[str, list]:
    """The :data:`~.filters.FIELDS` of ``n`` products as Milvus stores them: :func:`~.filters.filter_table`'s,
    with an unknown price (NaN) as -1."""
    table = filter_table(metadata, n)
    columns = {}
    for field, kind in FIELDS.items():
        if kind == "float":
            values = table[field].to_numpy(dtype=float)
            columns[field] = np.where(np.isnan(values), -1.0, values).tolist()
        else:
            columns[field] = table[field].astype(str).tolist()
    return columns


def not_implemented(record: logging.LogRecord) -> bool:
    """False for a record logged with a NotImplementedError (a call Milvus Lite's gRPC server does not offer)."""
    return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


@contextmanager
def quiet_fallbacks():
    """Creating a collection asks Milvus Lite for a timestamp it does not give (``AllocTimestamp``), and its
    gRPC server (in this process) logs that call's NotImplementedError with a traceback; pymilvus's query
    iterator warns on Milvus Lite and a 2.3 server that it keeps its own timestamp ("failed to get mvccTs ...,
    use client-side ts instead"). pymilvus goes on rightly in both cases, so neither is shown."""
    log = logging.getLogger("pymilvus.client.iterator.query_iterator")
    lite_server = logging.getLogger("grpc._server")
    level = log.level
    log.setLevel(logging.ERROR)
    lite_server.addFilter(not_implemented)
    try:
        yield
    finally:
        lite_server.removeFilter(not_implemented)
        log.setLevel(level)


class MilvusIndex(Index):
    """Vectors in a Milvus collection: primary key ``id`` (INT64, the given ids), ``vector`` (FLOAT_VECTOR)
    and the filter fields.

    ``index_type``: ``"FLAT"`` (exact, the default) or what the server offers (``"IVF_FLAT"``,
    ``"HNSW"``...) with ``index_params``; metric L2. ``create=True`` (default) makes a new empty collection:
    ``collection=None`` names it afresh (:func:`new_collection_name`), an existing collection of the given
    name is replaced. ``create=False`` reopens the existing collection ``collection`` as it is (its ids are
    read from Milvus); ``load_index`` reopens a saved one only while it still holds the saved ids and (sampled) vectors.
    The index keeps the collection's sorted ids in memory (``len``, :attr:`ids`, unknown ids), so it assumes
    that nobody else writes into its collection while it is open.
    """

    name = "milvus"

    def __init__(self, dim: int, *, uri: str | None = None, collection: str | None = None, index_type: str = "FLAT",
                 index_params: dict | None = None, search_params: dict | None = None, create: bool = True):
        if collection is None:
            if not create:
                raise ValueError("collection= names the Milvus collection to reopen (create=False)")
            collection = new_collection_name()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", collection):
            raise ValueError(f"collection={collection!r}: use letters, digits and underscores")
        self.uri = str(uri or default_uri())
        self.collection = collection
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        self._dim = int(dim)
        self._ids = np.zeros(0, dtype=np.int64)  # sorted: the ids the collection holds
        self._digests = np.zeros(0, dtype=np.uint64)  # of _ids' vectors as this object wrote them (0: unknown)
        self.client = milvus_client(self.uri)
        if create:
            self._create()
            return
        if not self.client.has_collection(collection):
            self.client.close()
            raise ValueError(f"Milvus collection {collection!r} does not exist at {self.uri}")
        # A collection is searchable once loaded: the process that created it had it loaded, a new process
        # (Milvus Lite) or a server that released it (to free memory, or after a restart) has it released.
        self.client.load_collection(collection)
        self._ids = self.stored_ids()
        self._digests = np.zeros(len(self._ids), dtype=np.uint64)

    def _create(self):
        from pymilvus import DataType

        client = self.client
        if client.has_collection(self.collection):
            client.drop_collection(self.collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        for field, kind in FIELDS.items():
            if kind == "float":
                schema.add_field(field, DataType.FLOAT)
            else:
                schema.add_field(field, DataType.VARCHAR, max_length=MAX_TEXT * 4)
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type=self.index_type, metric_type="L2", params=self.index_params)
        with quiet_fallbacks():
            client.create_collection(self.collection, schema=schema, index_params=index_params,
                                     consistency_level="Strong")

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ids(self) -> np.ndarray:
        """``(N,)`` int64 ids of the stored vectors, sorted (read-only)."""
        ids = self._ids.view()
        ids.flags.writeable = False
        return ids

    def __repr__(self) -> str:
        return f"MilvusIndex({self.uri!r}, {self.collection!r}, {len(self)} x {self.dim}, {self.index_type})"

    def stored_ids(self) -> np.ndarray:
        """The sorted int64 ids the collection holds now, as Milvus lists them (:data:`ID_BATCH` a request;
        not its row count, which on a Milvus server still counts deleted and replaced rows)."""
        chunks = [np.zeros(0, dtype=np.int64)]
        with quiet_fallbacks():
            iterator = self.client.query_iterator(self.collection, batch_size=ID_BATCH, filter="",
                                                  output_fields=["id"])
            try:
                while batch := iterator.next():
                    chunks.append(np.array([row["id"] for row in batch], dtype=np.int64))
            finally:
                iterator.close()
        return np.unique(np.concatenate(chunks))

    def _remember(self, ids: np.ndarray, digests: np.ndarray | None) -> None:
        """Keep ``ids`` (added or replaced, with their vectors' ``digests``) or, with None, forget them (removed)."""
        keep = ~np.isin(self._ids, ids)
        if digests is None:
            self._ids, self._digests = self._ids[keep], self._digests[keep]
            return
        all_ids = np.concatenate([self._ids[keep], ids])
        order = np.argsort(all_ids, kind="stable")
        self._ids, self._digests = all_ids[order], np.concatenate([self._digests[keep], digests])[order]

    @contextmanager
    def _writing(self, ids: np.ndarray):
        """Write requests about ``ids``; when one fails, the ids are read again from Milvus (some of the
        requests may have been applied) and the digests of ``ids`` are forgotten."""
        try:
            yield
        except BaseException:
            with suppress(Exception):  # Milvus unreachable: the error raised already says so
                stored = self.stored_ids()
                known = np.isin(stored, self._ids) & ~np.isin(stored, ids)
                digests = np.zeros(len(stored), dtype=np.uint64)
                digests[known] = self._digests[np.searchsorted(self._ids, stored[known])]
                self._ids, self._digests = stored, digests
            raise

    def add(self, vectors: np.ndarray, ids, metadata=None) -> None:
        """Store ``(n, D)`` ``vectors`` under ``ids`` with their products' ``metadata`` (a table of ``n`` rows,
        or None); an id already stored is replaced (Milvus upsert)."""
        vectors, ids = checked_rows(self, vectors, ids, metadata)
        if not len(ids):
            return
        columns = field_columns(metadata, len(ids))
        with self._writing(ids):
            for start in range(0, len(ids), INSERT_ROWS):
                rows = [{"id": int(ids[r]), "vector": vectors[r].tolist(), **{f: columns[f][r] for f in FIELDS}}
                        for r in range(start, min(start + INSERT_ROWS, len(ids)))]
                self.client.upsert(self.collection, rows)
            self.client.flush(self.collection)
        self._remember(ids, row_digests(vectors))

    def remove(self, ids) -> None:
        """Delete the vectors of ``ids``; KeyError naming the ids not stored (then nothing is removed)."""
        ids = checked_ids(ids)
        check_known(ids, self._ids, f"Milvus collection {self.collection!r} at {self.uri}")
        if not len(ids):
            return
        with self._writing(ids):
            for start in range(0, len(ids), MAX_LIMIT):
                self.client.delete(self.collection, ids=ids[start:start + MAX_LIMIT].tolist())
            self.client.flush(self.collection)
        self._remember(ids, None)

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """As :meth:`.exact.EuclideanIndex.search`: ``filters`` run in Milvus as its filter expression
        (:meth:`.Filters.milvus_expression`; ``ids`` as ``id in [...]``, fine for thousands of ids);
        ``exclude_ids`` over-fetches one vector a query and drops it. Results are as wide as the widest query's
        (at most ``k``, and at most 16,383: Milvus's largest ``limit`` less one)."""
        single, queries, exclude_ids, k = checked_query(self, queries, k, exclude_ids)
        if not len(self) or (filters is not None and filters.ids is not None and not len(filters.ids)):
            return empty_results(len(queries), single)
        expression = filters.milvus_expression() if filters is not None and filters.active else ""
        k = min(k, MAX_LIMIT - 1)
        fetch = min(k + (exclude_ids is not None) + TIE_MARGIN, MAX_LIMIT, len(self))
        d2 = np.full((len(queries), fetch), np.inf, dtype=np.float32)
        found = np.full((len(queries), fetch), -1, dtype=np.int64)
        per_request = int(np.clip(REQUEST_BYTES // (4 * self.dim), 1, MAX_LIMIT))
        if is_lite(self.uri):
            per_request = min(per_request, int(np.clip(LITE_SEARCH_BYTES // max(1, 4 * len(self) * self.dim), 1,
                                                       MAX_LIMIT)))
        for start in range(0, len(queries), per_request):
            batch = queries[start:start + per_request]
            hits = self.client.search(self.collection, data=batch.tolist(), limit=fetch, filter=expression,
                                      anns_field="vector", output_fields=["id"],
                                      search_params={"metric_type": "L2", "params": self.search_params})
            for q, row in enumerate(hits):
                found[start + q, :len(row)] = [hit["id"] for hit in row]
                d2[start + q, :len(row)] = [hit["distance"] for hit in row]
        order = np.lexsort((found, d2), axis=1)  # nearest first, ties by the lower id (padding last)
        d2, found = np.take_along_axis(d2, order, axis=1), np.take_along_axis(found, order, axis=1)
        # As wide as the rows a query may return (the exact backend's width): the most any query found
        # (all that pass the filter when fewer than fetched), less one where some query found its excluded id.
        width = int((found >= 0).sum(axis=1).max(initial=0))
        if exclude_ids is not None:
            width -= int(((found == exclude_ids[:, None]) & (found >= 0)).any())
        d, i = drop_excluded(d2, found, exclude_ids, k)
        d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
        d, i = d[:, :min(k, width)], i[:, :min(k, width)]
        return (d[0], i[0]) if single else (d, i)

    def vectors(self, ids=None) -> np.ndarray:
        """``(len(ids), D)`` float32 vectors of ``ids`` as Milvus holds them (all, in :attr:`ids` order, when
        None); KeyError naming the ids not stored."""
        if ids is None:
            ids = self._ids
        else:
            array = np.asarray(ids)
            if array.size and array.dtype.kind not in "iu":
                raise ValueError(f"ids must be integers (int64), got {array.dtype}")
            ids = array.astype(np.int64).reshape(-1)
            check_known(np.unique(ids), self._ids, f"Milvus collection {self.collection!r} at {self.uri}")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        step = int(np.clip(REQUEST_BYTES // (4 * self.dim), 1, MAX_LIMIT))
        for start in range(0, len(ids), step):
            wanted = ids[start:start + step]
            rows = self.client.get(self.collection, ids=np.unique(wanted).tolist(), output_fields=["vector"])
            by_id = {int(row["id"]): row["vector"] for row in rows}
            missing = [i for i in wanted.tolist() if i not in by_id]
            if missing:  # deleted behind this index's back
                raise KeyError(f"ids {missing[:5]} are not in Milvus collection {self.collection!r} at {self.uri}")
            out[start:start + len(wanted)] = [by_id[i] for i in wanted.tolist()]
        return out

    def get_config(self) -> dict:
        return {"uri": self.uri, "collection": self.collection, "index_type": self.index_type,
                "index_params": self.index_params, "search_params": self.search_params}

    def stored_digests(self, ids: np.ndarray) -> np.ndarray | None:
        """:func:`row_digests` of the vectors of ``ids`` as the collection holds them now (None: some are missing)."""
        try:
            return row_digests(self.vectors(ids))
        except KeyError:
            return None

    def _save_data(self, folder: Path) -> None:
        """The vectors stay in the Milvus database; ``ids.npy`` keeps the ids and ``milvus_rows.json`` the
        checksum of the sampled ids' vectors, after checking that the collection still holds the ids and the
        vectors this index wrote."""
        self.client.flush(self.collection)
        positions = sampled_rows(len(self))
        sample, known = self._ids[positions], self._digests[positions].copy()
        stored = self.stored_digests(sample) if np.array_equal(self.stored_ids(), self._ids) else None
        if stored is not None:
            unknown = known == 0  # ids of a reopened collection, which this object did not write
            known[unknown] = stored[unknown]
        if stored is None or not np.array_equal(known, stored):
            raise ValueError(f"Milvus collection {self.collection!r} at {self.uri} no longer holds this index's "
                             "rows (another build replaced or changed it): build the engine again, then save it")
        self._digests[positions] = known
        np.save(folder / IDS_FILE, self._ids)
        checksum = {"collection": self.collection, "rows": len(self), "checked_ids": len(sample),
                    "sha256": rows_checksum(sample, known)}
        (folder / CHECKSUM_FILE).write_text(json.dumps(checksum, indent=1) + "\n")

    LOAD_OPTIONS = ("uri",)

    @classmethod
    def _load_data(cls, folder: Path, config: dict, uri: str | None = None) -> "MilvusIndex":
        """Reconnect to the saved collection at ``uri`` (default: the saved ``uri`` only when it is this
        cache's default Milvus Lite file) and check that it holds the saved ids and vectors (ids and checksum)."""
        saved_uri = str(config["uri"])
        if uri is None:
            if saved_uri != default_uri():
                raise ValueError(f"{folder / 'index.json'} says the rows are in the Milvus database {saved_uri}, "
                                 "which is not reopened unasked: pass index_uri= (CLI: --index-uri) with the "
                                 "database to use")
            uri = saved_uri
        path = folder / CHECKSUM_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the Milvus rows of {folder} cannot be checked; build the "
                                    "engine again and save it")
        saved = json.loads(path.read_text())
        saved_ids = saved_arrays(folder / IDS_FILE)[""]
        if saved_ids.dtype != np.int64 or saved_ids.shape != (config["rows"],):
            raise ValueError(f"{folder / IDS_FILE} holds {saved_ids.dtype} {saved_ids.shape}, not the "
                             f"{config['rows']:,} int64 ids of the saved index; save it again")
        again = f"; build the engine saved in {folder.parent} again"
        try:
            index = cls(config["dim"], uri=uri, collection=config["collection"], index_type=config["index_type"],
                        index_params=config["index_params"], search_params=config["search_params"], create=False)
        except ValueError as error:
            raise ValueError(f"{error}{again}") from None
        positions = sampled_rows(len(saved_ids), saved["checked_ids"])
        sample = saved_ids[positions]
        stored = index.stored_digests(sample) if np.array_equal(index._ids, saved_ids) else None
        if stored is None or rows_checksum(sample, stored) != saved["sha256"]:
            index.close()
            raise ValueError(f"Milvus collection {index.collection!r} at {uri} no longer holds the {config['rows']:,} "
                             f"rows saved in {folder} (another build replaced or changed it){again}")
        index._digests[positions] = stored
        return index

    def close(self) -> None:
        """Release the connection (Milvus Lite: the database file can then be moved or deleted)."""
        self.client.close()

    def drop(self) -> None:
        """Delete the collection and its rows from the Milvus database (an engine built again, or refitted, no
        longer needs the old one), then close the connection."""
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        self.close()
