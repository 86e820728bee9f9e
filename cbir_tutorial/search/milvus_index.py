"""Milvus backend: an embedded Milvus Lite database file by default, the same code against a Milvus server.

``pip install "cbir-tutorial[scale]"`` (pymilvus, milvus-lite). ``uri``: a local ``.db`` path (Milvus Lite,
no server; default ``<cache>/milvus/cbir.db``) or a server URI such as ``http://host:19530`` (a Milvus
standalone or cluster, which is how a catalogue outgrows one machine). Each row is stored with the
product's ``brand``, ``price`` (float, -1 when unknown), ``category`` and ``gender`` (lower case) as
fields, so metadata filters run inside Milvus as filter expressions
(:meth:`~.filters.Filters.milvus_expression`).

A collection belongs to one engine: unless ``collection=`` is given, it is named from the rows' content
(``cbir_<hash>``), so engines over other catalogues never share it. A saved engine keeps the checksum of
its rows (:data:`CHECKED_ROWS` spread over the collection, computed from the vectors it inserted) and
reopens only when the collection still holds them; it reconnects only to the ``uri`` the caller passes or
to the default Milvus Lite file of this machine's cache, never to an address read from the saved folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np

from ..data.prices import price_values
from .backends import Index, checked_gallery, checked_query, checked_rows, drop_excluded

#: Scalar fields stored beside each vector: name -> (kind, longest string).
FIELDS = {"brand": "str", "price": "float", "category": "str", "gender": "str"}
#: Longest string kept in a VARCHAR field (longer values are cut).
MAX_TEXT = 512
#: Rows per insert request (well under gRPC's 64 MiB message at 2048 float32 dimensions).
INSERT_ROWS = 2_000
#: Milvus's largest ``limit`` and number of query vectors per request.
MAX_LIMIT = 16_384
#: Milvus Lite's exact search holds ``queries x rows x dim`` float32 differences at once: queries per
#: request are capped so that this stays under 1 GiB (one query at a time from about 130,000 x 2048).
LITE_SEARCH_BYTES = 2**30
#: Rows whose vectors are compared when a saved index reopens (evenly spread; every row of a smaller one).
CHECKED_ROWS = 2_048
#: The file beside ``index.json`` holding that checksum.
CHECKSUM_FILE = "milvus_rows.json"
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


def row_digests(features: np.ndarray) -> np.ndarray:
    """``(n,)`` uint64: an 8-byte BLAKE2b digest of each float32 row of ``(n, D)`` ``features``."""
    rows = np.ascontiguousarray(features, dtype=np.float32)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                     for row in rows], dtype=np.uint64)


def sampled_rows(n: int, count: int = CHECKED_ROWS) -> np.ndarray:
    """Up to ``count`` row numbers spread evenly over ``0..n-1`` (all of them when ``n <= count``)."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))


def rows_checksum(digests: np.ndarray) -> str:
    """SHA-256 (hex) of row digests, in order."""
    return hashlib.sha256(np.asarray(digests, dtype="<u8").tobytes()).hexdigest()


def collection_name(features: np.ndarray, columns: dict[str, list]) -> str:
    """``cbir_<16 hex>``: a collection name from the rows and their metadata (same content, same name)."""
    digest = hashlib.sha256(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    digest.update(json.dumps(columns, sort_keys=True).encode())
    return f"cbir_{digest.hexdigest()[:16]}"


def metadata_columns(metadata, n: int) -> dict[str, list]:
    """The :data:`FIELDS` of ``n`` products from a catalogue table (missing columns: "" / -1)."""
    columns = {}
    for field, kind in FIELDS.items():
        if metadata is None or field not in metadata.columns:
            columns[field] = [-1.0] * n if kind == "float" else [""] * n
        elif kind == "float":
            values = price_values(metadata[field])
            columns[field] = np.where(np.isnan(values), -1.0, values).astype(float).tolist()
        else:
            text = metadata[field].fillna("").astype(str).str.strip().str.slice(0, MAX_TEXT)
            columns[field] = (text.str.lower() if field == "gender" else text).tolist()
    return columns


class MilvusIndex(Index):
    """Rows in a Milvus collection: primary key ``id`` = row number, ``vector`` (FLOAT_VECTOR), metadata fields.

    ``index_type``: ``"FLAT"`` (exact, the default) or what the server offers (``"IVF_FLAT"``,
    ``"HNSW"``...) with ``index_params``; metric L2. An existing collection of the same name is replaced
    when building (``build``; the default name comes from the content, see :func:`collection_name`), and
    reopened by ``load`` only when it still holds the saved rows.
    """

    name = "milvus"

    def __init__(self, dim: int, *, uri: str | None = None, collection: str = "cbir", index_type: str = "FLAT",
                 index_params: dict | None = None, search_params: dict | None = None, create: bool = True):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", collection):
            raise ValueError(f"collection={collection!r}: use letters, digits and underscores")
        self.uri = str(uri or default_uri())
        self.collection = collection
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        self._dim = int(dim)
        self._digests = np.zeros(0, dtype=np.uint64)  # of the rows this object inserted (0 when unknown)
        self.client = milvus_client(self.uri)
        if create:
            self._create()
            self._rows = 0
            return
        if not self.client.has_collection(collection):
            self.client.close()
            raise ValueError(f"Milvus collection {collection!r} does not exist at {self.uri}")
        # A collection is searchable once loaded: the process that created it had it loaded, a new process
        # (Milvus Lite) or a server that released it (to free memory, or after a restart) has it released.
        self.client.load_collection(collection)
        self._rows = int(self.client.get_collection_stats(collection)["row_count"])
        self._digests = np.zeros(self._rows, dtype=np.uint64)

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
        client.create_collection(self.collection, schema=schema, index_params=index_params,
                                 consistency_level="Strong")

    @classmethod
    def build(cls, features, *, metadata=None, **options) -> "MilvusIndex":
        features = checked_gallery(np.asarray(features, dtype=np.float32))  # before a collection is replaced
        if options.get("collection") is None:
            options["collection"] = collection_name(features, metadata_columns(metadata, len(features)))
        index = cls(features.shape[1], **options)
        index.add(features, metadata)
        return index

    def __len__(self) -> int:
        return self._rows

    @property
    def dim(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"MilvusIndex({self.uri!r}, {self.collection!r}, {len(self)} x {self.dim}, {self.index_type})"

    def add(self, features: np.ndarray, metadata=None) -> None:
        """Insert ``(n, D)`` rows with their products' metadata (a table of ``n`` rows, or None)."""
        features = checked_rows(self, features)
        if metadata is not None and len(metadata) != len(features):
            raise ValueError(f"{len(metadata)} metadata rows for {len(features)} feature rows")
        columns = metadata_columns(metadata, len(features))
        for start in range(0, len(features), INSERT_ROWS):
            stop = min(start + INSERT_ROWS, len(features))
            rows = [{"id": self._rows + r, "vector": features[r].tolist(),
                     **{field: columns[field][r] for field in FIELDS}} for r in range(start, stop)]
            self.client.insert(self.collection, rows)
        self._rows += len(features)
        self._digests = np.concatenate([self._digests, row_digests(features)])
        self.client.flush(self.collection)

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None, where: str = ""):
        """As :meth:`.exact.EuclideanIndex.search`, plus ``where``: a Milvus filter expression
        (:meth:`.Filters.milvus_expression`). ``allowed`` becomes ``id in [...]`` (fine for thousands of rows; for a
        large catalogue express the filter with ``where``); ``exclude`` over-fetches one row and drops it."""
        single, queries, exclude, allowed, k = checked_query(self, queries, k, exclude, allowed)
        k = min(k, MAX_LIMIT - 1)
        parts = [f"({where})"] if where else []
        if allowed is not None:
            parts.append(f"id in {np.flatnonzero(allowed).tolist()}")
        fetch = k + (exclude is not None)
        d2 = np.full((len(queries), max(fetch, 0)), np.inf, dtype=np.float32)
        rows = np.full((len(queries), max(fetch, 0)), -1, dtype=np.int64)
        per_request = MAX_LIMIT
        if is_lite(self.uri):
            per_request = int(np.clip(LITE_SEARCH_BYTES // max(1, 4 * len(self) * self.dim), 1, MAX_LIMIT))
        if k >= 1:
            for start in range(0, len(queries), per_request):
                batch = queries[start:start + per_request]
                hits = self.client.search(self.collection, data=batch.tolist(), limit=fetch,
                                          filter=" and ".join(parts), anns_field="vector",
                                          search_params={"metric_type": "L2", "params": self.search_params})
                for q, found in enumerate(hits):
                    rows[start + q, :len(found)] = [hit["id"] for hit in found]
                    d2[start + q, :len(found)] = [hit["distance"] for hit in found]
        d, i = drop_excluded(d2, rows, exclude, max(k, 0))
        d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
        if where:  # fewer rows may pass the expression than k: trim the padding all queries share
            width = int((i >= 0).sum(axis=1).max(initial=0))
            d, i = d[:, :width], i[:, :width]
        return (d[0], i[0]) if single else (d, i)

    def vectors(self, rows=None) -> np.ndarray:
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for start in range(0, len(rows), MAX_LIMIT):
            wanted = rows[start:start + MAX_LIMIT]
            found = self.client.get(self.collection, ids=wanted.tolist(), output_fields=["vector"])
            by_id = {item["id"]: item["vector"] for item in found}
            missing = [r for r in wanted.tolist() if r not in by_id]
            if missing:
                raise KeyError(f"rows {missing[:5]} are not in Milvus collection {self.collection!r} at {self.uri}")
            out[start:start + len(wanted)] = [by_id[r] for r in wanted.tolist()]
        return out

    def get_config(self) -> dict:
        return {"uri": self.uri, "collection": self.collection, "index_type": self.index_type,
                "index_params": self.index_params, "search_params": self.search_params}

    def stored_digests(self, rows: np.ndarray) -> np.ndarray | None:
        """:func:`row_digests` of ``rows`` as the collection holds them now (None: some rows are missing)."""
        try:
            return row_digests(self.vectors(rows))
        except KeyError:
            return None

    def _save_data(self, folder: Path) -> None:
        """The rows stay in the Milvus database; ``milvus_rows.json`` keeps the checksum of the rows this
        index inserted, after checking that the collection still holds them."""
        self.client.flush(self.collection)
        rows = sampled_rows(len(self))
        known = self._digests[rows]
        stored = self.stored_digests(rows)
        if stored is not None:
            unknown = known == 0  # rows added to a reopened collection by another process
            known[unknown] = stored[unknown]
        if stored is None or not np.array_equal(known, stored):
            raise ValueError(f"Milvus collection {self.collection!r} at {self.uri} no longer holds this index's "
                             "rows (another build replaced or changed it): build the engine again, then save it")
        checksum = {"collection": self.collection, "rows": len(self), "checked_rows": len(rows),
                    "sha256": rows_checksum(known)}
        (folder / CHECKSUM_FILE).write_text(json.dumps(checksum, indent=1) + "\n")

    @classmethod
    def _load_data(cls, folder: Path, config: dict, uri: str | None = None) -> "MilvusIndex":
        """Reconnect to the saved collection at ``uri`` (default: the saved ``uri`` only when it is this
        cache's default Milvus Lite file) and check that it holds the saved rows (count and checksum)."""
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
        again = f"; build the engine saved in {folder.parent} again"
        try:
            index = cls(config["dim"], uri=uri, collection=config["collection"], index_type=config["index_type"],
                        index_params=config["index_params"], search_params=config["search_params"], create=False)
        except ValueError as error:
            raise ValueError(f"{error}{again}") from None
        rows = sampled_rows(config["rows"], saved["checked_rows"])
        stored = index.stored_digests(rows) if len(index) == config["rows"] else None
        if stored is None or rows_checksum(stored) != saved["sha256"]:
            index.close()
            raise ValueError(f"Milvus collection {index.collection!r} at {uri} no longer holds the {config['rows']:,} "
                             f"rows saved in {folder} (another build replaced or changed it){again}")
        index._digests[rows] = stored
        return index

    def close(self) -> None:
        """Release the connection (Milvus Lite: the database file can then be moved or deleted)."""
        self.client.close()
