"""The explorer beside broken trained models: listed as broken with the reason, never stopping it; choosing
one says why in the status and keeps the engine shown before."""

import json

import pytest

from cbir_tutorial.models.trained import TRAINED_FILE, WEIGHTS_FILE, embedding_model, save_trained, trained_home
from cbir_tutorial.ui.widgets import SearchExplorer

INFO = {"backbone": "efficientnet_lite0", "input_size": 32, "resize": "squash", "embedding_dim": 8,
        "loss": "multi-similarity"}


@pytest.fixture(scope="module")
def small(sample_catalogue):
    return sample_catalogue.stratified_sample(30)


@pytest.fixture(scope="module")
def tiny_model():
    return embedding_model("efficientnet_lite0", 8, input_size=32, seed=3)


@pytest.fixture
def models(tiny_model, tmp_path, monkeypatch):
    """The cache's trained-model folder holding ``good`` (a tiny model), ``listed`` (its trained.json ``[]``)
    and ``cut`` (its weights truncated); returns ``{name: resolved folder as text}``."""
    monkeypatch.setenv("CBIR_TUTORIAL_CACHE", str(tmp_path / "cache"))
    for name in ("good", "listed", "cut"):
        save_trained(tiny_model, trained_home() / name, INFO)
    (trained_home() / "listed" / TRAINED_FILE).write_text(json.dumps([]))
    weights = trained_home() / "cut" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:4096])
    return {name: str((trained_home() / name).resolve()) for name in ("good", "listed", "cut")}


def explorer_on(small, features):
    return SearchExplorer(small, backbones={"efficientnet_lite0": "imagenet"}, k=4, row=2, progress=False,
                          cache=features)


def status(explorer) -> str:
    return explorer.message


def test_broken_trained_models_are_listed_as_broken_and_choosing_one_keeps_the_engine_shown(
        small, models, tmp_path):
    explorer = explorer_on(small, tmp_path / "features")
    menu = dict((value, label) for label, value in explorer.controls["recipe"].options)
    assert menu[models["good"]].startswith("good: multi-similarity, EfficientNet-Lite0, 8-d")
    assert menu[models["listed"]].startswith(f"listed: broken: {TRAINED_FILE}: not a JSON object (a list)")
    assert menu[models["cut"]].startswith(f"cut: broken: {WEIGHTS_FILE}: not a readable HDF5 file")
    shown = explorer.results["id"].tolist()

    for name in ("cut", "listed"):
        explorer.controls["recipe"].value = models[name]
        assert explorer.controls["recipe"].value == "baseline" and explorer.shelf.recipe_name == "baseline"
        assert f"Trained model {name} cannot be used" in status(explorer) and "c62828" in status(explorer)
        assert (TRAINED_FILE if name == "listed" else WEIGHTS_FILE) in status(explorer)
        assert explorer.results["id"].tolist() == shown

    explorer.controls["query"].value = 5  # the previous engine still answers
    assert len(explorer.results) == 4 and "Loading" not in status(explorer) and "c62828" not in status(explorer)
    explorer.controls["recipe"].value = models["good"]
    assert explorer.shelf.recipe.embedding.trained == models["good"] and "recipe good" in status(explorer)
    explorer.controls["recipe"].value = models["listed"]
    assert explorer.shelf.recipe.embedding.trained == models["good"] and explorer.controls["recipe"].value == models["good"]
    assert "still showing good" in status(explorer)


def test_a_trained_model_that_breaks_after_listing_is_marked_broken_when_chosen(small, models, tmp_path):
    explorer = explorer_on(small, tmp_path / "features")
    weights = trained_home() / "good" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:4096])  # after the menu was made
    explorer.controls["recipe"].value = models["good"]
    assert explorer.controls["recipe"].value == "baseline" and explorer.shelf.recipe_name == "baseline"
    assert "Loading" not in status(explorer) and f"{WEIGHTS_FILE}: not a readable HDF5 file" in status(explorer)
    menu = dict((value, label) for label, value in explorer.controls["recipe"].options)
    assert menu[models["good"]].startswith(f"good: broken: {WEIGHTS_FILE}: not a readable HDF5 file")
    explorer.controls["query"].value = 5
    assert len(explorer.results) == 4 and "c62828" not in status(explorer)
