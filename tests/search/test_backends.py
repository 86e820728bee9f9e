"""Backends behind one interface, chosen by name: built, grown, saved and reopened the same way; a saved
folder's arrays are read without pickles (each backend: test_exact.py, test_faiss_index.py,
test_milvus_index.py, test_whitening_and_expansion.py; engines: test_engine.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cbir_tutorial.search.backends import INDEXES, load_index, make_index
from top_k import QUERIES


def test_add_appends_rows_and_unknown_names_are_refused(features):
    index = make_index("exact", features[:500], dtype="bfloat16")
    index.add(features[500:], np.arange(500, len(features)))
    whole = make_index("exact", features, dtype="bfloat16")
    np.testing.assert_array_equal(index.ids, whole.ids)
    np.testing.assert_array_equal(index.search(features[:5], 10)[1], whole.search(features[:5], 10)[1])
    with pytest.raises(ValueError, match="index='annoy' is not known; use one of: exact, faiss-flat"):
        make_index("annoy", features)
    assert set(INDEXES) == {"exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "milvus"}


def test_load_options_a_backend_does_not_take_are_refused_naming_them(features, tmp_path):
    make_index("exact", features[:10]).save(tmp_path / "index")
    with pytest.raises(ValueError, match="holds a 'exact' index: uri cannot be given when it is loaded "
                                         r"\(it takes none\)"):
        load_index(tmp_path / "index", uri="http://localhost:19530")
    assert len(load_index(tmp_path / "index")) == 10


@pytest.mark.parametrize("name, options", [("exact", {"dtype": "int8"}), ("exact", {"dtype": "bfloat16"})])
def test_saved_index_answers_identically(features, tmp_path, name, options):
    index = make_index(name, features, **options)
    index.save(tmp_path / "index")
    again = load_index(tmp_path / "index")
    assert type(again) is type(index) and again.get_config() == index.get_config()
    np.testing.assert_array_equal(again.ids, index.ids)
    for a, b in zip(index.search_stored(QUERIES, 10), again.search_stored(QUERIES, 10)):
        np.testing.assert_array_equal(a, b)


def test_recall_and_latency_of_an_exact_and_a_broken_index(features):
    from cbir_tutorial.search.sizing import recall_and_latency

    exact = make_index("exact", features)
    reference = exact.search(features[:20], 10)[1]
    assert recall_and_latency(exact, features[:20], reference, repeats=1)["recall"] == 1.0
    half = make_index("exact", features[::2])  # ids renumbered 0..384: a wrong index must score low
    measured = recall_and_latency(half, features[:20], reference, repeats=1)
    assert measured["recall"] < 0.5 and measured["ms per query"] > 0


@pytest.mark.parametrize("name", ["exact", "faiss-flat"])
def test_rows_of_another_dimension_are_refused_by_add(features, name):
    if name.startswith("faiss"):
        pytest.importorskip("faiss")
    index = make_index(name, features[:20])
    with pytest.raises(ValueError, match=f"vectors have 7 dimensions, the index has {features.shape[1]}"):
        index.add(np.zeros((2, 7), dtype=np.float32), [20, 21])
    assert len(index) == 20 and index.ids.tolist() == list(range(20))


def test_a_saved_array_file_holding_objects_is_refused_naming_it(sample_engine, tmp_path):
    from cbir_tutorial import SearchEngine

    index = make_index("exact", sample_engine.features, sample_engine.keys, sample_engine.catalogue.table)
    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline, index)
    folder = engine.save(tmp_path / "e")
    gallery = folder / "index" / "gallery.npz"
    with open(gallery, "wb") as file:  # a pickled object where the vectors were
        np.savez(file, gallery=np.array([{"run": "code"}], dtype=object), sq_norms=np.zeros(1))
    with pytest.raises(ValueError) as refused:
        SearchEngine.load(folder, extractor=sample_engine.extractor)
    assert str(refused.value) == (f"{gallery}: not an array file written by save (Object arrays cannot be loaded "
                                  "when allow_pickle=False); save it again")
