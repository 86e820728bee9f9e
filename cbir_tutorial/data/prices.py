"""Display prices as numbers: ``"€1,250"``, ``"1.250,00 €"``, ``"CHF 1'250"``... (for filters and sorting)."""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import pandas as pd

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
