import json

import numpy as np
import pytest

from cbir_tutorial.data.images import load_rgb
from cbir_tutorial.models.backbones import backbone_spec
from cbir_tutorial.models.features import FeatureExtractor
from cbir_tutorial.models.trained import (TRAINED_FILE, TrainedExtractor, embedding_model, is_trained_folder,
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
    assert info["weights_hash"] == weights_hash(tiny_model) and info["loss"] == "multi-similarity"
    extractor = load_trained(tmp_path / "m", batch_size=2, mixed_precision="off")
    assert isinstance(extractor, FeatureExtractor) and extractor.feature_dim == 8 and extractor.input_size == 32
    extraction = extractor.extract(photos, cache=tmp_path / "cache", progress=False)
    pixels = np.stack([load_rgb(p, 32) for p in photos]).astype(np.float32)
    expected = np.asarray(tiny_model(backbone_spec("efficientnet_lite0").preprocess(pixels), training=False))
    np.testing.assert_allclose(extraction.features, expected, atol=1e-5)
    np.testing.assert_allclose(extractor.features_of(photos[2]), expected[2], atol=1e-5)
    again = extractor.extract(photos, cache=tmp_path / "cache", progress=False)
    assert again.from_cache and np.array_equal(again.features, extraction.features)
    assert "multi-similarity" in repr(extractor)


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
