"""Named retrieval recipes: which pooling, augmentation, fusion, whitening and expansion an engine uses.

A :class:`Recipe` is a list of settings; :func:`fit_recipe` applies it to a catalogue's features and
returns a :class:`FittedRecipe` (the fitted whitening, the index, the extractors) that the engine keeps,
so a later query image goes through exactly the same steps. ``SearchEngine.build(..., recipe="best")``,
``python -m cbir_tutorial evaluate --recipe best`` and the explorer all take a name from :data:`RECIPES`.

How the settings were chosen (no labels are used by a recipe itself; labels only scored the choices):
the sample was split by product id parity. On the **even-id half** (the tuning half, 385 photos) each
step was tried on top of the previous one with EfficientNet-Lite0, leave-one-out MAP@10 there:

- pooling: average 0.679, max 0.681, GeM p=2/3/4 0.683/0.684/0.684 → GeM with p=3, the literature's
  value for off-the-shelf features (Radenović et al. 2018); + flip TTA 0.694; multi-scale TTA
  (0.75 and 1, or 1 and 1.25) 0.693 / 0.700 for 2-3x the extraction: left out;
- then a grid of 54 label-free recipes on top of GeM + flip (``benchmarks/choose_recipe.py``): with or
  without EfficientNet-Lite2 fused, no whitening or PCA whitening to 64 / 256 dimensions (power 0.5),
  DBA n and αQE n in 0..2 (α=3 as in the literature). Its highest tuning-half score, 0.735, is
  **"best"**: Lite2 fused, no whitening, DBA 1 + αQE 2. The highest with one backbone, 0.716, is
  **"single"**: whitening to 64 dimensions, DBA 1 + αQE 2 (whitening alone lowers the score: 0.691
  at 64 dimensions, power 1 much worse, 0.62/0.54; it pays only together with expansion).

The **odd-id half** (the report half) was only scored with the settings fixed; its figures are in
``benchmarks/RESULTS.md`` and notebook 08 (:func:`halves` builds the two halves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np

from .backends import saved_arrays
from .postprocessing import ExpandedIndex, PCAWhitening, fuse


@dataclass(frozen=True)
class Recipe:
    """Settings of every step; the defaults are today's engine (average pooling, nothing after).

    ``pooling``/``p``/``flip``/``scales``: see :class:`~cbir_tutorial.models.pooling.PooledExtractor`;
    ``fuse_with``: a second backbone whose features are concatenated (weight ``fuse_weight`` against 1);
    ``whiten_dim``: PCA-whitening output size (``0`` = no whitening, ``None`` = all components),
    ``whiten_power``: 1 full whitening, 0.5 square-root; ``dba_n``/``qe_n``: neighbours used by database
    augmentation / α-query expansion (0 = off), with exponent ``dba_alpha``/``qe_alpha``.
    """

    name: str
    description: str = ""
    pooling: str = "avg"
    p: float = 3.0
    flip: bool = False
    scales: tuple = (1.0,)
    fuse_with: str | None = None
    fuse_weight: float = 1.0
    whiten_dim: int | None = 0
    whiten_power: float = 1.0
    dba_n: int = 0
    dba_alpha: float = 3.0
    qe_n: int = 0
    qe_alpha: float = 3.0

    @property
    def plain_features(self) -> bool:
        """True when the features are the backbone's own (average pooling, no augmentation)."""
        return self.pooling == "avg" and not self.flip and tuple(self.scales) == (1.0,)

    def steps(self) -> list[str]:
        """The steps in order, in words (``[]`` for the baseline)."""
        steps = []
        if self.pooling == "gem":
            steps.append(f"GeM pooling (p={self.p:g})")
        elif self.pooling == "max":
            steps.append("max pooling")
        if self.flip:
            steps.append("flip TTA")
        if tuple(self.scales) != (1.0,):
            steps.append(f"multi-scale TTA {tuple(self.scales)}")
        if self.fuse_with:
            steps.append(f"fusion with {self.fuse_with} (weight {self.fuse_weight:g})")
        if self.whiten_dim != 0:
            steps.append(f"PCA whitening (dim={self.whiten_dim or 'all'}, power={self.whiten_power:g})")
        if self.dba_n:
            steps.append(f"DBA (n={self.dba_n}, alpha={self.dba_alpha:g})")
        if self.qe_n:
            steps.append(f"alpha-QE (n={self.qe_n}, alpha={self.qe_alpha:g})")
        return steps

    def settings(self) -> dict:
        """The settings as a JSON-ready dict."""
        out = asdict(self)
        out["scales"] = list(self.scales)
        return out


BASELINE = Recipe("baseline", "ImageNet features, global average pooling, L2-normalised, Euclidean distance")
GEM = replace(BASELINE, name="gem", description="GeM pooling of the last conv map (p=3)", pooling="gem")
TTA = replace(GEM, name="gem+flip", description="GeM + horizontal-flip test-time augmentation", flip=True)
WHITEN = replace(TTA, name="gem+flip+whiten", description="... + PCA whitening learned on the gallery",
                 whiten_dim=64, whiten_power=0.5)
DBA = replace(WHITEN, name="gem+flip+whiten+dba", description="... + database-side augmentation", dba_n=1)
SINGLE = replace(DBA, name="single", description="the best with one backbone: GeM + flip + whitening + DBA + "
                 "alpha-QE", qe_n=2)
FUSION = replace(TTA, name="fusion", description="GeM + flip on EfficientNet-Lite0 and Lite2, fused",
                 fuse_with="efficientnet_lite2")
BEST = replace(FUSION, name="best", description="fusion + DBA + alpha-QE (no labels)", dba_n=1, qe_n=2)

#: The named recipes, in the order of the cumulative table: each adds a step to the one before, except
#: ``fusion``, which starts again from ``gem+flip`` with a second backbone.
RECIPES: dict[str, Recipe] = {r.name: r for r in (BASELINE, GEM, TTA, WHITEN, DBA, SINGLE, FUSION, BEST)}


def recipe_from_word(recipe: "str | Recipe | None") -> Recipe:
    """A :class:`Recipe` from its name (``None`` or ``""`` → baseline); raises ValueError naming the choices."""
    if isinstance(recipe, Recipe):
        return recipe
    word = "baseline" if recipe is None or str(recipe).strip() == "" else str(recipe).strip().lower()
    if word not in RECIPES:
        raise ValueError(f"recipe={recipe!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[word]


@dataclass
class FittedRecipe:
    """A recipe applied to one gallery: the extractors, the fitted whitening and the index to search.

    ``extractors``: one per backbone (the second when fusing); ``whitening``: the gallery-fitted
    :class:`PCAWhitening` or None; ``index``: an :class:`ExpandedIndex` (or None for the baseline,
    whose engine keeps its plain Euclidean index).
    """

    recipe: Recipe
    extractors: list = field(default_factory=list)
    whitening: PCAWhitening | None = None
    index: ExpandedIndex | None = None

    def combine(self, raw: Sequence[np.ndarray]) -> np.ndarray:
        """Per-backbone ``(N, D_b)`` features → the recipe's ``(N, D)`` features (fused, whitened)."""
        features = raw[0] if len(raw) == 1 else fuse(raw, [1.0, self.recipe.fuse_weight])
        return features if self.whitening is None else self.whitening.transform(features)

    def features_of(self, source) -> np.ndarray:
        """One query image → ``(D,)`` features in the gallery's space (same pooling, fusion, whitening)."""
        return self.combine([e.features_of(source)[None] for e in self.extractors])[0]

    def describe(self) -> dict:
        """JSON-ready: the recipe's name, steps and settings."""
        return {"recipe": self.recipe.name, "steps": self.recipe.steps(), "settings": self.recipe.settings()}


def saved_recipe(settings: dict, extractor, index, whitening_file) -> FittedRecipe:
    """The :class:`FittedRecipe` of a saved engine: its ``settings`` (:meth:`Recipe.settings`), extractors
    rebuilt around the saved backbone's ``extractor``, the whitening read from ``whitening_file`` (when
    the recipe whitens) and ``index`` when it is the recipe's own (expanded) index."""
    from pathlib import Path

    recipe = Recipe(**{**settings, "scales": tuple(settings["scales"])})
    extractors = recipe_extractors(recipe, extractor, batch_size=extractor.batch_size, seed=extractor.seed)
    fitted = FittedRecipe(recipe, extractors, index=index if isinstance(index, ExpandedIndex) else None)
    if recipe.whiten_dim != 0:
        if not Path(whitening_file).is_file():
            raise FileNotFoundError(f"{whitening_file} is missing: the saved engine's recipe {recipe.name!r} "
                                    "whitens its features; save the engine again")
        fitted.whitening = PCAWhitening.from_state(saved_arrays(whitening_file))
    return fitted


def extractor_for(recipe: Recipe, backbone, weights="imagenet", **options):
    """The feature extractor a recipe needs for ``backbone`` (a name, or an extractor reused as it is
    when the recipe keeps the backbone's own features)."""
    from ..models.features import FeatureExtractor
    from ..models.pooling import PooledExtractor

    if isinstance(backbone, FeatureExtractor):
        if recipe.plain_features and type(backbone) is FeatureExtractor:
            return backbone
        weights, options = backbone.weights, {"resize": backbone.resize, "batch_size": backbone.batch_size,
                                              "seed": backbone.seed, **options}
        backbone = backbone.backbone
    if recipe.plain_features:
        return FeatureExtractor(backbone, weights, **options)
    return PooledExtractor(backbone, weights, pooling=recipe.pooling, p=recipe.p, flip=recipe.flip,
                           scales=recipe.scales, **options)


def recipe_extractors(recipe: Recipe, backbone, weights="imagenet", **options) -> list:
    """The recipe's extractors: ``backbone``'s, then, when it fuses, ``recipe.fuse_with``'s with the same
    weights and resize policy (see :func:`extractor_for`)."""
    extractors = [extractor_for(recipe, backbone, weights, **options)]
    if recipe.fuse_with:
        extractors.append(extractor_for(recipe, recipe.fuse_with, extractors[0].weights,
                                        **{**options, "resize": extractors[0].resize}))
    return extractors


def fit_recipe(recipe: "str | Recipe", extractors: list, raw: Sequence[np.ndarray]) -> tuple[FittedRecipe, np.ndarray]:
    """Fit ``recipe``'s whitening on the gallery's per-backbone features ``raw`` and build its index.

    Returns ``(fitted, (N, D) gallery features in the recipe's space)``.
    """
    recipe = recipe_from_word(recipe)
    fitted = FittedRecipe(recipe, list(extractors))
    features = fitted.combine(raw)
    if recipe.whiten_dim != 0:
        dim = recipe.whiten_dim if recipe.whiten_dim is None else min(recipe.whiten_dim, len(features) - 1,
                                                                      features.shape[1])
        fitted.whitening = PCAWhitening(dim, recipe.whiten_power).fit(features)
        features = fitted.whitening.transform(features)
    if recipe.dba_n or recipe.qe_n:
        fitted.index = ExpandedIndex(features, qe_n=recipe.qe_n, qe_alpha=recipe.qe_alpha,
                                     dba_n=recipe.dba_n, dba_alpha=recipe.dba_alpha)
    return fitted, features


def build_engine(engine_class, catalogue, backbone, weights, recipe, *, cache=True, progress=True,
                 dtype=np.float32, index="exact", index_options=None, **extractor_options):
    """``engine_class`` over ``catalogue`` with ``recipe`` applied (see ``SearchEngine.build``)."""
    recipe = recipe_from_word(recipe)
    extractors = recipe_extractors(recipe, backbone, weights, **extractor_options)
    extractions = [e.extract(catalogue.paths, cache=cache, progress=progress) for e in extractors]
    kept = np.logical_and.reduce([x.kept for x in extractions])
    if not kept.any():
        raise ValueError(f"No readable image in catalogue {catalogue.name!r}:\n{extractions[0].report()}")
    raw = [x.features[np.flatnonzero(kept[x.kept])] if not kept[x.kept].all() else x.features
           for x in extractions]
    fitted, features = fit_recipe(recipe, extractors, raw)
    return engine_class(catalogue.subset(kept), extractors[0], features, extractions[0], dtype=dtype, index=index,
                        index_options=index_options, recipe=fitted)


def halves(catalogue) -> tuple:
    """``(tuning half, report half)`` of a catalogue: even and odd product ids (row order kept)."""
    ids = np.asarray(catalogue.table["id"]).astype(np.int64)
    return catalogue.subset(ids % 2 == 0), catalogue.subset(ids % 2 == 1)


def recipe_table(catalogue, recipes: Sequence = tuple(RECIPES), backbone="efficientnet_lite0", weights="imagenet",
                 *, k: int = 10, cache=True, progress: bool = False, parts: Sequence[str] = ("all", "tuning", "report"),
                 **extractor_options):
    """MAP@k of each recipe on the whole catalogue and on its tuning and report halves (:func:`halves`).

    Features are extracted once per distinct extractor over the whole catalogue; each part then fits
    its recipe (whitening, expansion) on its own rows only, exactly as an engine built on that part
    would. ``parts``: which of ``"all"``, ``"tuning"``, ``"report"`` to score. Returns a DataFrame with
    columns ``recipe, steps`` and ``map_<part>`` for each part.
    """
    import pandas as pd

    from ..evaluation.metrics import evaluate
    from .index import EuclideanIndex

    ids = np.asarray(catalogue.table["id"]).astype(np.int64)
    extracted: dict = {}

    def features_for(recipe_, name):
        key = (name, recipe_.pooling, recipe_.p, recipe_.flip, tuple(recipe_.scales))
        if key not in extracted:
            extractor = extractor_for(recipe_, name, weights, **extractor_options)
            extracted[key] = (extractor, extractor.extract(catalogue.paths, cache=cache, progress=progress))
        return extracted[key]

    rows = []
    for recipe in recipes:
        recipe = recipe_from_word(recipe)
        sources = [features_for(recipe, backbone)]
        if recipe.fuse_with:
            sources.append(features_for(recipe, recipe.fuse_with))
        kept = np.logical_and.reduce([x.kept for _, x in sources])
        full = []
        for _, extraction in sources:  # (N, D) with zeros where unreadable, then kept rows only
            dense = np.zeros((len(kept), extraction.features.shape[1]), dtype=np.float32)
            dense[extraction.kept] = extraction.features
            full.append(dense)
        row = {"recipe": recipe.name, "steps": ", ".join(recipe.steps()) or "-"}
        masks = {"all": kept, "tuning": kept & (ids % 2 == 0), "report": kept & (ids % 2 == 1)}
        for part in parts:
            mask = masks[part]
            fitted, features = fit_recipe(recipe, [e for e, _ in sources], [f[mask] for f in full])
            index = fitted.index if fitted.index is not None else EuclideanIndex(features)
            row[f"map_{part}"] = float(evaluate(index, np.asarray(catalogue.labels, dtype=object)[mask], k).iloc[0].map_at_k)
        rows.append(row)
    return pd.DataFrame(rows)
