"""Milvus backend: an embedded Milvus Lite database file by default, the same code against a Milvus server.

``pip install "cbir-tutorial[scale]"`` (pymilvus, milvus-lite). ``uri``: a local ``.db`` path (Milvus Lite,
no server; default ``<cache>/milvus/cbir.db``) or a server URI such as ``http://host:19530`` (a Milvus
standalone or cluster, which is how a catalogue outgrows one machine). Each row is stored with the
product's ``brand``, ``price`` (float, -1 when unknown), ``category`` and ``gender`` (lower case) as
fields, so metadata filters run inside Milvus as filter expressions
(:meth:`~.filters.Filters.milvus_expression`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.prices import price_values
from .backends import Index, checked_query, checked_rows, drop_excluded

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


def is_lite(uri: str) -> bool:
    """True for a Milvus Lite database file (no ``scheme://``)."""
    return "://" not in str(uri)


def default_uri() -> str:
    """The Milvus Lite file in the cache folder."""
    from ..paths import cache_dir

    return str(cache_dir("milvus") / "cbir.db")


def milvus_client(uri: str):
    try:
        from pymilvus import MilvusClient
    except ImportError as error:
        raise ImportError('the milvus index needs pymilvus and milvus-lite: pip install "cbir-tutorial[scale]"') from error
    return MilvusClient(uri)


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
    when building (``build``), reused when reopening (``load``).
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
        self.client = milvus_client(self.uri)
        if create:
            self._create()
        self._rows = int(self.client.get_collection_stats(collection)["row_count"]) if not create else 0

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
        features = np.asarray(features, dtype=np.float32)
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

    def _save_data(self, folder: Path) -> None:
        self.client.flush(self.collection)  # the rows live in the Milvus database; the config reconnects

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "MilvusIndex":
        index = cls(config["dim"], uri=config["uri"], collection=config["collection"],
                    index_type=config["index_type"], index_params=config["index_params"],
                    search_params=config["search_params"], create=False)
        if not index.client.has_collection(index.collection) or len(index) != config["rows"]:
            raise ValueError(f"Milvus collection {index.collection!r} at {index.uri} no longer holds the "
                             f"{config['rows']} rows saved in {folder}: build the engine again")
        return index

    def close(self) -> None:
        """Release the connection (Milvus Lite: the database file can then be moved or deleted)."""
        self.client.close()
