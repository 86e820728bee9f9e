"""Product ids as the int64 keys an index stores: any catalogue id (a SKU, a number, a file path) maps to one."""

from __future__ import annotations

import hashlib

import numpy as np


def product_keys(ids) -> np.ndarray:
    """``(N,)`` int64 keys of product ``ids`` (strings): the first 63 bits of each id's BLAKE2b digest.

    Written here because FAISS and Milvus key vectors by int64 while a catalogue's ids are text: a digest
    needs no table kept in step (an engine rebuilt from the same catalogue gets the same keys), and two
    ids of a 200,000-product catalogue share a key with probability about 2e-9 (:func:`check_unique_ids`
    refuses it when it happens).
    """
    return np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little") >> 1
                     for i in ids], dtype=np.int64)


def check_unique_ids(ids, where: str) -> None:
    """ValueError naming (up to 5) product ids that appear more than once in ``where``, and the key collision
    of two distinct ids (:func:`product_keys`)."""
    ids = np.asarray(ids, dtype=object).astype(str)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        raise ValueError(f"{where}: product ids must be unique; {len(repeated)} appear more than once, e.g. "
                         f"{', '.join(repeated[:5].tolist())}: drop or rename the duplicates")
    keys, first = np.unique(product_keys(unique), return_index=True)
    if len(keys) != len(unique):  # pragma: no cover - two ids with one 63-bit key
        raise ValueError(f"{where}: two product ids share a 63-bit key; rename one of them")
