"""Pooling EfficientNet-Lite0's last conv map of real sample photos: avg equals today's features, GeM, max, TTA."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cbir_tutorial.models import pooling
from cbir_tutorial.models.backbones import backbone_spec
from cbir_tutorial.models.pooling import PooledExtractor, conv_map_model, pool, pooling_from_word


@pytest.fixture(scope="module")
def photo(sample_catalogue):
    return sample_catalogue.paths[3]


@pytest.fixture(scope="module")
def gem_flip(lite_extractor):
    return PooledExtractor("efficientnet_lite0", pooling="gem", p=3.0, flip=True)


def test_conv_map_is_the_input_of_average_pooling(lite_extractor, photo):
    model = conv_map_model("efficientnet_lite0", features=lite_extractor.model)
    assert tuple(model.output.shape[1:]) == (7, 7, 1280) and backbone_spec("efficientnet_lite0").map_channels == 1280
    avg = PooledExtractor("efficientnet_lite0", pooling="avg")
    np.testing.assert_allclose(avg.features_of(photo), lite_extractor.features_of(photo), atol=1e-5)


def test_gem_lies_between_average_and_max(lite_extractor, photo):
    from cbir_tutorial.data.images import load_rgb

    spec = lite_extractor.spec
    maps = conv_map_model("efficientnet_lite0", features=lite_extractor.model)(
        spec.preprocess(load_rgb(photo, 224)[None].astype(np.float32))).numpy()
    avg, mx = pool(maps, "avg").numpy(), pool(maps, "max").numpy()
    gem = pool(maps, "gem", p=3.0).numpy()
    assert np.all(gem >= avg - 1e-4) and np.all(gem <= mx + 1e-4) and not np.allclose(gem, avg)
    np.testing.assert_allclose(pool(maps, "gem", p=1.0).numpy(), avg, atol=1e-4)
    sharp = pool(maps, "gem", p=30.0).numpy()  # between max * (1/49)^(1/30) = 0.878 max and max
    strong = mx > 0.5  # x^30 of weaker responses underflows float32
    assert np.all(sharp <= mx + 1e-4) and strong.sum() > 10
    assert np.all(sharp[strong] >= 0.87 * mx[strong] - 1e-4)


def test_flip_augmented_features_do_not_change_when_the_photo_is_mirrored(gem_flip, photo):
    mirrored = Image.open(photo).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT)
    plain = PooledExtractor("efficientnet_lite0", pooling="gem")
    np.testing.assert_allclose(gem_flip.features_of(mirrored), gem_flip.features_of(photo), atol=1e-4)
    assert not np.allclose(plain.features_of(mirrored), plain.features_of(photo), atol=1e-3)


def test_multi_scale_features_are_normalised_and_differ_from_one_scale(photo):
    multi = PooledExtractor("efficientnet_lite0", pooling="gem", scales=(1.0, 1.25))
    one = PooledExtractor("efficientnet_lite0", pooling="gem")
    features = multi.features_of(photo)
    assert features.shape == (1280,) and abs(np.linalg.norm(features) - 1) < 1e-5
    assert 0.9 < float(features @ one.features_of(photo)) < 0.9999
    assert "scales (1.0, 1.25)" in repr(multi)


def test_cache_key_names_the_pooling_and_a_cached_extraction_builds_no_model(gem_flip, sample_catalogue,
                                                                             monkeypatch):
    paths = sample_catalogue.paths[:5]
    plain = PooledExtractor("efficientnet_lite0", pooling="gem")
    assert gem_flip.cache_key != plain.cache_key
    extraction = gem_flip.extract(paths, progress=False)
    assert extraction.features.shape == (5, 1280)
    np.testing.assert_allclose(extraction.features[3], gem_flip.features_of(paths[3]), atol=1e-5)
    monkeypatch.setattr(pooling, "conv_map_model", lambda *args, **kwargs: pytest.fail("built a model"))
    again = PooledExtractor("efficientnet_lite0", pooling="gem", p=3.0, flip=True).extract(paths, progress=False)
    assert again.from_cache
    np.testing.assert_array_equal(again.features, extraction.features)


def test_bad_pooling_words_name_the_choices():
    assert pooling_from_word(" Mean ") == "avg" and pooling_from_word("MAC") == "max"
    with pytest.raises(ValueError, match="use one of avg, max, gem"):
        pooling_from_word("median")
    with pytest.raises(ValueError, match="exponent must be positive"):
        PooledExtractor("efficientnet_lite0", pooling="gem", p=0)
