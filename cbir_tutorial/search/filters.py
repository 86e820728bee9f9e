"""Metadata filters on search results: a boolean mask over a catalogue, or the same filter as a Milvus expression."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.catalogue import Catalogue
from ..data.prices import price_values

#: The filter value that lets everything through.
ALL = "(all)"


def _quote(value: str) -> str:
    return json.dumps(str(value))  # a double-quoted string with \" and \\ escaped, as Milvus reads it


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
        return " and ".join(parts)

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
