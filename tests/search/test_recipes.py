"""Named recipes: their names and steps in words; the tuning and report halves they were chosen on; the explorer
builds its engines with one (fitted on the sample and queried: test_pipeline.py)."""

from __future__ import annotations

import pytest

from cbir_tutorial.evaluation.reports import halves
from cbir_tutorial.search.recipes import BASELINE, RECIPES, Embedding, PostProcessing, Recipe, recipe_from_word

#: Whitening + DBA + αQE on the backbone's own features: no new extraction needed (as in test_pipeline.py).
EXPANDED = BASELINE.changed(name="expanded", whiten_dim=256, whiten_power=0.5, dba_n=2, qe_n=2)


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


def test_a_recipe_is_an_embedding_then_its_post_processing():
    best = RECIPES["best"]
    assert best.embedding == Embedding(pooling="gem", flip=True, fuse_with="efficientnet_lite2")
    assert best.post == PostProcessing(dba_n=1, qe_n=2) and best.post.expands and not RECIPES["fusion"].post.expands
    assert best.steps() == best.embedding.steps() + best.post.steps()
    varied = best.changed(name="mine", pooling="max", whiten_dim=64)  # each setting goes to its part
    assert (varied.name, varied.embedding.pooling, varied.post.whiten_dim) == ("mine", "max", 64)
    assert varied.embedding.fuse_with == "efficientnet_lite2" and varied.post.qe_n == 2 and best.embedding.pooling == "gem"
    with pytest.raises(TypeError, match="'nlist' is not a recipe setting: choose from backbone, pooling"):
        best.changed(nlist=8)
    assert Recipe.from_settings(varied.settings()) == varied
    assert Recipe.from_settings(EXPANDED.settings()) == EXPANDED
    assert best.with_backbone("resnet50").embedding.backbone == "resnet50"


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
