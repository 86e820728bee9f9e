"""The search engine on the real sample: a query (a catalogue row, a photo, a vector) gives a table of products,
nearest first; a saved engine reopens, wherever its folder is, and answers identically."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial import SearchEngine
from cbir_tutorial.data.catalogue import Catalogue
from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.engine import ENGINE_FILE, RESULT_COLUMNS


@pytest.fixture(scope="module")
def priced_engine(sample_engine, priced_table):
    """The sample engine's pipeline and features over the sample with prices (the sample has none)."""
    return SearchEngine(Catalogue(priced_table, name="priced sample"), sample_engine.pipeline,
                        make_index("exact", sample_engine.features, sample_engine.keys, priced_table))


@pytest.fixture(scope="module")
def lonely_row(sample_engine) -> int:
    """A catalogue row with no near-duplicate photo (its nearest other product is more than 0.1 away)."""
    nearest = sample_engine.index.search_stored(sample_engine.keys, 1)[0][:, 0]  # in catalogue order
    return int(np.flatnonzero(nearest > 0.1)[0])


def test_a_catalogue_row_gives_k_other_products_nearest_first(priced_engine, features):
    row = 40
    results = priced_engine.search(row, k=10)
    assert list(results.columns) == RESULT_COLUMNS and len(results) == 10
    assert results["rank"].tolist() == list(range(1, 11))
    assert row not in results["row"].tolist() and results["distance"].is_monotonic_increasing
    expected = np.linalg.norm(features[results["row"]] - features[row], axis=1)
    np.testing.assert_allclose(results["distance"], expected, atol=1e-3)
    keys = priced_engine.keys  # equal distances (duplicate photos) rank the lower product key first
    by_hand = np.lexsort((keys, np.linalg.norm(features - features[row], axis=1)))[1:11]
    assert results["row"].tolist() == by_hand.tolist()
    table = priced_engine.catalogue.table.iloc[results["row"]]
    for column in ("id", "brand", "description", "price", "category", "path"):
        assert results[column].tolist() == table[column].tolist(), column
    assert results["price"].str.startswith("€").any()  # the products' own display prices


def test_a_catalogue_row_includes_itself_only_when_asked(sample_engine):
    with_self = sample_engine.search(40, k=5, exclude_self=False)
    assert with_self["row"].iloc[0] == 40 and with_self["distance"].iloc[0] == pytest.approx(0.0, abs=1e-3)
    assert with_self["row"].iloc[1:].tolist() == sample_engine.search(40, k=4)["row"].tolist()


def test_a_catalogue_photo_finds_itself_first_then_its_neighbours(sample_engine, lonely_row):
    path = sample_engine.catalogue.paths[lonely_row]
    by_photo = sample_engine.search(path, k=6)
    assert list(by_photo.columns) == RESULT_COLUMNS and by_photo["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert by_photo["row"].iloc[0] == lonely_row and by_photo["path"].iloc[0] == path
    assert by_photo["distance"].iloc[0] < 1e-3 and by_photo["distance"].is_monotonic_increasing
    by_row = sample_engine.search(lonely_row, k=5)
    assert by_photo["id"].iloc[1:].tolist() == by_row["id"].tolist()
    np.testing.assert_allclose(by_photo["distance"].iloc[1:], by_row["distance"], atol=1e-3)


def test_a_photo_given_as_bytes_or_a_feature_vector_answers_like_its_path(sample_engine, features):
    path = sample_engine.catalogue.paths[123]
    by_path = sample_engine.search(path, k=5)
    with open(path, "rb") as file:
        by_bytes = sample_engine.search(file.read(), k=5)
    pd.testing.assert_frame_equal(by_bytes, by_path)
    by_vector = sample_engine.search(features[123], k=5)
    assert by_vector["row"].tolist() == sample_engine.search(123, k=5, exclude_self=False)["row"].tolist()
    assert sample_engine.query_features(path).shape == (features.shape[1],)
    np.testing.assert_allclose(sample_engine.query_features(path), features[123], atol=1e-4)


def test_k_beyond_the_catalogue_gives_every_other_product(sample_engine):
    results = sample_engine.search(0, k=5000)
    assert len(results) == len(sample_engine) - 1 and 0 not in results["row"].tolist()
    assert sorted(results["row"]) == list(range(1, len(sample_engine)))


def test_engine_holds_one_copy_of_the_gallery(sample_engine):
    """The index's float32 gallery is the only copy: the engine reads catalogue-ordered features from it."""
    assert np.shares_memory(sample_engine.index.vectors(), sample_engine.index.gallery)
    assert not any(isinstance(value, np.ndarray) and value.ndim == 2 for value in vars(sample_engine).values())
    row = int(sample_engine.index.rows_of(sample_engine.keys[[5]])[0])
    np.testing.assert_array_equal(sample_engine.query_features(5), sample_engine.index.gallery[row])
    np.testing.assert_array_equal(sample_engine.features[5], sample_engine.index.gallery[row])


def test_engine_saves_and_reopens_without_extraction(sample_engine, tmp_path):
    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline,
                          make_index("exact", sample_engine.features, sample_engine.keys, dtype="int8"))
    folder = engine.save(tmp_path / "engine")
    engine.save(folder)  # replacing a saved engine is allowed, atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine"]
    again = SearchEngine.load(folder)  # extractor rebuilt from the saved backbone and weights
    assert again.extractor.backbone == "efficientnet_lite0" and again.extractor.weights == "imagenet"
    assert again.catalogue.table.equals(engine.catalogue.table) and again.catalogue.name == engine.catalogue.name
    pd.testing.assert_frame_equal(again.search(40, 10), engine.search(40, 10))
    path = sample_engine.catalogue.paths[40]
    pd.testing.assert_frame_equal(again.search(path, 10), engine.search(path, 10))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a saved engine"):
        engine.save(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="engine.json is missing"):
        SearchEngine.load(tmp_path / "nowhere")


def test_a_saved_engine_answers_identically_from_a_moved_folder_and_when_saved_again(sample_engine, tmp_path):
    photo = sample_engine.catalogue.paths[300]
    expected = {query: sample_engine.search(query, 8) for query in (300, photo)}
    first = sample_engine.save(tmp_path / "first")
    (tmp_path / "moved").mkdir()
    moved = shutil.move(first, tmp_path / "moved" / "engine")  # a folder sent elsewhere
    reopened = SearchEngine.load(moved, extractor=sample_engine.extractor)
    saved_again = SearchEngine.load(reopened.save(tmp_path / "fresh"), extractor=sample_engine.extractor)
    for engine in (reopened, saved_again):
        assert len(engine) == len(sample_engine) and engine.recipe == sample_engine.recipe
        for query, results in expected.items():
            pd.testing.assert_frame_equal(engine.search(query, 8), results)
    assert (tmp_path / "fresh" / ENGINE_FILE).is_file() and not first.exists()


def test_saving_over_an_engine_never_leaves_the_folder_missing_nor_old_temporaries(sample_engine, tmp_path,
                                                                                   monkeypatch):
    """A killed save left ``.engine.<dead pid>.tmp``: the next save removes it (not a live process's), and
    the folder always holds a whole engine while it is replaced."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "engine"
    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline,
                          make_index("exact", sample_engine.features, sample_engine.keys))
    engine.save(folder)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = tmp_path / f".engine.{int(finished.stdout)}.tmp", tmp_path / f".engine.{os.getppid()}.tmp"
    for leftover in (dead, alive):
        (leftover / "index").mkdir(parents=True)
    seen = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replace(a, b), seen.append((folder / ENGINE_FILE).is_file())))
    small = sample_engine.catalogue.subset(np.arange(100))
    SearchEngine(small, sample_engine.pipeline,
                 make_index("exact", sample_engine.features[:100], sample_engine.keys[:100])).save(folder)
    monkeypatch.undo()
    assert all(seen) and len(SearchEngine.load(folder, extractor=sample_engine.extractor)) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["engine", alive.name])


def test_search_errors_name_the_argument(sample_engine):
    with pytest.raises(ValueError, match=r"^k=0: must be at least 1$"):
        sample_engine.search(3, k=0)
    with pytest.raises(ValueError, match=r"^queries have 7 dimensions, the index has 1280$"):
        sample_engine.search(np.zeros(7, dtype=np.float32))
    for row in (-1, 770):
        with pytest.raises(IndexError, match=rf"^row {row} is not a catalogue row: the engine holds 770 products, "
                                             r"rows 0 to 769 \(to search by product id, use search_product\)$"):
            sample_engine.search(row)
    with pytest.raises(KeyError, match=r"product id 'no such id' is not in the engine \(770 products\)"):
        sample_engine.search_product("no such id")
    with pytest.raises(ValueError, match=r"^catalogue 'fashion-sample' has 770 products but the index holds 100 "
                                         r"vectors of other products"):
        SearchEngine(sample_engine.catalogue, sample_engine.pipeline,
                     make_index("exact", sample_engine.features[:100], sample_engine.keys[:100]))
    with pytest.raises(ValueError, match=r"the index holds 770 vectors of other products"):
        SearchEngine(sample_engine.catalogue, sample_engine.pipeline, make_index("exact", sample_engine.features))


def test_build_errors_name_the_argument(sample_catalogue, lite_extractor, tmp_path):
    with pytest.raises(ValueError, match="^recipe='fastest' is neither a recipe nor a trained model's folder"):
        SearchEngine.build(sample_catalogue, lite_extractor, recipe="fastest", progress=False)
    with pytest.raises(ValueError, match="^index='annoy' is not known; use one of: exact, faiss-flat"):
        SearchEngine.build(sample_catalogue, lite_extractor, index="annoy", progress=False)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    table = pd.DataFrame({"id": ["a"], "path": [str(broken)], "description": "", "brand": "", "price": "",
                          "category": ""})
    with pytest.raises(ValueError, match="(?s)^No readable image in catalogue 'nothing readable':\n.*broken.jpg"):
        SearchEngine.build(Catalogue(table, name="nothing readable"), lite_extractor, cache=False, progress=False)


@pytest.mark.parametrize("written", [{"version": 3, "pipeline": {}}, {"rows": 770}, ["not", "a", "dict"]])
def test_an_engine_saved_in_another_format_is_refused_naming_the_file(sample_engine, tmp_path, written):
    import json

    folder = sample_engine.save(tmp_path / "engine")
    (folder / ENGINE_FILE).write_text(json.dumps(written))
    with pytest.raises(ValueError, match=r"engine\.json: an engine saved in format .*this version reads format 4: "
                                         r"build the engine again"):
        SearchEngine.load(folder)
