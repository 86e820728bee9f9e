"""A recipe fitted on a gallery of real photos: later photos go through the same steps into the gallery's space;
whitening keeps the dimensions the gallery supports; a saved pipeline reopens with its fitted whitening."""

from __future__ import annotations

import numpy as np
import pytest

from cbir_tutorial import SearchEngine, evaluate
from cbir_tutorial.models.pooling import PooledExtractor
from cbir_tutorial.search.pipeline import Pipeline, load_pipeline, pipeline_extractors
from cbir_tutorial.search.recipes import BASELINE, RECIPES

#: Whitening + DBA + αQE on the backbone's own features: no new extraction needed.
EXPANDED = BASELINE.changed(name="expanded", whiten_dim=256, whiten_power=0.5, dba_n=2, qe_n=2)
#: Square-root PCA whitening to 64 dimensions on the backbone's own features.
WHITENED = BASELINE.changed(name="whitened", whiten_dim=64, whiten_power=0.5)
#: Photos 0..399 of the sample are the gallery the tests fit on; the others are new photos.
GALLERY = np.arange(400)


@pytest.fixture(scope="module")
def expanded_engine(sample_catalogue, lite_extractor):
    return SearchEngine.build(sample_catalogue, lite_extractor, progress=False, recipe=EXPANDED)


@pytest.fixture(scope="module")
def whitened(lite_extractor, features):
    """``(pipeline, gallery features)`` of :data:`WHITENED` fitted on the first 400 photos."""
    pipeline = Pipeline([lite_extractor], WHITENED)
    return pipeline, pipeline.fit([features[GALLERY]], GALLERY)


def test_baseline_recipe_is_todays_engine(sample_catalogue, lite_extractor, sample_engine):
    engine = SearchEngine.build(sample_catalogue, lite_extractor, progress=False, recipe="baseline")
    assert isinstance(engine.pipeline, Pipeline) and engine.recipe is BASELINE and engine.index.name == "exact"
    assert engine.extractor is lite_extractor and engine.pipeline.whitening is None
    np.testing.assert_array_equal(engine.features, sample_engine.features)
    assert evaluate(engine, k=10).iloc[0].map_at_k == pytest.approx(evaluate(sample_engine, k=10).iloc[0].map_at_k)


def test_a_fitted_pipeline_puts_gallery_and_new_photos_in_one_space(whitened, lite_extractor, sample_catalogue,
                                                                    features):
    pipeline, gallery = whitened
    assert gallery.shape == (400, 64) and gallery.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pipeline.whitening.mean, features[GALLERY].mean(axis=0), atol=1e-6)  # fitted there
    for row in (3, 250):  # a gallery photo, again: its gallery row
        np.testing.assert_allclose(pipeline.features_of(sample_catalogue.paths[row]), gallery[row], atol=1e-4)
    new = [600, 700]  # photos the pipeline never saw: the same map, one at a time or in a batch
    by_photo = np.stack([pipeline.features_of(sample_catalogue.paths[row]) for row in new])
    np.testing.assert_allclose(by_photo, pipeline.transform([features[new]]), atol=1e-4)
    np.testing.assert_allclose(by_photo, pipeline.whitening.transform(features[new]), atol=1e-4)
    assert pipeline.describe() == {"recipe": "whitened", "steps": ["PCA whitening (dim=64, power=0.5)"],
                                   "settings": WHITENED.settings()}


@pytest.mark.parametrize("whiten_dim, rows, dim", [(64, 400, 64), (None, 300, 299), (5000, 300, 299),
                                                   (5000, 770, 769), (0, 300, 1280)])
def test_whitening_keeps_the_dimensions_the_gallery_supports(lite_extractor, features, whiten_dim, rows, dim):
    """At most one component per gallery photo but one (``N - 1``) and per feature (``D``); 0: no whitening."""
    recipe = BASELINE.changed(name="w", whiten_dim=whiten_dim)
    pipeline = Pipeline([lite_extractor], recipe)
    gallery = pipeline.fit([features[:rows]], np.arange(rows))
    assert gallery.shape == (rows, dim)
    assert pipeline.transform([features[rows - 1:]]).shape == (len(features) - rows + 1, dim)
    if whiten_dim == 0:
        assert pipeline.whitening is None and recipe.steps() == []
        np.testing.assert_array_equal(gallery, features[:rows])


def test_fused_backbones_add_their_squared_distances(lite_extractor, features):
    """Two backbones' features fused with weight 1 each: (D1 + D2) dimensions; here the same backbone twice,
    so every squared distance is the mean of two equal ones and the ranking is the backbone's own."""
    pipeline = Pipeline([lite_extractor, lite_extractor], BASELINE.changed(name="twice", fuse_with="efficientnet_lite0"))
    fused = pipeline.fit([features, features], np.arange(len(features)))
    assert fused.shape == (770, 2560) and len(pipeline.extractors) == 2
    d2 = lambda x: ((x[:50, None] - x[None, :50]) ** 2).sum(-1)
    np.testing.assert_allclose(d2(fused), d2(features), atol=1e-5)


def test_a_recipe_that_pools_differently_gets_its_own_extractor_with_the_same_settings(lite_extractor):
    assert pipeline_extractors(BASELINE, lite_extractor) == [lite_extractor]  # the backbone's own features
    pooled, = pipeline_extractors(RECIPES["gem"], lite_extractor)
    assert type(pooled) is PooledExtractor and (pooled.pooling, pooled.p) == ("gem", 3.0)
    assert (pooled.backbone, pooled.weights, pooled.resize) == ("efficientnet_lite0", "imagenet", lite_extractor.resize)


def test_a_saved_pipeline_reopens_with_its_fitted_whitening(whitened, lite_extractor, sample_catalogue, tmp_path):
    pipeline, _ = whitened
    description = pipeline.save(tmp_path)
    assert (tmp_path / "whitening.npz").is_file()
    assert description["recipe"] == WHITENED.settings() and description["weights"] == "imagenet"
    again = load_pipeline(description, tmp_path, lite_extractor)
    assert again.recipe == pipeline.recipe and again.extractor is lite_extractor
    photo = sample_catalogue.paths[700]
    np.testing.assert_array_equal(again.features_of(photo), pipeline.features_of(photo))


def test_expanded_recipe_keeps_its_whitening_for_new_queries(expanded_engine, sample_engine):
    assert expanded_engine.features.shape == (770, 256)
    assert expanded_engine.pipeline.whitening is not None and expanded_engine.index.name == "exact"
    assert (expanded_engine.pipeline.expansion.dba_n, expanded_engine.pipeline.expansion.qe_n) == (2, 2)
    path = expanded_engine.catalogue.paths[11]
    np.testing.assert_allclose(expanded_engine.query_features(path), expanded_engine.features[11], atol=1e-4)
    by_image = expanded_engine.search(path, 5, exclude_self=False)
    assert by_image["row"].iloc[0] == 11 and by_image["distance"].iloc[0] < 0.2  # the query is expanded
    by_row = expanded_engine.search(11, 5)
    assert 11 not in by_row["row"].to_list() and len(by_row) == 5
    assert (evaluate(expanded_engine, k=10).iloc[0].map_at_k
            > evaluate(sample_engine, k=10).iloc[0].map_at_k + 0.005)  # measured 0.741 vs 0.732


def test_a_saved_recipe_engine_reopens_and_answers_identically(expanded_engine, tmp_path):
    folder = expanded_engine.save(tmp_path / "engine")
    assert (folder / "whitening.npz").is_file()
    reopened = SearchEngine.load(folder)
    assert reopened.recipe == EXPANDED and type(reopened.index) is type(expanded_engine.index)
    path = expanded_engine.catalogue.paths[11]
    np.testing.assert_allclose(reopened.query_features(path), expanded_engine.query_features(path), atol=1e-5)
    for query in (path, 11):
        mine, theirs = expanded_engine.search(query, 10), reopened.search(query, 10)
        assert mine["row"].to_list() == theirs["row"].to_list()
        np.testing.assert_allclose(mine["distance"], theirs["distance"], atol=1e-5)
    (folder / "whitening.npz").unlink()
    with pytest.raises(FileNotFoundError, match="whitening.npz is missing: the saved engine's recipe 'expanded'"):
        SearchEngine.load(folder)
