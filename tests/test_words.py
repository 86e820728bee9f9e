"""The one vocabulary: weights, backbone, catalogue, resize and fallback words, in every place a user writes them."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cbir_tutorial import FeatureExtractor, WeightsUnavailableError
from cbir_tutorial.data.images import resize_from_word
from cbir_tutorial.data.loaders import load_catalogue
from cbir_tutorial.models.backbones import BackboneChoice, backbone_choices
from cbir_tutorial.models.features import available_extractor
from cbir_tutorial.models.weights import weights_from_word, weights_label, weights_word
from cbir_tutorial.cli import main
from cbir_tutorial.ui.shelf import EngineShelf, offered_choices

RANDOM_WORDS = ["untrained", "random", "none", "None", " RANDOM ", ""]


# --------------------------------------------------------------------------------------------------
# Weights words


@pytest.mark.parametrize("word", RANDOM_WORDS + [None])
def test_random_words_mean_untrained(word):
    assert weights_from_word(word) is None
    assert weights_word(None) == "random" and weights_label(None) == "RANDOM weights (untrained)"


def test_imagenet_and_file_words(lite_weights_file):
    assert weights_from_word(" ImageNet ") == weights_from_word("imagenet") == "imagenet"
    assert weights_from_word(str(lite_weights_file)) == str(lite_weights_file)
    assert weights_label(str(lite_weights_file)) == f"weights from {lite_weights_file}"


def test_a_missing_weights_file_names_the_argument_and_the_words(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--weights='.*nope.h5': no such weights file.*'imagenet', 'random'"):
        weights_from_word(str(tmp_path / "nope.h5"), "--weights")


def weights_argument(word, lite_weights_file):
    return str(lite_weights_file) if word == "FILE" else word


#: One end-to-end run per behaviour (random weights, a file); every random synonym is parsed by
#: weights_from_word, tested above for each spelling.
END_TO_END_WORDS = ["untrained", "FILE"]


@pytest.mark.parametrize("word", END_TO_END_WORDS)
def test_each_weights_word_in_the_cli(word, lite_weights_file, sample_dir, capsys):
    status = main(["evaluate", "--catalogue", str(sample_dir), "--backbone", "efficientnet_lite0",
                   "--weights", weights_argument(word, lite_weights_file), "--limit", "60", "--k", "3", "--json",
                   "--no-cache"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    expected = str(lite_weights_file) if word == "FILE" else "random"
    assert json.loads(captured.out)["weights"] == expected


@pytest.mark.parametrize("word", END_TO_END_WORDS)
def test_each_weights_word_in_the_notebooks(word, lite_weights_file, monkeypatch, capsys):
    """The notebooks read ``CBIR_NB_WEIGHTS`` with ``notebook_parameters`` and pass it to ``available_extractor``."""
    from cbir_tutorial.lessons.parameters import notebook_parameters

    monkeypatch.setenv("CBIR_NB_WEIGHTS", weights_argument(word, lite_weights_file))
    params = notebook_parameters(weights="imagenet", show=False)
    extractor = available_extractor("efficientnet_lite0", params.weights)
    assert capsys.readouterr().out == ""  # nothing to fall back from
    if word == "FILE":
        assert extractor.weights == str(lite_weights_file) and extractor.pretrained
        assert "weights from" in repr(extractor)
    else:
        assert extractor.weights is None and "RANDOM weights (untrained)" in repr(extractor)


@pytest.mark.parametrize("word", END_TO_END_WORDS)
def test_each_weights_word_in_the_explorer(word, lite_weights_file, sample_catalogue):
    text = f"efficientnet_lite0={weights_argument(word, lite_weights_file)}"
    [choice] = offered_choices(text)
    shelf = EngineShelf(sample_catalogue.subset(np.arange(40)), [choice], cache=False)
    engine = shelf.engine(choice.key)
    if word == "FILE":
        assert choice.key == f"efficientnet_lite0:{lite_weights_file}" and engine.extractor.weights == str(lite_weights_file)
    else:
        assert choice.key == "efficientnet_lite0:random" and engine.extractor.weights is None
        assert choice.label == "EfficientNet-Lite0, RANDOM weights (untrained)"


def test_cli_rejects_a_weights_word_it_does_not_know(sample_dir, capsys):
    assert main(["evaluate", "--catalogue", str(sample_dir), "--weights", "pretrained"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --weights='pretrained': no such weights file") and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# Backbone words and labels


def test_backbone_choice_labels_are_built_once():
    choice = BackboneChoice.of("ResNet", "untrained")
    assert choice == BackboneChoice("resnet50", None)
    assert choice.key == "resnet50:random" and choice.short_label == "resnet50 (random)"
    assert choice.label == "ResNet50, RANDOM weights (untrained)"
    assert BackboneChoice.parse("VGG").label == "VGG16, ImageNet weights"


def test_backbone_choices_from_text_mapping_and_pairs():
    lite = BackboneChoice("efficientnet_lite0", "imagenet")
    assert backbone_choices("efficientnet_lite0, resnet50=random ,vgg16=none") == [
        lite, BackboneChoice("resnet50", None), BackboneChoice("vgg16", None)]
    assert [c.key for c in backbone_choices("resnet50=random,resnet50=random,resnet50")] == [
        "resnet50:random", "resnet50:imagenet"]
    # a repeat stays where it first came: notebook 7 adds the learner's backbones to Lite0 ImageNet, then random
    assert [c.key for c in backbone_choices(["efficientnet_lite0=imagenet", "efficientnet_lite0=random",
                                             "efficientnet_lite0=random", "efficientnet_lite0=imagenet"])] == [
        "efficientnet_lite0:imagenet", "efficientnet_lite0:random"]
    assert backbone_choices({"efficientnet_lite0": "imagenet", "ResNet": None}) == [lite, BackboneChoice("resnet50", None)]
    assert backbone_choices(["xception=untrained", ("vgg16", None), lite]) == [
        BackboneChoice("xception", None), BackboneChoice("vgg16", None), lite]
    with pytest.raises(ValueError, match="Unknown backbone 'alexnet'"):
        backbone_choices(["alexnet"])
    with pytest.raises(ValueError, match="no backbone in"):
        backbone_choices([])


def test_resize_words():
    assert resize_from_word(" Pad ") == "pad" and resize_from_word("squash") == "squash"
    with pytest.raises(ValueError, match="--resize='crop': use one of squash, pad"):
        resize_from_word("crop", "--resize")


# --------------------------------------------------------------------------------------------------
# The offline fallback


def test_available_extractor_falls_back_visibly(offline_keras, capsys):
    lite = available_extractor("resnet50", "imagenet", fallback="efficientnet_lite0")
    assert lite.backbone == "efficientnet_lite0" and lite.weights == "imagenet"
    assert capsys.readouterr().out == ("ResNet50, ImageNet weights: unavailable (offline?) -> using "
                                       "EfficientNet-Lite0, ImageNet weights (shipped with pip) instead.\n")
    random = available_extractor("resnet50", "imagenet")
    assert random.backbone == "resnet50" and random.weights is None and "RANDOM" in repr(random)
    assert capsys.readouterr().out == ("ResNet50, ImageNet weights: unavailable (offline?) -> using "
                                       "RANDOM, untrained weights instead.\n")
    assert random.choice.short_label == "resnet50 (random)" and lite.choice.short_label == "efficientnet_lite0 (imagenet)"
    with pytest.raises(WeightsUnavailableError):
        available_extractor("resnet50", "imagenet", fallback=None)


def test_available_extractor_without_fallback_needed(capsys):
    extractor = available_extractor("efficientnet_lite0", "random")
    assert isinstance(extractor, FeatureExtractor) and extractor.weights is None
    assert capsys.readouterr().out == ""
    assert extractor.features_of_pixels(np.zeros((1, 224, 224, 3))).shape == (1, 1280)


# --------------------------------------------------------------------------------------------------
# Catalogue words


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


def test_sample_and_auto_without_kaggle(sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_DATA", str(sample_dir))
    monkeypatch.setenv("CBIR_TUTORIAL_KAGGLE_INPUT", str(tmp_path / "no-kaggle"))
    sample = load_catalogue("sample")
    assert sample.name == "fashion-sample" and len(sample) == 770
    assert load_catalogue("auto").name == "fashion-sample"
    assert load_catalogue(None).name == "fashion-sample"
    from_folder = load_catalogue(str(sample_dir))  # styles.csv + images/: detected
    assert len(from_folder) == 770 and from_folder.table["category"].iloc[0] != ""


def test_farfetch_found_through_the_kaggle_input_variable(sample_dir, tmp_path, monkeypatch):
    photos = sorted((sample_dir / "images").glob("*.jpg"))[:3]
    write_farfetch(tmp_path / "input" / "farfetch-listings", photos)
    monkeypatch.setenv("CBIR_TUTORIAL_KAGGLE_INPUT", str(tmp_path / "input"))
    auto = load_catalogue("auto")
    assert auto.name == "farfetch-cutout" and len(auto) == 3 and auto.n_dropped == 1
    assert len(load_catalogue("farfetch")) == 3
    assert load_catalogue(str(tmp_path / "input" / "farfetch-listings"), "farfetch").name == "farfetch-cutout"
    with pytest.raises(FileNotFoundError, match="No 'model' image folder"):
        load_catalogue("farfetch", photos="model")


def test_folder_layouts_and_errors(sample_dir, tmp_path, monkeypatch):
    (tmp_path / "shop" / "boots").mkdir(parents=True)
    Image.open(sorted((sample_dir / "images").glob("*.jpg"))[0]).save(tmp_path / "shop" / "boots" / "a.jpg")
    assert load_catalogue(str(tmp_path / "shop")).table["category"].tolist() == ["boots"]
    with pytest.raises(FileNotFoundError, match="catalogue '/no/such': no such folder. Use one of auto, sample"):
        load_catalogue("/no/such")
    with pytest.raises(ValueError, match="format='pinterest' is not supported"):
        load_catalogue(str(tmp_path / "shop"), "pinterest")
    with pytest.raises(ValueError, match="format='folder' needs a catalogue folder"):
        load_catalogue("sample", "folder")
    monkeypatch.setenv("CBIR_TUTORIAL_KAGGLE_INPUT", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=f"no current_farfetch_listings.csv under {tmp_path / 'empty'}"):
        load_catalogue("farfetch")
