"""FAISS backends: exact ``flat``, inverted lists ``ivf`` (optionally product-quantised) and graph ``hnsw``.

``pip install "cbir-tutorial[scale]"`` (faiss-cpu). A GPU build of FAISS (``faiss.get_num_gpus() > 0``) runs
flat and IVF searches on the GPUs; filtered searches use the CPU copy, which FAISS's ID selectors need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends import Index, checked_query, checked_rows, drop_excluded

#: Options per kind, with their defaults.
DEFAULTS = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16, "pq": None, "train_rows": 100_000, "seed": 0},
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 64},
}


def faiss_module():
    try:
        import faiss
    except ImportError as error:
        raise ImportError('FAISS indexes need faiss: pip install "cbir-tutorial[scale]" (or faiss-cpu)') from error
    return faiss


def default_nlist(n: int) -> int:
    """About ``4 sqrt(N)`` inverted lists (FAISS's rule of thumb), at least 1 and at most ``N / 39``."""
    return int(max(1, min(4 * np.sqrt(n), n // 39)))


class FaissIndex(Index):
    """A FAISS index of ``kind`` ``"flat"``, ``"ivf"`` or ``"hnsw"`` (see :data:`DEFAULTS` for options).

    ``ivf``: ``nlist`` lists (default :func:`default_nlist`), ``nprobe`` searched per query, ``pq``: bytes per
    vector for product quantisation (``None``: vectors kept exactly, ``IndexIVFFlat``), trained on up to
    ``train_rows`` rows. ``hnsw``: ``m`` links per node, ``ef_construction`` / ``ef_search`` beam widths.
    """

    def __init__(self, dim: int, kind: str = "flat", **options):
        if kind not in DEFAULTS:
            raise ValueError(f"kind={kind!r}: use one of {', '.join(DEFAULTS)}")
        unknown = set(options) - set(DEFAULTS[kind])
        if unknown:
            raise ValueError(f"faiss-{kind} takes no option {sorted(unknown)}; its options: {sorted(DEFAULTS[kind])}")
        self.kind = kind
        self.options = {**DEFAULTS[kind], **options}
        self._dim = int(dim)
        self.cpu = None
        self._gpu = None

    @classmethod
    def build(cls, features, *, metadata=None, kind: str = "flat", **options) -> "FaissIndex":
        features = np.ascontiguousarray(features, dtype=np.float32)
        index = cls(features.shape[1], kind, **options)
        index.add(features)
        return index

    def _create(self, features: np.ndarray):
        faiss = faiss_module()
        o, d = self.options, self._dim
        if self.kind == "flat":
            return faiss.IndexFlatL2(d)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(o["m"]))
            index.hnsw.efConstruction = int(o["ef_construction"])
            return index
        nlist = int(o["nlist"] or default_nlist(len(features)))
        o["nlist"] = nlist
        quantizer = faiss.IndexFlatL2(d)
        if o["pq"]:
            if d % int(o["pq"]):
                raise ValueError(f"pq={o['pq']}: must divide the dimension {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, int(o["pq"]), 8)
        else:
            index = faiss.IndexIVFFlat(quantizer, d, nlist)
        rng = np.random.default_rng(o["seed"])
        n_train = min(len(features), int(o["train_rows"]))
        rows = np.sort(rng.choice(len(features), n_train, replace=False))
        index.train(np.ascontiguousarray(features[rows]))
        return index

    @property
    def name(self) -> str:
        return f"faiss-{self.kind}"

    def __len__(self) -> int:
        return 0 if self.cpu is None else int(self.cpu.ntotal)

    @property
    def dim(self) -> int:
        return self._dim

    def __repr__(self) -> str:
        return f"FaissIndex({self.kind}, {len(self)} x {self.dim}, {self.options})"

    def add(self, features: np.ndarray, metadata=None) -> None:
        features = checked_rows(self, features)
        if self.cpu is None:
            self.cpu = self._create(features)
        self.cpu.add(features)
        if self.kind == "ivf":
            self.cpu.make_direct_map()  # rows can be read back (vectors)
        self._set_cpu_parameters()
        self._gpu = None

    def _searcher(self):
        """The GPU copy when FAISS has GPUs (flat and IVF), else the CPU index."""
        faiss = faiss_module()
        if self.kind == "hnsw" or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
            return self.cpu
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_all_gpus(self.cpu)
        if self.kind == "ivf":
            faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", int(self.options["nprobe"]))
        return self._gpu

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None):
        """As :meth:`.exact.EuclideanIndex.search`. ``allowed`` goes to FAISS as an ID selector (exact for
        ``flat``); ``exclude`` is met by fetching ``k + 1`` and dropping each query's excluded row."""
        faiss = faiss_module()
        single, queries, exclude, allowed, k = checked_query(self, queries, k, exclude, allowed)
        fetch = min(k + (exclude is not None), len(self))
        if k < 1:
            d, i = np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        else:
            bits = None if allowed is None else np.packbits(allowed, bitorder="little")  # lives through the search
            params = self._parameters(faiss, bits, len(self))
            searcher = self.cpu if params is not None else self._searcher()
            if params is not None:
                d2, rows = searcher.search(queries, fetch, params=params)
            else:
                d2, rows = searcher.search(queries, fetch)
            d, i = drop_excluded(d2, rows, exclude, k)
            d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
        return (d[0], i[0]) if single else (d, i)

    def _set_cpu_parameters(self):
        """The search options on the CPU index, once (searches then change nothing on it)."""
        if self.kind == "ivf":
            self.cpu.nprobe = int(self.options["nprobe"])
        elif self.kind == "hnsw":
            self.cpu.hnsw.efSearch = int(self.options["ef_search"])

    def _parameters(self, faiss, bits: np.ndarray | None, n: int):
        """FAISS search parameters with an ID selector over the ``n`` rows whose bits (``np.packbits`` of the
        ``allowed`` mask, kept alive by the caller: FAISS reads them during the search) are set; None
        without a filter. Nothing is kept on the index, so threads may search it at once."""
        if bits is None:
            return None
        selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        if self.kind == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=int(self.options["nprobe"]))
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=int(self.options["ef_search"]))
        return faiss.SearchParameters(sel=selector)

    def vectors(self, rows=None) -> np.ndarray:
        """Stored rows (IVF-PQ: the decoded approximation)."""
        if rows is None:
            return self.cpu.reconstruct_n(0, len(self))
        rows = np.asarray(rows, dtype=np.int64)
        return self.cpu.reconstruct_batch(rows)

    def get_config(self) -> dict:
        return {"kind": self.kind, **self.options}  # "kind" is implied by the name, kept for readers

    def _save_data(self, folder: Path) -> None:
        faiss_module().write_index(self.cpu, str(folder / "faiss.index"))

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "FaissIndex":
        kind = config["index"].removeprefix("faiss-")
        index = cls(config["dim"], kind, **{key: config[key] for key in DEFAULTS[kind]})
        index.cpu = faiss_module().read_index(str(folder / "faiss.index"))
        if index.kind == "ivf":
            index.cpu.make_direct_map()
        index._set_cpu_parameters()
        return index
