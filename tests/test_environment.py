import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cbir_tutorial.backbones as backbones_module
import cbir_tutorial.data as data_module
from cbir_tutorial import FeatureExtractor, WeightsUnavailableError
from cbir_tutorial.environment import (available_extractor, catalogue_named, environment_summary, extractor_label,
                                       imagenet_weights_on_disk, install_command, running_on, weights_named)


@pytest.mark.parametrize("environ, modules, expected", [
    ({}, {}, "local"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, {}, "kaggle"),
    ({"KAGGLE_URL_BASE": "https://www.kaggle.com"}, {}, "kaggle"),
    ({"COLAB_RELEASE_TAG": "release-colab_20261120-060000_RC00"}, {}, "colab"),
    ({}, {"google.colab": object()}, "colab"),
])
def test_running_on(environ, modules, expected):
    assert running_on(environ, modules) == expected


def test_running_on_this_machine_is_local(monkeypatch):
    for name in ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(name, raising=False)
    assert running_on() == "local"


def test_install_command():
    assert install_command("local").startswith('pip install -e ".[dev]"')
    assert install_command("colab") == 'pip install --quiet "git+https://github.com/REPO_URL"'
    assert install_command("kaggle", repository="me/cbir-tutorial") == \
        'pip install --quiet "git+https://github.com/me/cbir-tutorial"'
    with pytest.raises(ValueError, match="where='laptop'"):
        install_command("laptop")


def test_environment_summary(monkeypatch, tmp_path):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / backbones_module.BACKBONES["resnet50"].weights_file).write_bytes(b"h5")
    monkeypatch.setattr(data_module, "find_farfetch_root", lambda: tmp_path / "farfetch")
    summary = environment_summary()
    assert summary["tensorflow"] == tf.__version__ and summary["keras"] == keras.__version__
    assert summary["gpu"] == bool(tf.config.list_physical_devices("GPU"))
    assert summary["running on"] == running_on() and summary["install"] == install_command()
    assert summary["farfetch listings"] == str(tmp_path / "farfetch")
    assert summary["imagenet weights on disk"] == "vgg16: no, resnet50: yes, xception: no"
    assert imagenet_weights_on_disk() == {"vgg16": False, "resnet50": True, "xception": False}
    pd.Series(summary)  # one printable table


def test_catalogue_named_sample_and_auto(sample_dir, monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_DATA", str(sample_dir))
    monkeypatch.setattr(data_module, "find_farfetch_root", lambda: None)
    sample = catalogue_named("sample")
    assert sample.name == "fashion-sample" and len(sample) == 770
    assert len(catalogue_named("auto")) == 770
    assert len(catalogue_named(str(sample_dir))) == 770  # a styles.csv + images/ folder


def write_farfetch(root, photos):
    (root / "cutout-img" / "cutout").mkdir(parents=True)
    rows = []
    for i, photo in enumerate(photos):
        name = f"{1000 + i}_1_480.jpg"
        Image.open(photo).save(root / "cutout-img" / "cutout" / name)
        rows.append({"id": str(1000 + i), "brand.name": "Gucci", "gender": "women",
                     "shortDescription": "leather ankle boots", "images.cutOut": f"https://cdn/x/{name}?c=2",
                     "images.model": f"https://cdn/y/{name}", "priceInfo.formattedFinalPrice": "€1,250"})
    rows.append(dict(rows[0], id="999", **{"images.cutOut": "https://cdn/x/missing.jpg"}))
    pd.DataFrame(rows).to_csv(root / "current_farfetch_listings.csv", index=False)


def test_catalogue_named_farfetch_and_folder(sample_dir, tmp_path, monkeypatch):
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:3]
    write_farfetch(tmp_path / "ff", photos)
    catalogue = catalogue_named(str(tmp_path / "ff"), images="cutout")
    assert catalogue.name == "farfetch-cutout" and len(catalogue) == 3 and catalogue.n_dropped == 1
    monkeypatch.setattr(data_module, "find_farfetch_root", lambda: tmp_path / "ff")
    assert catalogue_named("auto").name == "farfetch-cutout"
    assert len(catalogue_named("farfetch")) == 3
    (tmp_path / "shop" / "boots").mkdir(parents=True)
    Image.open(photos[0]).save(tmp_path / "shop" / "boots" / "a.jpg")
    folder = catalogue_named(str(tmp_path / "shop"))
    assert folder.table["category"].tolist() == ["boots"]


def test_weights_named():
    assert weights_named("imagenet") == weights_named(" ImageNet ") == "imagenet"
    assert weights_named("random") is weights_named("none") is weights_named(None) is weights_named("") is None
    assert weights_named("/tmp/w.h5") == "/tmp/w.h5"


@pytest.fixture
def offline_keras(monkeypatch):
    """Keras backbones whose ImageNet download fails, as on a machine without internet."""
    built = backbones_module._built

    def offline(spec, weights):
        if spec.weights_file is not None and weights == "imagenet":
            raise WeightsUnavailableError(f"ImageNet weights for {spec.title} could not be downloaded")
        return built(spec, weights)

    monkeypatch.setattr(backbones_module, "_built", offline)


def test_available_extractor_falls_back_visibly(offline_keras, capsys):
    lite = available_extractor("resnet50", "imagenet", fallback="efficientnet_lite0")
    assert lite.name == "efficientnet_lite0" and lite.weights == "imagenet"
    assert capsys.readouterr().out == ("ResNet50: ImageNet weights unavailable (offline?) -> using "
                                       "EfficientNet-Lite0 with its ImageNet weights instead.\n")
    random = available_extractor("resnet50", "imagenet")
    assert random.name == "resnet50" and random.weights is None and "RANDOM" in repr(random)
    assert "using RANDOM, untrained weights instead" in capsys.readouterr().out
    assert extractor_label(random) == "resnet50 (random)" and extractor_label(lite) == "efficientnet_lite0 (imagenet)"
    with pytest.raises(WeightsUnavailableError):
        available_extractor("resnet50", "imagenet", fallback=None)


def test_available_extractor_without_fallback_needed(capsys):
    extractor = available_extractor("efficientnet_lite0", "random")
    assert isinstance(extractor, FeatureExtractor) and extractor.weights is None
    assert capsys.readouterr().out == ""
    assert extractor.features_of_pixels(np.zeros((1, 224, 224, 3))).shape == (1, 1280)
