"""Helpers of the index tests: product keys as a shop has them, and an index taken through adds, updates and
removes next to one built from scratch on what it ends up holding."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.filters import Filters


def product_ids(n: int, seed: int) -> np.ndarray:
    """``n`` distinct int64 ids as a shop's product keys: large, far apart, in no order."""
    return np.random.default_rng(seed).choice(2**62, size=n, replace=False).astype(np.int64)


def assert_same_answer(found, reference, atol=1e-6):
    """The same ids in the same order, and the same squared distances to ``atol`` (a distance is the square root of
    a rounded sum, so near 0 its rounding is magnified: sqrt(6e-7) = 8e-4 where batches of other shapes round
    differently)."""
    np.testing.assert_array_equal(found[1], reference[1])
    np.testing.assert_allclose(found[0] ** 2, reference[0] ** 2, atol=atol)


def changed_and_rebuilt(name: str, features: np.ndarray, table: pd.DataFrame, seed: int = 3, **options):
    """An index taken through adds, updates and removes, and one built from scratch (in another order) on the
    ids, vectors and fields it ends up holding."""
    ids = product_ids(len(features), seed=seed)
    held = {}  # id -> the row of features and table it holds

    def add(which, rows):
        index.add(features[rows], ids[which], table.iloc[rows].reset_index(drop=True))
        held.update(zip(ids[which].tolist(), rows.tolist()))

    def remove(which):
        index.remove(ids[which])
        for key in ids[which].tolist():
            del held[key]

    index = make_index(name, features[:400], ids[:400], table.iloc[:400].reset_index(drop=True), **options)
    held.update(zip(ids[:400].tolist(), range(400)))
    add(np.arange(400, 600), np.arange(400, 600))  # new products
    add(np.arange(100, 150), np.arange(600, 650))  # updated: other vectors and fields
    remove(np.r_[0:50, 450:470])
    add(np.r_[650:770, 20:30], np.r_[650:770, 700:710])  # new ones and removed ones back, in one add
    remove(np.r_[100:110, 650:680])  # updated ones and new ones
    keys = np.random.default_rng(seed + 1).permutation(np.array(list(held), dtype=np.int64))
    rows = np.array([held[key] for key in keys.tolist()])
    scratch = make_index(name, features[rows], keys, table.iloc[rows].reset_index(drop=True), **options)
    return index, scratch, ids


def assert_answers_as_built_from_scratch(index, scratch, features, ids):
    np.testing.assert_array_equal(index.ids, scratch.ids)
    np.testing.assert_array_equal(index.vectors(), scratch.vectors())
    queries = features[::7] + np.float32(0.01)
    for filters in (None, Filters(category="Tshirts"), Filters(ids=ids[::3]),
                    Filters(gender="Women", category="Handbags"), Filters(category="Watches", ids=ids[1::2])):
        assert_same_answer(index.search(queries, 10, filters=filters), scratch.search(queries, 10, filters=filters))
    assert_same_answer(index.search_stored(index.ids[::5], 10), scratch.search_stored(index.ids[::5], 10))
