import hashlib
from importlib import resources

import numpy as np
import pytest

from cbir_tutorial import WeightsUnavailableError
from cbir_tutorial.lessons.imagenet import (FASHION_CLASSES, ImageNetClassifier, class_index, class_names, classifier_model,
                                    decode_predictions, predictions_table)

#: The ``file_hash`` Keras checks when it downloads imagenet_class_index.json.
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def test_bundled_file_is_the_one_keras_downloads():
    data = resources.files("cbir_tutorial.lessons").joinpath("imagenet_class_index.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == KERAS_CLASS_INDEX_MD5


def test_class_index():
    index = class_index()
    assert sorted(index) == list(range(1000))
    assert index[0] == ("n01440764", "tench")
    assert index[652] == ("n03763968", "military_uniform")
    assert index[999] == ("n15075141", "toilet_tissue")
    names = class_names()
    assert len(names) == 1000 and names[610] == "jersey" and names[841] == "sweatshirt"
    wnids = [wnid for wnid, _ in index.values()]
    assert len(set(wnids)) == 1000 and wnids == sorted(wnids)


def test_fashion_classes_are_imagenet_classes():
    assert FASHION_CLASSES <= set(class_names())
    assert {"jersey", "jean", "running_shoe", "purse", "sunglasses"} <= FASHION_CLASSES
    assert not {"tench", "toilet_tissue", "military_aircraft"} & FASHION_CLASSES


def test_decode_predictions_orders_by_probability():
    probs = np.zeros((2, 1000), dtype=np.float32)
    probs[0, [652, 610, 3]] = [0.5, 0.3, 0.2]
    probs[1, 999] = 1.0
    decoded = decode_predictions(probs, top=3)
    assert decoded[0] == [("n03763968", "military_uniform", 0.5), ("n03595614", "jersey", pytest.approx(0.3)),
                          ("n01491361", "tiger_shark", pytest.approx(0.2))]
    assert decoded[1][0] == ("n15075141", "toilet_tissue", 1.0)
    assert decoded[1][1][1] == "tench"  # ties (all zero) keep class order
    assert all(isinstance(p, float) for _, _, p in decoded[0])


def test_decode_predictions_shapes():
    one = np.full(1000, 1e-3)
    assert len(decode_predictions(one)) == 1 and len(decode_predictions(one)[0]) == 5
    assert len(decode_predictions(one[None], top=2000)[0]) == 1000
    with pytest.raises(ValueError, match=r"shape \(B, 1000\), got \(2, 10\)"):
        decode_predictions(np.zeros((2, 10)))


def test_same_answer_as_keras_given_the_same_file(monkeypatch):
    from keras.src.applications import imagenet_utils

    keras_index = {str(i): list(v) for i, v in class_index().items()}
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", keras_index)  # so Keras does not download it
    probs = np.random.default_rng(0).dirichlet(np.ones(1000), size=4).astype(np.float32)
    theirs = imagenet_utils.decode_predictions(probs, top=5)
    ours = decode_predictions(probs, top=5)
    assert [[(w, n) for w, n, _ in row] for row in ours] == [[(w, n) for w, n, _ in row] for row in theirs]
    np.testing.assert_allclose([[p for *_, p in row] for row in ours], [[p for *_, p in row] for row in theirs])


def test_predictions_table():
    probs = np.zeros(1000)
    probs[[608, 610]] = [0.7, 0.2]
    table = predictions_table(probs, top=2)
    assert table.to_dict("list") == {"rank": [1, 2], "class": ["jean", "jersey"], "wnid": ["n03594734", "n03595614"],
                                     "probability": [0.7, 0.2]}
    with pytest.raises(ValueError, match="one prediction"):
        predictions_table(np.zeros((2, 1000)))


@pytest.fixture(scope="module")
def lite_classifier():
    return ImageNetClassifier("efficientnet_lite0")


def test_efficientnet_lite_recognises_products_offline(lite_classifier, sample_catalogue):
    table = sample_catalogue.table
    photo = {category: table[table["category"] == category]["path"].iloc[0]
             for category in ("Tshirts", "Jeans", "Watches", "Sports Shoes")}
    probs = lite_classifier.probabilities(list(photo.values()))
    assert probs.shape == (4, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    top5 = {category: {name for _, name, _ in row} for category, row in zip(photo, decode_predictions(probs))}
    assert top5["Tshirts"] & {"jersey", "sweatshirt"}
    assert top5["Jeans"] & {"jean"}
    assert top5["Watches"] & {"digital_watch", "analog_clock", "stopwatch", "wall_clock"}
    assert top5["Sports Shoes"] & {"running_shoe", "clog", "Loafer", "sandal"}
    top = lite_classifier.top(photo["Jeans"], k=3)
    assert list(top.columns) == ["rank", "class", "wnid", "probability"] and len(top) == 3
    assert top["probability"].is_monotonic_decreasing


def test_random_classifier_has_the_same_interface():
    model = classifier_model("efficientnet_lite0", weights=None)
    assert model.output.shape[1:] == (1000,)


def test_failed_download_becomes_weights_unavailable(monkeypatch):
    import keras.applications.resnet50 as resnet50  # where the backbone table finds the constructor

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(resnet50, "ResNet50", offline)
    with pytest.raises(WeightsUnavailableError, match="resnet50_weights_tf_dim_ordering_tf_kernels.h5"):
        classifier_model("resnet50")
    with pytest.raises(Exception, match="URL fetch failure"):
        classifier_model("resnet50", weights=None)  # only a failed ImageNet download is translated
