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
    """A random sample of ``n`` products with brand, description and price captions."""
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
