"""Exact k-nearest-neighbour search: brute force's answer whatever the chunking, ties and storage; compressed
storage (bfloat16, int8) keeps the sample's top 10 in less memory."""

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import load_index, make_index
from cbir_tutorial.search.exact import EuclideanIndex
from cbir_tutorial.search.filters import Filters

from index_changes import (assert_answers_as_built_from_scratch, assert_same_answer, changed_and_rebuilt,
                           product_ids)
from top_k import QUERIES, assert_same_top_k, recall


def brute_force(gallery, queries, k, exclude=None):
    """Reference: every distance, stable sort (ties → lower index)."""
    d = np.sqrt(((queries[:, None, :].astype(np.float64) - gallery[None].astype(np.float64)) ** 2).sum(-1))
    if exclude is not None:
        d[np.arange(len(queries)), exclude] = np.inf
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


@pytest.fixture
def unit_vectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk_rows", [7, 128, 10_000])
def test_matches_brute_force_whatever_the_chunking(unit_vectors, chunk_rows):
    queries = unit_vectors[:20] + 0.05
    distances, indices = make_index("exact", unit_vectors, chunk_rows=chunk_rows).search(queries, 15)
    ref_d, ref_i = brute_force(unit_vectors, queries, 15)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_allclose(distances, ref_d, atol=1e-5)
    assert distances.dtype == np.float32 and indices.shape == (20, 15)
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_block_rows_is_what_a_search_steps_through(unit_vectors, monkeypatch):
    from cbir_tutorial.search import exact

    index = make_index("exact", np.tile(unit_vectors, (20, 1)))  # 20,000 rows, notebook 5's large gallery
    assert index.block_rows(1) == index.chunk_rows == exact.DEFAULT_CHUNK_ROWS
    assert index.block_rows(20) == exact.BLOCK_DISTANCES // 20 and index.block_rows(10**6) == 256
    steps = []
    candidates = exact._candidates
    monkeypatch.setattr(exact, "_candidates", lambda d2, *rest: steps.append(d2.shape[1]) or candidates(d2, *rest))
    for n_queries in (1, 20):
        steps.clear()
        index.search(unit_vectors[:n_queries], 10)
        rows = index.block_rows(n_queries)
        assert steps == [min(rows, len(index) - start) for start in range(0, len(index), rows)]
    assert len(steps) == 4  # 20 queries: blocks of 6,553 rows


def test_single_query_returns_one_dimensional_results(unit_vectors):
    distances, indices = make_index("exact", unit_vectors).search(unit_vectors[3], 5)
    assert distances.shape == indices.shape == (5,)
    assert indices[0] == 3 and distances[0] == pytest.approx(0.0, abs=1e-3)


def test_exclude_self_is_leave_one_out(unit_vectors):
    index = make_index("exact", unit_vectors, chunk_rows=100)
    distances, indices = index.search_stored(np.arange(50), 5)
    ref_d, ref_i = brute_force(unit_vectors, unit_vectors[:50], 5, exclude=np.arange(50))
    np.testing.assert_array_equal(indices, ref_i)
    assert not np.any(indices == np.arange(50)[:, None])


def test_ties_are_broken_by_lower_index_across_chunks():
    gallery = np.zeros((30, 4), dtype=np.float32)
    gallery[:, 0] = 1.0  # thirty identical vectors
    gallery[[5, 17], 1] = 0.5  # two farther ones
    for chunk_rows in (4, 64):
        distances, indices = make_index("exact", gallery, chunk_rows=chunk_rows).search(gallery[0], 10)
        np.testing.assert_array_equal(indices, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10])
        np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_float16_storage_halves_memory_and_keeps_the_ranking(unit_vectors):
    index32, index16 = make_index("exact", unit_vectors), make_index("exact", unit_vectors, dtype=np.float16)
    assert index16.gallery.nbytes * 2 == index32.gallery.nbytes
    d32, i32 = index32.search(unit_vectors[:10], 5)
    d16, i16 = index16.search(unit_vectors[:10], 5)
    assert (i16[:, 0] == i32[:, 0]).all()
    np.testing.assert_allclose(d16, d32, atol=2e-2)


def test_a_filter_on_ids_keeps_only_those_ids(unit_vectors):
    allowed = np.zeros(len(unit_vectors), dtype=bool)
    allowed[::3] = True
    filters = Filters(ids=np.flatnonzero(allowed))
    _, indices = make_index("exact", unit_vectors, chunk_rows=50).search(unit_vectors[:4], 8, filters=filters)
    assert allowed[indices].all()
    _, ref = brute_force(unit_vectors[allowed], unit_vectors[:4], 8)
    np.testing.assert_array_equal(indices, np.flatnonzero(allowed)[ref])


def test_k_is_capped_by_the_candidates():
    gallery = np.eye(3, dtype=np.float32)
    index = make_index("exact", gallery)
    assert index.search(gallery[0], 10)[1].tolist() == [0, 1, 2]
    assert index.search_stored([0], 10)[1].tolist() == [[1, 2]]
    assert index.search(gallery[0], 5, filters=Filters(ids=[1]))[1].tolist() == [1]


def test_distances_never_negative_for_identical_vectors():
    gallery = np.full((4, 2048), 1 / np.sqrt(2048), dtype=np.float32)
    distances, _ = make_index("exact", gallery).search(gallery[0], 4)
    assert (distances >= 0).all() and not np.isnan(distances).any()


def test_bad_arguments_are_named():
    index = make_index("exact", np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="queries have 3 dimensions, the index has 4"):
        index.search(np.ones(3, dtype=np.float32), 2)
    with pytest.raises(ValueError, match="k=0"):
        index.search(np.ones(4, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="exclude_ids has 1 ids for 2 queries"):
        index.search(np.eye(4, dtype=np.float32)[:2], 2, exclude_ids=[0])
    with pytest.raises(ValueError, match="use one of float32, bfloat16, int8, float16"):
        EuclideanIndex(4, dtype=np.int64)
    with pytest.raises(ValueError, match="vectors have 3 dimensions, the index has 4"):
        index.add(np.ones(3, dtype=np.float32), [9])
    with pytest.raises(ValueError, match="3 ids for 4 vectors"):
        make_index("exact", np.eye(4), ids=[0, 1, 2])
    with pytest.raises(ValueError, match=r"ids given more than once: \[2\]"):
        make_index("exact", np.eye(4), ids=[0, 1, 2, 2])
    with pytest.raises(ValueError, match="ids must be integers"):
        make_index("exact", np.eye(4), ids=[0.0, 1.0, 2.0, 3.0])
    assert index.ids.tolist() == [0, 1, 2, 3]  # nothing refused was stored


@pytest.mark.parametrize("storage", ["bfloat16", "int8"])
@pytest.mark.parametrize("n_queries", [1, 3, 40])
def test_compressed_search_equals_float32_search_over_the_decoded_rows(storage, n_queries):
    """A few queries (memory-bound: rows decoded on every core) or many (one thread), steps that end mid-block:
    the same answer as float32 search over the stored vectors, whatever the cores this process may use."""
    import os

    rng = np.random.default_rng(1)
    gallery = rng.standard_normal((1000, 2048)).astype(np.float32)  # 2048-d: 128-row decode blocks
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    index = make_index("exact", gallery, dtype=storage, chunk_rows=700)  # steps that end mid-block
    queries, exclude = gallery[:n_queries] + 0.01, np.arange(n_queries)
    answer = index.search(queries, 12, exclude_ids=exclude)
    decoded = make_index("exact", index.vectors()).search(queries, 12, exclude_ids=exclude)
    np.testing.assert_array_equal(answer[1], decoded[1])
    np.testing.assert_allclose(answer[0], decoded[0], atol=1e-5)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) > 1:  # the same answer on one core
        try:
            os.sched_setaffinity(0, cores[:1])
            one_core = index.search(queries, 12, exclude_ids=exclude)
        finally:
            os.sched_setaffinity(0, cores)
        np.testing.assert_array_equal(one_core[1], answer[1])
        np.testing.assert_allclose(one_core[0], answer[0], rtol=1e-6)


@pytest.mark.parametrize("storage, max_share", [("bfloat16", 0.51), ("int8", 0.27)])
def test_compressed_storage_keeps_the_top_10_in_less_memory(features, storage, max_share):
    exact = make_index("exact", features)
    small = make_index("exact", features, dtype=storage)
    assert small.gallery.nbytes <= max_share * exact.gallery.nbytes
    _, reference = exact.search_stored(QUERIES, 10)
    distances, found = small.search_stored(QUERIES, 10)
    assert recall(found, reference) >= 0.99
    # exact for the stored (decoded) vectors: same answer as float32 search over them
    decoded = make_index("exact", small.vectors())
    assert_same_top_k((distances, found), decoded.search(small.vectors(QUERIES), 10, exclude_ids=QUERIES), atol=1e-5)
    assert np.abs(small.vectors() - features).max() < (0.01 if storage == "bfloat16" else 0.5 * small.scale.max() + 1e-6)


def test_int8_codes_span_each_dimension():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    index = make_index("exact", x, dtype="int8")
    assert index.gallery.min() == -127 and index.gallery.max() == 127
    assert (np.abs(index.vectors() - x) <= index.scale * 0.5001 + 1e-5).all()  # half a step, plus rounding


def test_float16_still_works(features):
    _, reference = make_index("exact", features).search_stored(QUERIES, 10)
    assert recall(make_index("exact", features, dtype="float16").search_stored(QUERIES, 10)[1], reference) >= 0.99


def test_index_bytes_match_what_the_index_holds(features):
    from cbir_tutorial.search.exact import index_bytes

    for storage in ("float32", "bfloat16", "int8"):
        index = make_index("exact", features, dtype=storage)
        held = index.gallery.nbytes + index.sq_norms.nbytes + (0 if index.scale is None else 8 * index.dim)
        assert index_bytes(*features.shape, storage) == index.nbytes == held
    assert index_bytes(1_000_000, 2048, "int8") / index_bytes(1_000_000, 2048) < 0.26
    with pytest.raises(ValueError, match="storage='int4'"):
        index_bytes(10, 4, "int4")


# Products by id: vectors stored under any int64 ids, an id added again replaced, ids removed, and after any such
# sequence the same answer as an index built from scratch on what it holds.


def test_results_are_the_ids_given_not_row_numbers(unit_vectors):
    ids = product_ids(len(unit_vectors), seed=1)
    index = make_index("exact", unit_vectors, ids, chunk_rows=128)
    assert index.ids.tolist() == sorted(ids.tolist())
    queries = unit_vectors[:20] + 0.05
    distances, found = index.search(queries, 15)
    ref_d, ref_i = brute_force(unit_vectors, queries, 15)
    np.testing.assert_array_equal(found, ids[ref_i])
    np.testing.assert_allclose(distances, ref_d, atol=1e-5)
    _, found = index.search_stored(ids[:30], 5)  # leave-one-out by id
    np.testing.assert_array_equal(found, ids[brute_force(unit_vectors, unit_vectors[:30], 5, np.arange(30))[1]])
    np.testing.assert_array_equal(index.vectors(ids[[7, 3]]), unit_vectors[[7, 3]])
    with pytest.raises(KeyError, match="1 id\\(s\\) not in the exact index: 5"):
        index.vectors([ids[0], 5])


def test_ties_are_broken_by_the_lower_id_not_the_order_added():
    gallery = np.tile(np.eye(4, dtype=np.float32)[:1], (4, 1))  # four identical vectors
    index = make_index("exact", gallery, [50, 7, 900, 30], chunk_rows=2)
    assert index.search(gallery[0], 4)[1].tolist() == [7, 30, 50, 900]
    assert index.search_stored([30], 4)[1].tolist() == [[7, 50, 900]]


def test_adding_an_id_again_replaces_its_vector_and_fields(unit_vectors):
    index = make_index("exact", unit_vectors[:10], np.arange(100, 110),
                       pd.DataFrame({"category": ["bags"] * 10}))
    index.add(unit_vectors[[500, 501]], [103, 200], pd.DataFrame({"category": ["shoes", "shoes"]}))
    assert len(index) == 11 and index.ids.tolist() == list(range(100, 110)) + [200]
    np.testing.assert_array_equal(index.vectors([103]), unit_vectors[[500]])
    distances, found = index.search(unit_vectors[500], 1)
    assert found.tolist() == [103] and distances[0] == pytest.approx(0.0, abs=1e-3)
    distances, found = index.search(unit_vectors[3], 11)  # the old vector of 103 is gone
    assert distances[0] > 0.1 and sorted(found.tolist()) == index.ids.tolist()
    _, found = index.search(unit_vectors[:10], 11, filters=Filters(category="shoes"))
    assert found.shape == (10, 2) and (np.sort(found, axis=1) == [103, 200]).all()


def test_remove_deletes_ids_and_refuses_unknown_ones_removing_nothing(unit_vectors):
    ids = np.arange(10, dtype=np.int64) * 7 + 700
    index = make_index("exact", unit_vectors[:10], ids)
    with pytest.raises(KeyError, match="2 id\\(s\\) not in the exact index: 5, 6; nothing was changed"):
        index.remove([700, 5, 6])
    assert index.ids.tolist() == ids.tolist()
    np.testing.assert_array_equal(index.vectors(), unit_vectors[:10])
    index.remove([700, 763])
    assert index.ids.tolist() == ids[1:-1].tolist()
    _, found = index.search(unit_vectors[:10], 10)
    assert found.shape == (10, 8) and not np.isin(found, [700, 763]).any()
    assert index.search(unit_vectors[0], 1)[1].tolist() != [700]
    with pytest.raises(KeyError, match="700"):
        index.vectors([700])


@pytest.mark.parametrize("storage", ["float32", "bfloat16"])
def test_after_adds_updates_and_removes_the_index_answers_as_one_built_from_scratch(features, sample_engine,
                                                                                    storage):
    table = sample_engine.catalogue.table
    index, scratch, ids = changed_and_rebuilt("exact", features, table, dtype=storage, chunk_rows=100)
    assert len(index) == 600 - 70 + 130 - 40
    assert_answers_as_built_from_scratch(index, scratch, features, ids)


def test_filters_on_a_field_and_on_ids(features, sample_engine):
    table = sample_engine.catalogue.table
    ids = product_ids(len(features), seed=5)
    index = make_index("exact", features, ids, table, chunk_rows=100)
    watches = table["category"].to_numpy() == "Watches"
    some = np.arange(len(ids)) % 4 == 1
    queries = features[QUERIES]
    for filters, passing in ((Filters(category="Watches"), watches), (Filters(ids=ids[some]), some),
                             (Filters(category="Watches", ids=ids[some]), watches & some)):
        assert 10 < passing.sum() < len(ids)
        distances, found = index.search(queries, 10, filters=filters)
        assert np.isin(found, ids[passing]).all()
        assert_same_answer((distances, found), make_index("exact", features[passing], ids[passing]).search(queries, 10))
    none = index.search(queries, 10, filters=Filters(ids=[1, 2, 3]))  # ids not stored: nothing passes
    assert none[0].shape == none[1].shape == (len(queries), 0)


@pytest.mark.parametrize("storage", ["float32", "bfloat16", "int8"])
def test_a_saved_index_keeps_its_ids_and_fields(features, priced_table, tmp_path, storage):
    ids = product_ids(len(features), seed=6)
    index = make_index("exact", features, ids, priced_table, dtype=storage)
    again = load_index(index.save(tmp_path / "index"))
    assert type(again) is EuclideanIndex and again.get_config() == index.get_config()
    np.testing.assert_array_equal(again.ids, index.ids)
    np.testing.assert_array_equal(again.vectors(ids[::9]), index.vectors(ids[::9]))
    pd.testing.assert_frame_equal(again.table, index.table)
    queries = features[QUERIES]
    for filters in (None, Filters(category="Watches", price=(100.0, 700.0)), Filters(gender="Men", ids=ids[::2])):
        assert_same_answer(again.search(queries, 10, filters=filters), index.search(queries, 10, filters=filters),
                           atol=0)
    for changed in (index, again):  # the reopened index changes as the one saved
        changed.remove(ids[:5])
        changed.add(features[:3] * np.float32(0.5), ids[5:8], priced_table.iloc[:3].reset_index(drop=True))
    np.testing.assert_array_equal(again.ids, index.ids)
    assert_same_answer(again.search(queries, 10, filters=Filters(price=(0.0, 500.0))),
                       index.search(queries, 10, filters=Filters(price=(0.0, 500.0))))
