"""The pictures of notebook 9 draw what FAISS built: IVF lists and the cells a query searches, HNSW layers and
links, and a greedy descent that ends where FAISS's search does; the distances a query computes are FAISS's count."""

import sys

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from cbir_tutorial.lessons import indexes
from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.sizing import recall_latency_curves
from cbir_tutorial.lessons.indexes import (LIST_COLOURS, SEARCHED_ALPHA, hnsw_graph, hnsw_greedy_path,
                                           hnsw_layers_figure, ivf_figure, ivf_lists, toy_points)


def drawn(fig, gid):
    """The artist of ``fig``'s only axes with this gid."""
    found = [a for a in fig.axes[0].get_children() if a.get_gid() == gid]
    assert len(found) == 1, f"{len(found)} artists with gid {gid!r}"
    return found[0]


def nearest(points, centres):
    """Index of the nearest of ``centres`` to each of ``points``, by numpy (float64)."""
    points, centres = np.asarray(points, np.float64), np.asarray(centres, np.float64)
    return ((points[:, None] - centres[None]) ** 2).sum(-1).argmin(1)


def test_faiss_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        indexes.faiss_module()
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        ivf_figure()


def test_toy_points_are_reproducible_clusters():
    points = toy_points(300, clusters=5, seed=3)
    assert points.shape == (300, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(points, toy_points(300, clusters=5, seed=3))
    assert not np.array_equal(points, toy_points(300, clusters=5, seed=4))


def test_ivf_lists_are_faiss_assignments():
    faiss = pytest.importorskip("faiss")
    points = toy_points(400)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(2), 2, 8)
    index.train(points)
    index.add(points)
    lists = ivf_lists(index)
    np.testing.assert_array_equal(lists, index.quantizer.search(points, 1)[1][:, 0])
    assert np.bincount(lists, minlength=8).tolist() == [index.invlists.list_size(l) for l in range(8)]


@pytest.mark.parametrize("nlist", [9, 5])
def test_ivf_figure_colours_each_point_by_the_list_faiss_put_it_in(nlist):
    pytest.importorskip("faiss")
    points = toy_points(400, seed=1)
    fig = ivf_figure(points, nlist=nlist)
    centroids = drawn(fig, "centroids").get_offsets()
    assert len(centroids) == nlist
    shown = []
    for l in range(nlist):
        dots = drawn(fig, f"list {l}")
        xy = np.asarray(dots.get_offsets())
        shown.append(xy)
        # an independent nearest-centroid computation agrees with FAISS's list, and the colour is the list's
        assert (nearest(xy, centroids) == l).all(), f"a point drawn in list {l} is nearer another centroid"
        colours = dots.get_facecolors()[:, :3]
        assert np.allclose(colours, to_rgb(LIST_COLOURS[l])), f"list {l} drawn in another colour"
    shown = np.concatenate(shown)
    assert len(shown) == len(points)
    assert sorted(map(tuple, shown.tolist())) == sorted(map(tuple, points.astype(np.float64).tolist()))
    labels = {t.get_text(): t.get_position() for t in fig.axes[0].texts}
    for l, centre in enumerate(centroids):
        assert np.allclose(labels[str(l)], centre), f"list number {l} not on its centroid"


@pytest.mark.parametrize("nprobe, query", [(1, None), (2, None), (3, (0.5, 0.5)), (2, (0.55, 0.62))])
def test_ivf_figure_highlights_exactly_the_nprobe_cells_nearest_the_query(nprobe, query):
    pytest.importorskip("faiss")
    points = toy_points(400)
    fig = ivf_figure(points, nprobe=nprobe, query=query, k=5)
    centroids = np.asarray(drawn(fig, "centroids").get_offsets())
    q = np.asarray(drawn(fig, "query").get_offsets())
    if query is not None:
        assert np.allclose(q[0], query)
    searched = np.asarray(drawn(fig, "searched centroids").get_offsets())
    assert len(searched) == nprobe
    nearest_cells = np.argsort(((centroids - q) ** 2).sum(1))[:nprobe]
    assert set(nearest(searched, centroids)) == set(nearest_cells.tolist())

    # the background: bright exactly over the searched cells (pixels on a cell's border are drawn dark)
    image = drawn(fig, "cells")
    rgba = np.asarray(image.get_array())
    x0, x1, y0, y1 = image.get_extent()
    rows, cols = rgba.shape[:2]
    xs = x0 + (np.arange(cols) + 0.5) * (x1 - x0) / cols
    ys = y0 + (np.arange(rows) + 0.5) * (y1 - y0) / rows
    gx, gy = np.meshgrid(xs, ys)
    cell = nearest(np.stack([gx.ravel(), gy.ravel()], 1), centroids).reshape(rows, cols)
    inside = rgba[..., 3] < 0.5  # not a border pixel
    for l in range(len(centroids)):
        alpha = rgba[..., 3][(cell == l) & inside]
        share_bright = np.isclose(alpha, SEARCHED_ALPHA).mean()
        assert share_bright > 0.99 if l in nearest_cells else share_bright < 0.01, (l, share_bright)

    # circles: results, all from the searched lists; red crosses: true nearest points in lists not searched
    found = np.asarray(drawn(fig, "found").get_offsets())
    missed = np.asarray(drawn(fig, "missed").get_offsets()).reshape(-1, 2)
    assert len(found) == 5 and set(nearest(found, centroids)) <= set(nearest_cells.tolist())
    as_set = lambda xy: {tuple(p) for p in np.asarray(xy, np.float64).tolist()}  # noqa: E731
    true = as_set(points[np.argsort(((points - q) ** 2).sum(1))[:5]])
    assert as_set(missed) == true - as_set(found)  # every true neighbour not found is marked, and only those
    assert not set(nearest(missed, centroids)) & set(nearest_cells.tolist())
    compared = sum(len(drawn(fig, f"list {l}").get_offsets()) for l in nearest_cells)
    assert f"{compared} of {len(points)} points" in fig.axes[0].get_title()


def hnsw_index(points, m):
    faiss = pytest.importorskip("faiss")
    index = faiss.IndexHNSWFlat(2, m)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(points)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def test_hnsw_graph_reads_faiss_levels_and_links():
    faiss = pytest.importorskip("faiss")
    points = toy_points(100)
    index = hnsw_index(points, 4)
    levels, links = hnsw_graph(index)
    np.testing.assert_array_equal(levels, faiss.vector_to_array(index.hnsw.levels))
    assert len(links) == index.hnsw.max_level + 1 == levels.max()
    for layer, pairs in enumerate(links):
        assert all(levels[i] > layer and levels[j] > layer for i, j in pairs)  # links join nodes of the layer
        per_node = np.bincount([i for i, _ in pairs], minlength=len(points))
        assert per_node.max() <= (8 if layer == 0 else 4)  # 2M links on layer 0, M above
    assert len({i for i, _ in links[0]}) == len(points)  # every node has links on layer 0


def test_hnsw_greedy_path_ends_where_faiss_does_with_ef_search_1():
    pytest.importorskip("faiss")
    points = toy_points(100)
    index = hnsw_index(points, 4)
    _, links = hnsw_graph(index)
    linked = [set(pairs) for pairs in links]
    queries = np.random.default_rng(5).uniform(0, 1, (300, 2)).astype(np.float32)
    index.hnsw.efSearch = 1
    found = index.search(queries, 1)[1][:, 0]
    for q, faiss_answer in zip(queries, found):
        path = hnsw_greedy_path(index, points, q)
        assert path[0] == (index.hnsw.max_level, index.hnsw.entry_point)
        assert path[-1] == (0, faiss_answer)
        distance = ((points - q) ** 2).sum(1)
        for (l0, a), (l1, b) in zip(path, path[1:]):
            if l0 == l1:  # a move along a link of the layer, to a nearer node
                assert (a, b) in linked[l0] and distance[b] < distance[a]
            else:  # down one layer at the same node
                assert (l1, b) == (l0 - 1, a)


@pytest.mark.parametrize("m, query", [(4, None), (3, (0.3, 0.3)), (2, (0.7, 0.3))])
def test_hnsw_figure_draws_each_layer_with_the_nodes_whose_level_reaches_it(m, query):
    pytest.importorskip("faiss")
    points = toy_points(100)
    fig = hnsw_layers_figure(points, m=m, query=query)
    index = hnsw_index(points, m)
    levels, links = hnsw_graph(index)
    sheets = [a for a in fig.axes[0].get_children() if str(a.get_gid()).endswith(" sheet")]
    assert len(sheets) == index.hnsw.max_level + 1
    for layer in range(len(sheets)):
        nodes = np.asarray(drawn(fig, f"layer {layer} nodes").get_offsets())
        expected = points[levels > layer]
        assert {tuple(p) for p in nodes.tolist()} == {tuple(p) for p in expected.astype(np.float64).tolist()}
        assert drawn(fig, f"layer {layer} label").get_text().startswith(f"layer {layer}: {len(expected)} node")
        segments = drawn(fig, f"layer {layer} links").get_segments()
        assert len(segments) == len(links[layer])
        for segment, (i, j) in zip(segments, links[layer]):
            np.testing.assert_allclose(segment, points[[i, j]])
    q = np.asarray(drawn(fig, "layer 0 query").get_offsets())[0]
    path = hnsw_greedy_path(index, points, q)
    steps = [a for a in fig.axes[0].get_children() if a.get_gid() == "path step"]
    assert len(steps) == len(path) - 1
    # the title says where the descent ends, and, when it is not the nearest node, whether FAISS's own search finds it
    title = fig.axes[0].get_title()
    nearest = int(((points - q) ** 2).sum(1).argmin())
    if path[-1][1] == nearest:
        assert title.endswith("to its nearest node")
    else:
        beam = int(index.search(q[None].astype(np.float32), 1)[1][0, 0]) == nearest  # efSearch: FAISS's default
        assert "not its nearest" in title and title.endswith("finds the nearest" if beam else "misses it too")


def test_the_figures_leave_no_pyplot_window_open():
    pytest.importorskip("faiss")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    for fig in (ivf_figure(), hnsw_layers_figure()):
        assert fig.axes  # a matplotlib Figure, drawn without pyplot (any backend, Agg included)
    assert plt.get_fignums() == before


# --------------------------------------------------------------------------------------------------
# What a search costs: FAISS's count of the distances a query computes


def unit_rows(n, dim=16, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_exact_and_flat_searches_compute_one_distance_per_stored_vector():
    pytest.importorskip("faiss")
    gallery, queries = unit_rows(300), unit_rows(7, seed=1)
    for name in ("exact", "faiss-flat"):
        assert indexes.distances_computed(make_index(name, gallery), queries) == 300

    class Elsewhere:  # a backend whose library counts nothing (Milvus)
        name = "milvus"

    assert np.isnan(indexes.distances_computed(Elsewhere(), queries))


@pytest.mark.parametrize("nprobe", [1, 3, 8])
def test_ivf_computes_every_centroid_then_the_rows_of_the_lists_it_reads(nprobe):
    pytest.importorskip("faiss")
    gallery, queries = unit_rows(2_000), unit_rows(25, seed=1)
    index = make_index("faiss-ivf", gallery, nlist=8, nprobe=nprobe)
    sizes = np.bincount(ivf_lists(index.cpu), minlength=8)  # the package adds the rows under labels 0..N-1
    centroids = index.cpu.quantizer.reconstruct_n(0, 8)
    distances = ((queries[:, None].astype(np.float64) - centroids[None]) ** 2).sum(-1)
    read = np.argsort(distances, axis=1)[:, :nprobe]  # each query's nprobe nearest lists, by numpy
    expected = 8 + sizes[read].sum(1).mean()
    assert indexes.distances_computed(index, queries) == pytest.approx(expected)
    if nprobe == 8:
        assert indexes.distances_computed(index, queries) == 8 + 2_000  # every list: every row, and no more


def test_hnsw_computes_more_distances_with_a_wider_beam_and_fewer_than_the_rows():
    faiss = pytest.importorskip("faiss")
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index = make_index("faiss-hnsw", unit_rows(3_000), m=8)
    finally:
        faiss.omp_set_num_threads(threads)
    queries = unit_rows(20, seed=1)
    counts = []
    for ef in (20, 80, 320):
        index.set_search_options(ef_search=ef)
        counts.append(indexes.distances_computed(index, queries, k=10))
    assert 0 < counts[0] < counts[1] < counts[2] < 3_000, counts


def test_cost_curves_add_faiss_counts_to_the_recall_and_latency_curves():
    faiss = pytest.importorskip("faiss")
    gallery, queries = unit_rows(1_600), unit_rows(10, seed=1)
    knobs = {"faiss-ivf": ("nprobe", (1, 64)), "faiss-hnsw": ("ef_search", (16, 64))}
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # the same HNSW graph in both runs
    try:
        curves, builds = indexes.cost_curves(gallery, queries, [400, 1_600], k=5, knobs=knobs, repeats=1)
        plain, plain_builds = recall_latency_curves(gallery, queries, [400, 1_600], k=5, knobs=knobs, repeats=1)
    finally:
        faiss.omp_set_num_threads(threads)
    assert list(curves.columns) == [*plain.columns, "distances computed"]
    same = ["rows", "index", "setting", "recall", "vectors compared"]
    assert curves[same].equals(plain[same])
    assert builds.drop(columns="build s").equals(plain_builds.drop(columns="build s"))
    exact = curves[curves["index"] == "exact"]
    assert exact["distances computed"].tolist() == [400, 1_600]
    ivf = builds[builds["index"] == "faiss-ivf"]
    nlist = dict(zip(ivf["rows"], ivf["nlist"]))
    every_list = curves[curves["setting"] == "nprobe=64"]  # nprobe past nlist: every row is read
    assert every_list["distances computed"].tolist() == [nlist[400] + 400, nlist[1_600] + 1_600]
    hnsw = curves[curves["index"] == "faiss-hnsw"]
    assert (hnsw["distances computed"] > 0).all() and (hnsw["distances computed"] < hnsw["rows"]).all()


def test_the_call_floor_is_a_time_per_call():
    pytest.importorskip("faiss")
    floor = indexes.call_floor_ms(unit_rows(5), k=3, repeats=1)
    assert isinstance(floor, float) and 0 < floor < 1_000
