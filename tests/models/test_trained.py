import json

import numpy as np
import pytest

from cbir_tutorial.data.images import load_rgb
from cbir_tutorial.models.backbones import backbone_spec
from cbir_tutorial.models.features import FeatureExtractor
from cbir_tutorial.models.trained import (EMBEDDING_DIM_RANGE, INPUT_SIZE_RANGE, TRAINED_FILE, WEIGHTS_FILE,
                                          TrainedExtractor, TrainedModelError, embedding_model, is_trained_folder,
                                          load_trained, read_trained, save_trained, weights_hash)

INFO = {"backbone": "efficientnet_lite0", "input_size": 32, "resize": "squash", "embedding_dim": 8,
        "loss": "multi-similarity"}


@pytest.fixture(scope="module")
def tiny_model():
    return embedding_model("efficientnet_lite0", 8, input_size=32, seed=3)


@pytest.fixture(scope="module")
def photos(sample_dir):
    return [str(p) for p in sorted((sample_dir / "images").glob("*.jpg"))[:5]]


def test_embedding_model_outputs_unit_float32_rows(tiny_model):
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    out = np.asarray(tiny_model(x, training=False))
    assert out.shape == (3, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_saved_folder_embeds_like_the_model(tiny_model, photos, tmp_path):
    save_trained(tiny_model, tmp_path / "m", INFO)
    assert is_trained_folder(tmp_path / "m") and not is_trained_folder(tmp_path)
    info = read_trained(tmp_path / "m")
    assert info["weights_hash"] == weights_hash(tiny_model, INFO) and info["loss"] == "multi-similarity"
    extractor = load_trained(tmp_path / "m", batch_size=2, mixed_precision="off")
    assert isinstance(extractor, FeatureExtractor) and extractor.feature_dim == 8 and extractor.input_size == 32
    extraction = extractor.extract(photos, cache=tmp_path / "cache", progress=False)
    pixels = np.stack([load_rgb(p, 32) for p in photos]).astype(np.float32)
    expected = np.asarray(tiny_model(backbone_spec("efficientnet_lite0").preprocess(pixels), training=False))
    np.testing.assert_allclose(extraction.features, expected, atol=1e-5)
    np.testing.assert_allclose(extractor.features_of(photos[2]), expected[2], atol=1e-5)
    again = extractor.extract(photos, cache=tmp_path / "cache", progress=False)
    assert again.from_cache and np.array_equal(again.features, extraction.features)
    assert "fine-tuned (multi-similarity)" in repr(extractor)
    save_trained(tiny_model, tmp_path / "probe", {**INFO, "best_epoch": 0, "refit_on": 40})
    kept = repr(load_trained(tmp_path / "probe", batch_size=2, mixed_precision="off"))
    assert "probe kept (refitted)" in kept and "fine-tuned" not in kept  # review 23: the backbone never moved


def test_cache_key_follows_the_weights(tiny_model, tmp_path):
    save_trained(tiny_model, tmp_path / "a", INFO)
    other = embedding_model("efficientnet_lite0", 8, input_size=32, seed=4)
    save_trained(other, tmp_path / "b", INFO)
    a, b = TrainedExtractor(tmp_path / "a"), TrainedExtractor(tmp_path / "b")
    assert a.cache_key != b.cache_key
    assert a.cache_key == TrainedExtractor(tmp_path / "a").cache_key
    assert a.cache_key != FeatureExtractor("efficientnet_lite0", None).cache_key


def test_a_folder_whose_weights_do_not_match_is_refused(tiny_model, tmp_path):
    path = save_trained(tiny_model, tmp_path / "m", INFO)
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "weights_hash": "0" * 24}))
    with pytest.raises(ValueError, match="hash"):
        TrainedExtractor(tmp_path / "m")


def test_missing_or_wrong_folders_say_what_is_wrong(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a trained model"):
        read_trained(tmp_path)
    with pytest.raises(ValueError, match="lacks"):
        save_trained(tiny_model, tmp_path / "m", {"backbone": "efficientnet_lite0"})
    save_trained(tiny_model, tmp_path / "m", INFO)
    (tmp_path / "m" / TRAINED_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_trained(tmp_path / "m")


def test_vgg16_refuses_another_input_size():
    from cbir_tutorial.models.backbones import feature_model

    with pytest.raises(ValueError, match="224"):
        feature_model("vgg16", None, input_size=64)


def saved(model, folder, **changes):
    """``model`` saved as a trained-model folder at ``folder`` (``INFO`` with ``changes``); returns the folder."""
    save_trained(model, folder, {**INFO, **changes})
    return folder


def edited(folder, **changes):
    """``folder`` with its ``trained.json`` fields changed by hand (no new hash); returns the folder."""
    path = folder / TRAINED_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return folder


def test_a_hand_built_trained_recipe_records_the_hash_and_its_saved_engine_refuses_a_retrained_folder(
        tiny_model, sample_catalogue, tmp_path):
    from cbir_tutorial.search.engine import SearchEngine
    from cbir_tutorial.search.recipes import Embedding, Recipe

    folder = saved(tiny_model, tmp_path / "mine")
    recipe = Recipe("mine", embedding=Embedding(trained=str(folder)))
    embedding = recipe.embedding
    assert embedding.trained_hash == read_trained(folder)["weights_hash"] and embedding.trained == str(folder.resolve())
    small = sample_catalogue.stratified_sample(12)
    engine = SearchEngine.build(small, recipe=recipe, cache=False, progress=False)
    assert engine.recipe.embedding.trained_hash == embedding.trained_hash
    engine.save(tmp_path / "engine")
    saved(embedding_model("efficientnet_lite0", 8, input_size=32, seed=4), folder)  # trained again
    with pytest.raises(ValueError, match=f"{folder.resolve()} has changed") as refused:
        SearchEngine.load(tmp_path / "engine")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("changes", [{"input_size": 64}, {"resize": "pad"}], ids=["input_size", "resize"])
def test_the_hash_covers_the_settings_that_change_the_embedding(tiny_model, tmp_path, changes):
    folder = edited(saved(tiny_model, tmp_path / "m"), **changes)
    with pytest.raises(TrainedModelError, match=f"{folder.resolve()}: {TRAINED_FILE}: .*hash") as refused:
        TrainedExtractor(folder)
    assert "\n" not in str(refused.value)
    assert weights_hash(tiny_model, {**INFO, **changes}) != weights_hash(tiny_model, INFO)


def test_a_trained_json_that_no_longer_fits_its_weights_is_refused_naming_the_file(tiny_model, tmp_path):
    folder = edited(saved(tiny_model, tmp_path / "m"), embedding_dim=16)
    with pytest.raises(TrainedModelError, match=f"{folder.resolve()}: {WEIGHTS_FILE}: "):
        TrainedExtractor(folder)


BROKEN_DOCUMENTS = {
    "a list": ([], "not a JSON object"),
    "a string": ("x", "not a JSON object"),
    "no weights_hash": ({"weights_hash": None}, "lacks 'weights_hash'"),
    "embedding_dim a list": ({"embedding_dim": [8]}, "embedding_dim=\\[8\\]: expected a whole number"),
    "embedding_dim huge": ({"embedding_dim": 10 ** 7}, "embedding_dim=10000000: expected 1..8192"),
    "input_size huge": ({"input_size": 20000}, "input_size=20000: expected 32..1024 px"),
    "input_size tiny": ({"input_size": 8}, "input_size=8: expected 32..1024 px"),
    "input_size text": ({"input_size": "96"}, "input_size='96': expected a whole number"),
    "input_size true": ({"input_size": True}, "input_size=True: expected a whole number"),
    "backbone a number": ({"backbone": 3}, "backbone=3: expected text"),
    "backbone unknown": ({"backbone": "alexnet"}, "backbone='alexnet': Unknown backbone"),
    "resize unknown": ({"resize": "stretch"}, "resize='stretch': use one of squash, pad"),
    "weights_hash a number": ({"weights_hash": 5}, "weights_hash=5: expected text"),
    "weights_hash not hex": ({"weights_hash": "zz"}, "weights_hash='zz': expected 24 hexadecimal digits"),
    "loss a number": ({"loss": 3}, "loss=3: expected text"),
    "history text": ({"history": "long"}, "history='long': expected a list"),
    "settings a list": ({"settings": []}, "settings=\\[\\]: expected a JSON object"),
    "classes of numbers": ({"classes": [1, 2]}, "classes=\\[1, 2\\]: expected a list of text"),
    "old format": ({"format": 1}, "format 1, this version reads"),
}


@pytest.mark.parametrize("document, problem", BROKEN_DOCUMENTS.values(), ids=BROKEN_DOCUMENTS)
def test_every_reader_refuses_a_broken_trained_json_in_one_line(tiny_model, tmp_path, document, problem):
    from cbir_tutorial.search.recipes import Embedding, recipe_from_word

    folder = saved(tiny_model, tmp_path / "m")
    path = folder / TRAINED_FILE
    if isinstance(document, dict):
        info = {**json.loads(path.read_text()), **document}
        document = {key: value for key, value in info.items() if value is not None}
    path.write_text(json.dumps(document))
    where = f"{folder.resolve()}: {TRAINED_FILE}: "
    for read in (read_trained, TrainedExtractor, recipe_from_word, lambda f: Embedding(trained=f)):
        with pytest.raises(TrainedModelError, match=where + problem) as refused:
            read(folder)
        assert "\n" not in str(refused.value)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize("weights", ["truncated", "not HDF5"])
def test_unreadable_weights_are_refused_naming_the_file(tiny_model, tmp_path, weights):
    from cbir_tutorial.search.recipes import trained_recipe

    folder = saved(tiny_model, tmp_path / "m")
    path = folder / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:4096] if weights == "truncated" else b"not weights at all")
    for read in (read_trained, TrainedExtractor, trained_recipe):
        with pytest.raises(TrainedModelError, match=f"{folder.resolve()}: {WEIGHTS_FILE}: not a readable HDF5 "
                                                    "file") as refused:
            read(folder)
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize("damage", ["trained.json a list", "weights truncated"])
def test_a_saved_engine_whose_trained_folder_broke_is_refused_naming_it(tiny_model, sample_catalogue, tmp_path,
                                                                         damage):
    from cbir_tutorial.search.engine import SearchEngine

    folder = saved(tiny_model, tmp_path / "m")
    SearchEngine.build(sample_catalogue.stratified_sample(6), recipe=folder, cache=False,
                       progress=False).save(tmp_path / "engine")
    if damage == "trained.json a list":
        (folder / TRAINED_FILE).write_text("[]")
    else:
        (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:4096])
    with pytest.raises(TrainedModelError, match=f"{folder.resolve()}: "):
        SearchEngine.load(tmp_path / "engine")


def test_an_extractor_uses_the_trained_json_it_is_given_and_checks_it(tiny_model, tmp_path):
    folder = saved(tiny_model, tmp_path / "m")
    info = read_trained(folder)
    (folder / TRAINED_FILE).write_text("[]")  # not read again
    assert TrainedExtractor(folder, info=info).info == info
    with pytest.raises(TrainedModelError, match="input_size=20000"):
        TrainedExtractor(folder, info={**info, "input_size": 20000})


def test_sizes_are_bounded_by_named_ranges(tiny_model, tmp_path):
    assert INPUT_SIZE_RANGE == (32, 1024) and EMBEDDING_DIM_RANGE[0] == 1
    with pytest.raises(TrainedModelError, match="input_size=2000: expected 32..1024 px"):
        save_trained(tiny_model, tmp_path / "m", {**INFO, "input_size": 2000})
    assert not (tmp_path / "m" / WEIGHTS_FILE).exists()
