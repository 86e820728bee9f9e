"""A catalogue that changes: products added, updated and removed by id on a built engine answer exactly as an
engine built from scratch on the final catalogue, on every exact backend (Milvus Lite and the real server
included); fitted steps stay as fitted until ``refit``; the approximate backends keep their recall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial import SearchEngine
from cbir_tutorial.data.catalogue import Catalogue
from cbir_tutorial.search.filters import Filters
from cbir_tutorial.search.recipes import BASELINE

#: Catalogue rows of the story: built on the first 600, then two deliveries (the second overlaps the first).
START, FIRST, SECOND = np.arange(600), np.arange(600, 700), np.arange(650, 770)
#: Rows whose description changes, rows that get a new photo (that of a row removed at the end), removed rows.
NEW_TEXT, NEW_PHOTO, REMOVED = np.arange(10, 15), np.array([20, 21]), np.r_[30, 31, 40:60]
PHOTO_FROM = np.array([30, 31])


def subset(catalogue: Catalogue, rows, name: str) -> Catalogue:
    return Catalogue(catalogue.table.iloc[rows].reset_index(drop=True), name=name)


def changed_products(sample_catalogue) -> Catalogue:
    """The second delivery, with new descriptions for NEW_TEXT and new photos for NEW_PHOTO."""
    table = sample_catalogue.table.copy()
    table.loc[NEW_TEXT, "description"] = table.loc[NEW_TEXT, "description"] + " (new season)"
    table.loc[NEW_PHOTO, "path"] = table.loc[PHOTO_FROM, "path"].to_numpy()
    return subset(Catalogue(table, name=sample_catalogue.name), np.r_[SECOND, NEW_TEXT, NEW_PHOTO], "delivery 2")


def final_catalogue(sample_catalogue) -> Catalogue:
    """What the shop sells at the end, in the original row order (not the order the engine learned it in)."""
    table = sample_catalogue.table.copy()
    table.loc[NEW_TEXT, "description"] = table.loc[NEW_TEXT, "description"] + " (new season)"
    table.loc[NEW_PHOTO, "path"] = table.loc[PHOTO_FROM, "path"].to_numpy()
    keep = np.setdiff1d(np.arange(len(table)), REMOVED)
    return Catalogue(table.iloc[keep].reset_index(drop=True), name="final")


def living_engine(sample_catalogue, extractor, **build) -> tuple[SearchEngine, list[dict]]:
    """An engine built on START, then two deliveries added and REMOVED taken out; with the counts returned."""
    engine = SearchEngine.build(subset(sample_catalogue, START, "start"), extractor, progress=False, **build)
    counts = [engine.add(subset(sample_catalogue, FIRST, "delivery 1")),
              engine.add(changed_products(sample_catalogue))]
    counts.append({"removed": engine.remove(sample_catalogue.table["id"].to_numpy()[REMOVED])})
    return engine, counts


def assert_same_answers(engine: SearchEngine, rebuilt: SearchEngine, queries, k: int = 10) -> None:
    """Same product ids, in the same order, and distances equal to 1e-6, for every query (product ids)."""
    for product in queries:
        mine, theirs = engine.search_product(product, k), rebuilt.search_product(product, k)
        assert mine["id"].tolist() == theirs["id"].tolist(), product
        np.testing.assert_allclose(mine["distance"], theirs["distance"], atol=1e-6)
        assert mine["description"].tolist() == theirs["description"].tolist()


def queries_of(catalogue: Catalogue) -> list[str]:
    """Every 40th product, and every product that changed."""
    ids = catalogue.table["id"].to_numpy()
    changed = set(ids[NEW_TEXT]) | set(ids[NEW_PHOTO]) if len(ids) > 21 else set()
    return sorted(set(ids[::40]) | changed)


@pytest.fixture(scope="module")
def final(sample_catalogue):
    return final_catalogue(sample_catalogue)


ON_THE_SERVER = pytest.param("milvus-server", marks=[pytest.mark.milvus_server, pytest.mark.xdist_group("milvus_server")])


@pytest.fixture(params=["exact", "faiss-flat", "milvus-lite", ON_THE_SERVER])
def backend(request, tmp_path):
    """``(index name, index options)`` of each exact backend: numpy, FAISS flat, a Milvus Lite file and the real
    Milvus server."""
    if request.param == "faiss-flat":
        pytest.importorskip("faiss")
    if request.param == "milvus-lite":
        pytest.importorskip("milvus_lite")
        return "milvus", {"uri": str(tmp_path / "milvus.db")}
    if request.param == "milvus-server":
        return "milvus", {"uri": request.getfixturevalue("milvus_server")}
    return request.param, {}


def test_adds_updates_and_removes_answer_as_a_rebuild(sample_catalogue, lite_extractor, final, backend):
    name, options = backend
    engine, counts = living_engine(sample_catalogue, lite_extractor, index=name, index_options=options)
    assert counts == [{"added": 100, "updated": 0, "unchanged": 0, "skipped": 0},
                      {"added": 70, "updated": 7, "unchanged": 50, "skipped": 0}, {"removed": 22}]
    assert len(engine) == len(final) == 748 and engine.changes == 100 + 77 + 22
    rebuilt = SearchEngine.build(final, lite_extractor, progress=False, index=name, index_options=options)
    assert sorted(engine.keys.tolist()) == sorted(rebuilt.keys.tolist()) == sorted(engine.index.ids.tolist())
    queries = queries_of(final)
    assert_same_answers(engine, rebuilt, queries[::3] if "://" in options.get("uri", "") else queries)  # server: slow
    photo = sample_catalogue.paths[PHOTO_FROM[0]]  # a removed product's photo is now product 20's
    by_photo = engine.search(photo, 3)
    assert by_photo["id"].iloc[0] == sample_catalogue.table["id"].iloc[NEW_PHOTO[0]]
    pd.testing.assert_frame_equal(by_photo.drop(columns="row"), rebuilt.search(photo, 3).drop(columns="row"),
                                  atol=1e-6)
    shoes = Filters(category=final.table["category"].mode().iloc[0])
    for product in queries_of(final)[:5]:
        found = engine.search_product(product, 10, filters=shoes)
        assert (found["category"] == shoes.category).all()
        assert found["id"].tolist() == rebuilt.search_product(product, 10, filters=shoes)["id"].tolist()


@pytest.mark.parametrize("backend", ["exact", "faiss-flat", "milvus-lite"], indirect=True)
def test_a_changed_engine_saves_and_reopens_with_its_changes(sample_catalogue, lite_extractor, backend, tmp_path):
    """(The server's rows reopen in a fresh process in test_milvus_reopen.py.)"""
    name, options = backend
    engine, _ = living_engine(sample_catalogue, lite_extractor, index=name, index_options=options)
    folder = engine.save(tmp_path / "engine")
    again = SearchEngine.load(folder, extractor=lite_extractor, index_uri=options.get("uri"))
    assert again.changes == engine.changes and len(again) == len(engine)
    assert again.info()["changes_since_fit"] == engine.changes
    assert_same_answers(again, engine, queries_of(engine.catalogue)[:10])
    assert again.add(subset(sample_catalogue, SECOND[:10], "again")) == {
        "added": 0, "updated": 0, "unchanged": 10, "skipped": 0}  # nothing changed: nothing written


def test_unknown_ids_are_named_and_nothing_is_removed(sample_engine, lite_extractor, sample_catalogue):
    engine = SearchEngine.build(subset(sample_catalogue, START, "start"), lite_extractor, progress=False)
    ids = engine.catalogue.table["id"].tolist()
    with pytest.raises(KeyError, match=r"2 product id\(s\) not in the engine: nope, 99999999; nothing was removed"):
        engine.remove([ids[0], "nope", "99999999"])
    assert len(engine) == 600 and len(engine.index) == 600 and engine.changes == 0
    with pytest.raises(ValueError, match=r"product ids must be unique; 1 appear more than once, e.g. " + ids[3]):
        engine.add(subset(sample_catalogue, [3, 3, 700], "twice"))
    assert len(engine) == 600


def test_a_fitted_whitening_is_kept_until_refit(sample_catalogue, lite_extractor, final):
    recipe = BASELINE.changed(name="whitened", whiten_dim=64, whiten_power=0.5)
    engine, _ = living_engine(sample_catalogue, lite_extractor, recipe=recipe)
    first = SearchEngine.build(subset(sample_catalogue, START, "start"), lite_extractor, recipe=recipe, progress=False)
    np.testing.assert_array_equal(engine.pipeline.whitening.state()["mean"], first.pipeline.whitening.state()["mean"])
    product = final.table["id"].iloc[650]  # added after the fit: projected with the fitted whitening
    raw = lite_extractor.extract([final.paths[650]], progress=False).features
    expected = first.pipeline.transform([raw])[0]
    np.testing.assert_allclose(engine.features[engine.row_of(product)], expected, atol=1e-6)
    refitted = engine.refit()
    assert refitted.changes == 0 and engine.changes == 199
    rebuilt = SearchEngine.build(final, lite_extractor, recipe=recipe, progress=False)
    assert_same_answers(refitted, rebuilt, queries_of(final))


@pytest.mark.parametrize("backend", ["exact", "faiss-flat", "milvus-lite"], indirect=True)
def test_dba_and_query_expansion_follow_the_changes_on_every_backend(sample_catalogue, lite_extractor, final, backend,
                                                                     tmp_path):
    """DBA depends on everyone's neighbours: each change refits it and replaces every stored vector that moved
    (not only the changed products'), so the changed engine stores and answers what a rebuild does; αQE
    searches the backend twice; a saved engine reopens with its DBA."""
    name, options = backend
    recipe = BASELINE.changed(name="expanded", dba_n=1, qe_n=2)
    engine, _ = living_engine(sample_catalogue, lite_extractor, recipe=recipe, index=name, index_options=options)
    rebuilt = SearchEngine.build(final, lite_extractor, recipe=recipe, progress=False, index=name,
                                 index_options=options)
    assert engine.index.name == name and engine.pipeline.expansion.dba_n == 1
    keys = np.sort(rebuilt.keys)
    np.testing.assert_allclose(engine.index.vectors(keys), rebuilt.index.vectors(keys), atol=1e-6)
    np.testing.assert_allclose(engine.features[np.argsort(engine.keys)], rebuilt.features[np.argsort(rebuilt.keys)],
                               atol=1e-6)  # the un-augmented vectors
    assert not np.allclose(engine.index.vectors(keys), engine.vectors_of(keys), atol=1e-3)  # DBA moved them
    assert_same_answers(engine, rebuilt, queries_of(final))
    shoes = Filters(category=final.table["category"].mode().iloc[0])
    for product in queries_of(final)[:4]:  # a filter limits what is returned, not what DBA and αQE expand with
        everything = engine.search_product(product, len(engine))
        expected = everything[everything["category"] == shoes.category].head(10)
        found = engine.search_product(product, 10, filters=shoes)
        assert found["id"].tolist() == expected["id"].tolist()
        np.testing.assert_allclose(found["distance"], expected["distance"], atol=1e-6)
    again = SearchEngine.load(engine.save(tmp_path / "engine"), extractor=lite_extractor, index_uri=options.get("uri"))
    assert_same_answers(again, engine, queries_of(final)[:8])


@pytest.mark.parametrize("name, options", [("faiss-ivf", {"nlist": 8, "nprobe": 4}), ("faiss-hnsw", {})])
def test_approximate_backends_keep_their_recall_after_changes(sample_catalogue, lite_extractor, final, name, options):
    pytest.importorskip("faiss")
    engine, _ = living_engine(sample_catalogue, lite_extractor, index=name, index_options=options)
    exact = SearchEngine.build(final, lite_extractor, progress=False)
    recalls = [len(set(engine.search_product(p, 10)["id"]) & set(exact.search_product(p, 10)["id"])) / 10
               for p in queries_of(final)]
    assert np.mean(recalls) >= 0.9, (name, np.mean(recalls))


@pytest.mark.slow
def test_refit_returns_a_new_engine_with_the_same_weights_and_options(sample_catalogue):
    """GeM pooling on random weights with letterboxed photos: the refitted engine keeps all three (a refit that
    fell back to the defaults would run ImageNet weights on squashed photos)."""
    small = subset(sample_catalogue, np.arange(0, 770, 30), "small")
    engine = SearchEngine.build(small, "efficientnet_lite0", "random", recipe="gem", resize="pad", progress=False)
    engine.remove(small.table["id"].iloc[:2])
    refitted = engine.refit()
    assert refitted is not engine and engine.changes == 2 and refitted.changes == 0 and len(refitted) == len(engine)
    for old, new in zip(engine.pipeline.extractors, refitted.pipeline.extractors):
        assert (type(new), new.weights, new.resize, new.pooling) == (type(old), old.weights, old.resize, old.pooling)
    np.testing.assert_allclose(refitted.features, engine.features, atol=1e-6)  # nothing whitened: same vectors


def test_an_index_refuses_product_ids_where_it_keys_by_int64(sample_engine):
    ids = sample_engine.catalogue.table["id"].iloc[:3].tolist()
    with pytest.raises(ValueError, match=r"Filters\(ids=\.\.\.\) holds product ids, and an index keys its vectors by "
                                         r"int64 keys: filter through SearchEngine.search"):
        sample_engine.index.search(sample_engine.features[0], 5, filters=Filters(ids=ids))
    with pytest.raises(ValueError, match=r"Filters\(ids=\.\.\.\) holds product ids, and Milvus keys its vectors"):
        Filters(ids=ids).milvus_expression()  # digits, yet not the keys: it would match nothing
    found = sample_engine.search(0, 5, filters=Filters(ids=ids))  # the engine converts them
    assert set(found["id"]) == set(ids[1:])
