"""The learned projection head on the sample's real features: an honest split, a loss that falls, a report."""

from __future__ import annotations

import numpy as np
import pytest

from cbir_tutorial.evaluation.reports import head_report
from cbir_tutorial.models.projection_head import ProjectionHead, category_split, supervised_contrastive_loss


@pytest.fixture(scope="module")
def labels(sample_engine):
    return np.asarray(sample_engine.catalogue.labels, dtype=object)


def test_category_split_keeps_unseen_categories_out_of_training(labels):
    split = category_split(labels, seed=0)
    assert not (split.train & split.seen_test).any() and not (split.train & split.unseen).any()
    assert set(labels[split.train]) == set(split.seen_categories) == set(labels[split.seen_test])
    assert set(labels[split.unseen]) == set(split.unseen_categories)
    assert not set(split.seen_categories) & set(split.unseen_categories)
    sizes = {name: (labels == name).sum() for name in split.seen_categories + split.unseen_categories}
    assert min(sizes.values()) >= 4
    again = category_split(labels, seed=0)
    np.testing.assert_array_equal(again.unseen, split.unseen)
    with pytest.raises(ValueError, match="need 2 or more categories"):
        category_split(np.array(["a"] * 5 + ["b"] * 2, dtype=object))


def test_contrastive_loss_is_low_when_categories_are_apart():
    together = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]
    mixed = np.eye(4, dtype=np.float32)[[0, 1, 0, 1]]
    y = np.array([0, 0, 1, 1], dtype=np.int32)
    assert float(supervised_contrastive_loss(together, y)) < float(supervised_contrastive_loss(mixed, y))


def test_head_learns_the_seen_categories_and_reports_both_galleries(sample_engine, labels):
    features = sample_engine.features
    split = category_split(labels, seed=0)
    head = ProjectionHead(features.shape[1], seed=0).fit(features[split.train], labels[split.train], steps=200)
    assert head.history[-1] < head.history[0] - 0.5  # measured 4.93 -> 3.86
    out = head.transform(features[:3])
    assert out.shape == (3, 128) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    report = head_report(features, labels, split, head)
    assert report["gallery"].to_list() == ["seen categories, held-out products", "unseen categories"]
    assert report["n_images"].to_list() == [int(split.seen_test.sum()), int(split.unseen.sum())]
    assert report.loc[0, "head_map"] > report.loc[0, "backbone_map"]  # what it was taught carries to new products
