"""How FAISS's approximate indexes search, drawn from real FAISS indexes built on 2-D toys, and what a search costs.

IVF: the k-means cells of an ``IndexIVFFlat`` (its coarse quantizer's centroids), the list FAISS put each point
in, a query and the ``nprobe`` cells it searches. HNSW: the layers of an ``IndexHNSWFlat``, each node's links on
each layer as FAISS stored them, and the greedy path a query takes down the layers. Every number drawn is read
back from FAISS. FAISS is the package's ``scale`` extra (``pip install faiss-cpu``).

What a search costs, in a unit no machine changes: :func:`distances_computed` reads FAISS's own count of the
vectors a query was compared with, :func:`cost_curves` adds it to every point of the recall and latency curves,
and :func:`call_floor_ms` times what the package's ``search`` costs per call whatever the index.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.transforms import Affine2D

from ..search.backends import make_index
from ..search.sizing import KNOBS, recall_and_latency, recall_latency_curves

#: Colours of the IVF lists, list ``l`` in ``LIST_COLOURS[l % 20]``: the first ten are matplotlib's
#: ``tab10``, then the pale halves of ``tab20``.
LIST_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]


#: Opacity of the cells an IVF search reads in :func:`ivf_figure` (the others: 0.07).
SEARCHED_ALPHA = 0.25


def faiss_module():
    """The ``faiss`` module, or an ImportError that says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError("these pictures draw real FAISS indexes: pip install faiss-cpu "
                          '(or the package\'s extra: pip install "cbir-tutorial[scale]")') from error
    return faiss


def toy_points(n: int = 400, clusters: int = 6, *, spread: float = 0.07, seed: int = 0) -> np.ndarray:
    """``(n, 2)`` float32 points in about 0..1 x 0..1: ``clusters`` Gaussian blobs (standard deviation ``spread``)
    around random centres, as real features cluster, with no two centres closer than ``3 * spread``."""
    rng = np.random.default_rng(seed)
    centres = []
    while len(centres) < clusters:
        c = rng.uniform(0.15, 0.85, 2)
        if all(np.linalg.norm(c - other) >= 3 * spread for other in centres):
            centres.append(c)
    which = rng.integers(0, clusters, n)
    return (np.array(centres)[which] + rng.normal(0, spread, (n, 2))).astype(np.float32)


def _query(points: np.ndarray, query, seed: int) -> np.ndarray:
    """``(1, 2)`` float32 query: the one given, or a random point among ``points`` (not one of them)."""
    if query is None:
        rng = np.random.default_rng(seed + 1)
        query = points[rng.integers(len(points))] + rng.normal(0, 0.05, 2)
    return np.asarray(query, dtype=np.float32).reshape(1, 2)


# --------------------------------------------------------------------------------------------------
# IVF: k-means cells, inverted lists, nprobe


def ivf_lists(index) -> np.ndarray:
    """``(ntotal,)`` int64: the inverted list each stored vector sits in, read from ``index.invlists`` (an
    ``IndexIVF``, with ids ``0 .. ntotal - 1`` as ``add`` gives them)."""
    faiss = faiss_module()
    lists = np.full(index.ntotal, -1, dtype=np.int64)
    for l in range(index.nlist):
        size = index.invlists.list_size(l)
        if size:
            lists[faiss.rev_swig_ptr(index.invlists.get_ids(l), size)] = l
    return lists


def ivf_figure(points: np.ndarray | None = None, *, nlist: int = 9, nprobe: int = 2, k: int = 5, query=None,
               seed: int = 0) -> Figure:
    """A real ``faiss.IndexIVFFlat`` on 2-D points: its ``nlist`` k-means cells (the coarse quantizer's
    centroids, numbered), each point in the colour of the list FAISS put it in, a query (star) and the
    ``nprobe`` cells it searches (bright; the others faded). Circles: the ``k`` results FAISS returns; red
    crosses: the query's true ``k`` nearest points that FAISS missed, which sit in cells it did not search.

    ``points``: ``(N, 2)``, default :func:`toy_points` (400 points; k-means wants at least 39 per cell, so
    FAISS warns below ``39 * nlist`` points). ``query``: ``(2,)``, default a random point near the data.
    """
    faiss = faiss_module()
    points = np.ascontiguousarray(toy_points(seed=seed) if points is None else points, dtype=np.float32)
    q = _query(points, query, seed)
    quantizer = faiss.IndexFlatL2(2)
    index = faiss.IndexIVFFlat(quantizer, 2, nlist)
    index.train(points)
    index.add(points)
    index.nprobe = nprobe
    centroids = index.quantizer.reconstruct_n(0, nlist)
    lists = ivf_lists(index)
    searched = index.quantizer.search(q, nprobe)[1][0]  # the lists an IVF search reads, nearest first
    found = index.search(q, k)[1][0]
    found = found[found >= 0]  # -1: fewer than k points in the lists read
    true = np.argsort(((points - q) ** 2).sum(1))[:k]
    missed = np.setdiff1d(true, found)
    compared = int(np.isin(lists, searched).sum())

    low, high = np.minimum(points.min(0), q[0]), np.maximum(points.max(0), q[0])
    low, high = low - 0.08 * (high - low), high + 0.08 * (high - low)
    fig = Figure(figsize=(5.6, 6.3), layout="constrained")
    ax = fig.subplots()
    grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], 400), np.linspace(low[1], high[1], 400))
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], 1).astype(np.float32)
    cell = index.quantizer.search(grid, 1)[1][:, 0].reshape(grid_x.shape)  # FAISS's own cell of every pixel
    image = np.ones(cell.shape + (4,))
    image[..., :3] = np.array([to_rgb(LIST_COLOURS[c % 20]) for c in range(nlist)])[cell]
    image[..., 3] = np.where(np.isin(cell, searched), SEARCHED_ALPHA, 0.07)
    edge = np.zeros(cell.shape, bool)
    edge[1:] |= cell[1:] != cell[:-1]
    edge[:, 1:] |= cell[:, 1:] != cell[:, :-1]
    image[edge] = (0.3, 0.3, 0.3, 0.8)
    ax.imshow(image, origin="lower", extent=(low[0], high[0], low[1], high[1]), interpolation="nearest",
              gid="cells")
    for l in range(nlist):
        mine = points[lists == l]
        ax.scatter(mine[:, 0], mine[:, 1], s=14, color=LIST_COLOURS[l % 20], edgecolors="white", linewidths=0.4,
                   alpha=1.0 if l in searched else 0.45, gid=f"list {l}", zorder=2)
    ax.scatter(centroids[:, 0], centroids[:, 1], s=190, marker="o", facecolor="white", edgecolor="0.3", lw=1,
               gid="centroids", zorder=3)
    ax.scatter(centroids[searched, 0], centroids[searched, 1], s=190, marker="o", facecolor="white",
               edgecolor="black", lw=2.5, gid="searched centroids", zorder=3)
    for l, (x, y) in enumerate(centroids):
        ax.text(x, y, str(l), ha="center", va="center", fontsize=9, weight="bold", zorder=4)
    ax.scatter(points[found, 0], points[found, 1], s=120, facecolor="none", edgecolor="black", lw=1.3,
               gid="found", zorder=3)
    ax.scatter(points[missed, 0], points[missed, 1], s=70, marker="x", color="red", lw=2, gid="missed", zorder=4)
    ax.scatter(q[:, 0], q[:, 1], s=200, marker="*", color="gold", edgecolor="black", lw=1, gid="query", zorder=5)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    read = f"list{'s' * (nprobe > 1)} {', '.join(map(str, searched))}"
    ax.set_title(f"IVF, nprobe={nprobe} of {nlist} lists: the query (star) reads\n"
                 f"the {compared} of {len(points)} points in {read} (bright).\n"
                 f"Its {len(found)} results (circles) hold {k - len(missed)} of its {k} nearest"
                 + (f";\nred x: the {len(missed)} other{'s' * (len(missed) > 1)}, in lists not read" if len(missed)
                    else ""), fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# HNSW: layers of a graph, links per layer, a greedy descent


def hnsw_graph(index) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """What a ``faiss.IndexHNSWFlat`` stores: ``levels`` ``(ntotal,)``, the number of layers each node is on
    (node ``i`` is on layers ``0 .. levels[i] - 1``), and per layer ``0 .. max_level`` its links ``(i, j)``, read
    from ``hnsw.neighbors`` between ``offsets[i] + cum_nneighbor_per_level[layer]`` and the next layer's start
    (``-1``: an empty slot)."""
    faiss = faiss_module()
    hnsw = index.hnsw
    levels = faiss.vector_to_array(hnsw.levels).astype(np.int64)
    offsets = faiss.vector_to_array(hnsw.offsets).astype(np.int64)
    neighbors = faiss.vector_to_array(hnsw.neighbors)
    cum = faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64)
    links = [[] for _ in range(hnsw.max_level + 1)]
    for i, level in enumerate(levels):
        for layer in range(level):
            for j in neighbors[offsets[i] + cum[layer]:offsets[i] + cum[layer + 1]]:
                if j < 0:
                    break
                links[layer].append((i, int(j)))
    return levels, links


def hnsw_greedy_path(index, points: np.ndarray, query: np.ndarray) -> list[tuple[int, int]]:
    """``[(layer, node), ...]``: the greedy descent of an HNSW search from the entry point, as FAISS's
    ``greedy_update_nearest`` walks each upper layer (move to the linked node nearest the query while one is
    nearer, then go down a layer at that node), continued on layer 0 the same way: FAISS's layer-0 search with
    ``efSearch=1``. ``points``: the ``(N, 2)`` vectors the index holds; ``query``: ``(2,)``. The last node is what
    ``index.search(query, 1)`` returns with ``efSearch=1``."""
    _, links = hnsw_graph(index)
    linked = [{} for _ in links]
    for layer, pairs in enumerate(links):
        for i, j in pairs:
            linked[layer].setdefault(i, []).append(j)
    query = np.asarray(query, dtype=np.float32).reshape(2)
    distance = lambda node: float(((points[node] - query) ** 2).sum())  # noqa: E731
    node = int(index.hnsw.entry_point)
    path = [(len(links) - 1, node)]
    for layer in range(len(links) - 1, -1, -1):
        if layer < len(links) - 1:
            path.append((layer, node))
        while True:
            nearest = min(linked[layer].get(node, []), key=distance, default=node)
            if distance(nearest) >= distance(node):
                break
            node = nearest
            path.append((layer, node))
    return path


#: How much a layer's sheet is squashed upwards in the stacked drawing (its slant gives the depth).
SQUASH = 0.33


def _sheet(layer: int, gap: float, low: np.ndarray, scale: float) -> Affine2D:
    """Point coordinates on layer ``layer`` → the stacked drawing: shifted by ``-low`` and divided by ``scale``
    (the toy in a unit square), then slanted (x + 0.5 y, 0.33 y) and lifted by ``gap * layer``."""
    skew = Affine2D(np.array([[1.0, 0.5, 0.0], [0.0, SQUASH, gap * layer], [0.0, 0.0, 1.0]]))
    return Affine2D().translate(-low[0], -low[1]).scale(1 / scale) + skew


def hnsw_layers_figure(points: np.ndarray | None = None, *, m: int = 4, query=None, seed: int = 0) -> Figure:
    """A real ``faiss.IndexHNSWFlat`` (``m`` links per node, ``2 * m`` on layer 0) on 2-D points, drawn as
    stacked layers, the bottom one holding every node: on each layer the nodes whose level reaches it and their
    links there, read back from FAISS (:func:`hnsw_graph`); the query (star on every layer) and the greedy path
    from the entry point (red, :func:`hnsw_greedy_path`; dashed where it goes down a layer at the same node).

    ``points``: ``(N, 2)``, default 100 :func:`toy_points`. FAISS draws each node's level at random with its
    own fixed seed and builds on one thread here, so the same points give the same graph.
    """
    faiss = faiss_module()
    points = np.ascontiguousarray(toy_points(100, seed=seed) if points is None else points, dtype=np.float32)
    q = _query(points, query, seed)
    index = faiss.IndexHNSWFlat(2, m)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # links built in parallel depend on the threads' timing
    try:
        index.add(points)
    finally:
        faiss.omp_set_num_threads(threads)
    levels, links = hnsw_graph(index)
    path = hnsw_greedy_path(index, points, q[0])
    layers = len(links)

    low, high = np.minimum(points.min(0), q[0]), np.maximum(points.max(0), q[0])
    scale = float((high - low).max())
    height = float(high[1] - low[1]) / scale  # of a sheet in the unit square, before the squash
    gap = SQUASH * height + 0.2
    left, right = -0.06, 1.06 + 0.5 * height
    bottom, top = -0.12, gap * (layers - 1) + SQUASH * height + 0.22
    fig = Figure(figsize=(5.6, 0.5 + 5.1 * (top - bottom) / (right - left)), layout="constrained")
    ax = fig.subplots()
    margin = 0.04 * scale
    corners = np.array([[low[0] - margin, low[1] - margin], [high[0] + margin, low[1] - margin],
                        [high[0] + margin, high[1] + margin], [low[0] - margin, high[1] + margin]])
    for layer in range(layers):
        sheet = _sheet(layer, gap, low, scale)
        on = sheet + ax.transData
        ax.add_patch(Polygon(corners, closed=True, facecolor="0.95", edgecolor="0.6", lw=0.8, transform=on,
                             gid=f"layer {layer} sheet", zorder=1 + 3 * layer))
        here = np.flatnonzero(levels > layer)
        ax.add_collection(LineCollection([points[[i, j]] for i, j in links[layer]], colors="0.55", linewidths=0.6,
                                         transform=on, gid=f"layer {layer} links", zorder=2 + 3 * layer))
        ax.scatter(points[here, 0], points[here, 1], s=10 if layer == 0 else 16, color="C0", transform=on,
                   gid=f"layer {layer} nodes", zorder=3 + 3 * layer)
        ax.scatter(q[:, 0], q[:, 1], s=120, marker="*", color="gold", edgecolor="black", lw=0.7, transform=on,
                   gid=f"layer {layer} query", zorder=3.5 + 3 * layer)
        ax.text(*sheet.transform(corners[1]) + [0, -0.02], f"layer {layer}: {len(here)} node{'s' * (len(here) != 1)}",
                fontsize=9.5, va="top", ha="right", gid=f"layer {layer} label")
    above = 3 * layers + 2
    for (l0, a), (l1, b) in zip(path, path[1:]):
        start = _sheet(l0, gap, low, scale).transform(points[a])
        end = _sheet(l1, gap, low, scale).transform(points[b])
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="-|>", color="red", lw=1.6, mutation_scale=10,
                                                    linestyle="--" if l0 != l1 else "-", shrinkA=2, shrinkB=2),
                    zorder=above, gid="path step")
    entry = _sheet(path[0][0], gap, low, scale).transform(points[path[0][1]])
    ax.annotate("entry point", entry, entry + [0.0, 0.16], ha="center", fontsize=9.5,
                arrowprops=dict(arrowstyle="->", color="black", lw=0.8), zorder=above)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    moves = sum(a != b for (_, a), (_, b) in zip(path, path[1:]))
    nearest = int(((points - q) ** 2).sum(1).argmin())
    if path[-1][1] == nearest:
        ending = "to its nearest node"
    else:  # does FAISS's own search, a beam of ef_search candidates on layer 0, find it?
        beam = int(index.search(q, 1)[1][0, 0]) == nearest
        ending = (f"to a node that is not its nearest;\nFAISS's beam of ef_search={index.hnsw.efSearch} on layer 0 "
                  + ("finds the nearest" if beam else "misses it too"))
    ax.set_title(f"HNSW, M={m}: all {len(points)} nodes on layer 0, fewer above.\nThe query (star) descends "
                 f"greedily (red), {moves} moves,\n{ending}", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------------
# What a search costs: FAISS's own count of the vectors a query is compared with


def distances_computed(index, queries: np.ndarray, k: int = 10) -> float:
    """Mean number of stored vectors (or centroids) ``index`` compares each of ``queries`` (``(Q, D)``) with in
    one ``index.search(queries, k)``: a count that does not depend on the machine or its load.

    ``index``: a package backend (:func:`~cbir_tutorial.search.backends.make_index`). ``exact`` and
    ``faiss-flat``: every stored vector. ``faiss-ivf``: its ``nlist`` centroids (the flat scan that picks the
    lists) plus the vectors FAISS scanned in the ``nprobe`` lists it read (with ``pq``, the codes it scored),
    FAISS's ``faiss.cvar.indexIVF_stats.ndis`` (k-means lists hold unequal numbers of rows, so this is not
    ``nprobe * N / nlist``). ``faiss-hnsw``: the distances FAISS computed while walking the graph, upper layers
    included (``faiss.cvar.hnsw_stats.ndis``). Any other backend: NaN.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    name = getattr(index, "name", "")
    if name in ("exact", "faiss-flat"):
        return float(len(index))
    if name not in ("faiss-ivf", "faiss-hnsw") or not len(queries):
        return float("nan")
    faiss = faiss_module()
    stats = faiss.cvar.indexIVF_stats if name == "faiss-ivf" else faiss.cvar.hnsw_stats
    stats.reset()
    index.search(queries, k)
    computed = float(stats.ndis) / len(queries)
    return computed + (int(index.options["nlist"]) if name == "faiss-ivf" else 0)


def cost_curves(gallery: np.ndarray, queries: np.ndarray, sizes: Sequence[int], k: int = 10, *,
                knobs: Mapping[str, tuple[str, Sequence[int]]] | None = None,
                repeats: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~cbir_tutorial.search.sizing.recall_latency_curves` (same arguments, same ``(curves, builds)``,
    every index built once per size), with one more column in ``curves``: ``distances computed``
    (:func:`distances_computed`), counted where ``vectors compared`` is an estimate."""
    return recall_latency_curves(gallery, queries, sizes, k, knobs=KNOBS if knobs is None else knobs,
                                 repeats=repeats, measures={"distances computed": distances_computed})


def call_floor_ms(queries: np.ndarray, k: int = 10, *, rows: int = 100, repeats: int = 3, seed: int = 0) -> float:
    """Milliseconds one ``search`` of the package takes, one query of ``queries`` at a time (the median of
    ``repeats`` means, as :func:`~cbir_tutorial.search.sizing.recall_and_latency` times), on a ``faiss-flat``
    index of only ``rows`` random unit vectors: what every call pays whatever the index (checking the query,
    mapping FAISS's labels to ids, ordering ties), as FAISS's own part is a scan of ``rows`` vectors."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    vectors = np.random.default_rng(seed).standard_normal((rows, queries.shape[1])).astype(np.float32)
    index = make_index("faiss-flat", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return recall_and_latency(index, queries, index.search(queries, k)[1], k, repeats)["ms per query"]
