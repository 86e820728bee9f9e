"""Product ids as the int64 keys an index stores: any catalogue id (a SKU, a number, a file path) maps to one."""

from __future__ import annotations

import hashlib

import numpy as np


def product_keys(ids) -> np.ndarray:
    """``(N,)`` int64 keys of product ``ids`` (strings): the first 63 bits of each id's BLAKE2b digest.

    Written here because FAISS and Milvus key vectors by int64 while a catalogue's ids are text: a digest
    needs no table kept in step (an engine rebuilt from the same catalogue gets the same keys), and two
    ids of a 200,000-product catalogue share a key with probability about 2e-9 (:func:`unique_keys`
    refuses it when it happens).
    """
    return np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little") >> 1
                     for i in ids], dtype=np.int64)


def unique_keys(ids, where: str) -> np.ndarray:
    """``(N,)`` int64 :func:`product_keys` of product ``ids``, in their order; ValueError naming (up to 5) ids that
    appear more than once in ``where``, or two distinct ids that share a key."""
    ids = np.asarray(ids, dtype=object).astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        raise ValueError(f"{where}: product ids must be unique; {len(repeated)} appear more than once, e.g. "
                         f"{', '.join(repeated[:5].tolist())}: drop or rename the duplicates")
    keys = product_keys(ids)
    if len(np.unique(keys)) != len(keys):  # pragma: no cover - two ids with one 63-bit key
        raise ValueError(f"{where}: two product ids share a 63-bit key; rename one of them")
    return keys
