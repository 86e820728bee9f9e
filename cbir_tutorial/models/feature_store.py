"""Features on disk, one row per image version: append-only shards with checksums, reused across runs.

A store is one folder per model recipe (backbone, weights, input size, resize, precision). Each shard
is two files named ``<time>-<pid>-<n>``: ``.npy`` with ``(rows, D)`` float32 features and ``.json`` with
the format, ``D``, the sha256 of the ``.npy``, the image key of every row, and the images that could not
be read (key -> reason). Both are written atomically, the ``.json`` last: a shard exists once its
``.json`` does, so a run killed at any moment leaves whole shards (and at worst an orphan ``.npy``,
removed later). Nothing is rewritten in place, so there is no manifest to corrupt: the index is the
union of the shards' ``.json``, later shards winning. A shard whose ``.json`` does not parse or whose
``.npy`` does not match its checksum is deleted and its images are extracted again.

An image key names one version of one file (:func:`image_key`: absolute path, size, modification
time), so a changed file is extracted again and a removed one is simply no longer asked for;
:meth:`FeatureStore.prune` drops rows that no listed image needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..paths import atomic_write_bytes

#: The cache's format: part of every store's key (a new format never reads an old store).
FORMAT = 2
#: A shard is written when it holds this many rows, or ...
SHARD_ROWS = 2048
#: ... when its first row is this many seconds old, so a killed run loses at most this much work.
FLUSH_SECONDS = 30.0
#: Orphan ``.npy`` / temporary files older than this are removed when a store is opened.
ORPHAN_SECONDS = 600.0


def image_key(path: str | os.PathLike) -> str:
    """24 hex characters naming the current version of a file: its absolute path, size and mtime.

    Stat-based rather than a hash of the bytes, so that checking a 1M-image catalogue reads no image.
    """
    path = os.path.abspath(path)
    try:
        stat = os.stat(path)
        text = f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"
    except OSError:
        text = f"{path}\tmissing"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class FeatureStore:
    """The shards of one folder: ``index`` (key -> (shard, row)) and ``skipped`` (key -> reason)."""

    def __init__(self, folder: str | os.PathLike, dim: int):
        self.folder = Path(folder)
        self.dim = int(dim)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index: dict[str, tuple[str, int]] = {}
        self.skipped: dict[str, str] = {}
        self.shards: dict[str, dict] = {}
        self._load()

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"FeatureStore({self.folder}, {len(self.index)} rows, {len(self.skipped)} skipped, " \
               f"{len(self.shards)} shards)"

    def _load(self) -> None:
        for meta_path in sorted(self.folder.glob("*.json")):
            name = meta_path.stem
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("format") != FORMAT or meta.get("dim") != self.dim:
                    raise ValueError(f"format {meta.get('format')}, dim {meta.get('dim')}; "
                                     f"expected {FORMAT}, {self.dim}")
                if meta["keys"] and not (self.folder / f"{name}.npy").is_file():
                    raise ValueError("its .npy is missing")
                if not isinstance(meta["skipped"], dict):
                    raise ValueError("'skipped' is not a mapping")
            except Exception as e:  # a shard that cannot be read is dropped and its images extracted again
                self._drop(name, f"{type(e).__name__}: {e}")
                continue
            self.shards[name] = meta
            for row, key in enumerate(meta["keys"]):
                self.index[key] = (name, row)
                self.skipped.pop(key, None)
            for key, reason in meta["skipped"].items():
                self.skipped[key] = reason
                self.index.pop(key, None)
        now = time.time()
        for path in self.folder.iterdir():
            orphan = path.suffix == ".npy" and not path.with_suffix(".json").exists()
            if (orphan or ".tmp" in path.name) and now - path.stat().st_mtime > ORPHAN_SECONDS:
                path.unlink(missing_ok=True)

    def _drop(self, name: str, why: str) -> None:
        print(f"Feature shard {self.folder.name}/{name} is unusable ({why}); its images will be extracted again.")
        meta = self.shards.pop(name, None)
        if meta is not None:
            for key in meta["keys"]:
                if self.index.get(key, ("", 0))[0] == name:
                    del self.index[key]
            for key in meta["skipped"]:
                self.skipped.pop(key, None)
        (self.folder / f"{name}.json").unlink(missing_ok=True)
        (self.folder / f"{name}.npy").unlink(missing_ok=True)

    def rows_of(self, name: str) -> np.ndarray | None:
        """The verified ``(rows, D)`` float32 features of shard ``name``; None (and the shard dropped)
        when its bytes do not match the checksum."""
        meta = self.shards[name]
        try:
            data = (self.folder / f"{name}.npy").read_bytes()
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise ValueError("checksum mismatch")
            rows = np.load(io.BytesIO(data), allow_pickle=False)
            if rows.shape != (len(meta["keys"]), self.dim) or rows.dtype != np.float32:
                raise ValueError(f"shape {rows.shape} {rows.dtype}")
            return rows
        except Exception as e:
            self._drop(name, f"{type(e).__name__}: {e}")
            return None

    def fill(self, keys: Sequence[str], out: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
        """Copy the stored rows of ``keys`` into ``out[i]``, one verified shard at a time.

        Returns ``known`` (``(N,)`` bool: True where ``out[i]`` was filled or the image is known to be
        unreadable) and ``{i: reason}`` for the unreadable ones.
        """
        known = np.zeros(len(keys), dtype=bool)
        reasons: dict[int, str] = {}
        wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, key in enumerate(keys):
            if key in self.index:
                name, row = self.index[key]
                wanted[name].append((i, row))
            elif key in self.skipped:
                reasons[i] = self.skipped[key]
                known[i] = True
        for name, pairs in wanted.items():
            rows = self.rows_of(name)
            if rows is None:
                continue
            where = np.asarray(pairs)
            out[where[:, 0]] = rows[where[:, 1]]
            known[where[:, 0]] = True
        return known, reasons

    def writer(self) -> "ShardWriter":
        return ShardWriter(self)

    def prune(self, keep: Iterable[str]) -> int:
        """Drop every row and skip record whose key is not in ``keep``; returns the rows removed.

        Shards with nothing to keep are deleted; shards with something to keep are rewritten (new
        shard first, old one deleted after), so a kill mid-way loses nothing.
        """
        keep = set(keep)
        removed = 0
        for name in list(self.shards):
            meta = self.shards[name]
            live_rows = [row for row, key in enumerate(meta["keys"]) if key in keep and self.index.get(key) == (name, row)]
            live_skips = {k: r for k, r in meta["skipped"].items() if k in keep and self.skipped.get(k) == r}
            if len(live_rows) == len(meta["keys"]) and len(live_skips) == len(meta["skipped"]):
                continue
            removed += len(meta["keys"]) - len(live_rows)
            if live_rows or live_skips:
                rows = self.rows_of(name)
                if rows is None:
                    continue
                with self.writer() as writer:
                    writer.add([meta["keys"][r] for r in live_rows], rows[live_rows])
                    for key, reason in live_skips.items():
                        writer.skip(key, reason)
            self.shards.pop(name)
            for key in meta["keys"]:
                if self.index.get(key, ("", 0))[0] == name:
                    del self.index[key]
            for key in meta["skipped"]:
                if key not in keep:
                    self.skipped.pop(key, None)
            (self.folder / f"{name}.json").unlink(missing_ok=True)
            (self.folder / f"{name}.npy").unlink(missing_ok=True)
        return removed


class ShardWriter:
    """Collects rows and writes them as shards of up to :data:`SHARD_ROWS` rows (or every
    :data:`FLUSH_SECONDS`); leaving the ``with`` block writes what is left, also on an exception, since
    every row collected is a finished one."""

    _count = 0

    def __init__(self, store: FeatureStore):
        self.store = store
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []
        self.skips: dict[str, str] = {}
        self.started = time.monotonic()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    def add(self, keys: Sequence[str], rows: np.ndarray) -> None:
        """Rows ``(B, D)`` float32 for images ``keys``."""
        if len(keys):
            self._start_clock()
            self.keys.extend(keys)
            self.rows.append(np.asarray(rows, dtype=np.float32))
            self._maybe_flush()

    def skip(self, key: str, reason: str) -> None:
        self._start_clock()
        self.skips[key] = reason
        self._maybe_flush()

    def _start_clock(self) -> None:
        if not self.keys and not self.skips:
            self.started = time.monotonic()

    def _maybe_flush(self) -> None:
        if (len(self.keys) >= SHARD_ROWS or
                time.monotonic() - self.started >= FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Write the collected rows as one shard: ``.npy`` first, then the ``.json`` that vouches for it."""
        if not self.keys and not self.skips:
            return
        store = self.store
        ShardWriter._count += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{ShardWriter._count}"
        digest = None
        if self.keys:
            buffer = io.BytesIO()
            np.save(buffer, np.concatenate(self.rows).reshape(len(self.keys), store.dim), allow_pickle=False)
            data = buffer.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            atomic_write_bytes(store.folder / f"{name}.npy", data)
        meta = {"format": FORMAT, "dim": store.dim, "sha256": digest, "keys": self.keys, "skipped": self.skips}
        atomic_write_bytes(store.folder / f"{name}.json", json.dumps(meta).encode())
        store.shards[name] = meta
        for row, key in enumerate(self.keys):
            store.index[key] = (name, row)
            store.skipped.pop(key, None)
        for key, reason in self.skips.items():
            store.skipped[key] = reason
            store.index.pop(key, None)
        self.keys, self.rows, self.skips = [], [], {}


def feature_store(folder: Path, name: str, dim: int) -> FeatureStore:
    """The store ``name`` of ``dim``-wide features under ``folder``; the caches of format 1 there (one file
    per catalogue, never reused) are removed first."""
    _remove_format1_caches(folder)
    return FeatureStore(folder / name, dim)


def _remove_format1_caches(folder: Path) -> None:
    """Delete the one-file-per-catalogue caches of format 1 (``<backbone>-<24 hex>.npy/.json``): never reused."""
    for meta in folder.glob("*-" + "[0-9a-f]" * 24 + ".json"):
        try:
            if json.loads(meta.read_text()).get("format") != 1:
                continue
        except Exception:
            continue
        meta.with_suffix(".npy").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
