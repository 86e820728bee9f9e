"""Figures: query + results grid, catalogue sample grid, MAP@K across backbones. All return a Figure."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..data.catalogue import Catalogue
from ..data.images import ImageError, ImageSource, load_rgb

THUMBNAIL = 160
METRIC_NAMES = {"map_at_k": "MAP@K", "precision_at_k": "precision@K", "recall_at_k": "recall@K"}


def thumbnail(source: ImageSource, size: int = THUMBNAIL) -> np.ndarray:
    """``(size, size, 3)`` uint8 picture of an image padded on white; a grey square if it is unreadable."""
    try:
        return load_rgb(source, size, "pad")
    except ImageError:
        return np.full((size, size, 3), 200, dtype=np.uint8)


def _caption(row, width: int = 22, distance: bool = True) -> str:
    parts = [str(row.get("brand", "")), str(row.get("description", "")), str(row.get("price", ""))]
    text = "\n".join(textwrap.shorten(p, width, placeholder="…") for p in parts if p)
    if distance and "distance" in row and pd.notna(row["distance"]):
        text += f"\nd = {row['distance']:.3f}"
    return text


def _grid(n: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, n))
    return int(np.ceil(n / columns)), columns


def results_figure(query: ImageSource | None, results: pd.DataFrame, *, columns: int = 6,
                   title: str | None = None, query_relevant: Sequence[bool] | None = None) -> Figure:
    """The query image, then the results (thumbnail, brand, description, price, distance) in a grid.

    ``results``: a table from :meth:`SearchEngine.search`. ``query_relevant``: optional per-result
    flags, drawn as green (relevant) or red (not) frames.
    """
    n = len(results) + (query is not None)
    rows, cols = _grid(max(n, 1), columns)
    fig = Figure(figsize=(2.3 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    slot = 0
    if query is not None:
        axes[0].imshow(thumbnail(query))
        axes[0].set_title("query", fontsize=10, fontweight="bold")
        slot = 1
    for j, (_, row) in enumerate(results.iterrows()):
        ax = axes[slot + j]
        ax.imshow(thumbnail(row["path"]))
        ax.set_title(f"#{row.get('rank', j + 1)}", fontsize=9, loc="left")
        ax.text(0.5, -0.02, _caption(row), transform=ax.transAxes, ha="center", va="top", fontsize=7.5)
        if query_relevant is not None:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if query_relevant[j] else "tab:red")
                spine.set_linewidth(3)
    if title:
        fig.suptitle(title)
    return fig


def catalogue_figure(catalogue: Catalogue, n: int = 12, *, columns: int = 6, seed: int = 0,
                     title: str | None = None) -> Figure:
    """A random sample of ``n`` products (at least 1) with brand, description and price captions."""
    if n < 1:
        raise ValueError(f"n={n}: a catalogue figure shows at least 1 product")
    sample = catalogue.sample(n, seed).table
    rows, cols = _grid(len(sample), columns)
    fig = Figure(figsize=(2.2 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (_, row) in zip(axes, sample.iterrows()):
        ax.imshow(thumbnail(row["path"]))
        caption = _caption(row, distance=False)
        if row.get("category"):
            caption = f"[{row['category']}]\n" + caption
        ax.text(0.5, -0.02, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7.5)
    fig.suptitle(title or f"{catalogue.name}: {len(catalogue)} products")
    return fig


def map_comparison_figure(scores: pd.DataFrame, *, metric: str = "map_at_k", by: str = "backbone",
                          title: str | None = None) -> Figure:
    """Bar chart of ``metric`` per ``by`` (one bar per row of ``scores``, value printed on each bar)."""
    fig = Figure(figsize=(1.6 + 1.3 * len(scores), 3.6), layout="constrained")
    ax = fig.subplots()
    labels = scores[by].astype(str).tolist()
    values = scores[metric].to_numpy(dtype=float)
    bars = ax.bar(labels, values, color=[f"C{i}" for i in range(len(labels))])
    ax.bar_label(bars, fmt="%.3f", fontsize=9)
    ax.set_ylim(0, max(1.0, values.max(initial=0) * 1.15))
    ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    k = scores["k"].iloc[0] if "k" in scores else None
    ax.set_title(title or (f"{ax.get_ylabel()} (K = {k})" if k is not None else ax.get_ylabel()))
    ax.tick_params(axis="x", labelrotation=20)
    return fig


def confusion_figure(confusion: pd.DataFrame, *, title: str | None = None, max_categories: int = 25) -> Figure:
    """Heat map of a top-K confusion table (rows: query category, columns: result category, shares 0..1).

    With more than ``max_categories`` query categories, the largest ones by row order are kept (the
    columns follow the rows)."""
    table = confusion.iloc[:max_categories]
    table = table.reindex(columns=[c for c in table.index if c in table.columns])
    n = len(table)
    fig = Figure(figsize=(1.5 + 0.32 * n, 1.2 + 0.3 * n), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=float), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), table.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(n), table.index, fontsize=7)
    ax.set_xlabel("category of a result")
    ax.set_ylabel("category of the query")
    fig.colorbar(image, ax=ax, shrink=0.6, label="share of the top-K results")
    ax.set_title(title or "Where the top-K results of each category fall")
    return fig


def projection_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 2)`` coordinates of ``(N, D)`` features on their two principal directions (after centring),
    and the ``(2,)`` share of the variance each direction holds."""
    features = np.asarray(features, dtype=np.float64)
    centred = features - features.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular ** 2
    return centred @ vt[:2].T, variance[:2] / variance.sum()


def projection_figure(features: np.ndarray, labels: Sequence[str], *, top: int = 10,
                      title: str | None = None) -> Figure:
    """Scatter of the features' 2-D PCA projection, the ``top`` largest categories in colour, the rest grey."""
    points, share = projection_2d(features)
    labels = np.asarray(labels, dtype=object).astype(str)
    counts = pd.Series(labels[labels != ""]).value_counts()
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    shown = np.isin(labels, counts.index[:top])
    ax.scatter(*points[~shown].T, s=6, color="0.8", label="other categories")
    for i, name in enumerate(counts.index[:top]):
        part = labels == name
        ax.scatter(*points[part].T, s=10, color=f"C{i % 10}", label=f"{name} ({part.sum()})")
    ax.set_xlabel(f"first principal direction ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"second ({share[1]:.0%})")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title(title or f"The features in 2-D (PCA), the {top} largest categories")
    return fig


def query_rows_figure(paths: Sequence, found_paths: Sequence[Sequence], relevant: Sequence[Sequence[bool]], *,
                      captions: Sequence[str] = (), title: str | None = None) -> Figure:
    """One row per query: its photo, then its results with green (relevant) or red frames, and a caption
    under the row (e.g. why the query failed)."""
    k = max((len(row) for row in found_paths), default=0)
    rows = len(paths)
    height = 1.9 * rows + 0.6
    fig = Figure(figsize=(1.5 * (k + 1), height), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.25, rect=(0, 0.3 / height, 1, 1 - 0.3 / height))  # room for the captions
    axes = fig.subplots(max(rows, 1), k + 1, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (path, found, flags) in enumerate(zip(paths, found_paths, relevant)):
        axes[i, 0].imshow(thumbnail(path, 96))
        axes[i, 0].set_title("query", fontsize=8, fontweight="bold")
        for j, (result, flag) in enumerate(zip(found, flags), start=1):
            ax = axes[i, j]
            ax.imshow(thumbnail(result, 96))
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if flag else "tab:red")
                spine.set_linewidth(2.5)
        if i < len(captions):  # under the row, left out of the layout so that it does not widen column 0
            text = axes[i, 0].text(0, -0.06, captions[i], transform=axes[i, 0].transAxes, ha="left", va="top",
                                   fontsize=8.5)
            text.set_in_layout(False)
    if title:
        fig.suptitle(title)
    return fig


def grouped_bars_figure(table: pd.DataFrame, label: str, columns: dict[str, str], *, ylabel: str = "",
                        title: str | None = None) -> Figure:
    """Bars of several ``columns`` of ``table`` side by side for each of its rows, labelled by column ``label``,
    the value printed on each bar; ``columns``: ``{column: legend}``. The y axis starts 0.1 below the
    lowest bar (at 0 at the lowest) and ends at 1, for scores between 0 and 1 such as MAP@K."""
    fig = Figure(figsize=(1.6 + 1.05 * len(table) * max(1, len(columns) / 2), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    width = 0.8 / max(1, len(columns))
    for i, (column, name) in enumerate(columns.items()):
        bars = ax.bar(x + (i - (len(columns) - 1) / 2) * width, table[column].to_numpy(dtype=float), width=width,
                      label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, table[label].astype(str), rotation=15)
    lowest = float(table[list(columns)].to_numpy(dtype=float).min(initial=1.0))
    ax.set_ylim(max(0.0, lowest - 0.1), 1.0)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title)
    return fig


def recall_latency_figure(curves: pd.DataFrame, *, k: int | None = None, title: str | None = None) -> Figure:
    """Recall against time per query, one panel per gallery size of ``curves`` (columns ``rows, index, setting,
    recall, ms per query``, as :func:`cbir_tutorial.search.sizing.recall_latency_curves` returns): one line per
    index, each point labelled with its knob's value; time on a log scale."""
    sizes = sorted(curves["rows"].unique())
    fig = Figure(figsize=(5.5 * len(sizes), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sizes), sharey=True))
    markers = dict(zip(curves["index"].unique(), "s^oDv<>"))
    for ax, n in zip(axes, sizes):
        part = curves[curves["rows"] == n]
        for name, line in part.groupby("index", sort=False):
            ax.plot(line["ms per query"], line["recall"], marker=markers[name], label=name)
            for setting, ms, recall in zip(line["setting"], line["ms per query"], line["recall"]):
                if "=" in str(setting):
                    ax.annotate(str(setting).split("=")[1], (ms, recall), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("ms per query (log scale)")
        ax.set_title(f"{n:,} rows")
    axes[0].set_ylabel(f"recall@{k} vs exact" if k else "recall vs exact")
    axes[0].legend()
    fig.suptitle(title or "Recall against latency")
    return fig


def memory_recall_figure(table: pd.DataFrame, *, k: int | None = None, title: str | None = None) -> Figure:
    """Recall against bytes per vector, one labelled point per row of ``table`` (its index: the name; columns
    ``bytes per vector`` and ``recall``); bytes on a log scale."""
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(table["bytes per vector"], table["recall"], "o-")
    for name, size, recall in zip(table.index, table["bytes per vector"], table["recall"]):
        ax.annotate(str(name), (size, recall), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per vector (log scale)")
    ax.set_ylabel(f"recall@{k}" if k else "recall")
    if title:
        ax.set_title(title)
    return fig
