"""Fusion, PCA whitening, αQE and DBA on the sample's real EfficientNet-Lite0 features."""

from __future__ import annotations

import numpy as np
import pytest

from cbir_tutorial.evaluation.metrics import evaluate
from cbir_tutorial.search.exact import EuclideanIndex
from cbir_tutorial.search.expansion import ExpandedIndex, alpha_query_expansion, database_augmentation
from cbir_tutorial.search.whitening import PCAWhitening, fuse, l2_normalise


@pytest.fixture(scope="module")
def features(sample_engine):
    return sample_engine.features


@pytest.fixture(scope="module")
def labels(sample_engine):
    return sample_engine.catalogue.labels


def test_fuse_adds_weighted_squared_distances(features):
    a, b = features[:50], l2_normalise(features[50:100][:, ::-1] ** 2)
    fused = fuse([a, b], [1.0, 3.0])
    assert fused.shape == (50, a.shape[1] + b.shape[1])
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    d2 = lambda x: ((x[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d2(fused), (d2(a) + 3.0 * d2(b)) / 4.0, atol=1e-4)
    with pytest.raises(ValueError, match="different numbers of rows"):
        fuse([a, b[:10]])
    with pytest.raises(ValueError, match="one non-negative weight"):
        fuse([a, b], [1.0])


def test_whitening_decorrelates_and_scales_the_gallery(features):
    whitening = PCAWhitening(dim=64, power=1.0, eps=0.0).fit(features)
    projected = (features - whitening.mean) @ whitening.components
    np.testing.assert_allclose(whitening.components.T @ whitening.components, np.eye(64), atol=1e-4)
    scaled = projected / np.sqrt(whitening.eigenvalues)
    np.testing.assert_allclose(np.cov(scaled, rowvar=False), np.eye(64), atol=1e-3)
    assert np.all(np.diff(whitening.eigenvalues) <= 0)
    out = whitening.transform(features)
    assert out.shape == (len(features), 64) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(whitening.transform(features[3]), out[3], atol=1e-6)  # a query, alone


def test_whitening_state_round_trips_and_errors_name_the_fix(features, tmp_path):
    whitening = PCAWhitening(dim=32, power=0.5).fit(features)
    np.savez(tmp_path / "w.npz", **whitening.state())
    again = PCAWhitening.from_state(np.load(tmp_path / "w.npz"))
    np.testing.assert_array_equal(again.transform(features[:5]), whitening.transform(features[:5]))
    with pytest.raises(ValueError, match="at most 9 components: lower dim"):
        PCAWhitening(dim=20).fit(features[:10])
    with pytest.raises(RuntimeError, match="call fit"):
        PCAWhitening().transform(features)
    with pytest.raises(ValueError, match="fitted on 1280"):
        whitening.transform(features[:, :10])


def test_alpha_query_expansion_never_counts_the_query_itself(features):
    q, n, alpha = 7, 3, 3.0
    expanded = alpha_query_expansion(features[q], features, n, alpha, exclude=np.array([q]))[0]
    similarity = features @ features[q]
    similarity[q] = -np.inf
    nearest = np.argsort(-similarity)[:n]
    by_hand = features[q] + ((similarity[nearest] ** alpha)[:, None] * features[nearest]).sum(0)
    np.testing.assert_allclose(expanded, by_hand / np.linalg.norm(by_hand), atol=1e-5)
    augmented = database_augmentation(features[:40], n, alpha)
    np.testing.assert_allclose(augmented[7], alpha_query_expansion(features[7], features[:40], n, alpha,
                                                                    exclude=np.array([7]))[0], atol=1e-6)


def test_expanded_index_without_steps_ranks_like_the_euclidean_index(features):
    rows = np.arange(0, 770, 37)
    plain_d, plain_i = EuclideanIndex(features).search_rows(rows, 10)
    d, i = ExpandedIndex(features).search_rows(rows, 10)
    np.testing.assert_allclose(d, plain_d, atol=1e-3)
    assert (i == plain_i).mean() > 0.98  # only near-ties (distances equal to 1e-4) may swap
    swapped = i != plain_i
    np.testing.assert_allclose(d[swapped], plain_d[swapped], atol=1e-4)


def test_leave_one_out_query_expansion_equals_a_gallery_without_the_query(features):
    index = ExpandedIndex(features, qe_n=3)
    for q in (0, 123, 500):
        others = np.delete(np.arange(len(features)), q)
        _, expected = ExpandedIndex(features[others], qe_n=3).search(features[q], 10)
        _, found = index.search_rows(np.array([q]), 10)
        np.testing.assert_array_equal(found[0], others[expected])


def test_dba_takes_the_query_out_of_its_neighbours_vectors(features):
    """Leave-one-out with DBA: each gallery row that counts the query among its DBA neighbours is ranked by its
    augmented vector without the query's share (by hand: S_j = x_j + sum of max(s, 0)^3 x_m over its 2 nearest)."""
    n, alpha, q = 2, 3.0, 5
    x = features.astype(np.float64) / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    neighbours = np.argsort(-similarity, axis=1, kind="stable")[:, :n]
    weights = np.maximum(np.take_along_axis(similarity, neighbours, axis=1), 0.0) ** alpha
    sums = x + np.einsum("jm,jmd->jd", weights, x[neighbours])
    np.testing.assert_allclose(database_augmentation(features, n, alpha),
                               sums / np.linalg.norm(sums, axis=1, keepdims=True), atol=1e-5)
    holders = np.flatnonzero((neighbours == q).any(axis=1))
    assert len(holders) > 0

    def squared_distances(vectors):
        return 2.0 - 2.0 * (vectors @ x[q]) / np.linalg.norm(vectors, axis=1)

    share = np.where(neighbours == q, weights, 0.0).sum(axis=1)  # the query's weight in each row's sum
    expected = squared_distances(sums - share[:, None] * x[q])
    expected[q] = np.inf
    distances, rows = ExpandedIndex(features, dba_n=n).search_rows(np.array([q]), 20)
    assert q not in rows[0]
    np.testing.assert_allclose(distances[0] ** 2, expected[rows[0]], atol=1e-5)
    np.testing.assert_allclose(distances[0] ** 2, np.sort(expected)[:20], atol=1e-5)
    kept = squared_distances(sums)  # with the query's share left in, its holders would look nearer
    assert (kept[holders] < expected[holders] - 1e-3).all()


def test_whitening_and_expansion_beat_the_baseline_on_the_sample(features, labels):
    baseline = evaluate(EuclideanIndex(features), labels, 10).iloc[0].map_at_k
    whitened = PCAWhitening(256, 0.5).fit_transform(features)
    expanded = evaluate(ExpandedIndex(whitened, qe_n=2, dba_n=2), labels, 10).iloc[0].map_at_k
    assert baseline == pytest.approx(0.732, abs=0.002)
    assert expanded > baseline + 0.005  # measured 0.741 vs 0.732
