"""How an answer looks: HTML cards of the query and its results (green: same category, red: not), a
side-by-side comparison of backbones, and the same as a matplotlib figure."""

from __future__ import annotations

import base64
import functools
import html
import io
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from .answer import Answer
from .plotting import results_figure, thumbnail

#: Thumbnail side in the HTML grid, pixels.
THUMBNAIL_PX = 120


@functools.lru_cache(maxsize=4096)
def _path_thumbnail_uri(path: str, size: int) -> str:
    return _uri(thumbnail(path, size))


def thumbnail_uri(source: str | Path | bytes, size: int = THUMBNAIL_PX) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the image padded on white to ``size`` px (grey if unreadable).

    Catalogue paths are cached in memory, so a product is encoded once per session.
    """
    if isinstance(source, (str, Path)):
        return _path_thumbnail_uri(str(source), int(size))
    return _uri(thumbnail(source, size))


def _uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _short(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _card(row: pd.Series, relevant: bool | None, size: int) -> str:
    border = {True: "#2e7d32", False: "#c62828", None: "#ddd"}[relevant]
    flag = {True: " cbir-relevant", False: " cbir-irrelevant", None: ""}[relevant]
    lines = [f"<b>#{int(row['rank'])}</b> {html.escape(_short(row['brand'], 18))}",
             html.escape(_short(row["description"], 40)),
             html.escape(str(row["price"])),
             f"d = {float(row['distance']):.3f}"]
    caption = "<br>".join(line for line in lines if line)
    return (f'<div class="cbir-result{flag}" data-rank="{int(row["rank"])}" data-id="{html.escape(str(row["id"]))}" '
            f'style="width:{size + 12}px;border:3px solid {border};border-radius:4px;padding:3px;'
            f'font-size:11px;line-height:1.25;text-align:center;background:#fff;color:#222">'
            f'<img src="{thumbnail_uri(row["path"], size)}" width="{size}" height="{size}" alt="">'
            f"<div>{caption}</div></div>")


#: The columns of a results table a reader looks at, in order.
RESULT_COLUMNS = ("brand", "description", "price", "category", "distance")


def results_view(results: pd.DataFrame, columns=RESULT_COLUMNS, digits: int = 3) -> pd.DataFrame:
    """A results table (``SearchEngine.search``'s) as a reader looks at it: indexed by ``rank`` (1 first: the
    only numbering shown), the ``columns`` it has that are not empty in every row (the sample has no brands or
    prices), distances rounded to ``digits`` decimals. A copy: ``results`` is left as it is."""
    kept = [c for c in columns if c in results.columns and (results[c].astype(str) != "").any()]
    view = results.set_index("rank")[kept].copy()
    if "distance" in view.columns:
        view["distance"] = view["distance"].astype(float).round(digits)
    return view


def results_html(answer: Answer, size: int = THUMBNAIL_PX) -> str:
    """The results as an HTML grid: one ``div.cbir-result`` per product (thumbnail, brand, description,
    price, distance), framed green / red when it shares / misses the query's category."""
    if answer.results.empty:
        return (f'<div class="cbir-grid cbir-empty">No product passes the filters ({html.escape(answer.filters.describe())}).'
                "</div>")
    relevant = [None] * len(answer.results) if answer.relevant is None else answer.relevant.tolist()
    cards = "".join(_card(row, flag, size) for (_, row), flag in zip(answer.results.iterrows(), relevant))
    return f'<div class="cbir-grid" style="display:flex;flex-wrap:wrap;gap:6px">{cards}</div>'


def query_html(answer: Answer, size: int = 160) -> str:
    """The query card: its image, name, category, backbone and the scores of its results."""
    query = answer.query
    if query.is_upload:
        origin = "photo from a URL" if query.url else "uploaded photo"
    else:
        origin = f"catalogue row {query.row}"
    lines = [f"<b>query</b> ({origin})", html.escape(_short(query.name, 60)),
             f"category: {html.escape(query.category)}" if query.category else "",
             html.escape(answer.choice.label), html.escape(answer.filters.describe()),
             f"<b>{html.escape(answer.scores_text())}</b>"]
    return (f'<div class="cbir-query" style="width:{size + 40}px;font-size:12px;line-height:1.35;color:#222">'
            f'<img src="{thumbnail_uri(query.source, size)}" width="{size}" height="{size}" alt="query">'
            f'<div>{"<br>".join(line for line in lines if line)}</div></div>')


def comparison_html(columns: Mapping[str, Answer | str], size: int = 96) -> str:
    """Backbones side by side for one query: one ``div.cbir-column`` per choice label, holding its
    scores and results, or the reason (text) it has none."""
    parts = []
    for label, answer in columns.items():
        if isinstance(answer, Answer):
            body = (f'<div class="cbir-scores"><b>{html.escape(answer.scores_text())}</b></div>'
                    + results_html(answer, size))
        else:
            body = f'<div class="cbir-unavailable" style="color:#c62828">{html.escape(_short(answer, 300))}</div>'
        parts.append(f'<div class="cbir-column" data-backbone="{html.escape(label)}" '
                     f'style="flex:1;min-width:{size + 30}px;border-left:1px solid #ccc;padding:0 6px">'
                     f"<h4 style=\"margin:2px 0\">{html.escape(label)}</h4>{body}</div>")
    return f'<div class="cbir-compare" style="display:flex;gap:8px;align-items:flex-start">{"".join(parts)}</div>'


def answer_figure(answer: Answer, columns: int = 5) -> Figure:
    """The query and its results as a matplotlib Figure (frames: green = same category, red = not)."""
    title = f"{answer.choice.label}: {answer.scores_text()}"
    return results_figure(answer.query.source, answer.results, columns=columns, title=title,
                          query_relevant=None if answer.relevant is None else answer.relevant.tolist())


def explorer_html(settings: Mapping[str, str], status: str, query: str, results: str) -> str:
    """A still picture of the explorer, in HTML: its ``settings`` (control → value shown), its ``status`` line,
    the ``query`` card and the ``results`` grid (HTML, as the live widgets show them), under a line saying
    that the controls need a running kernel. What a page without a kernel (the course site) shows."""
    rows = "".join(f"<tr><th style=\"text-align:left;padding:1px 8px 1px 0\">{html.escape(name)}</th>"
                   f"<td>{html.escape(value)}</td></tr>" for name, value in settings.items())
    return ('<div class="cbir-explorer-still" style="border:1px solid #ccc;border-radius:6px;padding:8px">'
            '<div style="font-size:12px;color:#555;margin-bottom:6px">A picture of the explorer: its controls '
            "need a running kernel. Open the notebook in JupyterLab, Colab or Kaggle to use them.</div>"
            f'<table style="font-size:12px;margin-bottom:6px">{rows}</table>{status}'
            f'<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start">{query}'
            f'<div style="flex:1 1 300px">{results}</div></div></div>')
