"""Notebook 9's measurements, as package functions: the features kept on their strongest directions, a gallery
generated around real vectors, the recall/latency curves, the cost model of a query and its growth."""

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.faiss_index import default_nlist
from cbir_tutorial.search.sizing import (GalleryAround, growth_table, nlist_rule, recall_latency_curves,
                                         strongest_directions, vectors_compared)


def clustered(n=300, d=24, clusters=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)) * 3
    rows = centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_strongest_directions_is_plain_pca_then_unit_length():
    features = clustered()
    kept = strongest_directions(features, 5)
    assert kept.shape == (300, 5) and kept.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(kept, axis=1), 1, atol=1e-5)
    centred = features - features.mean(axis=0)
    by_hand = centred @ np.linalg.svd(centred, full_matrices=False)[2][:5].T
    by_hand /= np.linalg.norm(by_hand, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(kept), np.abs(by_hand), atol=1e-4)  # each direction up to its sign


def test_strongest_directions_keeps_at_most_n_minus_1_and_leaves_wide_enough_features_alone():
    features = clustered(n=10)
    assert strongest_directions(features, 20).shape == (10, 9)  # 10 centred vectors span 9 directions
    assert strongest_directions(features, 0).shape == (10, 24) and strongest_directions(features, 24).shape == (10, 24)
    np.testing.assert_allclose(strongest_directions(features * 3, 0), features, atol=1e-6)


def test_a_gallery_around_seeds_is_unit_length_near_them_and_reproducible():
    seeds = clustered()
    around = GalleryAround(seeds, seed=1)
    rows = around.sample(500)
    assert rows.shape == (500, 24) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    nearest = make_index("exact", seeds).search(rows, 1)[0][:, 0]
    spread = make_index("exact", seeds).search_stored(k=1)[0][:, 0]
    assert np.median(nearest) < 2 * np.median(spread)  # between the seeds, not anywhere
    assert around.neighbours.shape == (300, 10) and around.noise == pytest.approx(0.3 * np.median(spread), rel=1e-5)
    np.testing.assert_array_equal(GalleryAround(seeds, seed=1).sample(500), rows)
    assert "300 seeds x 24" in repr(around)


def test_a_gallery_around_few_seeds_uses_the_neighbours_there_are():
    assert GalleryAround(clustered(n=4)).neighbours.shape == (4, 3)
    with pytest.raises(ValueError, match="N >= 2"):
        GalleryAround(clustered(n=1))


@pytest.mark.parametrize("n, rule", [(20, "the floor of 1"), (2_500, "the cap N // 39"), (10_000, "the cap N // 39"),
                                     (50_000, "4 sqrt(N)")])
def test_nlist_rule_names_the_bound_that_sets_default_nlist(n, rule):
    assert nlist_rule(n) == rule
    expected = {"the floor of 1": 1, "the cap N // 39": n // 39, "4 sqrt(N)": int(4 * np.sqrt(n))}[rule]
    assert default_nlist(n) == expected


def test_vectors_compared_counts_the_centroids_and_the_probed_lists():
    assert vectors_compared("exact", 10_000) == 10_000
    assert vectors_compared("faiss-ivf", 10_000, nlist=256, nprobe=16) == pytest.approx(256 + 16 * 10_000 / 256)
    assert vectors_compared("faiss-ivf", 10_000, nprobe=16) == vectors_compared("faiss-ivf", 10_000, nlist=256, nprobe=16)
    assert vectors_compared("faiss-ivf", 1_000, nlist=4, nprobe=16) == 4 + 1_000  # nprobe past nlist reads every list
    assert np.isnan(vectors_compared("faiss-hnsw", 10_000))
    with pytest.raises(ValueError, match="needs nprobe"):
        vectors_compared("faiss-ivf", 100)


def test_the_curves_and_the_growth_table_of_a_small_gallery():
    pytest.importorskip("faiss")
    around = GalleryAround(clustered(), seed=0)
    gallery, queries = around.sample(1_600), around.sample(8)
    knobs = {"faiss-ivf": ("nprobe", (1, 64)), "faiss-hnsw": ("ef_search", (16,))}
    curves, builds = recall_latency_curves(gallery, queries, [400, 1_600], k=5, knobs=knobs, repeats=1)
    assert list(curves.columns) == ["rows", "index", "setting", "recall", "ms per query", "vectors compared"]
    assert len(curves) == 2 * (1 + 2 + 1)
    exact = curves[curves["index"] == "exact"]
    assert (exact["recall"] == 1).all() and exact["vectors compared"].tolist() == [400, 1_600]
    every_list = curves[curves["setting"] == "nprobe=64"]
    assert (every_list["recall"] == 1).all()  # 64 probes reach every list: IVF-flat is then exact
    ivf = builds[builds["index"] == "faiss-ivf"].set_index("rows")
    assert ivf["nlist"].tolist() == [default_nlist(400), default_nlist(1_600)]
    assert ivf["nlist set by"].tolist() == ["the cap N // 39"] * 2
    hnsw = builds.set_index("index").loc["faiss-hnsw"]
    assert (builds["build s"] > 0).all() and hnsw["nlist"].isna().all() and (hnsw["nlist set by"] == "-").all()
    growth = growth_table(curves, [("exact", "-"), ("faiss-ivf", "nprobe=1")])
    assert growth.loc[("exact", "-"), "vectors compared growth"] == 4
    one = ivf["nlist"]
    assert growth.loc[("faiss-ivf", "nprobe=1"), "vectors compared, 1,600 rows"] == pytest.approx(
        one[1_600] + 1_600 / one[1_600])
    assert growth.loc[("exact", "-"), "ms growth"] == pytest.approx(
        growth.loc[("exact", "-"), "ms, 1,600 rows"] / growth.loc[("exact", "-"), "ms, 400 rows"])
    assert isinstance(growth, pd.DataFrame) and growth.index.names == ["index", "setting"]
