"""The explorer's engines: the backbone choices it offers, and one engine per choice and recipe, built on first use."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.catalogue import Catalogue
from ..models.backbones import BACKBONES, OFFLINE_BACKBONE, BackboneChoice, WeightsUnavailableError, backbone_choices
from ..search.engine import SearchEngine
from ..search.recipes import recipe_from_word

#: Backbones offered when the caller names none: the offline one first, then the others (ImageNet weights).
DEFAULT_BACKBONES = (OFFLINE_BACKBONE, *sorted(set(BACKBONES) - {OFFLINE_BACKBONE}))


def offered_choices(backbones=None) -> list[BackboneChoice]:
    """The backbone choices to offer, in order, without repeats.

    ``backbones``: ``None`` (every registered backbone with ImageNet weights, the offline one first),
    or anything :func:`~cbir_tutorial.models.backbones.backbone_choices` takes (``"resnet50=random"``,
    ``{"resnet50": None}``, ``[("vgg16", "random")]``...).
    """
    return backbone_choices(DEFAULT_BACKBONES if backbones is None else backbones)


class EngineShelf:
    """Search engines over one catalogue, one per :class:`BackboneChoice` and recipe, built on first use and kept.

    Features come from :class:`~cbir_tutorial.models.features.FeatureExtractor`'s disk cache when they were
    extracted before. A backbone whose weights cannot be had is remembered in ``unavailable``
    (key → the error message) and not tried again. ``recipe``: what new engines are built with, a name
    from :data:`~cbir_tutorial.search.recipes.RECIPES`, a trained model's folder or a ``Recipe``
    (``"baseline"``: the backbone's own features); set it to switch, the engines of other recipes stay
    on the shelf. A trained model brings its own backbone: under its recipe every choice shows the one
    engine built from it.
    """

    def __init__(self, catalogue: Catalogue, choices: Sequence[BackboneChoice], *, cache=True, recipe="baseline",
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
    def recipe_key(self) -> str:
        """What the current recipe's engines are kept under (:attr:`~cbir_tutorial.search.recipes.Recipe.key`)."""
        return self._recipe.key

    @property
    def built(self) -> list[str]:
        """Keys of the engines in memory under the current recipe, in choice order."""
        return [key for key in self.choices if (key, self.recipe_key) in self._engines]

    def add(self, choice: BackboneChoice, engine: SearchEngine) -> None:
        """Shelve a ready ``engine`` whose catalogue is this shelf's catalogue, row for row (under its
        own recipe; the shelf switches to that recipe)."""
        if len(engine) != len(self.catalogue):
            raise ValueError(f"the engine indexes {len(engine)} products, the catalogue has {len(self.catalogue)}")
        self.choices.setdefault(choice.key, choice)
        self.recipe = engine.recipe
        self._engines[choice.key, self.recipe_key] = engine
        self._rows[choice.key, self.recipe_key] = np.arange(len(engine))

    def engine(self, key: str, *, progress: bool = False) -> SearchEngine:
        """The engine of choice ``key`` under the current recipe, built now if needed (raises
        :class:`WeightsUnavailableError`)."""
        recipe = self.recipe_key
        if (key, recipe) in self._engines:
            return self._engines[key, recipe]
        if key not in self.choices:
            raise KeyError(f"no backbone choice {key!r}; offered: {list(self.choices)}")
        trained = self._recipe.embedding.trained
        shared = next((other for other in self.choices if (other, recipe) in self._engines), None) if trained else None
        if shared is not None:  # a trained model's engine does not depend on the choice
            self._engines[key, recipe] = self._engines[shared, recipe]
            self._rows[key, recipe] = self._rows[shared, recipe]
            return self._engines[key, recipe]
        if key in self.unavailable and not trained:
            raise WeightsUnavailableError(self.unavailable[key])
        choice = self.choices[key]
        backbone = {} if trained else {"backbone": choice.backbone, "weights": choice.weights}
        options = {name: value for name, value in self.extractor_options.items() if not trained or name != "resize"}
        try:
            engine = SearchEngine.build(self.catalogue, **backbone, cache=self.cache, progress=progress,
                                        recipe=self.recipe, **options)
        except WeightsUnavailableError as error:
            self.unavailable[key] = str(error)
            raise
        kept = engine.extraction.kept
        self._engines[key, recipe] = engine
        self._rows[key, recipe] = np.where(kept, np.cumsum(kept) - 1, -1)
        return engine

    def engine_row(self, key: str, row: int) -> int | None:
        """The engine row of catalogue ``row`` under choice ``key`` (``None``: its image was unreadable)."""
        found = int(self._rows[key, self.recipe_key][row])
        return None if found < 0 else found

    def catalogue_rows(self, key: str, engine_rows: np.ndarray) -> np.ndarray:
        """``(n,)`` int64 catalogue rows of engine rows (they differ when some images were unreadable)."""
        return np.flatnonzero(self._rows[key, self.recipe_key] >= 0)[np.asarray(engine_rows, dtype=np.int64)]
