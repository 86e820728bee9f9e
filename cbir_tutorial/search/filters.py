"""Metadata filters on search results: a boolean mask over a catalogue, or the same filter as a Milvus expression.

Every index backend keeps the :data:`FIELDS` of its products (:func:`filter_table`) and turns one
:class:`Filters` into its own form: a mask over its rows (exact, FAISS, expansion) or a filter expression
(Milvus), so a filter means the same on every backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.catalogue import Catalogue
from ..data.prices import price_values

#: The filter value that lets everything through.
ALL = "(all)"
#: The product fields an index keeps beside each vector for filtering: name -> kind.
FIELDS = {"brand": "str", "price": "float", "category": "str", "gender": "str"}
#: Longest string kept in a text field (longer values are cut).
MAX_TEXT = 512


def _quote(value: str) -> str:
    return json.dumps(str(value))  # a double-quoted string with \" and \\ escaped, as Milvus reads it


@dataclass(frozen=True)
class Filters:
    """Metadata filters on the results: ``gender`` and ``category`` (:data:`ALL` for any), a
    ``price`` range ``(low, high)`` in the catalogue's currency (``None``: any price, unknown included) and
    ``ids``: only these ids (``None``: any; an index's int64 ids, or a catalogue's product ids for
    :meth:`~.engine.SearchEngine.search`)."""

    gender: str = ALL
    category: str = ALL
    price: tuple[float, float] | None = None
    ids: tuple | None = None

    def __post_init__(self):
        if self.ids is not None and not isinstance(self.ids, tuple):
            object.__setattr__(self, "ids", tuple(np.asarray(self.ids).tolist()))

    @property
    def active(self) -> bool:
        return self.gender != ALL or self.category != ALL or self.price is not None or self.ids is not None

    def mask(self, table: pd.DataFrame, ids: np.ndarray | None = None) -> np.ndarray | None:
        """``(N,)`` bool: the rows of ``table`` that pass, or ``None`` when no filter is set. ``ids``: the
        ``(N,)`` ids of the rows, which :attr:`ids` is matched against (default: ``table["id"]``)."""
        if not self.active:
            return None
        keep = np.ones(len(table), dtype=bool)
        if self.ids is not None:
            ids = table["id"].to_numpy() if ids is None else np.asarray(ids)
            wanted = np.asarray(self.ids, dtype=object)
            if ids.dtype.kind in "iu" and not all(isinstance(i, (int, np.integer)) for i in wanted.tolist()):
                raise ValueError("Filters(ids=...) holds product ids, and an index keys its vectors by int64 keys: "
                                 "filter through SearchEngine.search (it converts them), or give the index "
                                 "product_keys(ids)")
            keep &= np.isin(ids, wanted.astype(ids.dtype) if ids.dtype.kind in "iu" else wanted)
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

    def milvus_expression(self) -> str:
        """The same filters as a Milvus filter expression (``""`` when no filter is set): exact gender
        (lower case, as stored) and category, and a price range that leaves out unknown prices (stored
        as -1), as :meth:`mask` does."""
        parts = []
        if self.gender != ALL:
            parts.append(f"gender == {_quote(self.gender.lower())}")
        if self.category != ALL:
            parts.append(f"category == {_quote(self.category)}")
        if self.price is not None:
            low, high = (float(v) for v in self.price)
            parts.append(f"(price >= {max(low, 0.0)!r} and price <= {high!r})")
        if self.ids is not None:
            if not all(isinstance(i, (int, np.integer)) for i in self.ids):
                raise ValueError("Filters(ids=...) holds product ids, and Milvus keys its vectors by int64 keys: "
                                 "filter through SearchEngine.search (it converts them), or give the index "
                                 "product_keys(ids)")
            parts.append(f"id in {[int(i) for i in self.ids]}")
        return " and ".join(parts)

    def describe(self) -> str:
        parts = [f"gender {self.gender}" if self.gender != ALL else "",
                 f"category {self.category}" if self.category != ALL else "",
                 f"price {self.price[0]:,.0f} to {self.price[1]:,.0f}" if self.price is not None else "",
                 f"{len(self.ids):,} chosen products" if self.ids is not None else ""]
        return ", ".join(p for p in parts if p) or "no filter"


def filter_table(metadata: pd.DataFrame | None, n: int) -> pd.DataFrame:
    """The :data:`FIELDS` of ``n`` products from a catalogue table, as an index keeps them: text stripped and
    cut at :data:`MAX_TEXT` characters, gender in lower case, price a number (NaN when unknown); a missing
    column (or ``metadata=None``) gives "" / NaN."""
    if metadata is not None and len(metadata) != n:
        raise ValueError(f"{len(metadata)} metadata rows for {n} vectors")
    columns = {}
    for field_name, kind in FIELDS.items():
        if metadata is None or field_name not in metadata.columns:
            columns[field_name] = np.full(n, np.nan) if kind == "float" else np.full(n, "", dtype=object)
        elif kind == "float":
            columns[field_name] = price_values(metadata[field_name]).astype(float)
        else:
            text = metadata[field_name].fillna("").astype(str).str.strip().str.slice(0, MAX_TEXT)
            columns[field_name] = (text.str.lower() if field_name == "gender" else text).to_numpy(dtype=object)
    return pd.DataFrame(columns)


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
