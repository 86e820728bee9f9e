"""Backends behind one interface: exact numpy (float32, bfloat16, int8) and FAISS agree on the sample's real
features, with filters; engines save and reopen without extracting again (Milvus: test_milvus_index.py)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import INDEXES, load_index, make_index
from cbir_tutorial.search.exact import EuclideanIndex
from top_k import QUERIES, assert_same_top_k, recall

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason='faiss is not installed (pip install ".[scale]")')


@pytest.mark.parametrize("storage, max_share", [("bfloat16", 0.51), ("int8", 0.27)])
def test_compressed_storage_keeps_the_top_10_in_less_memory(features, storage, max_share):
    exact = EuclideanIndex(features)
    small = EuclideanIndex(features, dtype=storage)
    assert small.gallery.nbytes <= max_share * exact.gallery.nbytes
    _, reference = exact.search_rows(QUERIES, 10)
    distances, found = small.search_rows(QUERIES, 10)
    assert recall(found, reference) >= 0.99
    # exact for the stored (decoded) vectors: same answer as float32 search over them
    decoded = EuclideanIndex(small.vectors())
    assert_same_top_k((distances, found), decoded.search(small.vectors(QUERIES), 10, exclude=QUERIES), atol=1e-5)
    assert np.abs(small.vectors() - features).max() < (0.01 if storage == "bfloat16" else 0.5 * small.scale.max() + 1e-6)


def test_int8_codes_span_each_dimension():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
    index = EuclideanIndex(x, dtype="int8")
    assert index.gallery.min() == -127 and index.gallery.max() == 127
    assert (np.abs(index.vectors() - x) <= index.scale * 0.5001 + 1e-5).all()  # half a step, plus rounding


def test_float16_still_works(features):
    _, reference = EuclideanIndex(features).search_rows(QUERIES, 10)
    assert recall(EuclideanIndex(features, dtype="float16").search_rows(QUERIES, 10)[1], reference) >= 0.99


def test_engine_holds_one_copy_of_the_gallery(sample_engine):
    assert np.shares_memory(sample_engine.features, sample_engine.index.gallery)
    np.testing.assert_array_equal(sample_engine.query_features(5), sample_engine.index.gallery[5])


def test_add_appends_rows_and_unknown_names_are_refused(features):
    index = make_index("exact", features[:500], dtype="bfloat16")
    index.add(features[500:])
    whole = EuclideanIndex(features, dtype="bfloat16")
    np.testing.assert_array_equal(index.search(features[:5], 10)[1], whole.search(features[:5], 10)[1])
    with pytest.raises(ValueError, match="index='annoy' is not known; use one of: exact, faiss-flat"):
        make_index("annoy", features)
    assert set(INDEXES) == {"exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "milvus", "expanded"}


@needs_faiss
def test_faiss_flat_matches_numpy_with_filters(features):
    exact, flat = make_index("exact", features), make_index("faiss-flat", features)
    queries = features[QUERIES]
    assert_same_top_k(flat.search(queries, 10, exclude=QUERIES), exact.search(queries, 10, exclude=QUERIES))
    allowed = np.arange(len(features)) % 3 == 0
    found = flat.search(queries, 10, exclude=QUERIES, allowed=allowed)
    assert allowed[found[1]].all()
    assert_same_top_k(found, exact.search(queries, 10, exclude=QUERIES, allowed=allowed))
    d, i = flat.search(queries[0], 10, allowed=np.arange(len(features)) < 4)  # fewer rows than k
    assert sorted(i) == [0, 1, 2, 3] and d.shape == (4,)


@needs_faiss
@pytest.mark.parametrize("name, options", [("faiss-ivf", {"nlist": 8, "nprobe": 8}), ("faiss-hnsw", {"ef_search": 128}),
                                           ("faiss-ivf", {"nlist": 8, "nprobe": 2, "pq": 64})])
def test_approximate_faiss_indexes(features, name, options):
    _, reference = make_index("exact", features).search_rows(QUERIES, 10)
    index = make_index(name, features, **options)
    found = index.search_rows(QUERIES, 10)[1]
    assert not (found == QUERIES[:, None]).any()  # leave-one-out holds
    # all lists probed / a wide beam: exact on 770 rows; PQ with 2 of 8 lists: approximate but useful
    assert recall(found, reference) >= (0.6 if options.get("pq") else 0.99)


@pytest.mark.parametrize("name, options", [("exact", {"dtype": "int8"}), ("exact", {"dtype": "bfloat16"}),
                                           pytest.param("faiss-flat", {}, marks=needs_faiss),
                                           pytest.param("faiss-hnsw", {}, marks=needs_faiss),
                                           pytest.param("faiss-ivf", {"nlist": 8}, marks=needs_faiss)])
def test_saved_index_answers_identically(features, tmp_path, name, options):
    index = make_index(name, features, **options)
    index.save(tmp_path / "index")
    again = load_index(tmp_path / "index")
    assert type(again) is type(index) and again.get_config() == index.get_config()
    for a, b in zip(index.search_rows(QUERIES, 10), again.search_rows(QUERIES, 10)):
        np.testing.assert_array_equal(a, b)


def test_engine_saves_and_reopens_without_extraction(sample_engine, tmp_path):
    from cbir_tutorial import SearchEngine

    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline,
                          make_index("exact", sample_engine.features, dtype="int8"))
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


def test_index_bytes_match_what_the_index_holds(features):
    from cbir_tutorial.search.exact import index_bytes

    for storage in ("float32", "bfloat16", "int8"):
        index = EuclideanIndex(features, dtype=storage)
        held = index.gallery.nbytes + index.sq_norms.nbytes + (0 if index.scale is None else 8 * index.dim)
        assert index_bytes(*features.shape, storage) == index.nbytes == held
    assert index_bytes(1_000_000, 2048, "int8") / index_bytes(1_000_000, 2048) < 0.26
    with pytest.raises(ValueError, match="storage='int4'"):
        index_bytes(10, 4, "int4")


def test_recall_and_latency_of_an_exact_and_a_broken_index(features):
    from cbir_tutorial.search.sizing import recall_and_latency

    exact = EuclideanIndex(features)
    reference = exact.search(features[:20], 10)[1]
    assert recall_and_latency(exact, features[:20], reference, repeats=1)["recall"] == 1.0
    half = EuclideanIndex(features[::2])  # rows renumbered: a wrong index must score low
    measured = recall_and_latency(half, features[:20], reference, repeats=1)
    assert measured["recall"] < 0.5 and measured["ms per query"] > 0


def test_cli_index_choice_is_checked_and_used(capsys):
    from cbir_tutorial.cli import main

    base = ["evaluate", "--format", "sample", "--backbone", "efficientnet_lite0", "--limit", "60", "--json"]
    assert main(base + ["--index", "annoy"]) == 2
    assert "error: --index 'annoy' is not supported; use one of: exact, faiss-flat" in capsys.readouterr().err
    assert main(base + ["--index-uri", "http://localhost:19530"]) == 2
    assert "error: --index-uri is for --index milvus, not --index exact" in capsys.readouterr().err
    if not HAS_FAISS:
        pytest.skip('faiss is not installed (pip install ".[scale]")')
    import json

    scores = {}
    for name in ("exact", "faiss-flat"):
        assert main(base + ["--index", name]) == 0
        scores[name] = json.loads(capsys.readouterr().out)
    assert scores["exact"]["n_images"] == scores["faiss-flat"]["n_images"] > 0
    assert scores["faiss-flat"]["map_at_k"] == pytest.approx(scores["exact"]["map_at_k"], abs=1e-6)


@pytest.mark.parametrize("name", ["exact", "expanded", "faiss-flat"])
def test_rows_of_another_dimension_are_refused_by_add(features, name):
    if name.startswith("faiss"):
        pytest.importorskip("faiss")
    index = make_index(name, features[:20])
    with pytest.raises(ValueError, match=f"features have 7 dimensions, the index has {features.shape[1]}"):
        index.add(np.zeros((2, 7), dtype=np.float32))
    assert len(index) == 20


def test_a_saved_array_file_holding_objects_is_refused_naming_it(sample_engine, tmp_path):
    from cbir_tutorial import SearchEngine

    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline, make_index("exact", sample_engine.features))
    folder = engine.save(tmp_path / "e")
    gallery = folder / "index" / "gallery.npz"
    with open(gallery, "wb") as file:  # a pickled object where the vectors were
        np.savez(file, gallery=np.array([{"run": "code"}], dtype=object), sq_norms=np.zeros(1))
    with pytest.raises(ValueError) as refused:
        SearchEngine.load(folder, extractor=sample_engine.extractor)
    assert str(refused.value) == (f"{gallery}: not an array file written by save (Object arrays cannot be loaded "
                                  "when allow_pickle=False); save it again")


def test_saving_over_an_engine_never_leaves_the_folder_missing_nor_old_temporaries(sample_engine, tmp_path,
                                                                                   monkeypatch):
    """A killed save left ``.engine.<dead pid>.tmp``: the next save removes it (not a live process's), and
    the folder always holds a whole engine while it is replaced."""
    import os
    import subprocess
    import sys

    from cbir_tutorial import SearchEngine
    from cbir_tutorial.search.engine import ENGINE_FILE

    folder = tmp_path / "engine"
    engine = SearchEngine(sample_engine.catalogue, sample_engine.pipeline, make_index("exact", sample_engine.features))
    engine.save(folder)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = tmp_path / f".engine.{int(finished.stdout)}.tmp", tmp_path / f".engine.{os.getppid()}.tmp"
    for leftover in (dead, alive):
        (leftover / "index").mkdir(parents=True)
    seen = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (replace(a, b), seen.append((folder / ENGINE_FILE).is_file())))
    small = sample_engine.catalogue.subset(np.arange(100))
    SearchEngine(small, sample_engine.pipeline, make_index("exact", sample_engine.features[:100])).save(folder)
    monkeypatch.undo()
    assert all(seen) and len(SearchEngine.load(folder, extractor=sample_engine.extractor)) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["engine", alive.name])
