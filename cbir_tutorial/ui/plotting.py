"""Figures: query + results grid, catalogue sample grid, MAP@K across backbones. All return a Figure."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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


def results_figure(query: ImageSource | None, results: pd.DataFrame, *, columns: int = 4,
                   title: str | None = None, query_relevant: Sequence[bool] | None = None) -> Figure:
    """The query image, then the results (thumbnail, brand, description, price, distance) in a grid of
    ``columns`` (4: its captions stay readable when a page or a phone shrinks the picture).

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
        ax.text(0.5, -0.02, _caption(row), transform=ax.transAxes, ha="center", va="top", fontsize=9)
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


def catalogue_figure(catalogue: Catalogue, n: int = 12, *, columns: int = 4, seed: int = 0,
                     title: str | None = None) -> Figure:
    """A random sample of ``n`` products (at least 1) with brand, description and price captions, in a grid of
    ``columns`` (4, as :func:`results_figure`: captions stay readable when a page or a phone shrinks the picture)."""
    if n < 1:
        raise ValueError(f"n={n}: a catalogue figure shows at least 1 product")
    sample = catalogue.sample(n, seed).table
    rows, cols = _grid(len(sample), columns)
    fig = Figure(figsize=(2.3 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (_, row) in zip(axes, sample.iterrows()):
        ax.imshow(thumbnail(row["path"]))
        caption = _caption(row, distance=False)
        if row.get("category"):
            caption = f"[{row['category']}]\n" + caption
        ax.text(0.5, -0.02, caption, transform=ax.transAxes, ha="center", va="top", fontsize=9)
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
    """Scatter of the features' 2-D PCA projection, the ``top`` largest categories in colour (none grey, up to 9
    colours), the rest grey."""
    points, share = projection_2d(features)
    labels = np.asarray(labels, dtype=object).astype(str)
    counts = pd.Series(labels[labels != ""]).value_counts()
    fig = Figure(figsize=(7.5, 5), layout="constrained")
    ax = fig.subplots()
    shown = np.isin(labels, counts.index[:top])
    ax.scatter(*points[~shown].T, s=6, color="0.8", label="other categories")
    colours = [f"C{i}" for i in range(10) if i != 7]  # C7 is matplotlib's grey: the others' colour
    for i, name in enumerate(counts.index[:top]):
        part = labels == name
        ax.scatter(*points[part].T, s=10, color=colours[i % len(colours)], label=f"{name} ({part.sum()})")
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
    rows, width = len(paths), 1.5 * (k + 1)
    # a page shows the figure about 8 inches wide: the text grows with a wider figure to stay readable there
    points = 8.5 * min(max(width / 8, 1.0), 1.8)
    height = (1.9 + points / 72) * rows + 0.6
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.1 + 1.5 * points / 72, rect=(0, 0.3 / height, 1, 1 - 0.3 / height))
    axes = fig.subplots(max(rows, 1), k + 1, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (path, found, flags) in enumerate(zip(paths, found_paths, relevant)):
        axes[i, 0].imshow(thumbnail(path, 96))
        axes[i, 0].set_title("query", fontsize=points, fontweight="bold")
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
            line = textwrap.shorten(str(captions[i]), int(width * 72 / (0.55 * points)), placeholder=" …")
            text = axes[i, 0].text(0, -0.06, line, transform=axes[i, 0].transAxes, ha="left", va="top",
                                   fontsize=points)
            text.set_in_layout(False)
    if captions:  # the captions are out of the layout, so a tight bbox (Jupyter's inline figures) would clip the last:
        from matplotlib.patches import Rectangle

        frame = Rectangle((0, 0), 1, 1, transform=fig.transFigure, fill=False, linewidth=0)
        fig.add_artist(frame)  # an invisible frame at the figure's edges keeps the whole figure, bottom margin included
    if title:
        fig.suptitle(title, fontsize=1.2 * points)
    return fig


def grouped_bars_figure(table: pd.DataFrame, label: str, columns: dict[str, str], *, ylabel: str = "",
                        title: str | None = None) -> Figure:
    """Bars of several ``columns`` of ``table`` side by side for each of its rows, labelled by column ``label``,
    the value printed on each bar; ``columns``: ``{column: legend}``. The y axis runs from 0 to 1, for scores
    between 0 and 1 such as MAP@K: a bar's height is its value, so two bars compare as their values do (an axis
    starting near the lowest bar would make a gap of 0.01 look several times bigger)."""
    fig = Figure(figsize=(1.6 + 1.05 * len(table) * max(1, len(columns) / 2), 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    width = 0.8 / max(1, len(columns))
    for i, (column, name) in enumerate(columns.items()):
        bars = ax.bar(x + (i - (len(columns) - 1) / 2) * width, table[column].to_numpy(dtype=float), width=width,
                      label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(x, table[label].astype(str), rotation=15)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", ncol=len(columns))
    if title:
        ax.set_title(title)
    return fig


#: Where :func:`_place_labels` tries to put a point's label, in points from the point, in this order.
LABEL_OFFSETS = ((0, 6), (0, -17), (7, -4), (-7, -4), (5, 3), (5, -13), (-5, 3), (-5, -13), (0, 16), (0, -27),
                 (12, -4), (-12, -4), (0, 26), (0, -37))


def _obstacles(ax) -> tuple[np.ndarray, np.ndarray]:
    """What a label must not cover on ``ax``, as ``(M, 4)`` pixel boxes ``x0, y0, x1, y1``: ``(solid, lines)``,
    ``solid`` the markers of its lines (a square of the marker's size), its texts and its legend, ``lines`` points
    every 2 pixels along its lines' segments."""
    to_px = ax.figure.dpi / 72
    solid, lines = [], []
    for line in ax.lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        if line.get_marker() not in (None, "None", "none", "", " "):
            half = (line.get_markersize() + line.get_markeredgewidth()) * to_px / 2 + 2
            solid += [(x - half, y - half, x + half, y + half) for x, y in xy]
        if line.get_linestyle() not in ("None", "none", "", " "):
            for start, end in zip(xy, xy[1:]):
                for t in np.linspace(0, 1, max(2, int(np.hypot(*(end - start)) / 2))):
                    x, y = start + t * (end - start)
                    lines.append((x - 1, y - 1, x + 1, y + 1))
    for artist in [*ax.texts, ax.get_legend()]:
        if artist is not None:
            box = artist.get_window_extent()
            solid.append((box.x0, box.y0, box.x1, box.y1))
    return np.array(solid, dtype=float).reshape(-1, 4), np.array(lines, dtype=float).reshape(-1, 4)


def _covered(box: np.ndarray, others: np.ndarray) -> float:
    """Pixels of ``box`` (``x0, y0, x1, y1``) that the boxes ``others`` cover, summed."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return float((width * height).sum())


def _place_labels(ax, labels, *, fontsize: float = 8.5) -> list:
    """Annotate each ``(text, x, y, colour)`` of ``labels`` (data coordinates of ``ax``) at the first offset of
    :data:`LABEL_OFFSETS` where its box stays inside the axes and covers no label placed before it, no marker,
    no other text, not the legend and no line (:func:`_obstacles`); failing that, the first that covers a line
    only; failing that, the one inside the axes that covers least. Call it once the axes' lines, legend, scales
    and limits are set; the labels stay out of the layout, so that the axes do not move under them. Returns the
    annotations."""
    ax.figure.draw_without_rendering()  # the final layout: the axes where they will be drawn
    inside = ax.get_window_extent()
    solid, lines = _obstacles(ax)

    def annotated(text, x, y, colour, dx, dy):
        note = ax.annotate(str(text), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                           ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom", color=colour)
        note.set_in_layout(False)
        e = note.get_window_extent()
        return note, np.array([e.x0, e.y0, e.x1, e.y1])

    placed = []
    for text, x, y, colour in labels:
        scores = []  # per offset: (outside the axes, pixels of solid things covered, pixels of lines covered)
        for dx, dy in LABEL_OFFSETS:
            note, box = annotated(text, x, y, colour, dx, dy)
            note.remove()
            outside = not (inside.x0 <= box[0] and box[2] <= inside.x1 and inside.y0 <= box[1] and box[3] <= inside.y1)
            scores.append((outside, _covered(box, solid), _covered(box, lines)))
            if scores[-1] == (False, 0.0, 0.0):
                break
        best = min(range(len(scores)), key=lambda i: (scores[i][0], scores[i][1] > 0, scores[i][2] > 0, scores[i][1],
                                                      scores[i][2], i))
        note, box = annotated(text, x, y, colour, *LABEL_OFFSETS[best])
        solid = np.vstack([solid, box])
        placed.append(note)
    return placed


#: Axis words of the columns :func:`recall_latency_figure` can put on its x axis.
COST_AXES = {"ms per query": "ms per query", "distances computed": "distances computed per query",
             "vectors compared": "vectors compared per query (estimate)"}


def _plain_log_ticks(ax) -> None:
    """Ticks of ``ax``'s log x axis written as plain numbers (0.2, 5, 1,000): at 1, 2 and 5 times the powers of
    ten over at most two decades, at the powers of ten alone over more (their labels would overlap)."""
    low, high = ax.get_xlim()
    wide = np.log10(max(high, 1e-12) / max(low, 1e-12)) > 2
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def recall_latency_figure(curves: pd.DataFrame, *, k: int | None = None, title: str | None = None,
                          x: str | Sequence[str] = "ms per query", floor_ms: float | None = None) -> Figure:
    """Recall against the cost of a query, one panel per gallery size of ``curves`` (columns ``rows, index,
    setting, recall`` and the ``x`` columns, as :func:`cbir_tutorial.search.sizing.recall_latency_curves` or
    :func:`cbir_tutorial.lessons.indexes.cost_curves` return them): one line per index, each point labelled with
    its knob's value in the line's colour (labels placed where they cover no other label, point or line); cost
    on a log scale.

    ``x``: the cost column, ``"ms per query"`` by default, or several: one row of panels per column, the first
    on top (e.g. ``("distances computed", "ms per query")``). ``floor_ms``: the time every call pays whatever
    the index (:func:`cbir_tutorial.lessons.indexes.call_floor_ms`), drawn as a dotted line on the panels of
    ``ms per query``. On those panels an index's points are markers without a connecting line: a time near the
    cost of a call moves with the machine's load, and a line through such points would draw that noise as a
    trend."""
    columns = [x] if isinstance(x, str) else list(x)
    sizes = sorted(curves["rows"].unique())
    fig = Figure(figsize=(4.8 * len(sizes), 3.7 * len(columns) + 0.3), layout="constrained")
    axes = np.array(fig.subplots(len(columns), len(sizes), sharey=True, squeeze=False))
    markers = dict(zip(curves["index"].unique(), "s^oDv<>"))
    labels = {}
    for row, column in zip(axes, columns):
        for ax, n in zip(row, sizes):
            labels[ax] = []
            for name, line in curves[curves["rows"] == n].groupby("index", sort=False):
                drawn, = ax.plot(line[column], line["recall"], marker=markers[name], label=name, gid=name,
                                 linestyle="none" if column == "ms per query" else "-")
                labels[ax] += [(str(setting).split("=", 1)[1], cost, recall, drawn.get_color())
                               for setting, cost, recall
                               in zip(line["setting"], line[column], line["recall"]) if "=" in str(setting)]
            ax.set_xscale("log")
            ax.margins(x=0.12, y=0.1)
            if column == "ms per query" and floor_ms is not None:
                low, high = ax.get_xlim()
                ax.set_xlim(min(low, floor_ms / 1.6), high)
                ax.axvline(floor_ms, color="0.45", linestyle=":", linewidth=1.2, gid="floor")
                ax.text(floor_ms, 0.03, "a call on\n100 rows ", transform=ax.get_xaxis_transform(), ha="right",
                        va="bottom", fontsize=8, color="0.3", gid="floor label")
            _plain_log_ticks(ax)
            ax.set_xlabel(f"{COST_AXES.get(column, column)}, log scale")
            ax.set_title(f"{n:,} rows")
        row[0].set_ylabel(f"recall@{k} vs exact" if k else "recall vs exact")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "Recall against latency")
    for ax, placed in labels.items():
        _place_labels(ax, placed)
    return fig


def memory_recall_figure(table: pd.DataFrame, *, k: int | None = None, title: str | None = None,
                         line: str = "IVF-PQ") -> Figure:
    """Recall against bytes per vector (log scale) of the rows of ``table`` (indexed by index name, columns
    ``bytes per vector`` and ``recall``): the rows whose name starts with ``line`` (one family, e.g. IVF-PQ
    at several ``m``) as one line in order of bytes, each point labelled with the rest of its name (``m=8``);
    every other row a reference of its own (exact search, IVF without PQ), a separate marker labelled with its
    name. Labels are placed where they overlap no other label or point."""
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    names = table.index.astype(str)
    family = table[names.str.startswith(line)].sort_values("bytes per vector")
    others = table[~names.str.startswith(line)]
    labels = []
    if len(family):
        ax.plot(family["bytes per vector"], family["recall"], "o-", color="C0", label=line, gid=line)
        labels += [(str(name)[len(line):].strip() or str(name), size, recall, "C0")
                   for name, size, recall in zip(family.index, family["bytes per vector"], family["recall"])]
    for i, (name, size, recall) in enumerate(zip(others.index, others["bytes per vector"], others["recall"])):
        # open and filled markers in turn, the open ones larger: two references at one point both show
        ax.plot([size], [recall], linestyle="none", marker="s*D^v"[i % 5], markersize=13 if i % 2 == 0 else 9,
                markerfacecolor="none" if i % 2 == 0 else f"C{i + 1}", markeredgewidth=1.5, color=f"C{i + 1}",
                label=str(name), gid=f"reference {name}", zorder=3 + i)
        labels.append((str(name), size, recall, f"C{i + 1}"))
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.12)
    low, high = ax.get_xlim()
    if high < 10 * low:  # at least a decade, so that sizes a few bytes apart do not look far apart
        middle = np.sqrt(low * high)
        ax.set_xlim(middle / np.sqrt(10), middle * np.sqrt(10))
    _plain_log_ticks(ax)
    ax.set_xlabel("bytes per vector, log scale")
    ax.set_ylabel(f"recall@{k}" if k else "recall")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title)
    _place_labels(ax, labels)
    return fig
