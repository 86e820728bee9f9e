import numpy as np
import pytest

from cbir_tutorial.lessons.original_score import original_top_k, share_within_threshold
from cbir_tutorial.search.backends import make_index


def test_share_within_threshold_ignores_relevance():
    assert share_within_threshold([0.1, 0.5, 0.9, 1.2], 0.6) == 0.5
    assert share_within_threshold([], 1.0) == 0.0


def test_the_original_loop_finds_what_the_index_finds_by_id_leaving_the_query_out():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8)).astype(np.float32)
    ids = [f"p{i}" for i in range(50)]
    top, distances = original_top_k(dict(zip(ids, features)), features[3], 5, exclude="p3")
    found_d, found = make_index("exact", features).search_stored([3], 5)
    assert top == [ids[i] for i in found[0]] and "p3" not in top
    np.testing.assert_allclose(distances, found_d[0], rtol=1e-5)
    assert distances == sorted(distances)


def test_the_original_loop_with_k_past_the_catalogue_returns_every_other_product():
    top, distances = original_top_k({1: np.zeros(2), 2: np.ones(2)}, np.zeros(2), 10)
    assert top == [1, 2] and distances == pytest.approx([0.0, np.sqrt(2)])
