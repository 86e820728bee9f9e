"""Exact k-nearest-neighbour search: brute force's answer whatever the chunking, ties and storage; compressed
storage (bfloat16, int8) keeps the sample's top 10 in less memory."""

import numpy as np
import pytest

from cbir_tutorial.search.exact import EuclideanIndex
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
    distances, indices = EuclideanIndex(unit_vectors, chunk_rows=chunk_rows).search(queries, 15)
    ref_d, ref_i = brute_force(unit_vectors, queries, 15)
    np.testing.assert_array_equal(indices, ref_i)
    np.testing.assert_allclose(distances, ref_d, atol=1e-5)
    assert distances.dtype == np.float32 and indices.shape == (20, 15)
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_single_query_returns_one_dimensional_results(unit_vectors):
    distances, indices = EuclideanIndex(unit_vectors).search(unit_vectors[3], 5)
    assert distances.shape == indices.shape == (5,)
    assert indices[0] == 3 and distances[0] == pytest.approx(0.0, abs=1e-3)


def test_exclude_self_is_leave_one_out(unit_vectors):
    index = EuclideanIndex(unit_vectors, chunk_rows=100)
    distances, indices = index.search_rows(np.arange(50), 5)
    ref_d, ref_i = brute_force(unit_vectors, unit_vectors[:50], 5, exclude=np.arange(50))
    np.testing.assert_array_equal(indices, ref_i)
    assert not np.any(indices == np.arange(50)[:, None])


def test_ties_are_broken_by_lower_index_across_chunks():
    gallery = np.zeros((30, 4), dtype=np.float32)
    gallery[:, 0] = 1.0  # thirty identical vectors
    gallery[[5, 17], 1] = 0.5  # two farther ones
    for chunk_rows in (4, 64):
        distances, indices = EuclideanIndex(gallery, chunk_rows=chunk_rows).search(gallery[0], 10)
        np.testing.assert_array_equal(indices, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10])
        np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_float16_storage_halves_memory_and_keeps_the_ranking(unit_vectors):
    index32, index16 = EuclideanIndex(unit_vectors), EuclideanIndex(unit_vectors, dtype=np.float16)
    assert index16.gallery.nbytes * 2 == index32.gallery.nbytes
    d32, i32 = index32.search(unit_vectors[:10], 5)
    d16, i16 = index16.search(unit_vectors[:10], 5)
    assert (i16[:, 0] == i32[:, 0]).all()
    np.testing.assert_allclose(d16, d32, atol=2e-2)


def test_allowed_rows_filter_results(unit_vectors):
    allowed = np.zeros(len(unit_vectors), dtype=bool)
    allowed[::3] = True
    _, indices = EuclideanIndex(unit_vectors, chunk_rows=50).search(unit_vectors[:4], 8, allowed=allowed)
    assert allowed[indices].all()
    _, ref = brute_force(unit_vectors[allowed], unit_vectors[:4], 8)
    np.testing.assert_array_equal(indices, np.flatnonzero(allowed)[ref])


def test_k_is_capped_by_the_candidates():
    gallery = np.eye(3, dtype=np.float32)
    index = EuclideanIndex(gallery)
    assert index.search(gallery[0], 10)[1].tolist() == [0, 1, 2]
    assert index.search_rows([0], 10)[1].tolist() == [[1, 2]]
    assert index.search(gallery[0], 5, allowed=np.array([False, True, False]))[1].tolist() == [1]


def test_distances_never_negative_for_identical_vectors():
    gallery = np.full((4, 2048), 1 / np.sqrt(2048), dtype=np.float32)
    distances, _ = EuclideanIndex(gallery).search(gallery[0], 4)
    assert (distances >= 0).all() and not np.isnan(distances).any()


def test_bad_arguments_are_named():
    index = EuclideanIndex(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="queries have 3 dimensions, the index has 4"):
        index.search(np.ones(3, dtype=np.float32), 2)
    with pytest.raises(ValueError, match="k=0"):
        index.search(np.ones(4, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="use one of float32, bfloat16, int8, float16"):
        EuclideanIndex(np.eye(4), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        EuclideanIndex(np.ones(4))


@pytest.mark.parametrize("storage", ["bfloat16", "int8"])
@pytest.mark.parametrize("n_queries", [1, 3, 40])
def test_compressed_search_equals_float32_search_over_the_decoded_rows(storage, n_queries):
    """A few queries (memory-bound: rows decoded on every core) or many (one thread), steps that end mid-block:
    the same answer as float32 search over the stored vectors, whatever the cores this process may use."""
    import os

    rng = np.random.default_rng(1)
    gallery = rng.standard_normal((1000, 2048)).astype(np.float32)  # 2048-d: 128-row decode blocks
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    index = EuclideanIndex(gallery, dtype=storage, chunk_rows=700)  # steps that end mid-block
    queries, exclude = gallery[:n_queries] + 0.01, np.arange(n_queries)
    answer = index.search(queries, 12, exclude=exclude)
    decoded = EuclideanIndex(index.vectors()).search(queries, 12, exclude=exclude)
    np.testing.assert_array_equal(answer[1], decoded[1])
    np.testing.assert_allclose(answer[0], decoded[0], atol=1e-5)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) > 1:  # the same answer on one core
        try:
            os.sched_setaffinity(0, cores[:1])
            one_core = index.search(queries, 12, exclude=exclude)
        finally:
            os.sched_setaffinity(0, cores)
        np.testing.assert_array_equal(one_core[1], answer[1])
        np.testing.assert_allclose(one_core[0], answer[0], rtol=1e-6)


@pytest.mark.parametrize("storage, max_share", [("bfloat16", 0.51), ("int8", 0.27)])
def test_compressed_storage_keeps_the_top_10_in_less_memory(features, storage, max_share):
    exact = EuclideanIndex(features)
    small = EuclideanIndex(features, dtype=storage)
    assert small.gallery.nbytes <= max_share * exact.gallery.nbytes
    _, reference = exact.search_rows(QUERIES, 10)
    distances, found = small.search_rows(QUERIES, 10)
    assert recall(found, reference) >= 0.99
    # exact for the stored (decoded) vectors: same answer as float32 search over them
    decoded = EuclideanIndex(small.vectors())
    assert_same_top_k((distances, found), decoded.search(small.vectors(QUERIES), 10, exclude=QUERIES), atol=1e-5)
    assert np.abs(small.vectors() - features).max() < (0.01 if storage == "bfloat16" else 0.5 * small.scale.max() + 1e-6)


def test_int8_codes_span_each_dimension():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    index = EuclideanIndex(x, dtype="int8")
    assert index.gallery.min() == -127 and index.gallery.max() == 127
    assert (np.abs(index.vectors() - x) <= index.scale * 0.5001 + 1e-5).all()  # half a step, plus rounding


def test_float16_still_works(features):
    _, reference = EuclideanIndex(features).search_rows(QUERIES, 10)
    assert recall(EuclideanIndex(features, dtype="float16").search_rows(QUERIES, 10)[1], reference) >= 0.99


def test_index_bytes_match_what_the_index_holds(features):
    from cbir_tutorial.search.exact import index_bytes

    for storage in ("float32", "bfloat16", "int8"):
        index = EuclideanIndex(features, dtype=storage)
        held = index.gallery.nbytes + index.sq_norms.nbytes + (0 if index.scale is None else 8 * index.dim)
        assert index_bytes(*features.shape, storage) == index.nbytes == held
    assert index_bytes(1_000_000, 2048, "int8") / index_bytes(1_000_000, 2048) < 0.26
    with pytest.raises(ValueError, match="storage='int4'"):
        index_bytes(10, 4, "int4")
