"""Notebook 9's pictures of the sizing measurements: recall against latency (or FAISS's count of distances) per
gallery size, recall against memory; every label readable (no label covers another, a point or a line)."""

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from cbir_tutorial.ui.plotting import memory_recall_figure, recall_latency_figure

#: Crowded curves, as notebook 9 measured them at 12,500 and 50,000 rows: points a few pixels apart at recall 1.
CROWDED = pd.DataFrame(
    [(12500, "exact", "-", 1.0, 2.949, 12500.0), (12500, "faiss-ivf", "nprobe=1", 0.892, 0.502, 377.7),
     (12500, "faiss-ivf", "nprobe=2", 0.96, 0.535, 424.2), (12500, "faiss-ivf", "nprobe=4", 0.998, 0.466, 527.6),
     (12500, "faiss-ivf", "nprobe=8", 1.0, 0.562, 714.0), (12500, "faiss-ivf", "nprobe=16", 1.0, 0.597, 1054.0),
     (12500, "faiss-ivf", "nprobe=32", 1.0, 1.022, 1714.9), (12500, "faiss-hnsw", "ef_search=16", 0.998, 0.478, 155.8),
     (12500, "faiss-hnsw", "ef_search=32", 1.0, 0.367, 212.5), (12500, "faiss-hnsw", "ef_search=64", 1.0, 0.557, 306.0),
     (12500, "faiss-hnsw", "ef_search=128", 1.0, 0.811, 455.8), (50000, "exact", "-", 1.0, 13.833, 50000.0),
     (50000, "faiss-ivf", "nprobe=1", 0.852, 0.833, 970.7), (50000, "faiss-ivf", "nprobe=2", 0.972, 0.896, 1030.3),
     (50000, "faiss-ivf", "nprobe=4", 0.996, 1.009, 1154.1), (50000, "faiss-ivf", "nprobe=8", 1.0, 1.09, 1394.8),
     (50000, "faiss-ivf", "nprobe=16", 1.0, 1.525, 1880.2), (50000, "faiss-ivf", "nprobe=32", 1.0, 2.079, 2816.6),
     (50000, "faiss-hnsw", "ef_search=16", 1.0, 0.688, 181.8), (50000, "faiss-hnsw", "ef_search=32", 1.0, 0.711, 211.8),
     (50000, "faiss-hnsw", "ef_search=64", 1.0, 0.774, 286.4),
     (50000, "faiss-hnsw", "ef_search=128", 1.0, 1.151, 478.5)],
    columns=["rows", "index", "setting", "recall", "ms per query", "distances computed"])


def boxes(artists):
    """``(n, 4)`` pixel boxes ``x0, y0, x1, y1`` of drawn artists."""
    return np.array([[e.x0, e.y0, e.x1, e.y1] for e in (a.get_window_extent() for a in artists)]).reshape(-1, 4)


def overlapping(a, b):
    """Pairs ``(i, j)`` of boxes of ``a`` and ``b`` whose insides overlap."""
    return [(i, j) for i, p in enumerate(a) for j, q in enumerate(b)
            if p[0] < q[2] - 0.5 and q[0] < p[2] - 0.5 and p[1] < q[3] - 0.5 and q[1] < p[3] - 0.5]


def assert_labels_readable(fig):
    """No knob label of ``fig`` overlaps another, or covers a marker of any line."""
    fig.draw_without_rendering()
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() != "floor label"]
        placed = boxes(labels)
        clashes = [(i, j) for i, j in overlapping(placed, placed) if i < j]
        assert not clashes, [(labels[i].get_text(), labels[j].get_text()) for i, j in clashes]
        to_px = fig.dpi / 72
        for line in ax.lines:
            if line.get_gid() == "floor":
                continue
            half = line.get_markersize() * to_px / 2
            xy = line.get_transform().transform(line.get_xydata())
            markers = np.column_stack([xy - half, xy + half])
            covered = overlapping(placed, markers)
            assert not covered, [(labels[i].get_text(), line.get_gid(), j) for i, j in covered]


def test_recall_latency_has_one_panel_per_size_one_line_per_index_and_knob_labels():
    curves = pd.DataFrame({"rows": [100, 100, 100, 400, 400, 400], "index": ["exact", "faiss-ivf", "faiss-ivf"] * 2,
                           "setting": ["-", "nprobe=1", "nprobe=8"] * 2, "recall": [1, 0.6, 0.9, 1, 0.5, 0.8],
                           "ms per query": [0.5, 0.1, 0.3, 2.0, 0.1, 0.4]})
    fig = recall_latency_figure(curves, k=10)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["100 rows", "400 rows"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 2] and fig.axes[0].get_ylabel() == "recall@10 vs exact"
    assert sorted(t.get_text() for t in fig.axes[1].texts) == ["1", "8"]  # knob values, not the exact search's "-"


def test_recall_against_two_costs_draws_a_row_of_panels_per_cost_and_the_floor_on_the_times():
    fig = recall_latency_figure(CROWDED, k=10, x=("distances computed", "ms per query"), floor_ms=0.32)
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes] == ["12,500 rows", "50,000 rows"] * 2
    assert all(ax.get_xlabel().startswith("distances computed per query") for ax in top)
    assert all(ax.get_xlabel().startswith("ms per query") for ax in bottom)
    for ax, column in [(ax, "distances computed") for ax in top] + [(ax, "ms per query") for ax in bottom]:
        n = int(ax.get_title().split()[0].replace(",", ""))
        for line in ax.lines:
            if line.get_gid() == "floor":
                continue
            part = CROWDED[(CROWDED["rows"] == n) & (CROWDED["index"] == line.get_gid())]
            np.testing.assert_allclose(line.get_xydata(), part[[column, "recall"]].to_numpy())
    floors = [[line for line in ax.lines if line.get_gid() == "floor"] for ax in fig.axes]
    assert [len(f) for f in floors] == [0, 0, 1, 1] and all(f[0].get_xdata()[0] == 0.32 for f in floors[2:])
    assert all(ax.get_xlim()[0] < 0.32 for ax in bottom)  # the floor is in view


def test_knob_labels_cover_no_other_label_and_no_point_and_take_their_line_colour():
    fig = recall_latency_figure(CROWDED, k=10, x=("distances computed", "ms per query"), floor_ms=0.32)
    assert_labels_readable(fig)
    for ax in fig.axes:
        colours = {line.get_gid(): to_rgba(line.get_color()) for line in ax.lines}
        knobs = [t for t in ax.texts if t.get_gid() != "floor label"]
        n = int(ax.get_title().split()[0].replace(",", ""))
        expected = CROWDED[(CROWDED["rows"] == n) & (CROWDED["index"] != "exact")]
        assert sorted(t.get_text() for t in knobs) == sorted(s.split("=")[1] for s in expected["setting"])
        ivf = {t.get_text() for t in knobs if to_rgba(t.get_color()) == colours["faiss-ivf"]}
        assert ivf == {"1", "2", "4", "8", "16", "32"}


def test_memory_recall_draws_the_family_as_a_line_and_each_reference_as_its_own_marker():
    table = pd.DataFrame({"bytes per vector": [1028, 72, 16, 40, 24, 1032],
                          "recall": [1.0, 0.818, 0.384, 0.618, 0.48, 1.0]},
                         index=["exact float32", "IVF-PQ m=64", "IVF-PQ m=8", "IVF-PQ m=32", "IVF-PQ m=16", "IVF-flat"])
    fig = memory_recall_figure(table, k=10, title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "recall@10" and ax.get_title() == "t"
    lines = {line.get_gid(): line for line in ax.lines}
    assert set(lines) == {"IVF-PQ", "reference exact float32", "reference IVF-flat"}
    # the IVF-PQ rows alone make the line, in order of bytes; no segment joins them to a reference
    np.testing.assert_allclose(lines["IVF-PQ"].get_xydata(), [[16, 0.384], [24, 0.48], [40, 0.618], [72, 0.818]])
    for name in ("exact float32", "IVF-flat"):
        reference = lines[f"reference {name}"]
        assert reference.get_linestyle() == "None" and reference.get_marker() not in (None, "None", "")
        np.testing.assert_allclose(reference.get_xydata(), [table.loc[name, ["bytes per vector", "recall"]]])
    assert lines["reference exact float32"].get_marker() != lines["reference IVF-flat"].get_marker()
    assert sorted(t.get_text() for t in ax.texts) == sorted(["m=8", "m=16", "m=32", "m=64", "exact float32",
                                                             "IVF-flat"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IVF-PQ", "exact float32", "IVF-flat"]
    assert_labels_readable(fig)  # 1,028 and 1,032 bytes: the two reference labels apart


def test_memory_recall_without_a_family_draws_the_references_alone():
    table = pd.DataFrame({"bytes per vector": [1028, 1032], "recall": [1.0, 1.0]}, index=["exact float32", "IVF-flat"])
    ax = memory_recall_figure(table).axes[0]
    assert [line.get_gid() for line in ax.lines] == ["reference exact float32", "reference IVF-flat"]
    assert ax.get_ylabel() == "recall"
    low, high = ax.get_xlim()
    assert high >= 10 * low * 0.999 and low < 1028 and 1032 < high  # a decade at least: 4 bytes apart look close


def test_the_times_are_markers_without_lines_and_the_counts_are_lines():
    """A time near the cost of a call is noise: joining its points would draw a trend that is not there."""
    fig = recall_latency_figure(CROWDED, k=10, x=("distances computed", "ms per query"), floor_ms=0.32)
    top, bottom = fig.axes[:2], fig.axes[2:]
    for ax in top:
        assert all(line.get_linestyle() == "-" for line in ax.lines if line.get_gid() != "floor")
    for ax in bottom:
        drawn = [line for line in ax.lines if line.get_gid() != "floor"]
        assert {line.get_gid() for line in drawn} == {"exact", "faiss-ivf", "faiss-hnsw"}
        assert all(line.get_linestyle() == "None" and line.get_marker() not in (None, "None", "") for line in drawn)
    only_times = recall_latency_figure(CROWDED, k=10)
    assert all(line.get_linestyle() == "None" for ax in only_times.axes for line in ax.lines)
