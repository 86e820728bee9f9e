import json
import os
import shutil

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


def test_cache_is_reused_and_keyed_by_the_files(lite_extractor, photos, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = [str(shutil.copy(p, folder)) for p in photos[:6]]
    cache = tmp_path / "cache"
    first = lite_extractor.extract(paths, cache=cache, progress=False)
    again = lite_extractor.extract(paths, cache=cache, progress=False)
    assert not first.from_cache and again.from_cache
    np.testing.assert_array_equal(first.features, again.features)
    assert len(list(cache.glob("*.npy"))) == 1 and not list(cache.glob(".*tmp*"))
    os.utime(paths[2], ns=(1, 1))  # a changed image file means a new key
    assert not lite_extractor.extract(paths, cache=cache, progress=False).from_cache
    assert lite_extractor.cache_key(paths) != lite_extractor.cache_key(paths[::-1])


def test_corrupt_cache_is_detected_and_rebuilt(lite_extractor, photos, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = lite_extractor.extract(photos[:5], cache=cache, progress=False)
    npy = next(cache.glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:-100])
    rebuilt = lite_extractor.extract(photos[:5], cache=cache, progress=False)
    assert not rebuilt.from_cache and "unusable" in capsys.readouterr().out
    np.testing.assert_allclose(rebuilt.features, first.features, atol=1e-6)
    meta = next(cache.glob("*.json"))
    meta.write_text(json.dumps({"format": 1, "n": 4, "sha256": "x", "skipped": [], "skipped_rows": []}))
    assert not lite_extractor.extract(photos[:5], cache=cache, progress=False).from_cache


def test_interrupted_extraction_leaves_no_cache(lite_extractor, photos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    calls = []
    original = FeatureExtractor.features_of_pixels

    def dies_on_second_batch(self, images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(FeatureExtractor, "features_of_pixels", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        lite_extractor.extract(photos, cache=cache, progress=False)
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    assert not lite_extractor.extract(photos, cache=cache, progress=False).from_cache


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
