"""The Milvus backend against Milvus Lite and a real Milvus server (``milvus_uri``: both): the same answers
as exact search, with filters; a collection belongs to one engine, and a saved engine reopens only where
the caller says and only while the collection holds its rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import make_index
from top_k import QUERIES, assert_same_top_k


@pytest.fixture(scope="module")
def milvus(features, priced_table, milvus_uri):
    """The sample's rows in a FLAT (exact) collection named for this test process."""
    from cbir_tutorial.search.milvus_index import MilvusIndex

    index = MilvusIndex.build(features, metadata=priced_table, uri=milvus_uri, collection=f"sample_{os.getpid()}")
    yield index
    index.close()


def test_milvus_matches_numpy_with_filters_and_expressions(features, priced_table, milvus):
    from cbir_tutorial.search.filters import Filters

    exact = make_index("exact", features)
    queries = features[QUERIES]
    assert len(milvus) == len(features)
    assert_same_top_k(milvus.search(queries, 10, exclude=QUERIES), exact.search(queries, 10, exclude=QUERIES))
    allowed = np.arange(len(features)) % 3 == 0
    assert_same_top_k(milvus.search(queries, 10, allowed=allowed), exact.search(queries, 10, allowed=allowed))
    for filters in (Filters(gender="Women"), Filters(category="Watches", price=(100.0, 700.0)),
                    Filters(gender="Men", category="Tshirts", price=(0.0, 500.0))):
        mask = filters.mask(priced_table)
        assert 10 < mask.sum() < len(mask)
        found = milvus.search(queries, 10, exclude=QUERIES, where=filters.milvus_expression())
        assert mask[found[1]].all()
        assert_same_top_k(found, exact.search(queries, 10, exclude=QUERIES, allowed=mask))
    np.testing.assert_array_equal(milvus.vectors([3, 700]), features[[3, 700]])


def test_milvus_lite_batches_are_cut_to_bound_its_memory(features, tmp_path, monkeypatch):
    import cbir_tutorial.search.milvus_index as milvus_module

    assert not milvus_module.is_lite("http://localhost:19530")
    lite = milvus_module.MilvusIndex.build(features, uri=str(tmp_path / "cut.db"))
    assert milvus_module.is_lite(lite.uri)
    queries = features[QUERIES]
    whole = lite.search(queries, 10, exclude=QUERIES)
    requests = []
    search = lite.client.search
    monkeypatch.setattr(lite.client, "search", lambda *a, **kw: requests.append(len(kw["data"])) or search(*a, **kw))
    monkeypatch.setattr(milvus_module, "LITE_SEARCH_BYTES", 3 * 4 * len(lite) * lite.dim)  # 3 queries a request
    cut = lite.search(queries, 10, exclude=QUERIES)
    lite.close()
    assert max(requests) == 3 and sum(requests) == len(queries)
    np.testing.assert_array_equal(cut[1], whole[1])
    np.testing.assert_allclose(cut[0], whole[0])


def test_engine_saved_with_milvus_reopens_where_the_caller_says(sample_engine, milvus, tmp_path):
    from cbir_tutorial import SearchEngine

    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline, milvus)
    folder = engine.save(tmp_path / "engine")
    index_json = folder / "index" / "index.json"
    with pytest.raises(ValueError) as refused:  # the folder's own uri is not followed unasked
        SearchEngine.load(folder, extractor=sample_engine.extractor)
    assert str(refused.value) == (f"{index_json} says the rows are in the Milvus database {milvus.uri}, which is not "
                                  "reopened unasked: pass index_uri= (CLI: --index-uri) with the database to use")
    again = SearchEngine.load(folder, extractor=sample_engine.extractor, index_uri=milvus.uri)
    assert again.index.get_config() == milvus.get_config()
    pd.testing.assert_frame_equal(again.search(12, 10), engine.search(12, 10))
    pd.testing.assert_frame_equal(again.search(12, 10), sample_engine.search(12, 10), check_exact=False, atol=1e-5)


def test_a_sent_folder_never_creates_a_database_where_it_says(sample_engine, milvus, tmp_path):
    from cbir_tutorial import SearchEngine

    folder = SearchEngine(sample_engine.catalogue, sample_engine.pipeline, milvus).save(tmp_path / "sent")
    config = json.loads((folder / "index" / "index.json").read_text())
    elsewhere = tmp_path / "not-asked-for" / "other.db"
    (folder / "index" / "index.json").write_text(json.dumps({**config, "uri": str(elsewhere)}))
    with pytest.raises(ValueError, match="which is not reopened unasked: pass index_uri="):
        SearchEngine.load(folder, extractor=sample_engine.extractor)
    assert not elsewhere.parent.exists()


def milvus_engine(catalogue, features, sample_engine, options):
    """An engine over ``catalogue`` with the sample engine's pipeline and ``features`` in a Milvus index."""
    from cbir_tutorial import SearchEngine

    return SearchEngine(catalogue, sample_engine.pipeline,
                        make_index("milvus", features, metadata=catalogue.table, **options))


def _halves(sample_engine):
    """Two catalogues of 385 products each (even rows, odd rows) with their features."""
    features = sample_engine.features
    return [(sample_engine.catalogue.subset(rows), features[rows])
            for rows in (np.arange(0, 770, 2), np.arange(1, 770, 2))]


def test_an_engine_keeps_answering_with_its_own_products_after_another_catalogue_is_indexed(
        sample_engine, milvus_uri, tmp_path):
    """Both with the default collection names; on Milvus Lite in the cache's default database, reopened
    without an ``index_uri``."""
    from cbir_tutorial import SearchEngine

    lite = "://" not in milvus_uri
    options = {} if lite else {"uri": milvus_uri}
    reopen = {} if lite else {"index_uri": milvus_uri}
    (first, first_features), (second, second_features) = _halves(sample_engine)
    engine = milvus_engine(first, first_features, sample_engine, options)
    before = engine.search(5, 3)
    folder = engine.save(tmp_path / "first")
    engine.index.close()
    other = milvus_engine(second, second_features, sample_engine, options)
    assert other.index.collection != engine.index.collection
    assert set(other.search(5, 3)["id"]).isdisjoint(first.table["id"])
    other.index.close()
    again = SearchEngine.load(folder, extractor=sample_engine.extractor, **reopen)
    pd.testing.assert_frame_equal(again.search(5, 3), before)
    assert set(again.search(5, 3)["id"]) <= set(first.table["id"])
    again.index.close()


def test_a_collection_replaced_by_another_build_is_refused(sample_engine, milvus_uri, tmp_path):
    from cbir_tutorial import SearchEngine

    (first, first_features), (second, second_features) = _halves(sample_engine)
    shared = {"uri": milvus_uri, "collection": f"shared_{os.getpid()}"}
    engine = milvus_engine(first, first_features, sample_engine, shared)
    folder = engine.save(tmp_path / "first")
    milvus_engine(second, second_features, sample_engine, shared)
    name = shared["collection"]
    with pytest.raises(ValueError) as refused:
        SearchEngine.load(folder, extractor=sample_engine.extractor, index_uri=milvus_uri)
    assert str(refused.value) == (f"Milvus collection {name!r} at {milvus_uri} no longer holds the 385 rows saved in "
                                  f"{folder / 'index'} (another build replaced or changed it); build the engine "
                                  f"saved in {folder} again")
    with pytest.raises(ValueError) as not_saved:  # nor is the first engine saved again over the other's rows
        engine.save(tmp_path / "first-again")
    assert str(not_saved.value) == (f"Milvus collection {name!r} at {milvus_uri} no longer holds this index's rows "
                                    "(another build replaced or changed it): build the engine again, then save it")
    assert not (tmp_path / "first-again").exists()
    engine.index.client.drop_collection(name)
    with pytest.raises(ValueError) as gone:
        SearchEngine.load(folder, extractor=sample_engine.extractor, index_uri=milvus_uri)
    assert str(gone.value) == (f"Milvus collection {name!r} does not exist at {milvus_uri}; build the engine saved "
                               f"in {folder} again")


HOLD = """
import sys, time
from pymilvus import MilvusClient
MilvusClient(sys.argv[1]).list_collections()
print("holding", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held_lite_file(tmp_path):
    """A Milvus Lite file that another process holds open (as a second run would find it)."""
    import importlib.util

    if importlib.util.find_spec("pymilvus") is None or importlib.util.find_spec("milvus_lite") is None:
        pytest.skip('pymilvus / milvus-lite not installed (pip install ".[scale]")')
    path = tmp_path / "busy.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdout.readline() == "holding\n"
        yield path
    finally:
        holder.kill()
        holder.wait()


def test_a_milvus_lite_file_in_use_is_one_line(held_lite_file, sample_dir, features, capsys):
    from cbir_tutorial.cli import main
    from cbir_tutorial.search.milvus_index import MilvusIndex

    message = (f"Milvus Lite file {held_lite_file} cannot be opened: another process is using it (one process at a "
               "time); wait for it to finish, or use another .db file or a Milvus server (--index-uri)")
    with pytest.raises(RuntimeError) as refused:
        MilvusIndex.build(features, uri=str(held_lite_file))
    assert str(refused.value) == message
    capsys.readouterr()
    assert main(["evaluate", "--catalogue", str(sample_dir), "--format", "fashion-products", "--backbone",
                 "efficientnet_lite0", "--limit", "60", "--index", "milvus", "--index-uri", str(held_lite_file)]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_milvus_server_that_does_not_answer_is_one_line(features):
    import importlib.util
    import socket

    if importlib.util.find_spec("pymilvus") is None:
        pytest.skip('pymilvus is not installed (pip install ".[scale]")')
    from cbir_tutorial.search.milvus_index import MilvusIndex

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(RuntimeError) as refused:
        MilvusIndex.build(features, uri=f"http://{host}")
    assert str(refused.value) == (f"Milvus server http://{host} cannot be reached (Fail connecting to server on {host}, "
                                  "illegal connection params or server unavailable): start it or check --index-uri")
