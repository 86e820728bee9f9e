"""The search explorer's logic, without a browser: backbone choices, engines built on first use,
queries (a catalogue product or an uploaded photo), metadata filters, one search with its precision@K
and AP@K, and the HTML / matplotlib views of an answer.

:mod:`cbir_tutorial.widgets` only wires ipywidgets controls to these functions.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from ..choices import BackboneChoice, backbone_choices
from ..models.backbones import BACKBONES, WeightsUnavailableError
from ..data.catalogue import Catalogue
from ..search.engine import RESULT_COLUMNS, SearchEngine
from ..search.recipes import recipe_from_word
from ..data.images import ImageError, load_rgb
from ..data.remote import URL_MAX_BYTES, URL_TIMEOUT_S, RemoteImageError, image_bytes_from_url, shown_url
from ..evaluation.metrics import average_precision_at_k, precision_at_k, relevance_mask
from .plotting import results_figure, thumbnail

#: The filter value that lets everything through.
ALL = "(all)"
#: Backbones offered when the caller names none: the offline one first, then the others (ImageNet weights).
DEFAULT_BACKBONES = ("efficientnet_lite0", *sorted(set(BACKBONES) - {"efficientnet_lite0"}))
#: Thumbnail side in the HTML grid, pixels.
THUMBNAIL_PX = 120


# --------------------------------------------------------------------------------------------------
# Prices

_NUMBER = re.compile(r"\d(?:[\d.,'\s\u00a0\u202f]*\d)?")
_GROUPED = re.compile(r"\d{1,3}(?:[.,]\d{3})+")


def parse_price(text) -> float:
    """A display price as a number, ``nan`` when it holds none.

    ``"€1,250"`` → 1250.0, ``"$1,250.50"`` → 1250.5, ``"1.250,00 €"`` → 1250.0, ``"12,50 €"`` → 12.5,
    ``"CHF 1'250"`` → 1250.0. With both ``.`` and ``,`` the last one is the decimal mark; a lone
    separator followed by exactly three digits (``"1,250"``, ``"1.250"``) groups thousands.
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return float("nan")
    if isinstance(text, (int, float, np.number)):
        return float(text)
    match = _NUMBER.search(str(text))
    if match is None:
        return float("nan")
    number = re.sub(r"['\s\u00a0\u202f]", "", match.group())
    if "." in number and "," in number:
        decimal = "." if number.rfind(".") > number.rfind(",") else ","
        number = number.replace("," if decimal == "." else ".", "").replace(decimal, ".")
    elif _GROUPED.fullmatch(number):
        number = number.replace(",", "").replace(".", "")
    elif number.count(",") == 1:
        number = number.replace(",", ".")
    try:
        return float(number)
    except ValueError:  # e.g. "1,2,3": separators that follow no convention
        return float("nan")


def price_values(prices: Iterable) -> np.ndarray:
    """``(N,)`` float64 prices parsed with :func:`parse_price` (``nan`` where there is no number)."""
    prices = pd.Series(list(prices) if not isinstance(prices, pd.Series) else prices, dtype=object)
    unique = pd.unique(prices)
    return prices.map({value: parse_price(value) for value in unique}).to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Backbones and their engines


def offered_choices(backbones=None) -> list[BackboneChoice]:
    """The backbone choices to offer, in order, without repeats.

    ``backbones``: ``None`` (every registered backbone with ImageNet weights, the offline one first),
    or anything :func:`~cbir_tutorial.choices.backbone_choices` takes (``"resnet50=random"``,
    ``{"resnet50": None}``, ``[("vgg16", "random")]``...).
    """
    return backbone_choices(DEFAULT_BACKBONES if backbones is None else backbones)


class EngineShelf:
    """Search engines over one catalogue, one per :class:`BackboneChoice` and recipe, built on first use and kept.

    Features come from :class:`~cbir_tutorial.features.FeatureExtractor`'s disk cache when they were
    extracted before. A backbone whose weights cannot be had is remembered in ``unavailable``
    (key → the error message) and not tried again. ``recipe``: what new engines are built with, a name
    from :data:`~cbir_tutorial.search.recipes.RECIPES` or a ``Recipe`` (``None``: ``"baseline"``, the
    backbone's own features); set it to switch, the engines of other recipes stay on the shelf.
    """

    def __init__(self, catalogue: Catalogue, choices: Sequence[BackboneChoice], *, cache=True, recipe=None,
                 **extractor_options):
        self.catalogue = catalogue
        self.choices = {choice.key: choice for choice in choices}
        self.cache = cache
        self.recipe = recipe
        self.extractor_options = extractor_options
        self.unavailable: dict[str, str] = {}
        self._engines: dict[tuple, SearchEngine] = {}
        self._rows: dict[tuple, np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"EngineShelf({self.catalogue.name!r}: {len(self.choices)} choices, recipe {self.recipe_name!r}, "
                f"built {self.built}, unavailable {sorted(self.unavailable)})")

    @property
    def recipe(self):
        """The recipe new engines are built with (a :class:`~cbir_tutorial.search.recipes.Recipe`)."""
        return self._recipe

    @recipe.setter
    def recipe(self, recipe) -> None:
        self._recipe = recipe_from_word(recipe)

    @property
    def recipe_name(self) -> str:
        return self._recipe.name

    @property
    def built(self) -> list[str]:
        """Keys of the engines in memory under the current recipe, in choice order."""
        return [key for key in self.choices if (key, self.recipe_name) in self._engines]

    def add(self, choice: BackboneChoice, engine: SearchEngine) -> None:
        """Shelve a ready ``engine`` whose catalogue is this shelf's catalogue, row for row (under its
        own recipe; the shelf switches to that recipe)."""
        if len(engine) != len(self.catalogue):
            raise ValueError(f"the engine indexes {len(engine)} products, the catalogue has {len(self.catalogue)}")
        self.choices.setdefault(choice.key, choice)
        self.recipe = None if engine.recipe is None else engine.recipe.recipe
        self._engines[choice.key, self.recipe_name] = engine
        self._rows[choice.key, self.recipe_name] = np.arange(len(engine))

    def engine(self, key: str, *, progress: bool = False) -> SearchEngine:
        """The engine of choice ``key`` under the current recipe, built now if needed (raises
        :class:`WeightsUnavailableError`)."""
        if (key, self.recipe_name) in self._engines:
            return self._engines[key, self.recipe_name]
        if key not in self.choices:
            raise KeyError(f"no backbone choice {key!r}; offered: {list(self.choices)}")
        if key in self.unavailable:
            raise WeightsUnavailableError(self.unavailable[key])
        choice = self.choices[key]
        recipe = None if self.recipe == recipe_from_word(None) else self.recipe  # the baseline: plain features
        try:
            engine = SearchEngine.build(self.catalogue, choice.backbone, choice.weights, cache=self.cache,
                                        progress=progress, recipe=recipe, **self.extractor_options)
        except WeightsUnavailableError as error:
            self.unavailable[key] = str(error)
            raise
        kept = engine.extraction.kept
        self._engines[key, self.recipe_name] = engine
        self._rows[key, self.recipe_name] = np.where(kept, np.cumsum(kept) - 1, -1)
        return engine

    def engine_row(self, key: str, row: int) -> int | None:
        """The engine row of catalogue ``row`` under choice ``key`` (``None``: its image was unreadable)."""
        found = int(self._rows[key, self.recipe_name][row])
        return None if found < 0 else found

    def catalogue_rows(self, key: str, engine_rows: np.ndarray) -> np.ndarray:
        """``(n,)`` int64 catalogue rows of engine rows (they differ when some images were unreadable)."""
        return np.flatnonzero(self._rows[key, self.recipe_name] >= 0)[np.asarray(engine_rows, dtype=np.int64)]


# --------------------------------------------------------------------------------------------------
# Queries and filters


@dataclass(eq=False)
class Query:
    """What the learner searches with: catalogue product ``row`` or an uploaded photo (``image`` bytes;
    ``url``: the web address it came from, if any).

    ``category`` is the product's category (``""`` for an upload: no relevance, no scores).
    """

    row: int | None = None
    image: bytes | None = field(default=None, repr=False)
    name: str = ""
    category: str = ""
    path: str = ""
    url: str = ""
    _features: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, catalogue: Catalogue, row: int) -> "Query":
        if not 0 <= int(row) < len(catalogue):
            raise IndexError(f"row {row} is outside the catalogue (0..{len(catalogue) - 1})")
        product = catalogue.table.iloc[int(row)]
        name = product["description"] or product["id"]
        return cls(row=int(row), name=str(name), category=str(product["category"]), path=str(product["path"]))

    @classmethod
    def from_upload(cls, content: bytes, name: str = "your photo") -> "Query":
        """An uploaded photo, decoded once now so that a bad file fails here (:class:`ImageError`)."""
        content = bytes(content)
        try:
            load_rgb(content, THUMBNAIL_PX)  # decodes it all (a JPEG at reduced scale: fast for big photos)
        except ImageError as error:
            raise ImageError(str(error).replace("<uploaded bytes>", repr(name))) from None
        return cls(image=content, name=name)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = URL_TIMEOUT_S, max_bytes: int = URL_MAX_BYTES) -> "Query":
        """The photo at web address ``url`` (http or https), fetched and decoded now.

        Raises :class:`~cbir_tutorial.data.remote.RemoteImageError` (an :class:`ImageError`) naming
        ``url``: unreachable, too slow (``timeout_s``), too big (``max_bytes``), not an image. A password
        in ``url`` is sent, never shown (the query's name and ``url`` are :func:`~.remote.shown_url`).
        """
        content = image_bytes_from_url(url, timeout_s=timeout_s, max_bytes=max_bytes)
        name = shown_url(url)
        try:
            query = cls.from_upload(content, name)
        except ImageError as error:
            raise RemoteImageError(str(error).replace(repr(name), name, 1)) from None
        query.url = name
        return query

    @property
    def is_upload(self) -> bool:
        return self.image is not None

    @property
    def source(self) -> str | bytes:
        """The query image: a file path or the uploaded bytes."""
        return self.image if self.is_upload else self.path

    def features(self, key: str, engine: SearchEngine) -> np.ndarray:
        """``(D,)`` features of an uploaded photo for ``engine``, computed once per ``key`` (backbone and recipe)."""
        if key not in self._features:
            self._features[key] = engine.query_features(self.image)  # through the engine's recipe, if any
        return self._features[key]


@dataclass(frozen=True)
class Filters:
    """Metadata filters on the results: ``gender`` and ``category`` (:data:`ALL` for any) and a
    ``price`` range ``(low, high)`` in the catalogue's currency (``None``: any price, unknown included)."""

    gender: str = ALL
    category: str = ALL
    price: tuple[float, float] | None = None

    @property
    def active(self) -> bool:
        return self.gender != ALL or self.category != ALL or self.price is not None

    def mask(self, table: pd.DataFrame) -> np.ndarray | None:
        """``(N,)`` bool: the rows of ``table`` that pass, or ``None`` when no filter is set."""
        if not self.active:
            return None
        keep = np.ones(len(table), dtype=bool)
        if self.gender != ALL:
            if "gender" not in table.columns:
                raise ValueError("this catalogue has no 'gender' column to filter on")
            keep &= table["gender"].astype(str).str.lower().to_numpy() == self.gender.lower()
        if self.category != ALL:
            keep &= table["category"].to_numpy(dtype=object) == self.category
        if self.price is not None:
            low, high = self.price
            values = price_values(table["price"])
            keep &= (values >= low) & (values <= high)  # nan (no price) fails both
        return keep

    def expression(self) -> str:
        """The same filters as a Milvus filter expression (``""`` when no filter is set)."""
        from ..search.milvus_index import filter_expression

        return filter_expression(None if self.gender == ALL else self.gender,
                                 None if self.category == ALL else self.category, self.price)

    def describe(self) -> str:
        parts = [f"gender {self.gender}" if self.gender != ALL else "",
                 f"category {self.category}" if self.category != ALL else "",
                 f"price {self.price[0]:,.0f} to {self.price[1]:,.0f}" if self.price is not None else ""]
        return ", ".join(p for p in parts if p) or "no filter"


@dataclass(frozen=True)
class FilterChoices:
    """What a catalogue can be filtered on: ``genders``, ``categories`` (sorted, non-empty) and the
    ``price_range`` ``(min, max)`` of its parsable prices (``None`` with fewer than two distinct)."""

    genders: tuple[str, ...]
    categories: tuple[str, ...]
    price_range: tuple[float, float] | None


def filter_choices(catalogue: Catalogue) -> FilterChoices:
    """The filters that make sense for ``catalogue`` (see :class:`FilterChoices`)."""
    table = catalogue.table

    def distinct(column):
        if column not in table.columns:
            return ()
        values = table[column].fillna("").astype(str).str.strip()
        return tuple(sorted(set(values[values != ""])))

    prices = price_values(table["price"])
    prices = prices[~np.isnan(prices)]
    price_range = (float(prices.min()), float(prices.max())) if len(np.unique(prices)) > 1 else None
    return FilterChoices(distinct("gender"), distinct("category"), price_range)


# --------------------------------------------------------------------------------------------------
# One search


@dataclass
class Answer:
    """The top-K of one query under one backbone, with the query's scores when it has a category.

    ``results``: table of :data:`~cbir_tutorial.engine.RESULT_COLUMNS` (``row`` = catalogue row);
    ``relevant``: ``(len(results),)`` bool, same category as the query (``None`` without category);
    ``n_relevant``: R, allowed products (query excluded) sharing the query's category;
    ``precision`` / ``average_precision``: P@K and AP@K over the returned results (AP normaliser min(K, R)).
    """

    choice: BackboneChoice
    query: Query
    k: int
    filters: Filters
    results: pd.DataFrame
    n_allowed: int
    relevant: np.ndarray | None = None
    n_relevant: int | None = None
    precision: float | None = None
    average_precision: float | None = None

    def scores_text(self) -> str:
        """``"P@10 = 0.80, AP@10 = 0.86 (R = 25 Tshirts)"``, or why there are no scores."""
        if not self.query.category:
            return "no scores: the query has no category"
        if self.relevant is None:
            return "no scores: no result"
        k = len(self.results)
        return (f"P@{k} = {self.precision:.2f}, AP@{k} = {self.average_precision:.2f} "
                f"(R = {self.n_relevant} {self.query.category})")


def answer_for(shelf: EngineShelf, key: str, query: Query, k: int = 10, filters: Filters = Filters(), *,
           progress: bool = False) -> Answer:
    """The :class:`Answer` to ``query`` under backbone choice ``key`` with ``filters`` on the results.

    A catalogue query leaves itself out of its results. Raises :class:`WeightsUnavailableError` for an
    unavailable backbone and :class:`ImageError` for a catalogue product whose image was unreadable.
    """
    engine = shelf.engine(key, progress=progress)
    table = engine.catalogue.table
    allowed = filters.mask(table)
    n_allowed = len(table) if allowed is None else int(allowed.sum())
    if query.is_upload:
        found = engine.search(query.features(f"{key}|{shelf.recipe_name}", engine), k, allowed=allowed)
        own_row = None
    else:
        own_row = shelf.engine_row(key, query.row)
        if own_row is None:
            raise ImageError(f"{query.path}: this product's image could not be read, so it cannot be a query")
        found = engine.search(own_row, k, allowed=allowed)
    results = found.assign(row=shelf.catalogue_rows(key, found["row"].to_numpy()))
    answer = Answer(shelf.choices[key], query, int(k), filters, results[RESULT_COLUMNS], n_allowed)
    if query.category and len(results):
        labels = table["category"].to_numpy(dtype=object)
        same = labels == query.category if allowed is None else (labels == query.category) & allowed
        r = int(same.sum()) - int(own_row is not None and bool(same[own_row]))
        mask = relevance_mask([query.category], results["category"].to_numpy(dtype=object))
        answer.relevant = mask[0]
        answer.n_relevant = r
        answer.precision = float(precision_at_k(mask)[0])
        answer.average_precision = float(average_precision_at_k(mask, [r])[0])
    return answer


# --------------------------------------------------------------------------------------------------
# Views


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
