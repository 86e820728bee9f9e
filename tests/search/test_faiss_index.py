"""FAISS flat, IVF and HNSW under int64 ids, on small seeded random vectors: flat ranks as exact numpy search does
(also after adds, replacements and removals), IVF and HNSW find nearly the same top 10, removed ids are never
returned (HNSW keeps tombstones until it compacts), filters and leave-one-out hold, and a saved index answers
identically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.backends import load_index, make_index
from cbir_tutorial.search.filters import Filters
from top_k import assert_same_top_k, recall

faiss = pytest.importorskip("faiss", reason='faiss is not installed (pip install ".[scale]")')

from cbir_tutorial.search.faiss_index import FaissIndex, default_nlist  # noqa: E402  (needs faiss)

#: Each kind with options that make it search every vector (IVF: every list; HNSW: a beam as wide as the data).
EVERYTHING = [("faiss-flat", {}), ("faiss-ivf", {"nlist": 8, "nprobe": 8}), ("faiss-hnsw", {"ef_search": 400})]
KINDS = [pytest.param(name, options, id=name) for name, options in EVERYTHING]


def random_vectors(n: int, dim: int = 16, seed: int = 0, clusters: int = 0) -> np.ndarray:
    """``(n, dim)`` float32 L2-normalised vectors (around ``clusters`` centres when given)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    if clusters:
        x = rng.standard_normal((clusters, dim))[rng.integers(clusters, size=n)] * 3 + x
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def spread_ids(n: int, start: int = 0) -> np.ndarray:
    """Non-contiguous ids: 1000, 1007, 1014, ..."""
    return 1000 + 7 * np.arange(start, start + n, dtype=np.int64)


def numpy_search(vectors, ids, queries, k, exclude_ids=None, allowed=None):
    """Exact ``(distances, ids)`` by brute force in float64: nearest first, equal distances by the lower id."""
    d2 = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(axis=2)
    if allowed is not None:
        d2[:, ~allowed] = np.inf
    if exclude_ids is not None:
        d2[ids[None, :] == exclude_ids[:, None]] = np.inf
    order = np.lexsort((np.broadcast_to(ids, d2.shape), d2), axis=1)
    width = min(k, int(np.isfinite(d2).sum(axis=1).min()))
    order = order[:, :width]
    return np.sqrt(np.take_along_axis(d2, order, axis=1)).astype(np.float32), ids[order]


def test_ids_are_returned_not_rows():
    vectors, ids = random_vectors(300), spread_ids(300)
    flat = make_index("faiss-flat", vectors, ids=ids)
    assert (len(flat), flat.dim, flat.name) == (300, 16, "faiss-flat")
    np.testing.assert_array_equal(flat.ids, ids)
    np.testing.assert_array_equal(flat.vectors(), vectors)
    np.testing.assert_array_equal(flat.vectors(ids[[3, 200]]), vectors[[3, 200]])
    distances, found = flat.search(vectors[10], 5)
    assert distances.dtype == np.float32 and found.dtype == np.int64 and found[0] == ids[10]
    assert np.isin(found, ids).all()
    rows = (found - 1000) // 7
    np.testing.assert_allclose(distances, np.linalg.norm(vectors[rows] - vectors[10], axis=1), atol=1e-3)
    queries = vectors[::7]
    assert_same_top_k(flat.search(queries, 10, exclude_ids=ids[::7]),
                      numpy_search(vectors, ids, queries, 10, exclude_ids=ids[::7]))
    chosen = Filters(ids=ids[::3])
    found = flat.search(queries, 10, exclude_ids=ids[::7], filters=chosen)
    assert np.isin(found[1], ids[::3]).all()
    assert_same_top_k(found, numpy_search(vectors, ids, queries, 10, ids[::7], np.isin(ids, ids[::3])))
    d, i = flat.search(vectors[0], 10, filters=Filters(ids=ids[:4]))  # fewer vectors than k
    assert sorted(i) == ids[:4].tolist() and d.shape == (4,)
    with pytest.raises(KeyError, match="1 id\\(s\\) not in the faiss-flat index: 5"):
        flat.vectors([5])


def test_an_empty_index_answers_nothing_and_grows():
    index = FaissIndex(8, kind="ivf", nlist=2, nprobe=2)
    assert len(index) == 0 and index.ids.shape == (0,) and index.vectors().shape == (0, 8)
    d, i = index.search(np.zeros(8, np.float32), 5)
    assert d.shape == i.shape == (0,)
    vectors = random_vectors(100, 8)
    index.add(vectors, spread_ids(100))  # IVF learns its lists on the first add
    assert len(index) == 100 and index.search(vectors[3], 1)[1][0] == spread_ids(100)[3]


@pytest.mark.parametrize("name, options", KINDS)
def test_adding_stored_ids_replaces_their_vectors(name, options):
    vectors, ids = random_vectors(400, seed=1), spread_ids(400)
    index = make_index(name, vectors, ids=ids, **options)
    new = random_vectors(10, seed=2)
    index.add(new, ids[:10])
    assert len(index) == 400 and sorted(index.ids) == sorted(ids)
    np.testing.assert_allclose(index.vectors(ids[:10]), new, atol=1e-6)
    d, i = index.search(new, 1)
    np.testing.assert_array_equal(i[:, 0], ids[:10])
    assert (d[:, 0] < 1e-3).all()
    d, i = index.search(vectors[:10], 1)  # the old vectors are gone: no id at distance 0 any more
    assert (d[:, 0] > 1e-3).all()


@pytest.mark.parametrize("name, options", KINDS)
def test_removed_ids_are_never_returned(name, options):
    vectors, ids = random_vectors(400, seed=3), spread_ids(400)
    index = make_index(name, vectors, ids=ids, **options)
    gone = ids[::3]
    index.remove(gone)
    assert len(index) == 400 - len(gone) and not np.isin(index.ids, gone).any()
    _, found = index.search(vectors, 50)  # queries on the removed vectors too
    assert not np.isin(found, gone).any() and (found >= 0).all()
    d, i = index.search(vectors[0], 1)
    assert i[0] != ids[0] and d[0] > 1e-3
    with pytest.raises(KeyError, match=f"not in the {name} index: {gone[0]}, {gone[1]}"):
        index.vectors(gone[:2])
    assert index.dead == (len(gone) if name == "faiss-hnsw" else 0)  # HNSW: tombstones, under half of the slots


@pytest.mark.parametrize("name, options", KINDS)
def test_removing_an_unknown_id_names_it_and_removes_nothing(name, options):
    vectors, ids = random_vectors(200, seed=4), spread_ids(200)
    index = make_index(name, vectors, ids=ids, **options)
    with pytest.raises(KeyError, match=r"^'1 id\(s\) not in the .* index: 3; nothing was changed'$"):
        index.remove([ids[0], 3, ids[1]])
    assert len(index) == 200 and index.dead == 0
    np.testing.assert_array_equal(index.search(vectors[:2], 1)[1][:, 0], ids[:2])


def test_flat_after_adds_updates_and_removals_answers_as_if_built_on_the_final_set():
    vectors, ids = random_vectors(600, seed=5), spread_ids(600)
    index = make_index("faiss-flat", vectors[:300], ids=ids[:300])
    index.add(vectors[300:], ids[300:])
    index.remove(ids[100:250])
    replaced = random_vectors(50, seed=6)
    index.add(replaced, ids[:50])  # an update
    index.remove(ids[500:520])
    index.add(vectors[100:120], ids[100:120])  # removed, then back
    final = np.ones(600, bool)
    final[120:250] = final[500:520] = False
    final_vectors = vectors.copy()
    final_vectors[:50] = replaced
    final_vectors, final_ids = final_vectors[final], ids[final]
    assert sorted(index.ids) == final_ids.tolist()
    fresh = make_index("faiss-flat", final_vectors, ids=final_ids)
    queries, exclude = final_vectors[::9], final_ids[::9]
    for exclude_ids in (None, exclude):
        got = index.search(queries, 10, exclude_ids=exclude_ids)
        for reference in (fresh.search(queries, 10, exclude_ids=exclude_ids),
                          numpy_search(final_vectors, final_ids, queries, 10, exclude_ids)):
            np.testing.assert_array_equal(got[1], reference[1])
            np.testing.assert_allclose(got[0], reference[0], atol=1e-5)


def test_hnsw_after_removals_keeps_its_recall_and_compacts_when_mostly_dead():
    vectors, ids = random_vectors(2000, dim=64, seed=7), spread_ids(2000)
    index = make_index("faiss-hnsw", vectors, ids=ids)
    rng = np.random.default_rng(8)
    gone = rng.choice(ids, 800, replace=False)
    index.remove(gone)
    assert index.dead == 800 and "800 dead slots" in repr(index)
    live = ~np.isin(ids, gone)
    queries = random_vectors(100, dim=64, seed=9)
    _, reference = numpy_search(vectors[live], ids[live], queries, 10)
    _, found = index.search(queries, 10)
    assert not np.isin(found, gone).any() and recall(found, reference) >= 0.9
    more = rng.choice(ids[live], 300, replace=False)  # 1,100 of 2,000 slots dead: the graph is rebuilt
    index.remove(more)
    assert index.dead == 0 and len(index) == 900 and index.cpu.ntotal == 900 and "dead" not in repr(index)
    live &= ~np.isin(ids, more)
    np.testing.assert_array_equal(index.ids, ids[live])
    np.testing.assert_array_equal(index.vectors(), vectors[live])
    _, reference = numpy_search(vectors[live], ids[live], queries, 10)
    assert recall(index.search(queries, 10)[1], reference) >= 0.9


@pytest.mark.parametrize("name, options", KINDS)
def test_a_category_filter_returns_only_matching_ids(name, options):
    vectors, ids = random_vectors(400, seed=10), spread_ids(400)
    metadata = pd.DataFrame({"category": np.where(np.arange(400) % 4 == 0, "x", "y"), "price": ["€5"] * 400})
    index = make_index(name, vectors, ids=ids, metadata=metadata, **options)
    index.remove(ids[:40])
    x = Filters(category="x")
    passing = ids[40:][metadata["category"].to_numpy()[40:] == "x"]
    distances, found = index.search(vectors[:20], 10, exclude_ids=ids[:20], filters=x)
    assert np.isin(found, passing).all() and found.shape == (20, 10)
    allowed = np.isin(ids, passing)
    assert_same_top_k((distances, found), numpy_search(vectors, ids, vectors[:20], 10, ids[:20], allowed))
    index.add(vectors[:3], ids[:3], metadata=pd.DataFrame({"category": ["x", "y", "x"]}))  # back, with new fields
    found = index.search(vectors[:3], 1, filters=x)[1][:, 0]
    assert found[0] == ids[0] and found[2] == ids[2] and found[1] != ids[1]
    nothing = index.search(vectors[:3], 10, filters=Filters(category="z"))
    assert nothing[0].shape == nothing[1].shape == (3, 0)


def test_an_id_map_selects_on_its_labels():
    """FAISS's ``IndexIDMap2`` passes an ID selector down translated, so it selects on the labels given to
    ``add_with_ids``, not on the rows of the index inside (what the slots of flat and HNSW rely on)."""
    vectors = random_vectors(50, seed=11)
    for inner in (faiss.IndexFlatL2(16), faiss.IndexHNSWFlat(16, 8)):
        index = faiss.IndexIDMap2(inner)
        index.add_with_ids(vectors, np.arange(100, 150, dtype=np.int64))
        allowed = np.zeros(150, bool)
        allowed[[103, 140]] = True
        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        params = (faiss.SearchParameters(sel=selector) if isinstance(inner, faiss.IndexFlatL2)
                  else faiss.SearchParametersHNSW(sel=selector, efSearch=50))
        _, labels = index.search(vectors[3:4], 5, params=params)
        assert labels[0].tolist() == [103, 140, -1, -1, -1]


@pytest.mark.parametrize("name, options", KINDS)
def test_exclude_ids_drops_each_querys_own_id(name, options):
    vectors, ids = random_vectors(300, seed=12), spread_ids(300)
    index = make_index(name, vectors, ids=ids, **options)
    d, found = index.search_stored(ids[::5], 10)
    assert found.shape == (60, 10) and not (found == ids[::5, None]).any()
    assert_same_top_k((d, found), numpy_search(vectors, ids, vectors[::5], 10, ids[::5]))
    d, found = index.search(vectors[:3], 5, exclude_ids=[-1, ids[1], -1])
    assert found[0, 0] == ids[0] and found[2, 0] == ids[2] and ids[1] not in found[1]


@pytest.mark.parametrize("name, options", KINDS + [pytest.param("faiss-ivf", {"nlist": 8, "nprobe": 2, "pq": 4},
                                                                id="faiss-ivf-pq")])
def test_saved_faiss_index_keeps_ids_dead_slots_and_answers(tmp_path, name, options):
    vectors, ids = random_vectors(400, seed=13), spread_ids(400)
    metadata = pd.DataFrame({"category": np.where(np.arange(400) % 2 == 0, "x", "y")})
    index = make_index(name, vectors, ids=ids, metadata=metadata, **options)
    index.remove(ids[10:60])
    index.add(vectors[:5] * 0.5, ids[:5])
    index.save(tmp_path / "index")
    again = load_index(tmp_path / "index")
    assert type(again) is FaissIndex and again.name == name and again.get_config() == index.get_config()
    assert {key: again.get_config()[key] for key in options} == options  # search settings survive
    np.testing.assert_array_equal(again.ids, index.ids)
    assert again.dead == index.dead == (55 if name == "faiss-hnsw" else 0) and repr(again) == repr(index)
    for filters in (None, Filters(category="x")):
        for a, b in zip(index.search(vectors[::10], 10, exclude_ids=ids[::10], filters=filters),
                        again.search(vectors[::10], 10, exclude_ids=ids[::10], filters=filters)):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.vectors(ids[[0, 300]]), index.vectors(ids[[0, 300]]))
    again.add(vectors[10:12], ids[10:12])  # grows on, under new slots
    assert len(again) == len(index) + 2 and again.search(vectors[11], 1)[1][0] == ids[11]


def test_a_saved_folder_whose_files_disagree_is_refused_naming_the_file(tmp_path):
    vectors, ids = random_vectors(100, seed=14), spread_ids(100)
    make_index("faiss-flat", vectors, ids=ids).save(tmp_path / "a")
    make_index("faiss-flat", vectors[:90], ids=ids[:90]).save(tmp_path / "b")
    (tmp_path / "b" / "faiss.index").replace(tmp_path / "a" / "faiss.index")
    with pytest.raises(ValueError, match=r"faiss\.index holds 90 vectors of 16 dimensions, not the 100 slots"):
        load_index(tmp_path / "a")
    (tmp_path / "b" / "slots.npz").write_bytes(b"not an array file")
    with pytest.raises(ValueError, match=r"slots\.npz: not an array file written by save"):
        load_index(tmp_path / "b")


def test_approximate_faiss_indexes_find_the_exact_top_10():
    vectors, ids = random_vectors(1000, dim=32, seed=15, clusters=20), spread_ids(1000)
    queries = vectors[::10]
    _, reference = numpy_search(vectors, ids, queries, 10, ids[::10])
    for name, options, least in [("faiss-ivf", {}, 0.95), ("faiss-hnsw", {}, 0.95),
                                 ("faiss-ivf", {"nlist": 8, "nprobe": 2, "pq": 8}, 0.4)]:
        found = make_index(name, vectors, ids=ids, **options).search(queries, 10, exclude_ids=ids[::10])[1]
        assert not (found == ids[::10, None]).any()  # leave-one-out holds
        assert recall(found, reference) >= least, (name, options)


def test_fewer_ivf_probes_trade_recall_for_work():
    vectors, ids = random_vectors(2000, seed=16), spread_ids(2000)  # no clusters: neighbours span lists
    queries = vectors[::20]
    reference = numpy_search(vectors, ids, queries, 10, ids[::20])
    answers = [make_index("faiss-ivf", vectors, ids=ids, nlist=20, nprobe=n).search(queries, 10, exclude_ids=ids[::20])
               for n in (1, 4, 20)]
    recalls = [recall(found, reference[1]) for _, found in answers]
    assert recalls[0] + 0.2 < recalls[1] < recalls[2] and recalls[0] > 0.3  # measured 0.43, 0.79, 1.0
    assert_same_top_k(answers[2], reference)  # every list probed: the exact answer


def test_ivf_lists_follow_the_rule_of_thumb():
    assert [default_nlist(n) for n in (10, 770, 100_000, 1_000_000)] == [1, 19, 1264, 4000]
    index = make_index("faiss-ivf", random_vectors(770), ids=spread_ids(770))
    assert index.get_config() == {"kind": "ivf", "nlist": 19, "nprobe": 16, "pq": None, "train_rows": 100_000,
                                  "seed": 0}


def test_wrong_settings_are_named():
    with pytest.raises(ValueError, match=r"^kind='lsh': use one of flat, ivf, hnsw$"):
        FaissIndex(8, kind="lsh")
    with pytest.raises(ValueError, match=r"^faiss-hnsw takes no option \['nprobe'\]; its options: "
                                         r"\['ef_construction', 'ef_search', 'm'\]$"):
        make_index("faiss-hnsw", np.eye(8, dtype=np.float32), nprobe=4)
    with pytest.raises(ValueError, match=r"^pq=7: must divide the dimension 64$"):
        make_index("faiss-ivf", random_vectors(200, 64), nlist=2, pq=7)


@pytest.mark.parametrize("name, options", KINDS)
def test_threads_searching_with_different_filters_get_their_own_answers(name, options):
    from concurrent.futures import ThreadPoolExecutor

    vectors, ids = random_vectors(400, seed=17), spread_ids(400)
    index = make_index(name, vectors, ids=ids, **options)
    index.remove(ids[:20])
    rng = np.random.default_rng(3)
    choices = [Filters(ids=ids[rng.random(400) < share]) for share in (0.05, 0.3, 0.6, 0.9) for _ in range(4)]
    queries = vectors[::25]
    alone = [index.search(queries, 10, filters=f) for f in choices]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda f: index.search(queries, 10, filters=f), choices * 3))
    for (distances, found), f, (expected_d, expected) in zip(together, choices * 3, alone * 3):
        assert np.isin(found[found >= 0], np.asarray(f.ids)).all(), "a result its own filter does not allow"
        assert not np.isin(found, ids[:20]).any()
        np.testing.assert_array_equal(found, expected)
        np.testing.assert_allclose(distances, expected_d, rtol=1e-6)


@pytest.mark.parametrize("name", ["faiss-hnsw", "faiss-ivf"])
def test_a_narrow_filter_keeps_the_recall_of_an_unfiltered_search(name):
    """A filter that lets 2 % of a clustered gallery through: the probes (IVF) or the beam (HNSW) widen by
    1 / 2 %, so the filtered top 10 is found (at the default options it missed a tenth to a fifth of it)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 64))
    vectors = (centres[rng.integers(0, 40, 20_000)] + 0.6 * rng.standard_normal((20_000, 64))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = pd.DataFrame({"category": np.where(rng.random(20_000) < 0.02, "rare", "common")})
    rare, queries = Filters(category="rare"), vectors[:100] + np.float32(0.01)
    reference = make_index("exact", vectors, metadata=table).search(queries, 10, filters=rare)[1]
    found = make_index(name, vectors, metadata=table).search(queries, 10, filters=rare)[1]
    assert (found >= 0).all()
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference)]) >= 0.95
