"""No index stores or searches NaN or infinity, and the exact ranking stays sound when distances are not numbers.

A diverged model writes NaN features; every backend refuses them on build, add and search with one message
that says how many rows, which, and what to do. Finite features can still give NaN distances (squares that
overflow float32): the exact index then ranks those rows after every number and never returns an excluded row.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from cbir_tutorial.search.backends import load_index, make_index
from cbir_tutorial.search.filters import Filters

#: The backends refusing in-process (Milvus, which needs a database, has its own tests below).
BACKENDS = [("exact", {}), ("exact", {"dtype": "int8"}),
            ("faiss-flat", {}), ("faiss-ivf", {"nlist": 4, "nprobe": 4}), ("faiss-hnsw", {})]
BACKEND_IDS = ["exact", "exact-int8", "faiss-flat", "faiss-ivf", "faiss-hnsw"]
CHECK_THE_FEATURES = "check the features: .*retrain it with a lower learning rate"


def built(name: str, features: np.ndarray, **options):
    if name.startswith("faiss"):
        pytest.importorskip("faiss")
    return make_index(name, features, **options)


def poisoned(features: np.ndarray, rows, value: float) -> np.ndarray:
    """A copy of ``features`` with one value of each of ``rows`` replaced by ``value``."""
    out = np.array(features, dtype=np.float32)
    out[rows, 7] = value
    return out


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name, options", BACKENDS, ids=BACKEND_IDS)
def test_no_backend_builds_over_features_holding_nan_or_infinity(features, name, options, value):
    bad = poisoned(features, [3, 141, 600], value)
    with pytest.raises(ValueError, match=rf"^3 of {len(features)} vectors given to the index hold NaN or infinity "
                                         rf"\(rows 3, 141, 600\): {CHECK_THE_FEATURES}"):
        built(name, bad, **options)


@pytest.mark.parametrize("name, options", BACKENDS, ids=BACKEND_IDS)
def test_no_backend_adds_such_rows_and_it_keeps_the_ones_it_had(features, name, options):
    index = built(name, features[:700], **options)
    before = index.search(features[:3], 5)
    with pytest.raises(ValueError, match=rf"^2 of 70 vectors given to the index hold NaN or infinity \(rows 5, 69\): "
                                         rf"{CHECK_THE_FEATURES}"):
        index.add(poisoned(features[700:], [5, 69], np.nan), np.arange(700, len(features)))
    assert len(index) == 700 and index.ids.tolist() == list(range(700))
    after = index.search(features[:3], 5)
    np.testing.assert_array_equal(after[1], before[1])


@pytest.mark.parametrize("name, options", BACKENDS, ids=BACKEND_IDS)
def test_no_backend_searches_with_a_query_holding_nan_or_infinity(features, name, options):
    index = built(name, features, **options)
    with pytest.raises(ValueError, match=rf"^1 of 1 query vectors hold NaN or infinity \(rows 0\): {CHECK_THE_FEATURES}"):
        index.search(poisoned(features[:1], [0], np.nan)[0], 5)
    queries = poisoned(features[:8], [2, 6], np.inf)
    with pytest.raises(ValueError, match=r"^2 of 8 query vectors hold NaN or infinity \(rows 2, 6\)"):
        index.search(queries, 5, exclude_ids=np.arange(8))


def test_the_message_lists_the_first_five_rows_and_counts_the_rest(features):
    bad = poisoned(features, np.arange(0, 770, 10), np.nan)
    with pytest.raises(ValueError, match=r"^77 of 770 vectors given to the index hold NaN or infinity "
                                         r"\(rows 0, 10, 20, 30, 40 and 72 more\)"):
        make_index("exact", bad)


def test_a_saved_exact_index_holding_nan_rows_is_refused_on_load(features, tmp_path):
    folder = make_index("exact", features[:50]).save(tmp_path / "index")
    with np.load(folder / "gallery.npz") as saved:
        arrays = dict(saved)
    arrays["gallery"][[4, 9]] = np.nan  # as an index saved before NaN was refused holds them
    arrays["sq_norms"] = np.einsum("ij,ij->i", arrays["gallery"], arrays["gallery"])
    with open(folder / "gallery.npz", "wb") as file:
        np.savez(file, **arrays)
    with pytest.raises(ValueError, match=rf"^2 of 50 saved gallery rows hold NaN or infinity \(rows 4, 9\): "
                                         rf"{re.escape(str(folder))} was saved from such features"):
        load_index(folder)


def test_milvus_refuses_nan_on_build_add_and_search_and_keeps_its_rows(features, milvus_uri):
    with pytest.raises(ValueError, match=rf"^1 of 770 vectors given to the index hold NaN or infinity \(rows 12\): "
                                         rf"{CHECK_THE_FEATURES}"):
        make_index("milvus", poisoned(features, [12], np.nan), uri=milvus_uri, collection=f"nan_{os.getpid()}")
    index = make_index("milvus", features[:100], uri=milvus_uri, collection=f"finite_{os.getpid()}")
    try:
        with pytest.raises(ValueError, match=r"^1 of 10 vectors given to the index hold NaN or infinity \(rows 3\)"):
            index.add(poisoned(features[100:110], [3], np.inf), np.arange(100, 110))
        assert len(index) == 100 and index.ids.tolist() == list(range(100))
        with pytest.raises(ValueError, match=r"^1 of 2 query vectors hold NaN or infinity \(rows 1\)"):
            index.search(poisoned(features[:2], [1], np.nan), 5)
        ids = index.search(features[:2], 5, exclude_ids=np.arange(2))[1]
        assert (ids >= 0).all() and (ids < 100).all() and not (ids == np.arange(2)[:, None]).any()
    finally:
        index.close()


# The exact ranking when distances are not numbers: features of 1e20 are finite, their squares overflow
# float32, and every distance between them is NaN (inf - inf). numpy warns of the overflow, as it should.
OVERFLOW_WARNINGS = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                               "ignore:invalid value:RuntimeWarning")

@pytest.fixture(scope="module")
def overflowing(features):
    return features[:40] * np.float32(1e20)


@OVERFLOW_WARNINGS
@pytest.mark.parametrize("chunk_rows", [65_536, 7])
def test_an_excluded_row_is_never_returned_even_when_every_distance_is_nan(overflowing, chunk_rows):
    index = make_index("exact", overflowing, chunk_rows=chunk_rows)
    rows = np.arange(len(overflowing))
    distances, found = index.search_stored(rows, k=len(rows) - 1)
    assert found.shape == (40, 39)
    assert not (found == rows[:, None]).any(), "a query came back among its own results"
    assert all(len(set(r)) == 39 for r in found.tolist()), "a row came back twice"
    assert np.isnan(distances).all()
    allowed = rows % 2 == 0
    _, found = index.search(overflowing[:4], 30, exclude_ids=np.arange(4), filters=Filters(ids=np.flatnonzero(allowed)))
    assert found.shape == (4, 19) and allowed[found].all() and not (found == np.arange(4)[:, None]).any()


@OVERFLOW_WARNINGS
@pytest.mark.parametrize("chunk_rows", [65_536, 7])
def test_rows_whose_distance_is_not_a_number_rank_after_every_number(features, chunk_rows):
    gallery = np.concatenate([features[:60], features[60:63] * np.float32(1e20)])  # rows 60..62: inf distances
    index = make_index("exact", gallery, chunk_rows=chunk_rows)
    distances, found = index.search(features[:5], len(gallery) - 1, exclude_ids=np.arange(5))
    reference_d, reference_i = make_index("exact", features[:60]).search(features[:5], 59, exclude_ids=np.arange(5))
    np.testing.assert_array_equal(found[:, :59], reference_i)
    np.testing.assert_allclose(distances[:, :59], reference_d, atol=1e-6)
    assert (np.sort(found[:, 59:], axis=1) == [60, 61, 62]).all()
    assert np.isnan(distances[:, 59:]).all()


def test_a_pipeline_refuses_to_turn_nan_features_into_vectors(sample_engine, features):
    with pytest.raises(ValueError, match=r"^1 of 770 vectors of recipe 'baseline' hold NaN or infinity \(rows 9\): "
                                         r"its extractors' features hold NaN or infinity \(a model that diverged"):
        sample_engine.pipeline.transform([poisoned(features, [9], np.nan)])
