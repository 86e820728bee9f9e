"""Notebook 9's pictures of the sizing measurements: recall against latency per gallery size, recall against memory."""

import pandas as pd
from matplotlib.figure import Figure

from cbir_tutorial.ui.plotting import memory_recall_figure, recall_latency_figure


def test_recall_latency_has_one_panel_per_size_one_line_per_index_and_knob_labels():
    curves = pd.DataFrame({"rows": [100, 100, 100, 400, 400, 400], "index": ["exact", "faiss-ivf", "faiss-ivf"] * 2,
                           "setting": ["-", "nprobe=1", "nprobe=8"] * 2, "recall": [1, 0.6, 0.9, 1, 0.5, 0.8],
                           "ms per query": [0.5, 0.1, 0.3, 2.0, 0.1, 0.4]})
    fig = recall_latency_figure(curves, k=10)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["100 rows", "400 rows"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 2] and fig.axes[0].get_ylabel() == "recall@10 vs exact"
    assert sorted(t.get_text() for t in fig.axes[1].texts) == ["1", "8"]  # knob values, not the exact search's "-"


def test_memory_recall_labels_each_point_with_its_index():
    table = pd.DataFrame({"bytes per vector": [1028, 24, 72], "recall": [1.0, 0.4, 0.8]},
                         index=["exact float32", "IVF-PQ m=16", "IVF-PQ m=64"])
    fig = memory_recall_figure(table, k=10, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == list(table.index) and ax.get_xscale() == "log"
    assert ax.get_ylabel() == "recall@10" and ax.get_title() == "t"
