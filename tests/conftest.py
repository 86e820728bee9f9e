"""Shared fixtures: the real sample catalogue (../shared/data/fashion-sample) and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbir_tutorial.data.loaders import CHECKOUT_SAMPLE as SAMPLE  # ../shared/data/fashion-sample

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CBIR_TUTORIAL_DATA", str(SAMPLE))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Every test session writes features and converted weights to its own cache folder."""
    if "CBIR_TUTORIAL_TEST_CACHE" in os.environ:  # CI shares one cache between tests and notebooks
        os.environ["CBIR_TUTORIAL_CACHE"] = os.environ["CBIR_TUTORIAL_TEST_CACHE"]
    else:
        os.environ["CBIR_TUTORIAL_CACHE"] = str(tmp_path_factory.mktemp("cbir_cache"))
    return Path(os.environ["CBIR_TUTORIAL_CACHE"])


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE / "styles.csv").is_file():
        pytest.fail(f"The sample catalogue is missing: expected {SAMPLE}/styles.csv (see data/README.md)")
    return SAMPLE


@pytest.fixture(scope="session")
def sample_catalogue(sample_dir):
    from cbir_tutorial.data.loaders import load_fashion_products

    return load_fashion_products(sample_dir)


@pytest.fixture(scope="session")
def lite_extractor():
    from cbir_tutorial import FeatureExtractor

    return FeatureExtractor("efficientnet_lite0")


@pytest.fixture(scope="session")
def sample_engine(sample_catalogue, lite_extractor):
    from cbir_tutorial import SearchEngine

    return SearchEngine.build(sample_catalogue, lite_extractor, progress=False)


@pytest.fixture
def offline_keras(monkeypatch):
    """Keras backbones whose ImageNet download fails, as on a machine without internet."""
    from cbir_tutorial.models import backbones

    application = backbones.keras_application

    def offline(spec, weights, **options):
        if weights == "imagenet":
            raise backbones.WeightsUnavailableError(f"ImageNet weights for {spec.title} could not be downloaded")
        return application(spec, weights, **options)

    monkeypatch.setattr(backbones, "keras_application", offline)


@pytest.fixture(scope="session")
def lite_weights_file(tmp_path_factory) -> Path:
    """A real ``.weights.h5`` file of EfficientNet-Lite0's feature model (random init, seed 1)."""
    from cbir_tutorial.models.backbones import feature_model

    path = tmp_path_factory.mktemp("weights") / "lite0_seed1.weights.h5"
    feature_model("efficientnet_lite0", None, seed=1).save_weights(path)
    return path
