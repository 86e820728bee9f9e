"""Named recipes on the real sample: the baseline is today's engine, steps compose, queries follow the recipe."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cbir_tutorial import SearchEngine, evaluate
from cbir_tutorial.evaluation.reports import halves
from cbir_tutorial.search.pipeline import Pipeline
from cbir_tutorial.search.recipes import BASELINE, RECIPES, recipe_from_word

#: Whitening + DBA + αQE on the backbone's own features: no new extraction needed.
EXPANDED = replace(BASELINE, name="expanded", whiten_dim=256, whiten_power=0.5, dba_n=2, qe_n=2)


@pytest.fixture(scope="module")
def expanded_engine(sample_catalogue, lite_extractor):
    return SearchEngine.build(sample_catalogue, lite_extractor, progress=False, recipe=EXPANDED)


def test_recipe_names_and_steps():
    assert list(RECIPES)[:1] == ["baseline"] and "best" in RECIPES
    assert recipe_from_word("") is BASELINE and recipe_from_word(" BEST ") is RECIPES["best"]
    assert BASELINE.steps() == []
    assert RECIPES["best"].steps() == ["GeM pooling (p=3)", "flip TTA", "fusion with efficientnet_lite2 (weight 1)",
                                       "DBA (n=1, alpha=3)", "alpha-QE (n=2, alpha=3)"]
    assert RECIPES["single"].steps() == ["GeM pooling (p=3)", "flip TTA", "PCA whitening (dim=64, power=0.5)",
                                         "DBA (n=1, alpha=3)", "alpha-QE (n=2, alpha=3)"]
    with pytest.raises(ValueError, match="choose one of baseline, gem"):
        recipe_from_word("fastest")


def test_baseline_recipe_is_todays_engine(sample_catalogue, lite_extractor, sample_engine):
    engine = SearchEngine.build(sample_catalogue, lite_extractor, progress=False, recipe="baseline")
    assert isinstance(engine.pipeline, Pipeline) and engine.recipe is BASELINE and engine.index.name == "exact"
    assert engine.extractor is lite_extractor
    np.testing.assert_array_equal(engine.features, sample_engine.features)
    assert evaluate(engine, k=10).iloc[0].map_at_k == pytest.approx(evaluate(sample_engine, k=10).iloc[0].map_at_k)


def test_expanded_recipe_keeps_its_whitening_for_new_queries(expanded_engine, sample_engine):
    assert expanded_engine.features.shape == (770, 256)
    assert expanded_engine.pipeline.whitening is not None and expanded_engine.index.name == "expanded"
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


def test_halves_split_by_product_id_parity(sample_catalogue):
    tuning, report = halves(sample_catalogue)
    assert len(tuning) + len(report) == len(sample_catalogue)
    assert (tuning.table["id"].astype(int) % 2 == 0).all() and (report.table["id"].astype(int) % 2 == 1).all()
    assert 300 < len(tuning) < 470


def test_explorer_shelf_builds_its_engines_with_a_recipe(sample_catalogue):
    from pathlib import Path

    from cbir_tutorial.ui.answer import answer_for
    from cbir_tutorial.ui.query import Query
    from cbir_tutorial.ui.shelf import EngineShelf, offered_choices

    shelf = EngineShelf(sample_catalogue, offered_choices("efficientnet_lite0"), recipe=EXPANDED)
    key = next(iter(shelf.choices))
    assert shelf.engine(key).recipe is EXPANDED
    photo = sample_catalogue.paths[11]
    upload = Query.from_upload(Path(photo).read_bytes(), "same photo")
    answer = answer_for(shelf, key, upload, k=3)
    assert answer.results["row"].iloc[0] == 11 and answer.results["distance"].iloc[0] < 0.2
