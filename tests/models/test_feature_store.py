"""Incremental, resumable feature extraction: the per-image store under FeatureExtractor.extract."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cbir_tutorial import FeatureExtractor
from cbir_tutorial.models import feature_store
from cbir_tutorial.models.feature_store import FeatureStore, image_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_batches(lite_extractor):
    """The session's EfficientNet-Lite0 extractor, batches of 4 (so 24 photos make 6 batches)."""
    extractor = FeatureExtractor.__new__(FeatureExtractor)
    extractor.__dict__.update(lite_extractor.__dict__, batch_size=4)
    return extractor


@pytest.fixture(scope="module")
def shop(sample_dir, tmp_path_factory):
    """24 real sample photos copied into their own folder (so tests may change the files)."""
    folder = tmp_path_factory.mktemp("shop")
    return [str(shutil.copy(p, folder)) for p in sorted((sample_dir / "images").glob("*.jpg"))[:24]]


@pytest.fixture(scope="module")
def reference(small_batches, shop):
    """Features of the 24 photos, uninterrupted and uncached."""
    return small_batches.extract(shop, cache=False, progress=False).features


def test_store_keys_name_file_versions(shop, tmp_path):
    copy = tmp_path / "copy.jpg"
    shutil.copy(shop[0], copy)
    key = image_key(copy)
    assert len(key) == 24 and key != image_key(shop[0])
    assert image_key(str(copy)) == key
    os.utime(copy, ns=(1, 1))
    assert image_key(copy) != key
    assert image_key(tmp_path / "absent.jpg") != image_key(tmp_path / "absent2.jpg")


def test_run_interrupted_by_an_exception_resumes_with_only_the_missing_images(small_batches, shop, reference,
                                                                               tmp_path, monkeypatch):
    calls = []
    original = FeatureExtractor.features_of_pixels

    def dies_on_third_batch(self, images, names=None):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, images, names)

    monkeypatch.setattr(FeatureExtractor, "features_of_pixels", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        small_batches.extract(shop, cache=tmp_path, progress=False)
    monkeypatch.undo()
    assert len(small_batches.store(tmp_path)) == 8  # the two finished batches were kept
    resumed = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert (resumed.reused, resumed.extracted) == (8, 16) and not resumed.from_cache
    assert "(8 from cache, 16 extracted)" in resumed.report()
    np.testing.assert_allclose(resumed.features, reference, rtol=0, atol=1e-6)
    again = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert again.from_cache and (again.reused, again.extracted) == (24, 0)
    np.testing.assert_array_equal(again.features, resumed.features)


KILLED_RUN = """
import os, signal, sys
from cbir_tutorial import FeatureExtractor
from cbir_tutorial.models import feature_store

feature_store.SHARD_ROWS = 4
paths, cache, kill_at = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
shards = []
atomic = feature_store.atomic_write_bytes

def write_then_die(path, data):
    if path.suffix == ".json":
        if len(shards) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # killed between a shard's .npy and its .json
        shards.append(path)
    atomic(path, data)

feature_store.atomic_write_bytes = write_then_die
FeatureExtractor("efficientnet_lite0", batch_size=4).extract(paths, cache=cache, progress=False)
"""


@pytest.mark.slow
def test_run_killed_with_sigkill_mid_write_resumes_identically(small_batches, shop, reference, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_RUN), ",".join(shop), str(tmp_path), "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    store_folder = next(tmp_path.iterdir())
    assert len(list(store_folder.glob("*.json"))) == 1 and len(list(store_folder.glob("*.npy"))) == 2
    assert len(small_batches.store(tmp_path)) == 4  # the orphan .npy is not trusted
    resumed = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert (resumed.reused, resumed.extracted) == (4, 20)
    np.testing.assert_allclose(resumed.features, reference, rtol=0, atol=1e-6)


def test_added_removed_and_changed_products_extract_only_themselves(small_batches, shop, reference, tmp_path):
    first = small_batches.extract(shop[:20], cache=tmp_path, progress=False)
    assert first.extracted == 20
    added = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert (added.reused, added.extracted) == (20, 4)
    np.testing.assert_allclose(added.features, reference, rtol=0, atol=1e-6)
    removed = small_batches.extract(shop[2:18:3], cache=tmp_path, progress=False)
    assert removed.from_cache
    np.testing.assert_array_equal(removed.features, added.features[2:18:3])

    changed = Path(shop[5])
    original_bytes = changed.read_bytes()
    try:
        changed.write_bytes(Path(shop[6]).read_bytes())
        after = small_batches.extract(shop, cache=tmp_path, progress=False)
        assert (after.reused, after.extracted) == (23, 1)
        np.testing.assert_allclose(after.features[5], reference[6], rtol=0, atol=1e-6)
    finally:
        changed.write_bytes(original_bytes)


def test_unreadable_images_are_remembered_until_their_file_changes(small_batches, shop, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all " * 10)
    paths = [shop[0], str(broken), shop[1]]
    cache = tmp_path / "cache"
    first = small_batches.extract(paths, cache=cache, progress=False)
    again = small_batches.extract(paths, cache=cache, progress=False)
    assert again.from_cache and again.kept.tolist() == [True, False, True]
    assert [(s.path, s.reason) for s in again.skipped] == [(s.path, s.reason) for s in first.skipped]
    broken.write_bytes(Path(shop[2]).read_bytes())
    fixed = small_batches.extract(paths, cache=cache, progress=False)
    assert fixed.kept.all() and fixed.skipped == [] and fixed.extracted == 1


def test_corrupt_shard_or_metadata_is_detected_and_only_its_images_extracted(small_batches, shop, reference,
                                                                             tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(feature_store, "SHARD_ROWS", 8)
    small_batches.extract(shop, cache=tmp_path, progress=False)
    folder = small_batches.store(tmp_path).folder
    npys = sorted(folder.glob("*.npy"))
    assert len(npys) == 3
    data = bytearray(npys[1].read_bytes())
    data[-7] ^= 0xFF  # one flipped byte in a feature value: same size, same shape
    npys[1].write_bytes(bytes(data))
    rebuilt = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert "unusable" in capsys.readouterr().out
    assert (rebuilt.reused, rebuilt.extracted) == (16, 8)
    np.testing.assert_allclose(rebuilt.features, reference, rtol=0, atol=1e-6)

    meta = sorted(folder.glob("*.json"))[0]
    meta.write_text(meta.read_text()[:40])
    again = small_batches.extract(shop, cache=tmp_path, progress=False)
    assert "unusable" in capsys.readouterr().out and again.extracted == 8
    np.testing.assert_allclose(again.features, reference, rtol=0, atol=1e-6)


def test_prune_keeps_only_the_listed_images(small_batches, shop, tmp_path, monkeypatch):
    monkeypatch.setattr(feature_store, "SHARD_ROWS", 8)
    full = small_batches.extract(shop, cache=tmp_path, progress=False)
    store = small_batches.store(tmp_path)
    removed = store.prune(image_key(p) for p in shop[4:12])
    assert removed == 16 and len(store) == 8
    reopened = small_batches.store(tmp_path)
    assert len(reopened) == 8 and len(list(reopened.folder.glob("*.npy"))) == len(reopened.shards)
    kept = small_batches.extract(shop[4:12], cache=tmp_path, progress=False)
    assert kept.from_cache
    np.testing.assert_array_equal(kept.features, full.features[4:12])


def test_format1_caches_are_removed_not_reused(small_batches, shop, tmp_path):
    stem = tmp_path / f"efficientnet_lite0-{'ab' * 12}"
    np.save(stem.with_suffix(".npy"), np.zeros((2, 1280), np.float32))
    stem.with_suffix(".json").write_text(json.dumps({"format": 1, "n": 2}))
    small_batches.extract(shop[:2], cache=tmp_path, progress=False)
    assert not stem.with_suffix(".npy").exists() and not stem.with_suffix(".json").exists()


def test_store_rejects_another_dimension(small_batches, shop, tmp_path, capsys):
    small_batches.extract(shop[:4], cache=tmp_path, progress=False)
    folder = small_batches.store(tmp_path).folder
    assert len(FeatureStore(folder, 2048)) == 0 and "unusable" in capsys.readouterr().out
