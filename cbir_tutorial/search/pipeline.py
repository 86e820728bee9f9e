"""What turns an image into the vector an engine searches with: a recipe's extractors, fused and whitened.

A :class:`Pipeline` is a :class:`~cbir_tutorial.search.recipes.Recipe` fitted on one gallery (like a
scikit-learn pipeline after ``fit``): the feature extractors of its backbones (pooled as the recipe
says) and, when the recipe whitens, the :class:`~cbir_tutorial.search.whitening.PCAWhitening` learned on
the gallery. The baseline is the shortest pipeline: one extractor, nothing after it. A trained model's
recipe runs its :class:`~cbir_tutorial.models.trained.TrainedExtractor` instead (:func:`trained_extractor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..models.features import FeatureExtractor
from ..models.finite import check_finite
from ..models.pooling import PooledExtractor
from ..models.trained import TrainedExtractor, is_trained_folder, load_trained, read_trained
from ..models.weights import Weights, weights_from_word, weights_word
from .backends import saved_arrays
from .recipes import BASELINE, Recipe, recipe_from_word
from .whitening import PCAWhitening, fuse

#: The file of a saved pipeline's fitted whitening.
WHITENING_FILE = "whitening.npz"


@dataclass
class Pipeline:
    """A recipe's steps as fitted on one gallery: ``(N, D)`` float32 L2-normalised features per image.

    ``extractors``: one per backbone of the recipe (the second when fusing), in
    :attr:`Recipe.backbones` order; ``whitening``: the gallery-fitted :class:`PCAWhitening`, or None.
    """

    extractors: list
    recipe: Recipe = BASELINE
    whitening: PCAWhitening | None = field(default=None, repr=False)

    @property
    def extractor(self) -> FeatureExtractor:
        """The first backbone's extractor (the one a single-backbone recipe uses)."""
        return self.extractors[0]

    def combine(self, raw: Sequence[np.ndarray]) -> np.ndarray:
        """Per-backbone ``(N, D_b)`` features → the pipeline's ``(N, D)`` features (fused, whitened);
        ValueError when they hold NaN or infinity (:meth:`checked`)."""
        features = raw[0] if len(raw) == 1 else fuse(raw)
        return self.checked(features if self.whitening is None else self.whitening.transform(features))

    def checked(self, features: np.ndarray) -> np.ndarray:
        """``features`` unchanged; ValueError naming the rows that hold NaN or infinity, and why they may."""
        check_finite(features, what=f"vectors of recipe {self.recipe.name!r}",
                     fix="its extractors' features hold NaN or infinity (a model that diverged in training: retrain "
                         "it with a lower learning rate), or its whitening was fitted on features that are all alike")
        return features

    def features_of(self, source) -> np.ndarray:
        """One query image → ``(D,)`` features in the gallery's space (same pooling, fusion, whitening)."""
        return self.combine([e.features_of(source)[None] for e in self.extractors])[0]

    def describe(self) -> dict:
        """JSON-ready: the recipe's name, steps and settings."""
        return {"recipe": self.recipe.name, "steps": self.recipe.steps(), "settings": self.recipe.settings()}

    def save(self, folder: Path) -> dict:
        """Write the fitted whitening (if any) into ``folder``; returns the JSON-ready description
        :func:`load_pipeline` rebuilds the pipeline from (recipe, weights and extractor options)."""
        if self.whitening is not None:
            with open(Path(folder) / WHITENING_FILE, "wb") as file:
                np.savez(file, **self.whitening.state())
        extractor = self.extractor
        return {"recipe": self.recipe.settings(), "weights": weights_word(extractor.weights),
                "resize": extractor.resize, "batch_size": extractor.batch_size, "seed": extractor.seed}


def pipeline_extractors(recipe: Recipe, backbone: str | FeatureExtractor | None = None, weights: Weights = "imagenet",
                        **options) -> list:
    """The extractors of ``recipe``: its backbone's (or ``backbone``'s: a name, or an extractor reused as
    it is when the recipe keeps the backbone's own features), then, when it fuses, ``recipe.fuse_with``'s
    with the same weights and resize policy. A trained model's recipe: its :func:`trained_extractor`."""
    if recipe.trained:
        return [trained_extractor(recipe, backbone, **options)]
    if isinstance(backbone, FeatureExtractor):
        first = backbone if recipe.plain_features and type(backbone) is FeatureExtractor else None
        weights, options = backbone.weights, {"resize": backbone.resize, "batch_size": backbone.batch_size,
                                              "seed": backbone.seed, **options}
        backbone = backbone.backbone
    else:
        first = None
    recipe = recipe.with_backbone(backbone)
    extractors = [first or extractor_for(recipe, recipe.backbone, weights, **options)]
    if recipe.fuse_with:
        extractors.append(extractor_for(recipe, recipe.fuse_with, extractors[0].weights,
                                        **{**options, "resize": extractors[0].resize}))
    return extractors


def extractor_for(recipe: Recipe, backbone: str, weights: Weights = "imagenet", **options) -> FeatureExtractor:
    """The feature extractor ``recipe`` runs for ``backbone``: the backbone's own features, or its last
    convolutional map pooled as the recipe says (:class:`~cbir_tutorial.models.pooling.PooledExtractor`)."""
    if recipe.plain_features:
        return FeatureExtractor(backbone, weights, **options)
    return PooledExtractor(backbone, weights, pooling=recipe.pooling, p=recipe.p, flip=recipe.flip,
                           scales=recipe.scales, **options)


def trained_extractor(recipe: Recipe, backbone: str | FeatureExtractor | None = None, **options) -> TrainedExtractor:
    """The :class:`~cbir_tutorial.models.trained.TrainedExtractor` of ``recipe.trained`` (``backbone``: None,
    the model's own backbone name, or a TrainedExtractor of the same weights' hash, reused). ``options``:
    ``batch_size``, ``mixed_precision``, ``workers``; a ``resize`` other than the model's is refused, a
    ``seed`` ignored. Raises FileNotFoundError when the folder is gone and ValueError when its weights are
    not those ``recipe.trained_hash`` names, each naming the folder and the fix."""
    if isinstance(backbone, TrainedExtractor) and backbone.info["weights_hash"] == recipe.trained_hash:
        return backbone  # the same weights: the same numbers, wherever its folder is
    if isinstance(backbone, FeatureExtractor):
        raise ValueError(f"recipe {recipe.name!r} is the model trained in {recipe.trained}: it brings its own "
                         f"extractor, not {backbone!r}; leave the backbone out")
    recipe.with_backbone(backbone)  # refuses another backbone
    if recipe.fuse_with or not recipe.plain_features:
        raise ValueError(f"recipe {recipe.name!r}: a trained model's embedding is neither pooled again nor fused")
    folder = Path(recipe.trained)
    if not is_trained_folder(folder):
        raise FileNotFoundError(f"the trained model in {folder} (recipe {recipe.name!r}) is not there any more: "
                                f"put the folder back, or build the engine again with recipe=<its new folder>")
    info = read_trained(folder)
    if recipe.trained_hash and info["weights_hash"] != recipe.trained_hash:
        raise ValueError(f"the trained model in {folder} has changed (weights {info['weights_hash']}, not the "
                         f"{recipe.trained_hash} recipe {recipe.name!r} was made with): build the engine again with "
                         f"recipe={str(folder)!r}, or put back the weights it was built with")
    if options.get("resize") not in (None, info["resize"]):
        raise ValueError(f"resize={options['resize']!r}: the model trained in {folder} resizes with "
                         f"{info['resize']!r}; leave resize out")
    return load_trained(folder, info=info, **{key: options[key] for key in ("batch_size", "mixed_precision", "workers")
                                              if options.get(key) is not None})  # checks the weights against trained.json


def fit_pipeline(recipe: "str | Recipe", extractors: list, raw: Sequence[np.ndarray]) -> tuple[Pipeline, np.ndarray]:
    """``recipe``'s pipeline over ``extractors``, its whitening fitted on the gallery's per-backbone
    features ``raw``. Returns ``(pipeline, (N, D) gallery features in the pipeline's space)``."""
    recipe = recipe_from_word(recipe)
    pipeline = Pipeline(list(extractors), recipe.with_backbone(extractors[0].backbone))
    features = pipeline.combine(raw)
    if recipe.whiten_dim != 0:
        dim = recipe.whiten_dim if recipe.whiten_dim is None else min(recipe.whiten_dim, len(features) - 1,
                                                                      features.shape[1])
        pipeline.whitening = PCAWhitening(dim, recipe.whiten_power).fit(features)
        features = pipeline.checked(pipeline.whitening.transform(features))
    return pipeline, features


def load_pipeline(description: dict, folder: Path, extractor: FeatureExtractor | None = None) -> Pipeline:
    """The pipeline :meth:`Pipeline.save` described, extractors built again (or around ``extractor``) and
    the whitening read from ``folder``."""
    recipe = Recipe.from_settings(description["recipe"])
    if extractor is not None and extractor.backbone != recipe.backbone:
        raise ValueError(f"the engine in {folder} was built with {recipe.backbone}, not {extractor.backbone}")
    weights = "imagenet" if recipe.trained else weights_from_word(description["weights"])  # the folder has its own
    extractors = pipeline_extractors(recipe, extractor, weights,
                                     **({} if extractor is not None else
                                        {key: description[key] for key in ("resize", "batch_size", "seed")}))
    pipeline = Pipeline(extractors, recipe)
    if recipe.whiten_dim != 0:
        path = Path(folder) / WHITENING_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the saved engine's recipe {recipe.name!r} whitens its "
                                    "features; save the engine again")
        pipeline.whitening = PCAWhitening.from_state(saved_arrays(path))
    return pipeline
