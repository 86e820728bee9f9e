"""The Milvus backend against Milvus Lite and a real Milvus server (``milvus_uri``: both for changes, filters and
reopening; Lite alone where the server would run the same client calls again, a flush taking it seconds): vectors
under int64 ids give the same answers as exact search in numpy, through adds, replacements, removals and filters; a collection
belongs to one index, and a saved index reopens only where the caller says and only while the collection holds
its ids and vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import suppress

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import load_index, make_index
from cbir_tutorial.search.filters import Filters, filter_table

DIM = 32
CATEGORIES = ("Watches", "Tshirts", "Shoes")


def sample(n: int, seed: int = 0, first_id: int = 1000):
    """``(vectors, ids, table)``: ``n`` random unit vectors under the ids ``first_id + 7 i`` (not contiguous),
    and a product table for filters (some prices unknown)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = first_id + 7 * np.arange(n, dtype=np.int64)
    table = pd.DataFrame({"brand": rng.choice(["Puma", "Nike"], n), "category": rng.choice(CATEGORIES, n),
                          "gender": rng.choice(["Men", "Women"], n),
                          "price": [("" if i % 11 == 0 else f"€{10 + (i * 37) % 981:,}") for i in range(n)]})
    return vectors, ids, table


def numpy_search(vectors, ids, queries, k, exclude_ids=None, keep=None):
    """The exact answer, computed here in float64: ``(distances, ids)``, nearest first, ties by the lower id,
    as wide as the rows a query may return (``k``, or fewer when the rows passing ``keep``, less an excluded
    one, are fewer)."""
    d2 = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    allowed = np.ones(len(ids), dtype=bool) if keep is None else keep
    d2[:, ~allowed] = np.inf
    count = int(allowed.sum())
    if exclude_ids is not None:
        d2[ids[None, :] == exclude_ids[:, None]] = np.inf
        count -= int(np.isin(exclude_ids, ids[allowed]).any())
    order = np.lexsort((np.broadcast_to(ids, d2.shape), d2), axis=1)[:, :min(k, count)]
    return np.sqrt(np.take_along_axis(d2, order, axis=1)), ids[order]


def assert_same(found, reference):
    """The same ids at the same ranks, distances within 1e-5."""
    np.testing.assert_array_equal(found[1], reference[1])
    np.testing.assert_allclose(found[0], reference[0], atol=1e-5)


@pytest.fixture
def opened():
    """A list to put the Milvus indexes a test opens in; their collections are dropped at its end."""
    indexes = []
    yield indexes
    for index in indexes:
        with suppress(Exception):  # closed by the test, or dropped already
            index.client.drop_collection(index.collection)
        with suppress(Exception):
            index.close()


def count_in_milvus(index) -> int:
    """How many rows the collection holds, as Milvus counts them (``count(*)``: without deleted rows)."""
    return int(index.client.query(index.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


@pytest.mark.parametrize("milvus_uri", ["lite"], indirect=True)  # the same code on the server: see above
def test_vectors_are_stored_under_their_ids_and_searched_as_in_numpy(milvus_uri, opened):
    vectors, ids, table = sample(60)
    index = make_index("milvus", vectors, ids=ids, metadata=table, uri=milvus_uri)
    opened.append(index)
    assert index.name == "milvus" and len(index) == 60 and index.dim == DIM
    np.testing.assert_array_equal(index.ids, ids)
    assert index.ids.dtype == np.int64
    queries = vectors[::6] + 0.01
    assert_same(index.search(queries, 10), numpy_search(vectors, ids, queries, 10))
    excluded = ids[::6]
    found = index.search(vectors[::6], 10, exclude_ids=excluded)
    assert not (found[1] == excluded[:, None]).any()
    assert_same(found, numpy_search(vectors, ids, vectors[::6], 10, excluded))
    one = index.search(vectors[3], 4, exclude_ids=[ids[3]])
    assert one[1].shape == (4,) and one[1][0] != ids[3]
    np.testing.assert_array_equal(index.vectors([ids[7], ids[2]]), vectors[[7, 2]])
    np.testing.assert_array_equal(index.vectors(), vectors)
    with pytest.raises(KeyError, match=r"1 id\(s\) not in Milvus collection .*: 1001; nothing was changed"):
        index.vectors([ids[0], 1001])
    distances, found = index.search_stored(ids[:5], 3)
    assert_same((distances, found), numpy_search(vectors, ids, vectors[:5], 3, ids[:5]))


def test_adds_replacements_and_removals_give_the_answers_of_numpy_and_of_a_fresh_index(milvus_uri, opened):
    from cbir_tutorial.search.milvus_index import MilvusIndex

    vectors, ids, table = sample(80, seed=1)
    index = make_index("milvus", vectors[:50], ids=ids[:50], metadata=table[:50], uri=milvus_uri)
    opened.append(index)
    index.add(vectors[50:], ids[50:], table[50:])  # new ids
    assert len(index) == 80
    replaced = np.random.default_rng(2).normal(size=(5, DIM)).astype(np.float32)
    index.add(replaced, ids[[4, 20, 60, 61, 79]], table.iloc[[4, 20, 60, 61, 79]])  # ids already stored
    vectors[[4, 20, 60, 61, 79]] = replaced
    assert len(index) == 80 and count_in_milvus(index) == 80
    np.testing.assert_array_equal(index.vectors(ids[[4, 60]]), replaced[[0, 2]])
    assert_same(index.search(replaced, 1), (np.zeros((5, 1)), ids[[4, 20, 60, 61, 79], None]))

    removed = ids[[0, 4, 33, 34, 70]]
    index.remove(removed)
    kept = ~np.isin(ids, removed)
    assert len(index) == 75 and count_in_milvus(index) == 75  # the count right after a delete
    np.testing.assert_array_equal(index.ids, ids[kept])
    view = MilvusIndex(DIM, uri=milvus_uri, collection=index.collection, create=False)  # what Milvus lists
    assert len(view) == 75
    np.testing.assert_array_equal(view.ids, ids[kept])
    view.close()
    with pytest.raises(KeyError) as unknown:
        index.remove([ids[1], 999_999, ids[0]])  # 999999 was never stored, ids[0] is removed
    assert unknown.value.args[0] == (f"2 id(s) not in Milvus collection {index.collection!r} at {milvus_uri}: "
                                  "999999, 1000; nothing was changed")
    assert len(index) == 75 and count_in_milvus(index) == 75 and ids[1] in index.ids

    queries = np.concatenate([vectors[[0, 4]], vectors[kept][::7] + 0.01])  # two removed vectors as queries
    found = index.search(queries, 12)
    assert not np.isin(found[1], removed).any()
    reference = numpy_search(vectors[kept], ids[kept], queries, 12)
    assert_same(found, reference)
    fresh = make_index("milvus", vectors[kept], ids=ids[kept], metadata=table[kept], uri=milvus_uri)
    opened.append(fresh)
    assert_same(fresh.search(queries, 12), found)
    excluded = np.where(np.arange(len(queries)) % 2 == 0, ids[kept][0], -1)
    assert_same(index.search(queries, 12, exclude_ids=excluded),
                numpy_search(vectors[kept], ids[kept], queries, 12, excluded))
    np.testing.assert_array_equal(index.vectors(), vectors[kept])

    index.remove(index.ids[5:])  # 5 left: a search of k=10 has 5 columns, 4 when it leaves a stored id out
    assert len(index) == count_in_milvus(index) == 5
    assert index.search(queries, 10)[1].shape == (len(queries), 5)
    assert index.search(queries, 10, exclude_ids=np.full(len(queries), -1))[1].shape == (len(queries), 5)
    left_out = index.search(queries[:2], 10, exclude_ids=[index.ids[0], -1])
    assert_same(left_out, numpy_search(index.vectors(), index.ids, queries[:2], 10,
                                       np.array([index.ids[0], -1])))
    assert left_out[1].shape == (2, 4)
    index.remove(index.ids)
    assert len(index) == 0 and count_in_milvus(index) == 0
    assert index.search(queries, 10)[1].shape == (len(queries), 0)


def test_filters_return_only_the_ids_that_pass(milvus_uri, opened):
    vectors, ids, table = sample(90, seed=3)
    index = make_index("milvus", vectors, ids=ids, metadata=table, uri=milvus_uri)
    opened.append(index)
    fields = filter_table(table, len(table))
    queries, excluded = vectors[::9], ids[::9]
    for filters in (Filters(category="Watches"), Filters(ids=ids[5:40:3]), Filters(gender="Women"),
                    Filters(category="Shoes", price=(100.0, 700.0)), Filters(gender="men", ids=ids[::2])):
        keep = filters.mask(fields, ids)
        assert 5 < keep.sum() < len(ids), filters
        found = index.search(queries, 10, exclude_ids=excluded, filters=filters)
        assert np.isin(found[1], ids[keep]).all(), filters
        assert_same(found, numpy_search(vectors, ids, queries, 10, excluded, keep))
    few = Filters(ids=ids[[3, 50, 51]])  # fewer pass than k: as wide as the rows that pass
    found = index.search(queries, 10, filters=few)
    assert found[1].shape == (len(queries), 3) and set(found[1].ravel()) == set(ids[[3, 50, 51]])
    assert index.search(queries, 10, exclude_ids=np.full(len(queries), ids[50]), filters=few)[1].shape[1] == 2
    assert index.search(queries, 10, filters=Filters(ids=[]))[1].shape == (len(queries), 0)
    assert index.search(queries, 10, filters=Filters(category="Nothing"))[1].shape == (len(queries), 0)


@pytest.mark.parametrize("milvus_uri", ["lite"], indirect=True)  # the same code on the server: see above
def test_each_new_index_gets_a_collection_of_its_own(milvus_uri, opened):
    """Two builds never share a collection (the default Milvus Lite database too, which reopens unasked)."""
    options = {} if "://" not in milvus_uri else {"uri": milvus_uri}  # Lite: the cache's default database
    first = make_index("milvus", *sample(20, seed=4)[:2], **options)
    opened.append(first)
    second = make_index("milvus", *sample(20, seed=4)[:2], **options)  # the same vectors and ids
    opened.append(second)
    assert first.collection != second.collection and first.collection.startswith("cbir_")
    second.remove(second.ids[:10])
    assert len(first) == count_in_milvus(first) == 20 and len(second) == 10


def test_a_saved_index_reopens_after_changes_and_not_once_changed_behind_its_back(milvus_uri, opened, tmp_path):
    from pymilvus import MilvusClient

    vectors, ids, table = sample(70, seed=5)
    index = make_index("milvus", vectors[:60], ids=ids[:60], metadata=table[:60], uri=milvus_uri)
    opened.append(index)
    index.add(vectors[60:], ids[60:], table[60:])
    index.add(vectors[:3] * 0.5, ids[:3])
    vectors[:3] *= 0.5
    index.remove(ids[[10, 11, 65]])
    kept = ~np.isin(ids, ids[[10, 11, 65]])
    folder = index.save(tmp_path / "index")
    np.testing.assert_array_equal(np.load(folder / "ids.npy"), ids[kept])
    checksum = json.loads((folder / "milvus_rows.json").read_text())
    assert checksum["rows"] == checksum["checked_ids"] == 67 and checksum["collection"] == index.collection
    queries = vectors[::5] + 0.02
    before = index.search(queries, 8, filters=Filters(category="Shoes"))
    again = load_index(folder, uri=milvus_uri)
    opened.append(again)
    assert again.get_config() == index.get_config() and len(again) == 67
    np.testing.assert_array_equal(again.ids, ids[kept])
    assert_same(again.search(queries, 8, filters=Filters(category="Shoes")), before)
    again.close()

    other = MilvusClient(milvus_uri)  # another client deletes one row
    other.delete(index.collection, ids=[int(ids[40])])
    other.flush(index.collection)
    other.close()
    with pytest.raises(ValueError) as refused:
        load_index(folder, uri=milvus_uri)
    assert str(refused.value) == (f"Milvus collection {index.collection!r} at {milvus_uri} no longer holds the 67 "
                                  f"rows saved in {folder} (another build replaced or changed it); build the engine "
                                  f"saved in {tmp_path} again")
    with pytest.raises(ValueError) as not_saved:  # nor is the index saved again over what the collection holds
        index.save(tmp_path / "again")
    assert str(not_saved.value) == (f"Milvus collection {index.collection!r} at {milvus_uri} no longer holds this "
                                    "index's rows (another build replaced or changed it): build the engine again, "
                                    "then save it")
    assert not (tmp_path / "again" / "milvus_rows.json").exists()


@pytest.mark.parametrize("milvus_uri", ["lite"], indirect=True)  # the same code on the server: see above
def test_a_collection_replaced_by_another_build_is_refused(milvus_uri, opened, tmp_path):
    name = f"shared_{os.getpid()}"
    vectors, ids, _ = sample(30, seed=6)
    index = make_index("milvus", vectors, ids=ids, uri=milvus_uri, collection=name)
    opened.append(index)
    folder = index.save(tmp_path / "first")
    other = make_index("milvus", vectors[::-1].copy(), ids=ids, uri=milvus_uri, collection=name)  # same ids
    opened.append(other)
    with pytest.raises(ValueError) as refused:
        load_index(folder, uri=milvus_uri)
    assert str(refused.value) == (f"Milvus collection {name!r} at {milvus_uri} no longer holds the 30 rows saved in "
                                  f"{folder} (another build replaced or changed it); build the engine saved in "
                                  f"{tmp_path} again")
    with pytest.raises(ValueError, match="no longer holds this index's rows"):
        index.save(tmp_path / "first-again")
    other.client.drop_collection(name)
    with pytest.raises(ValueError) as gone:
        load_index(folder, uri=milvus_uri)
    assert str(gone.value) == (f"Milvus collection {name!r} does not exist at {milvus_uri}; build the engine saved "
                               f"in {tmp_path} again")


@pytest.mark.parametrize("milvus_uri", ["lite"], indirect=True)  # the same code on the server: see above
def test_a_saved_index_reopens_only_where_the_caller_says(milvus_uri, opened, tmp_path):
    index = make_index("milvus", *sample(12, seed=7)[:2], uri=milvus_uri)
    opened.append(index)
    folder = index.save(tmp_path / "index")
    with pytest.raises(ValueError) as refused:  # the folder's own uri is not followed unasked
        load_index(folder)
    assert str(refused.value) == (f"{folder / 'index.json'} says the rows are in the Milvus database {milvus_uri}, "
                                  "which is not reopened unasked: pass index_uri= (CLI: --index-uri) with the "
                                  "database to use")
    config = json.loads((folder / "index.json").read_text())
    elsewhere = tmp_path / "not-asked-for" / "other.db"
    (folder / "index.json").write_text(json.dumps({**config, "uri": str(elsewhere)}))
    with pytest.raises(ValueError, match="which is not reopened unasked: pass index_uri="):
        load_index(folder)
    assert not elsewhere.parent.exists()


def test_milvus_lite_batches_are_cut_to_bound_its_memory(tmp_path, monkeypatch):
    import cbir_tutorial.search.milvus_index as milvus_module

    assert not milvus_module.is_lite("http://localhost:19530")
    vectors, ids, _ = sample(50, seed=8)
    lite = make_index("milvus", vectors, ids=ids, uri=str(tmp_path / "cut.db"))
    assert milvus_module.is_lite(lite.uri)
    queries, excluded = vectors[:20], ids[:20]
    whole = lite.search(queries, 10, exclude_ids=excluded)
    requests = []
    search = lite.client.search
    monkeypatch.setattr(lite.client, "search", lambda *a, **kw: requests.append(len(kw["data"])) or search(*a, **kw))
    monkeypatch.setattr(milvus_module, "LITE_SEARCH_BYTES", 3 * 4 * len(lite) * lite.dim)  # 3 queries a request
    cut = lite.search(queries, 10, exclude_ids=excluded)
    lite.close()
    assert max(requests) == 3 and sum(requests) == len(queries)
    np.testing.assert_array_equal(cut[1], whole[1])
    np.testing.assert_allclose(cut[0], whole[0])


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


def test_a_milvus_lite_file_in_use_is_one_line(held_lite_file, sample_dir, capsys):
    from cbir_tutorial.cli import main
    from cbir_tutorial.search.milvus_index import MilvusIndex

    message = (f"Milvus Lite file {held_lite_file} cannot be opened: another process is using it (one process at a "
               "time); wait for it to finish, or use another .db file or a Milvus server (--index-uri)")
    with pytest.raises(RuntimeError) as refused:
        MilvusIndex(DIM, uri=str(held_lite_file))
    assert str(refused.value) == message
    capsys.readouterr()
    assert main(["evaluate", "--catalogue", str(sample_dir), "--format", "fashion-products", "--backbone",
                 "efficientnet_lite0", "--limit", "60", "--index", "milvus", "--index-uri", str(held_lite_file)]) == 2
    said = capsys.readouterr().err  # after the progress bars of the features it extracted first
    assert said.endswith(f"error: {message}\n") and said.count("error:") == 1


def test_a_milvus_server_that_does_not_answer_is_one_line():
    import importlib.util
    import socket

    if importlib.util.find_spec("pymilvus") is None:
        pytest.skip('pymilvus is not installed (pip install ".[scale]")')

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(RuntimeError) as refused:
        make_index("milvus", *sample(5)[:2], uri=f"http://{host}")
    assert str(refused.value) == (f"Milvus server http://{host} cannot be reached (Fail connecting to server on {host}, "
                                  "illegal connection params or server unavailable): start it or check --index-uri")
