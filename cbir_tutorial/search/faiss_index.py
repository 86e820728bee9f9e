"""FAISS backends: exact ``flat``, inverted lists ``ivf`` (optionally product-quantised) and graph ``hnsw``.

``pip install "cbir-tutorial[scale]"`` (faiss-cpu). A GPU build of FAISS (``faiss.get_num_gpus() > 0``) runs
flat and IVF searches on the GPUs; filtered searches use the CPU copy, which FAISS's ID selectors need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .backends import (TIE_MARGIN, Index, check_known, checked_ids, checked_query, checked_rows, drop_excluded,
                       empty_results, result_width, save_fields, saved_arrays, saved_fields)
from .filters import Filters, filter_table

#: Options per kind, with their defaults.
DEFAULTS = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16, "pq": None, "train_rows": 100_000, "seed": 0},
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 64},
}
#: The FAISS index file and the slot arrays of a saved index.
INDEX_FILE, SLOTS_FILE = "faiss.index", "slots.npz"


#: The widest HNSW beam a filtered search opens (its ``ef_search`` times 1 / the share the filter lets through).
MAX_FILTERED_EF = 4_096


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
    ``train_rows`` rows of the first :meth:`add`. ``hnsw``: ``m`` links per node, ``ef_construction`` /
    ``ef_search`` beam widths.

    Each added vector gets a *slot*: a label FAISS stores it under, numbered 0, 1, 2, ... by this object and
    never reused; numpy arrays beside FAISS hold each slot's product id, whether it is live and its filter
    fields. Filters and tombstones reach FAISS as an ID selector over the slots (a bitmap).

    What FAISS allows, and what it costs:

    * ``flat`` sits in an ``IndexIDMap2`` (labels, read-back by label); :meth:`remove` really deletes (FAISS
      shifts the rows after them: O(N)).
    * ``ivf`` keeps the labels in its inverted lists itself, with a hash-table direct map for read-back:
      ``IndexIDMap2`` over IVF mislabels results after ``remove_ids`` (IVF does not renumber its rows) and
      refuses removal with a direct map. :meth:`remove` really deletes.
    * ``hnsw`` sits in an ``IndexIDMap2`` but FAISS cannot delete from an HNSW graph: :meth:`remove` (and
      replacing an id) only marks the slot dead, a tombstone that searches skip through the ID selector. The
      dead vectors stay in the graph, costing memory and search time (a beam also walks through them, so it
      finds a little less, and while any slot is dead every search first builds a bitmap over all slots:
      ``O(slots)`` per call, milliseconds at a million), until :meth:`compact` rebuilds the graph from the live vectors, which costs
      as much as building it again; it runs by itself once dead slots are more than half of all slots.
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
        self.cpu = None  # the FAISS index (None before the first add), searched with slot labels
        self._gpu = None  # (GPU copy, labels of its rows or None), made on the first search that may use it
        self._slots = np.zeros(0, np.int64)  # slot label of each entry, ascending
        self._ids = np.zeros(0, np.int64)  # product id of each entry
        self._live = np.zeros(0, bool)  # False: a tombstone (hnsw only; the other kinds delete)
        self._table = filter_table(None, 0)  # filter fields of each entry
        self._next = 0  # the next slot label

    def _create(self, vectors: np.ndarray):
        faiss = faiss_module()
        o, d = self.options, self._dim
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatL2(d))
        if self.kind == "hnsw":
            return faiss.IndexIDMap2(self._new_hnsw())
        nlist = int(o["nlist"] or default_nlist(len(vectors)))
        o["nlist"] = nlist
        quantizer = faiss.IndexFlatL2(d)
        if o["pq"]:
            if d % int(o["pq"]):
                raise ValueError(f"pq={o['pq']}: must divide the dimension {d}")
            index = faiss.IndexIVFPQ(quantizer, d, nlist, int(o["pq"]), 8)
        else:
            index = faiss.IndexIVFFlat(quantizer, d, nlist)
        rng = np.random.default_rng(o["seed"])
        n_train = min(len(vectors), int(o["train_rows"]))
        rows = np.sort(rng.choice(len(vectors), n_train, replace=False))
        index.train(np.ascontiguousarray(vectors[rows]))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # read-back by label, and removal, of any label
        return index

    def _new_hnsw(self):
        index = faiss_module().IndexHNSWFlat(self._dim, int(self.options["m"]))
        index.hnsw.efConstruction = int(self.options["ef_construction"])
        index.hnsw.efSearch = int(self.options["ef_search"])
        return index

    @property
    def name(self) -> str:
        return f"faiss-{self.kind}"

    def __len__(self) -> int:
        return int(np.count_nonzero(self._live))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def ids(self) -> np.ndarray:
        """int64 ids of the live vectors, in the order they were added."""
        return self._ids[self._live]

    @property
    def dead(self) -> int:
        """Slots removed but still in the FAISS index (hnsw's tombstones; 0 for flat and IVF)."""
        return len(self._live) - len(self)

    def __repr__(self) -> str:
        dead = f", {self.dead} dead slots" if self.dead else ""
        return f"FaissIndex({self.kind}, {len(self)} x {self.dim}, {self.options}{dead})"

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Entries of the live vectors of ``ids`` (all stored)."""
        live = np.flatnonzero(self._live)
        stored = self._ids[live]
        order = np.argsort(stored, kind="stable")
        return live[order[np.searchsorted(stored, ids, sorter=order)]]

    def add(self, vectors: np.ndarray, ids, metadata=None) -> None:
        vectors, ids = checked_rows(self, vectors, ids, metadata)
        if not len(ids):
            return
        table = filter_table(metadata, len(ids))
        if self.cpu is None:
            self.cpu = self._create(vectors)
            self._set_cpu_parameters()
        stored = np.isin(ids, self._ids[self._live])
        if stored.any():  # replaced: the old vectors go first
            self._drop(self._positions(ids[stored]))
        slots = np.arange(self._next, self._next + len(ids), dtype=np.int64)
        self.cpu.add_with_ids(vectors, slots)
        self._next += len(ids)
        self._slots = np.concatenate([self._slots, slots])
        self._ids = np.concatenate([self._ids, ids])
        self._live = np.concatenate([self._live, np.ones(len(ids), bool)])
        self._table = pd.concat([self._table, table], ignore_index=True) if len(self._table) else table
        self._gpu = None
        self._compact_if_mostly_dead()

    def remove(self, ids) -> None:
        ids = checked_ids(ids)
        check_known(ids, self.ids, f"the {self.name} index")
        if len(ids):
            self._drop(self._positions(ids))
            self._compact_if_mostly_dead()

    def _drop(self, positions: np.ndarray) -> None:
        """Delete entries ``positions`` from FAISS and the slot arrays (hnsw: mark them dead)."""
        self._gpu = None
        if self.kind == "hnsw":
            self._live[positions] = False
            return
        faiss = faiss_module()
        slots = np.ascontiguousarray(self._slots[positions])
        if self.kind == "ivf":  # a hash-table direct map removes only with an IDSelectorArray
            removed = self.cpu.remove_ids(faiss.IDSelectorArray(len(slots), faiss.swig_ptr(slots)))
        else:
            removed = self.cpu.remove_ids(slots)
        assert removed == len(slots), (removed, len(slots))
        keep = np.ones(len(self._slots), bool)
        keep[positions] = False
        self._keep(keep)

    def _keep(self, keep: np.ndarray) -> None:
        self._slots, self._ids, self._live = self._slots[keep], self._ids[keep], self._live[keep]
        self._table = self._table[keep].reset_index(drop=True)

    def _compact_if_mostly_dead(self) -> None:
        if 2 * self.dead > len(self._live):
            self.compact()

    def compact(self) -> None:
        """Rebuild the HNSW graph from the live vectors, under new slots (dead slots' vectors leave memory and
        searches); costs as much as building the graph. Nothing to do for flat and IVF, which delete."""
        if not self.dead:
            return
        live = self._live
        vectors = self._reconstruct(self._slots[live])
        index = faiss_module().IndexIDMap2(self._new_hnsw())
        slots = np.arange(self._next, self._next + len(vectors), dtype=np.int64)
        if len(vectors):
            index.add_with_ids(vectors, slots)
        self._keep(live)
        self.cpu, self._slots, self._next, self._gpu = index, slots, self._next + len(slots), None

    def set_search_options(self, **options) -> None:
        """Change how a built index searches: ``nprobe`` (IVF) or ``ef_search`` (HNSW); the others would need a
        new build (ValueError naming them). FAISS keeps these on the index itself, so they are written there."""
        allowed = {"ivf": {"nprobe"}, "hnsw": {"ef_search"}}.get(self.kind, set())
        wrong = set(options) - allowed
        if wrong:
            raise ValueError(f"faiss-{self.kind} cannot change {sorted(wrong)} after it is built"
                             f"{f'; it can change {sorted(allowed)}' if allowed else ''}: build it again instead")
        self.options.update({key: int(value) for key, value in options.items()})
        if self.cpu is not None:
            self._set_cpu_parameters()
        self._gpu = None

    def _set_cpu_parameters(self):
        """The search options on the CPU index, once (searches then change nothing on it)."""
        if self.kind == "ivf":
            self.cpu.nprobe = int(self.options["nprobe"])
        elif self.kind == "hnsw":
            faiss_module().downcast_index(self.cpu.index).hnsw.efSearch = int(self.options["ef_search"])

    def _searcher(self):
        """``(index, labels)``: the GPU copy when FAISS has GPUs (flat and IVF), else the CPU index; ``labels``
        maps the rows a GPU flat index returns to slots (None: the index returns slots)."""
        faiss = faiss_module()
        if self.kind == "hnsw" or not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
            return self.cpu, None
        gpu = self._gpu
        if gpu is None:
            if self.kind == "flat":  # the flat rows under the ID map, whose labels are mapped here
                gpu = (faiss.index_cpu_to_all_gpus(faiss.downcast_index(self.cpu.index)),
                       faiss.vector_to_array(self.cpu.id_map).astype(np.int64))
            else:  # IVF keeps its labels itself
                gpu = (faiss.index_cpu_to_all_gpus(self.cpu), None)
                faiss.GpuParameterSpace().set_index_parameter(gpu[0], "nprobe", int(self.options["nprobe"]))
            self._gpu = gpu
        return gpu

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """As :meth:`.exact.EuclideanIndex.search`, with ids. ``filters`` and dead slots go to FAISS as an ID
        selector over the slots (exact for ``flat``; IVF and HNSW search only what their probes or beam reach,
        widened by the share the filter lets through, so a narrow filter keeps about the recall of an
        unfiltered search, and may still leave fewer than ``k`` results: padding id -1 at distance inf); ``exclude_ids``
        is met by fetching one more and dropping each query's excluded id."""
        faiss = faiss_module()
        single, queries, exclude_ids, k = checked_query(self, queries, k, exclude_ids)
        mask = None if filters is None else filters.mask(self._table, self._ids)
        live_ids = self._ids[self._live]
        width = result_width(len(self), k, exclude_ids, None if mask is None else mask[self._live], live_ids)
        if width == 0:
            return empty_results(len(queries), single)
        fetch = min(width + (exclude_ids is not None) + TIE_MARGIN, len(self))
        if mask is None and not self.dead:
            searcher, rows_to_slots = self._searcher()
            d2, labels = searcher.search(queries, fetch)
            if rows_to_slots is not None:
                labels = np.where(labels >= 0, rows_to_slots[np.maximum(labels, 0)], -1)
        else:
            allowed = self._live if mask is None else self._live & mask
            bitmap = np.zeros(self._next, bool)
            bitmap[self._slots[allowed]] = True
            bits = np.packbits(bitmap, bitorder="little")  # FAISS reads it during the search: kept alive here
            share = max(int(allowed.sum()), 1) / max(int(self._live.sum()), 1)
            d2, labels = self.cpu.search(queries, fetch, params=self._parameters(faiss, bits, share))
        found = labels >= 0
        ids = np.full(labels.shape, -1, np.int64)
        ids[found] = self._ids[np.searchsorted(self._slots, labels[found])]
        order = np.lexsort((ids, np.where(found, d2, np.inf)), axis=1)  # equal distances: the lower id first
        d2, ids = np.take_along_axis(d2, order, axis=1), np.take_along_axis(ids, order, axis=1)
        d, ids = drop_excluded(d2, ids, exclude_ids, width)
        d = np.sqrt(np.maximum(d, 0.0)).astype(np.float32)
        return (d[0], ids[0]) if single else (d, ids)

    def _parameters(self, faiss, bits: np.ndarray, share: float = 1.0):
        """FAISS search parameters with an ID selector over the slots whose bits (``np.packbits``, kept alive
        by the caller) are set; ``share``: the part of the live vectors the selector lets through. IVF's probes
        and HNSW's beam widen by ``1 / share`` (up to every list, and :data:`MAX_FILTERED_EF`), so that a narrow
        filter still meets about as many allowed vectors as an unfiltered search meets vectors. Nothing is
        kept on the index, so threads may search it at once."""
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # its size is in bytes
        widen = 1.0 / min(max(share, 1e-9), 1.0)
        if self.kind == "ivf":
            nprobe = min(int(np.ceil(int(self.options["nprobe"]) * widen)), int(self.options["nlist"]))
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        if self.kind == "hnsw":
            ef = int(self.options["ef_search"])
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(ef, min(int(np.ceil(ef * widen)),
                                                                                  MAX_FILTERED_EF)))
        return faiss.SearchParameters(sel=selector)

    def _reconstruct(self, slots: np.ndarray) -> np.ndarray:
        if not len(slots):
            return np.zeros((0, self._dim), np.float32)
        return np.ascontiguousarray(self.cpu.reconstruct_batch(np.ascontiguousarray(slots)), dtype=np.float32)

    def vectors(self, ids=None) -> np.ndarray:
        """Stored vectors (IVF-PQ: the decoded approximation)."""
        if ids is None:
            return self._reconstruct(self._slots[self._live])
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        check_known(ids, self.ids, f"the {self.name} index")
        return self._reconstruct(self._slots[self._positions(ids)])

    def get_config(self) -> dict:
        return {"kind": self.kind, **self.options}  # "kind" is implied by the name, kept for readers

    def _save_data(self, folder: Path) -> None:
        """``faiss.index`` (every slot, dead ones included), ``slots.npz`` (each slot's label, id and live
        flag, and the next label) and ``fields.json`` (each slot's id and filter fields)."""
        if self.cpu is not None:
            faiss_module().write_index(self.cpu, str(folder / INDEX_FILE))
        else:
            (folder / INDEX_FILE).unlink(missing_ok=True)
        with open(folder / SLOTS_FILE, "wb") as file:
            np.savez(file, slots=self._slots, ids=self._ids, live=self._live, next=np.int64(self._next))
        save_fields(folder, self._ids, self._table)

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "FaissIndex":
        kind = config["index"].removeprefix("faiss-")
        index = cls(config["dim"], kind, **{key: config[key] for key in DEFAULTS[kind]})
        data = saved_arrays(folder / SLOTS_FILE)
        try:
            slots, ids = data["slots"].astype(np.int64), data["ids"].astype(np.int64)
            live, next_slot = data["live"].astype(bool), int(data["next"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{folder / SLOTS_FILE}: not the slots a save wrote; save it again") from None
        n = len(slots)
        if (len(ids) != n or len(live) != n or (n and (slots.min() < 0 or slots.max() >= next_slot))
                or (np.diff(slots) <= 0).any() or int(live.sum()) != config.get("rows", int(live.sum()))):
            raise ValueError(f"{folder / SLOTS_FILE} does not hold the slots of the {config.get('rows')} saved "
                             "vectors; save it again")
        field_ids, table = saved_fields(folder, n)
        if not np.array_equal(field_ids, ids):
            raise ValueError(f"{folder / 'fields.json'} holds other ids than {folder / SLOTS_FILE}; save it again")
        path = folder / INDEX_FILE
        if n or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the saved folder is incomplete; save it again")
            faiss = faiss_module()
            try:
                index.cpu = faiss.read_index(str(path))
            except RuntimeError as error:
                raise ValueError(f"{path}: not a FAISS index ({error}); save it again") from None
            expected = faiss.IndexIVF if kind == "ivf" else faiss.IndexIDMap2
            if not isinstance(index.cpu, expected):
                raise ValueError(f"{path} holds a FAISS {type(index.cpu).__name__}, not the {expected.__name__} of a "
                                 f"{index.name} index; save it again")
            if index.cpu.ntotal != n or index.cpu.d != index.dim:
                raise ValueError(f"{path} holds {index.cpu.ntotal} vectors of {index.cpu.d} dimensions, not the {n} "
                                 f"slots of {folder / SLOTS_FILE} of {index.dim}; save it again")
            if kind != "ivf" and not np.array_equal(faiss.vector_to_array(index.cpu.id_map), slots):
                raise ValueError(f"{path} labels other slots than {folder / SLOTS_FILE}; save it again")
            index._set_cpu_parameters()
        index._slots, index._ids, index._live, index._table, index._next = slots, ids, live, table, next_slot
        return index
