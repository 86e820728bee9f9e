"""Comparisons a learner reads as tables: recipes on the tuning and report halves of a catalogue, each recipe's
step against the one before with a paired bootstrap, and a learned projection head on seen and unseen
categories."""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np
import pandas as pd

from ..models.projection_head import CategorySplit, ProjectionHead
from ..search.backends import make_index
from ..search.engine import SearchEngine
from ..search.pipeline import extractor_for
from ..search.recipes import RECIPES, recipe_from_word
from .comparison import paired_verdicts, per_query
from .metrics import evaluate

#: The recipe each named recipe adds one step to (``fusion`` starts again from ``gem+flip`` with a second
#: backbone): the pairs :func:`step_verdicts` compares, with each recipe against the baseline.
BUILDS_ON: dict[str, str] = {"gem": "baseline", "gem+flip": "gem", "gem+flip+whiten": "gem+flip",
                             "gem+flip+whiten+dba": "gem+flip+whiten", "single": "gem+flip+whiten+dba",
                             "fusion": "gem+flip", "best": "fusion"}


def halves(catalogue) -> tuple:
    """``(tuning half, report half)`` of a catalogue: even and odd product ids (row order kept; see
    :func:`half_masks`)."""
    tuning, report = half_masks(catalogue)
    return catalogue.subset(tuning), catalogue.subset(report)


def half_masks(catalogue) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` bool masks of the tuning half (even product ids) and the report half (odd ids). An id that is not
    a whole number (a folder of images: its relative path) goes by the parity of its SHA-256, so every id has its
    half, the same on every run."""
    odd = np.array([_id_number(i) % 2 == 1 for i in catalogue.table["id"]], dtype=bool)
    return ~odd, odd


def _id_number(value) -> int:
    """A product id as a whole number: itself when it is one (``10004``, ``"10004"``, ``10004.0``), else the
    first 8 bytes of its text's SHA-256 (a CRC would not do: its last bit is nearly the same for "bags/10004" and
    "bags/10005")."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def recipe_table(catalogue, recipes: Sequence = tuple(RECIPES), backbone: str | None = None, weights="imagenet",
                 *, k: int = 10, cache=True, progress: bool = False, parts: Sequence[str] = ("all", "tuning", "report"),
                 **extractor_options):
    """MAP@k of each recipe on the whole catalogue and on its tuning and report halves (:func:`halves`).

    Features are extracted once per distinct extractor over the whole catalogue; each part then fits
    its recipe (whitening, expansion) on its own rows only, exactly as an engine built on that part
    would. ``backbone``: start every recipe from this backbone instead of its own. ``parts``: which of
    ``"all"``, ``"tuning"``, ``"report"`` to score. Returns a DataFrame with
    columns ``recipe, steps`` and ``map_<part>`` for each part.
    """
    tuning, report = half_masks(catalogue)
    extracted: dict = {}

    def features_for(embedding, name):
        key = (name, embedding.pooling, embedding.p, embedding.flip, embedding.scales)
        if key not in extracted:
            extractor = extractor_for(embedding, name, weights, **extractor_options)
            extracted[key] = (extractor, extractor.extract(catalogue.paths, cache=cache, progress=progress))
        return extracted[key]

    rows = []
    for recipe in recipes:
        recipe = recipe_from_word(recipe).with_backbone(backbone)
        sources = [features_for(recipe.embedding, name) for name in recipe.backbones]
        kept = np.logical_and.reduce([x.kept for _, x in sources])
        row = {"recipe": recipe.name, "steps": ", ".join(recipe.steps()) or "-"}
        masks = {"all": kept, "tuning": kept & tuning, "report": kept & report}
        for part in parts:
            mask = masks[part]
            engine = SearchEngine.fitted(catalogue.subset(mask), recipe, [e for e, _ in sources],
                                         [x.part(mask, catalogue.paths) for _, x in sources])
            row[f"map_{part}"] = float(evaluate(engine, k=k).iloc[0].map_at_k)
        rows.append(row)
    return pd.DataFrame(rows)


#: What :func:`readable` indexes a table by: the first of these columns it has (what its rows are).
ROW_NAMES = ("recipe", "gallery", "category", "backbone")


def column_name(column: str, k: int = 10) -> str:
    """The words a reader sees for a column of the package's results tables: ``map_report`` → ``MAP@10, report
    half``, ``n_queries`` → ``queries``, ``crop_recall@1`` → ``crop R@1`` ...; other names unchanged."""
    names = {"map_all": f"MAP@{k}, whole", "map_tuning": f"MAP@{k}, tuning half",
             "map_report": f"MAP@{k}, report half", "backbone_map": f"backbone MAP@{k}",
             "head_map": f"head MAP@{k}", "n_images": "products", "n_test": "test products",
             "n_queries": "queries", "n_relevant_mean": "relevant per query", "precision_at_k": f"P@{k}",
             "recall_at_k": f"R@{k}", "map_at_k": f"MAP@{k}", f"map_at_{k}": f"MAP@{k}"}
    return names.get(column, re.sub(r"^(\w+)_recall@(\d+)$", r"\1 R@\2", str(column)))


def readable(table: pd.DataFrame, k: int = 10, digits: int = 3) -> pd.DataFrame:
    """A results table of the package (:func:`recipe_table`, :func:`head_report`, :func:`step_verdicts`,
    :func:`~cbir_tutorial.evaluation.metrics.evaluate`, a protocol report) as a reader reads it: indexed by what
    its rows are (``recipe``, ``gallery``, ``category``, ``backbone``; a table indexed already keeps its index),
    its columns named in words (:func:`column_name`), a ``k`` column that only repeats ``k`` left out, numbers
    rounded to ``digits`` decimals (a mean count of relevant products to one) with no negative zero (a "-0.000" reads
    as a loss). A copy, for display: code keeps using ``table``."""
    if "k" in table.columns and (table["k"] == k).all():
        table = table.drop(columns="k")  # said in the column names
    first = next((c for c in ROW_NAMES if c in table.columns), None)
    if isinstance(table.index, pd.RangeIndex) and first is not None:
        table = table.set_index(first)
    table = table.rename(columns=lambda c: column_name(c, k))
    floats = table.select_dtypes("floating").columns
    count_mean = column_name("n_relevant_mean", k)
    rounded = {c: table[c].round(1 if c == count_mean else digits) + 0.0 for c in floats}
    return table.assign(**rounded)  # + 0.0: -0.0 becomes 0.0


def head_report(features: np.ndarray, labels, split: CategorySplit, head: ProjectionHead, k: int = 10) -> pd.DataFrame:
    """Leave-one-out MAP@k inside each test gallery, backbone features vs the learned head.

    Rows: ``"seen categories, held-out products"`` and ``"unseen categories"``; columns ``gallery,
    n_images, backbone_map, head_map, gain``.
    """
    labels = np.asarray(labels, dtype=object)
    rows = []
    for name, mask in (("seen categories, held-out products", split.seen_test), ("unseen categories", split.unseen)):
        scores = [evaluate(make_index("exact", f[mask]), labels[mask], k).iloc[0].map_at_k
                  for f in (features, head.transform(features))]
        rows.append({"gallery": name, "n_images": int(mask.sum()), "backbone_map": float(scores[0]),
                     "head_map": float(scores[1]), "gain": float(scores[1] - scores[0])})
    return pd.DataFrame(rows)


def per_query_scores(catalogue, recipes: Sequence = tuple(RECIPES), backbone: str | None = None, weights="imagenet",
                     *, k: int = 10, cache=True) -> dict[str, np.ndarray]:
    """``{recipe name: (Q,) AP@k}`` of each recipe's engine built on the whole ``catalogue``, one value per
    leave-one-out query (:func:`~cbir_tutorial.evaluation.comparison.per_query`), the queries in the same order
    for every recipe (the products every backbone could read). ``backbone``: as :func:`recipe_table`'s."""
    scores = {}
    for recipe in recipes:
        recipe = recipe_from_word(recipe)
        engine = SearchEngine.build(catalogue, backbone, weights, recipe=recipe, cache=cache, progress=False)
        scores[recipe.name] = per_query(engine, k=k)["ap_at_k"].to_numpy()
    if len({len(a) for a in scores.values()}) > 1:
        counts = {n: len(a) for n, a in scores.items()}
        raise ValueError(f"the recipes answered different numbers of queries ({counts}): "
                         "a backbone could not read some photo the others read")
    return scores


def step_verdicts(scores: dict[str, np.ndarray], builds_on: dict[str, str] = BUILDS_ON, *, k: int = 10,
                  seed: int = 0) -> pd.DataFrame:
    """:func:`~cbir_tutorial.evaluation.comparison.paired_verdicts` of each recipe of ``scores`` (from
    :func:`per_query_scores`) against the recipe it builds on (``builds_on``) and against ``"baseline"``, for the
    recipes whose pair has scores. Indexed by ``(first, second)``; columns ``MAP@<k> difference, low, high,
    verdict`` and ``against``: ``"its step"`` or ``"baseline"``."""
    pairs = []
    for name, before in builds_on.items():
        if name in scores and before in scores:
            pairs += [(name, reference) for reference in dict.fromkeys([before, "baseline"]) if reference in scores]
    table = paired_verdicts(scores, pairs, difference=f"MAP@{k} difference", seed=seed)
    table["against"] = ["its step" if builds_on[first] == second else "baseline" for first, second in table.index]
    return table


def steps_that_hold(verdicts: pd.DataFrame) -> list[str]:
    """The recipes of :func:`step_verdicts` whose gain over the recipe they build on excludes 0 at its level."""
    return [first for (first, second), row in verdicts.iterrows()
            if row["against"] == "its step" and row["verdict"] == f"{first} better"]
