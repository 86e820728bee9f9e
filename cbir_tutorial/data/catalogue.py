"""The ``Catalogue``: one row per product with its image path and the captions a search result shows."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

#: Columns every catalogue table has (strings; "" where unknown).
COLUMNS = ("id", "path", "description", "brand", "price", "category")


@dataclass(frozen=True)
class Catalogue:
    """Products to search.

    ``table`` holds one row per product with at least :data:`COLUMNS`:
    ``id`` (str), ``path`` (absolute image path), ``description`` (short text), ``brand``,
    ``price`` (display string such as ``"€1,250"``), ``category`` (relevance label, ``""`` when
    unknown). Loaders may add columns (``gender``, ``colour``...). The row order is the feature order.
    """

    table: pd.DataFrame
    name: str = "catalogue"
    root: Path | None = None
    #: Listings dropped by the loader because their image file is missing.
    n_dropped: int = 0
    #: What the loader said about its input (kept and dropped counts, repairs), printed when it loaded.
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        missing = [c for c in COLUMNS if c not in self.table.columns]
        if missing:
            raise ValueError(
                f"Catalogue table lacks columns {missing}; it needs {list(COLUMNS)} "
                "(use '' for unknown values)."
            )
        table = self.table.reset_index(drop=True)
        for column in COLUMNS:
            table[column] = table[column].fillna("").astype(str)
        object.__setattr__(self, "table", table)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def summary(self) -> str:
        """One plain sentence: how many products, categories and labels, and what the loader dropped."""
        n_labelled = int((self.table["category"] != "").sum())
        n_categories = self.table.loc[self.table["category"] != "", "category"].nunique()
        labelled = "all labelled" if n_labelled == len(self) else f"{n_labelled:,} of them labelled"
        dropped = (f"{self.n_dropped:,} listings dropped because their photo is missing" if self.n_dropped
                   else "no listing dropped for a missing photo")
        return f"{len(self):,} products in {n_categories:,} categories ({labelled}); {dropped}"

    def __repr__(self) -> str:
        return f"Catalogue({self.name!r}: {self.summary})"

    def _repr_html_(self) -> str:
        """The summary and the first 10 rows, without the image paths (long, and the same folder on every row);
        descriptions keep a readable width. The loader's notes are not repeated: it printed them when it loaded
        (:attr:`notes` keeps them)."""
        rows = self.table.head(10).drop(columns="path")
        return (f"<p><b>{html.escape(self.name)}</b>: {html.escape(self.summary)}</p>"
                + rows.to_html(col_space={"description": "12em"}))

    @property
    def paths(self) -> list[str]:
        """Image paths, in row order."""
        return self.table["path"].tolist()

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` object array of category labels (``""`` where unknown)."""
        return self.table["category"].to_numpy(dtype=object)

    def subset(self, rows: Sequence[int] | np.ndarray) -> "Catalogue":
        """The catalogue restricted to ``rows`` (integer positions or a boolean mask), order kept."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if len(rows) != len(self):
                raise ValueError(f"boolean mask has {len(rows)} entries for {len(self)} products")
            rows = np.flatnonzero(rows)
        return Catalogue(self.table.iloc[rows], self.name, self.root, self.n_dropped, self.notes)

    def sample(self, n: int, seed: int = 0) -> "Catalogue":
        """``n`` products drawn at random without replacement (all of them if ``n >= len``), sorted by row."""
        if n >= len(self):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return self.subset(rows)

    def stratified_sample(self, n: int, seed: int = 0) -> "Catalogue":
        """About ``n`` products with each category kept in proportion (at least 2 per category that has 2;
        a category of one keeps its one)."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        share = n / len(self)
        rows = []
        for _, group in self.table.groupby("category", sort=True):
            take = min(len(group), max(2, round(len(group) * share)))
            rows.extend(rng.choice(group.index.to_numpy(), size=take, replace=False))
        return self.subset(np.sort(np.asarray(rows, dtype=int)))
