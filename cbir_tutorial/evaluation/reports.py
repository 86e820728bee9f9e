"""Comparisons a learner reads as tables: recipes on the tuning and report halves of a catalogue, and a
learned projection head on seen and unseen categories."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..models.projection_head import CategorySplit, ProjectionHead
from ..search.backends import make_index
from ..search.engine import SearchEngine
from ..search.pipeline import extractor_for
from ..search.recipes import RECIPES, recipe_from_word
from .metrics import evaluate


def halves(catalogue) -> tuple:
    """``(tuning half, report half)`` of a catalogue: even and odd product ids (row order kept)."""
    tuning, report = half_masks(catalogue)
    return catalogue.subset(tuning), catalogue.subset(report)


def half_masks(catalogue) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` bool masks of the tuning half (even product ids) and the report half (odd ids)."""
    ids = np.asarray(catalogue.table["id"]).astype(np.int64)
    return ids % 2 == 0, ids % 2 == 1


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
