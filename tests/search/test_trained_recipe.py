"""A trained model's folder used as a recipe: engines, saved engines and the explorer (the command line:
tests/cli/test_recipe_option.py)."""

import shutil

import numpy as np
import pytest

from cbir_tutorial.models.trained import (TrainedExtractor, default_trained_folder, load_trained, read_trained,
                                          save_trained, trained_folders, trained_home)
from cbir_tutorial.search.engine import SearchEngine
from cbir_tutorial.search.recipes import RECIPES, recipe_from_word, trained_recipes


@pytest.fixture(scope="module")
def small(sample_catalogue):
    return sample_catalogue.stratified_sample(30)


@pytest.fixture(scope="module")
def extractor(trained_folder):
    return load_trained(trained_folder)


@pytest.fixture(scope="module")
def engine(small, trained_folder, extractor, tmp_path_factory):
    """The engine of ``recipe=<the trained folder>`` (reusing the module's extractor of that folder)."""
    return SearchEngine.build(small, extractor, recipe=str(trained_folder), cache=tmp_path_factory.mktemp("features"),
                              progress=False)


def retrained_copy(extractor, to, seed=1):
    """A copy of ``extractor``'s trained-model folder at ``to`` whose embedding layer's weights were moved
    (as training again would); ``extractor`` is left as it was."""
    shutil.copytree(extractor.weights, to, dirs_exist_ok=True)
    model, weights = extractor.model, extractor.model.get_weights()
    rng = np.random.default_rng(seed)
    try:
        model.set_weights([w + rng.normal(0, 0.5, w.shape).astype(w.dtype) if w.ndim == 2 else w for w in weights])
        save_trained(model, to, {k: v for k, v in extractor.info.items() if k not in ("format", "weights_hash")})
    finally:
        model.set_weights(weights)
    return to


def nearest(features, query, k, exclude=None):
    """Brute-force exact search: ``(distances, rows)`` of the k nearest rows of ``features`` to ``query``."""
    distances = np.linalg.norm(features - query, axis=1)
    if exclude is not None:
        distances[exclude] = np.inf
    rows = np.argsort(distances, kind="stable")[:k]
    return distances[rows], rows


def test_a_trained_folder_is_a_recipe_whose_features_are_the_trained_embedding(engine, small, trained_folder,
                                                                               extractor):
    recipe = engine.recipe
    assert recipe.embedding.trained == str(trained_folder.resolve()) and recipe.name == trained_folder.name
    assert recipe.embedding.trained_hash == read_trained(trained_folder)["weights_hash"]
    assert recipe.steps() == [f"fine-tuned embedding from {trained_folder.resolve()}"]
    assert engine.extractor is extractor and engine.features.shape == (len(small), 16)
    own = extractor.extract(small.paths, cache=False, progress=False).features
    np.testing.assert_allclose(engine.features, own, atol=1e-6)

    results = engine.search(3, k=5)
    distances, rows = nearest(own, own[3], 5, exclude=3)
    np.testing.assert_allclose(results["distance"], distances, atol=1e-3)  # the exact index's float32 sums
    np.testing.assert_allclose(np.linalg.norm(own[results["row"]] - own[3], axis=1), results["distance"], atol=1e-3)

    photo = small.paths[7]  # a query by photo goes through the trained model
    by_photo = engine.search(photo, k=5)
    np.testing.assert_allclose(by_photo["distance"], nearest(own, extractor.features_of(photo), 5)[0], atol=1e-3)
    assert by_photo["row"].iloc[0] == 7


def test_features_of_a_trained_model_are_cached_under_its_weights(small, trained_folder, extractor, tmp_path):
    cache = tmp_path / "features"
    first = SearchEngine.build(small, extractor, recipe=trained_folder, cache=cache, progress=False)
    again = SearchEngine.build(small, extractor, recipe=trained_folder, cache=cache, progress=False)
    assert not first.extraction.from_cache and again.extraction.from_cache
    assert np.array_equal(first.features, again.features)
    retrained = SearchEngine.build(small, recipe=retrained_copy(extractor, tmp_path / "retrained"), cache=cache,
                                   progress=False)
    assert retrained.extractor.cache_key != extractor.cache_key
    assert not retrained.extraction.from_cache and not np.allclose(retrained.features, first.features)


def test_a_saved_engine_reopens_with_its_trained_model_and_refuses_a_changed_one(engine, small, trained_folder,
                                                                                 extractor, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_folder, model)
    built = SearchEngine.build(small, extractor, recipe=str(model), cache=False, progress=False)
    built.save(tmp_path / "engine")
    loaded = SearchEngine.load(tmp_path / "engine")
    assert loaded.recipe == built.recipe and built.recipe.embedding.trained == str(model.resolve())
    assert isinstance(loaded.extractor, TrainedExtractor) and loaded.extractor.weights == str(model.resolve())
    photo = small.paths[11]
    for query in (4, photo):
        assert built.search(query, k=6).equals(loaded.search(query, k=6))
    assert loaded.search(photo, k=6).equals(engine.search(photo, k=6))

    model.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=f"{model}.*not there any more.*put the folder back"):
        SearchEngine.load(tmp_path / "engine")
    retrained_copy(extractor, model)
    with pytest.raises(ValueError, match=f"{model} has changed.*build the engine again"):
        SearchEngine.load(tmp_path / "engine")


def test_words_that_are_neither_recipes_nor_trained_folders_are_refused(small, trained_folder, tmp_path):
    with pytest.raises(ValueError, match="neither a recipe nor a trained model's folder.*baseline, gem.*"
                                         "trained.json and embedding.weights.h5"):
        recipe_from_word("bestest")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"{tmp_path / 'empty'} has no trained.json"):
        SearchEngine.build(small, recipe=tmp_path / "empty")
    with pytest.raises(ValueError, match="cannot start from resnet50"):
        SearchEngine.build(small, "resnet50", recipe=trained_folder)
    assert recipe_from_word("best") is RECIPES["best"]


def test_the_cache_and_given_folders_list_trained_models(trained_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))
    assert trained_recipes() == []
    home = default_trained_folder("fashion sample", "efficientnet_lite0", "proxy-anchor")
    assert home == trained_home() / "fashion_sample-efficientnet_lite0-proxy-anchor"
    shutil.copytree(trained_folder, home)
    found = trained_recipes([trained_folder.parent, trained_folder])  # a folder of models, and a model
    assert [r.embedding.trained for r in found] == [str(home), str(trained_folder.resolve())]
    assert found[1].description.startswith("multi-similarity, EfficientNet-Lite0, 16-d")
    with pytest.raises(FileNotFoundError, match="no trained model there"):
        trained_folders([tmp_path / "nowhere"])


def test_the_explorer_offers_trained_models_and_searches_with_them(small, trained_folder, engine):
    from cbir_tutorial.ui.widgets import SearchExplorer

    explorer = SearchExplorer(small, backbones={"efficientnet_lite0": "imagenet"}, trained=[trained_folder.parent],
                              k=4, row=2, progress=False)
    menu = dict((value, label) for label, value in explorer.controls["recipe"].options)
    key = str(trained_folder.resolve())
    assert menu[key] == f"{trained_folder.name}: multi-similarity, EfficientNet-Lite0, 16-d (trained model in {key})"
    explorer.controls["recipe"].value = key
    assert explorer.shelf.recipe.embedding.trained == key and "recipe lite0-tiny" in explorer.message
    assert explorer.results["id"].tolist() == engine.search(2, k=4)["id"].tolist()
    explorer.controls["recipe"].value = "baseline"
    assert explorer.shelf.recipe_name == "baseline" and len(explorer.results) == 4
