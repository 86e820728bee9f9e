import os
import re
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from cbir_tutorial import FeatureExtractor, SearchEngine
from cbir_tutorial.models.features import Extraction


@pytest.fixture(scope="module")
def photos(sample_dir):
    return sorted((sample_dir / "images").glob("*.jpg"))[:40]


@pytest.fixture
def broken_folder(tmp_path, photos):
    """Twelve real photos with six unusable files in between them."""
    folder = tmp_path / "shop"
    folder.mkdir()
    paths = []
    for i, photo in enumerate(photos[:12]):
        paths.append(shutil.copy(photo, folder / f"{i:02d}.jpg"))
    bad = {
        "empty.jpg": b"",
        "text.jpg": b"not an image at all " * 10,
        "truncated.jpg": photos[12].read_bytes()[:500],
    }
    for name, content in bad.items():
        (folder / name).write_bytes(content)
    Image.new("1", (8000, 8000)).save(folder / "bomb.png")
    Image.new("RGBA", (50, 70), (0, 0, 0, 0)).save(folder / "transparent.png")
    Image.new("CMYK", (50, 70), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    order = [paths[0], folder / "empty.jpg", *paths[1:5], folder / "text.jpg", folder / "truncated.jpg",
             *paths[5:9], folder / "bomb.png", folder / "transparent.png", folder / "missing.jpg",
             *paths[9:], folder / "cmyk.jpg"]
    return [str(p) for p in order]


def test_features_are_unit_float32_rows(lite_extractor, photos):
    result = lite_extractor.extract(photos[:10], cache=False, progress=False)
    assert isinstance(result, Extraction)
    assert result.features.shape == (10, 1280) and result.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.features, axis=1), 1.0, atol=1e-5)
    assert result.kept.all() and result.skipped == []


def test_an_untrained_network_s_tiny_features_are_unit_rows_too(photos):
    """Random weights give features about 1e-10 long: scaled before normalising, they still come out of unit
    length (tf.math.l2_normalize alone left them about 3e-4 long), and an all-zero row stays zero."""
    from cbir_tutorial.models.features import unit_length

    random = FeatureExtractor("efficientnet_lite0", "random").extract(photos[:6], cache=False, progress=False)
    np.testing.assert_allclose(np.linalg.norm(random.features, axis=1), 1.0, atol=1e-5)
    tiny = np.array([[3e-12, 4e-12], [0.0, 0.0], [-3e-30, 4e-30]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(unit_length(tiny)), [[0.6, 0.8], [0.0, 0.0], [-0.6, 0.8]], atol=1e-6)


def test_batched_features_equal_one_at_a_time(lite_extractor, photos):
    small_batches = FeatureExtractor.__new__(FeatureExtractor)
    small_batches.__dict__.update(lite_extractor.__dict__, batch_size=3)
    batched = small_batches.extract(photos[:7], cache=False, progress=False).features
    single = np.stack([lite_extractor.features_of(p) for p in photos[:7]])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_bad_files_are_skipped_reported_and_never_shift_rows(lite_extractor, broken_folder):
    result = lite_extractor.extract(broken_folder, cache=False, progress=False)
    names = [os.path.basename(p) for p in broken_folder]
    skipped = {os.path.basename(s.path): s.reason for s in result.skipped}
    assert set(skipped) == {"empty.jpg", "text.jpg", "truncated.jpg", "bomb.png", "missing.jpg"}
    assert "too large" in skipped["bomb.png"] and "not found" in skipped["missing.jpg"]
    assert result.kept.tolist() == [n not in skipped for n in names]
    kept_paths = [p for p, k in zip(broken_folder, result.kept) if k]
    expected = np.stack([lite_extractor.features_of(p) for p in kept_paths])
    np.testing.assert_allclose(result.features, expected, atol=1e-4)
    report = result.report()
    assert report.startswith("14 of 19 images indexed, 5 skipped") and "bomb.png" in report


def test_cache_is_reused_and_keyed_by_what_changes_the_numbers(lite_extractor, photos, tmp_path):
    cache = tmp_path / "cache"
    first = lite_extractor.extract(photos[:6], cache=cache, progress=False)
    again = lite_extractor.extract(photos[:6], cache=cache, progress=False)
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(first.features, again.features)
    assert not list(cache.rglob("*tmp*"))

    def variant(**changes):
        other = FeatureExtractor.__new__(FeatureExtractor)
        other.__dict__.update(lite_extractor.__dict__, **changes)
        return other.cache_key

    from cbir_tutorial.models.backbones import backbone_spec

    keys = {lite_extractor.cache_key, variant(spec=backbone_spec("resnet50")), variant(weights=None),
            variant(weights=None, seed=1), variant(resize="pad"), variant(precision="mixed_bfloat16"),
            variant(precision="mixed_float16")}
    assert len(keys) == 7
    assert variant(batch_size=3, workers=1) == lite_extractor.cache_key


def test_an_extraction_answered_from_the_cache_builds_no_model(lite_extractor, photos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = lite_extractor.extract(photos[:4], cache=cache, progress=False)
    builds = []
    build = FeatureExtractor.built_model
    monkeypatch.setattr(FeatureExtractor, "built_model", lambda self: builds.append(self) or build(self))
    fresh = FeatureExtractor("efficientnet_lite0")
    again = fresh.extract(photos[:4], cache=cache, progress=False)
    assert again.from_cache and builds == []
    np.testing.assert_array_equal(again.features, first.features)
    more = fresh.extract(photos[:5], cache=cache, progress=False)  # one photo the cache lacks: built for it, once
    assert (more.reused, more.extracted) == (4, 1) and builds == [fresh]
    np.testing.assert_allclose(more.features[4], lite_extractor.features_of(photos[4]), atol=1e-5)
    fresh.features_of(photos[5])
    assert builds == [fresh]


class FakeDevice:
    def __init__(self, device_type):
        self.device_type = device_type


def test_batch_size_and_mixed_precision_defaults_follow_the_device():
    from cbir_tutorial.models.features import default_batch_size, gpus, mixed_precision_policy

    cpu, gpu = [FakeDevice("CPU")], [FakeDevice("CPU"), FakeDevice("GPU")]
    assert len(gpus(gpu)) == 1 and gpus(cpu) == []
    assert default_batch_size(cpu) == 32 and default_batch_size(gpu) == 128
    assert mixed_precision_policy(None, cpu) is None and mixed_precision_policy("auto", gpu) == "mixed_float16"
    assert mixed_precision_policy(True, cpu) == "mixed_bfloat16" and mixed_precision_policy("on", gpu) == "mixed_float16"
    assert mixed_precision_policy(False, gpu) is None and mixed_precision_policy("off", gpu) is None
    assert mixed_precision_policy("bfloat16", gpu) == "mixed_bfloat16"
    with pytest.raises(ValueError, match="mixed_precision='half'"):
        mixed_precision_policy("half", cpu)
    with pytest.raises(ValueError, match="batch_size=-2"):
        FeatureExtractor("efficientnet_lite0", batch_size=-2)


def test_mixed_precision_gives_float32_unit_features_for_this_model_only(lite_extractor, photos):
    from cbir_tutorial.models.runtime import keras_module

    keras = keras_module()
    half = FeatureExtractor("efficientnet_lite0", mixed_precision=True)  # bfloat16 on a CPU
    assert half.mixed_precision and half.model.compute_dtype == "bfloat16" and "mixed_bfloat16" in repr(half)
    assert keras.config.dtype_policy().name == "float32"  # nothing leaks into later models
    assert lite_extractor.model.compute_dtype == "float32"
    features = half.extract(photos[:8], cache=False, progress=False).features
    assert features.dtype == np.float32 and features.shape == (8, 1280)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    full = lite_extractor.extract(photos[:8], cache=False, progress=False).features
    cosine = np.sum(features * full, axis=1)
    assert cosine.min() > 0.99 and not np.array_equal(features, full)
    assert half.cache_key != lite_extractor.cache_key


def test_engine_drops_unreadable_products_and_keeps_captions_aligned(lite_extractor, broken_folder):
    import pandas as pd

    from cbir_tutorial import Catalogue

    table = pd.DataFrame({"id": [os.path.basename(p) for p in broken_folder], "path": broken_folder,
                          "description": "", "brand": "", "price": "", "category": ""})
    engine = SearchEngine.build(Catalogue(table), lite_extractor, cache=False, progress=False)
    assert len(engine) == 14 and "empty.jpg" not in engine.catalogue.table["id"].tolist()
    results = engine.search(broken_folder[0], 3)
    assert results["id"].iloc[0] == "00.jpg" and results["distance"].iloc[0] == pytest.approx(0, abs=1e-3)


def test_repr_says_random_weights_loudly():
    extractor = FeatureExtractor("efficientnet_lite0", weights=None)
    assert "RANDOM weights (untrained)" in repr(extractor) and not extractor.pretrained


# A model whose training diverged outputs NaN: its features are refused, naming the images, before they are
# cached or indexed (an index over them ranked at random and scored MAP@10 above 1).

@pytest.fixture(scope="module")
def diverged_weights(tmp_path_factory):
    """A real weights file of EfficientNet-Lite0's feature model in which every weight is NaN."""
    from cbir_tutorial.models.backbones import feature_model

    model = feature_model("efficientnet_lite0", None, seed=1)
    path = tmp_path_factory.mktemp("diverged") / "diverged.weights.h5"
    with warnings.catch_warnings():  # Keras's own numpy 2 deprecation, once per weight
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
        model.save_weights(path)
    return path


def test_a_diverged_models_features_are_refused_naming_the_images_and_never_cached(diverged_weights, photos,
                                                                                   tmp_path):
    extractor = FeatureExtractor("efficientnet_lite0", diverged_weights, batch_size=4)
    first = ", ".join(re.escape(str(p)) for p in photos[:4])
    with pytest.raises(ValueError, match=rf"^4 of 4 images' features hold NaN or infinity \({first}\): "
                                         r"FeatureExtractor\(.*\) outputs NaN or infinity, most likely because its "
                                         r"training diverged; retrain it with a lower learning rate"):
        extractor.extract(photos[:6], cache=tmp_path / "cache", progress=False)
    from cbir_tutorial.models.feature_store import image_key

    known, _ = extractor.store(tmp_path / "cache").fill([image_key(p) for p in photos[:6]], np.zeros((6, 1280), np.float32))
    assert not known.any(), "NaN features were cached"
    with pytest.raises(ValueError, match=rf"^1 of 1 images' features hold NaN or infinity \({re.escape(str(photos[7]))}\)"):
        extractor.features_of(photos[7])
    with pytest.raises(ValueError, match=r"\(the query image\)"):
        extractor.features_of(Image.open(photos[7]))


def test_nan_features_an_older_version_cached_are_refused_naming_the_images(lite_extractor, photos, tmp_path):
    from cbir_tutorial.models.feature_store import image_key

    cache = tmp_path / "cache"
    store = lite_extractor.store(cache)
    with store.writer() as writer:
        writer.add([image_key(p) for p in photos[:2]], np.full((2, 1280), np.nan, np.float32))
    with pytest.raises(ValueError, match=rf"^2 of 3 cached images' features hold NaN or infinity "
                                         rf"\({re.escape(str(photos[0]))}, {re.escape(str(photos[1]))}\): the feature "
                                         rf"cache {re.escape(str(store.folder))} holds NaN or infinity for them .*: "
                                         r"delete that folder, or extract with cache=False"):
        lite_extractor.extract(photos[:3], cache=cache, progress=False)
    assert lite_extractor.extract(photos[:3], cache=False, progress=False).features.shape == (3, 1280)


def test_tqdm_disable_in_the_environment_silences_the_extraction_bar(lite_extractor, photos, monkeypatch, capsys):
    """The course site and the tests run with TQDM_DISABLE=1; tqdm's own override only changes the default of
    ``disable``, which ``progress=True`` used to pass explicitly, so a frozen bar stayed in every output."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    lite_extractor.extract(photos[:4], cache=False, progress=True)
    assert "efficientnet_lite0 features" in capsys.readouterr().err  # the bar, without the variable

    monkeypatch.setenv("TQDM_DISABLE", "1")
    lite_extractor.extract(photos[:4], cache=False, progress=True)
    captured = capsys.readouterr()
    assert "features" not in captured.err + captured.out, captured.err


def test_tqdm_disable_silences_the_notebook_bar_too(monkeypatch, capsys):
    """In a notebook tqdm.auto is tqdm.notebook's widget bar, which passes ``disable`` itself."""
    pytest.importorskip("ipywidgets")
    import tqdm.auto
    import tqdm.notebook

    from cbir_tutorial.models.features import _progress_bar

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.notebook.tqdm)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = _progress_bar(5, "efficientnet_lite0 features", True)
    bar.update(5)
    bar.close()
    captured = capsys.readouterr()
    assert bar.disable and captured.out + captured.err == ""
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not _progress_bar(5, "x", True).disable and _progress_bar(5, "x", False).disable
