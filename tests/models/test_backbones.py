import numpy as np
import pytest

from cbir_tutorial import FeatureExtractor, WeightsUnavailableError
from cbir_tutorial.models.backbones import backbone_spec
from cbir_tutorial.models.backbones import BACKBONES, feature_model
from cbir_tutorial.models.pooling import conv_map_model


@pytest.mark.parametrize("name, canonical", [
    ("VGG", "vgg16"), ("ResNet", "resnet50"), ("Xception", "xception"), ("resnet50", "resnet50"),
    ("EfficientNet-Lite0", "efficientnet_lite0"),
])
def test_names_and_tutorial_spellings(name, canonical):
    assert backbone_spec(name).name == canonical


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="Unknown backbone 'alexnet'.*efficientnet_lite0.*vgg16"):
        backbone_spec("alexnet")


def test_specs_follow_the_tutorial():
    assert [(b.name, b.feature_layer, b.feature_dim, b.input_size) for b in BACKBONES.values()] == [
        ("vgg16", "fc1", 4096, 224), ("resnet50", "avg_pool", 2048, 224),
        ("xception", "avg_pool", 2048, 299), ("efficientnet_lite0", "avg_pool", 1280, 224),
        ("efficientnet_lite2", "avg_pool", 1280, 260)]


def test_each_backbone_has_its_own_preprocessing():
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], dtype=np.float32)
    caffe = np.asarray(backbone_spec("resnet50").preprocess(pixels.copy()))  # BGR, ImageNet means removed
    np.testing.assert_allclose(caffe[0, 0, 0], [255 - 103.939, 127.5 - 116.779, 0 - 123.68], atol=1e-3)
    np.testing.assert_allclose(np.asarray(backbone_spec("vgg16").preprocess(pixels.copy())), caffe, atol=1e-3)
    tf_mode = np.asarray(backbone_spec("xception").preprocess(pixels.copy()))
    np.testing.assert_allclose(tf_mode[0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)


def test_missing_imagenet_weights_raise_with_the_fixes(monkeypatch, tmp_path):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example: None -- [Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as error:
        feature_model("ResNet", "imagenet")
    message = str(error.value)
    assert "ResNet50" in message and "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 from the same folder works too" in message
    assert str(tmp_path / "models") in message and "efficientnet_lite0" in message and "weights=" in message


@pytest.fixture
def downloads(monkeypatch, tmp_path):
    """The files Keras is asked to download, into an empty Keras cache, on a machine without internet."""
    import keras

    asked = []

    def offline(fname, origin, **kwargs):
        asked.append((fname, origin, kwargs["cache_dir"], kwargs["file_hash"]))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    return asked


@pytest.mark.parametrize("name", ["resnet50", "xception"])
def test_the_classifier_and_the_features_ask_for_the_same_file(name, downloads, tmp_path):
    from cbir_tutorial.lessons.imagenet import classifier_model

    spec = BACKBONES[name]
    for build in (lambda: classifier_model(name), lambda: feature_model(name, "imagenet")):
        with pytest.raises(WeightsUnavailableError):
            build()
    url = f"https://storage.googleapis.com/tensorflow/keras-applications/{spec.weights_folder}/{spec.weights_file}"
    assert downloads == [(spec.weights_file, url, str(tmp_path / "keras"), spec.weights_md5)] * 2
    assert not spec.weights_file.endswith("_notop.h5")


def test_a_cached_file_is_used_and_the_headless_one_only_for_features(tmp_path, monkeypatch):
    from cbir_tutorial.models.backbones import cached_imagenet_weights, imagenet_weights_path

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = BACKBONES["resnet50"]
    (tmp_path / "models").mkdir()
    headless = tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    headless.write_bytes(b"h5")
    assert cached_imagenet_weights(spec, include_top=False) == headless == imagenet_weights_path(spec, False)
    assert cached_imagenet_weights(spec, include_top=True) is None
    (tmp_path / "models" / spec.weights_file).write_bytes(b"h5")
    assert cached_imagenet_weights(spec, include_top=True) == tmp_path / "models" / spec.weights_file
    assert BACKBONES["vgg16"].headless_weights_file is None  # its features need the head (fc1)


def test_a_broken_cached_weights_file_is_named_with_the_fix(tmp_path, monkeypatch, downloads):
    spec = BACKBONES["xception"]
    broken = tmp_path / "keras" / "models" / spec.weights_file
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(ValueError, match=f"{broken}: not Keras ImageNet weights for Xception .*delete it"):
        feature_model("xception", "imagenet")
    assert downloads == []


@pytest.mark.slow
def test_one_download_serves_the_classifier_and_the_features(tmp_path, monkeypatch, downloads):
    """Notebook 3 loads ResNet50 with its head, notebooks 4-6 without: both from the same cached file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from cbir_tutorial.lessons.imagenet import classifier_model

    keras.utils.set_random_seed(5)
    full = keras.applications.ResNet50(weights=None)  # stands in for the ImageNet file, head included
    path = tmp_path / "keras" / "models" / BACKBONES["resnet50"].weights_file
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, full)

    features = feature_model("resnet50", "imagenet", input_size=160)
    classifier = classifier_model("resnet50")
    assert downloads == []
    for layer in ("conv1_conv", "conv4_block6_2_bn", "conv5_block3_3_conv"):
        for model in (features, classifier):
            for got, saved in zip(model.get_layer(layer).get_weights(), full.get_layer(layer).get_weights()):
                np.testing.assert_array_equal(got, saved)
    for got, saved in zip(classifier.get_layer("predictions").get_weights(), full.get_layer("predictions").get_weights()):
        np.testing.assert_array_equal(got, saved)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        FeatureExtractor("efficientnet_lite0", weights=tmp_path / "nope.weights.h5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "resnet50", "xception"])
def test_random_weight_backbones_give_the_documented_features(name):
    extractor = FeatureExtractor(name, weights=None)
    size = extractor.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.uint8)
    features = extractor.features_of_pixels(pixels)
    assert features.shape == (2, BACKBONES[name].feature_dim) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert extractor.model.layers[-1].name == BACKBONES[name].feature_layer
    conv_map = conv_map_model(name, features=extractor.model)  # what PooledExtractor pools: as wide as the table says
    assert conv_map.output.shape[-1] == BACKBONES[name].map_channels


def test_random_weights_are_reproducible():
    pixels = np.full((1, 224, 224, 3), 120, dtype=np.uint8)
    a = FeatureExtractor("efficientnet_lite0", weights=None, seed=3).features_of_pixels(pixels)
    b = FeatureExtractor("efficientnet_lite0", weights=None, seed=3).features_of_pixels(pixels)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_weights_file_path_loads_those_weights(tmp_path):
    from cbir_tutorial.models.efficientnet_lite import imagenet_weights_path

    pixels = np.full((1, 224, 224, 3), 90, dtype=np.uint8)
    by_path = FeatureExtractor("efficientnet_lite0", weights=imagenet_weights_path()).features_of_pixels(pixels)
    by_name = FeatureExtractor("efficientnet_lite0").features_of_pixels(pixels)
    np.testing.assert_allclose(by_path, by_name, atol=1e-5)
