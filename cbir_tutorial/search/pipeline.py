"""What turns an image into the vector an engine searches with: a recipe's embedding, then its post-processing.

A :class:`Pipeline` is a :class:`~cbir_tutorial.search.recipes.Recipe` fitted on one gallery, as a
scikit-learn pipeline: :meth:`Pipeline.fit` on the gallery's features, :meth:`Pipeline.transform` for new
images. The embedding is the feature extractors of its backbones (pooled as the recipe says; a trained
model's :class:`~cbir_tutorial.models.trained.TrainedExtractor` instead, :func:`trained_extractor`); the
post-processing is the :class:`~cbir_tutorial.search.whitening.PCAWhitening` learned on the gallery and the
:class:`~cbir_tutorial.search.expansion.Expansion` (DBA fitted on the gallery, αQE at search time). The
baseline is the shortest pipeline: one extractor, nothing after it.
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
from .expansion import Expansion
from .recipes import BASELINE, Embedding, Recipe
from .whitening import PCAWhitening, fuse

#: The file of a saved pipeline's fitted whitening.
WHITENING_FILE = "whitening.npz"
#: The file of a saved pipeline's gallery for DBA (ids and un-augmented vectors; DBA is fitted again on load).
EXPANSION_FILE = "expansion.npz"


@dataclass
class Pipeline:
    """A recipe's steps: ``(N, D)`` float32 L2-normalised vectors per image, once :meth:`fit` on a gallery.

    ``extractors``: one per backbone of the recipe (the second when fusing), in :attr:`Recipe.backbones`
    order; ``whitening``: the gallery-fitted :class:`PCAWhitening`, or None; ``expansion``: the fitted
    :class:`Expansion` of a recipe with DBA or αQE (the engine's searches go through it), or None.
    """

    extractors: list
    recipe: Recipe = BASELINE
    whitening: PCAWhitening | None = field(default=None, repr=False)
    expansion: Expansion | None = field(default=None, repr=False)

    @property
    def extractor(self) -> FeatureExtractor:
        """The first backbone's extractor (the one a single-backbone recipe uses)."""
        return self.extractors[0]

    def fit(self, raw: Sequence[np.ndarray], ids) -> np.ndarray:
        """Learn the post-processing on a gallery: its per-backbone ``(N, D_b)`` features ``raw`` (in
        :attr:`extractors` order) under ``(N,)`` ids (the whitening, then DBA). Returns the gallery's ``(N, D)``
        vectors (before DBA: :meth:`Expansion.stored` gives what the index holds)."""
        post = self.recipe.post
        features = self.checked(raw[0] if len(raw) == 1 else fuse(raw))
        self.whitening = None
        if post.whiten_dim != 0:
            dim = post.whiten_dim if post.whiten_dim is None else min(post.whiten_dim, len(features) - 1,
                                                                      features.shape[1])
            self.whitening = PCAWhitening(dim, post.whiten_power).fit(features)
            features = self.checked(self.whitening.transform(features))
        self.expansion = Expansion(post.dba_n, post.qe_n).fit(features, ids) if post.expands else None
        return features

    def transform(self, raw: Sequence[np.ndarray]) -> np.ndarray:
        """Per-backbone ``(N, D_b)`` features → the pipeline's ``(N, D)`` vectors (fused, whitened as fitted);
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
        return self.transform([e.features_of(source)[None] for e in self.extractors])[0]

    def describe(self) -> dict:
        """JSON-ready: the recipe's name, steps and settings."""
        return {"recipe": self.recipe.name, "steps": self.recipe.steps(), "settings": self.recipe.settings()}

    def save(self, folder: Path) -> dict:
        """Write the fitted steps into ``folder`` (the whitening, DBA's gallery); returns the JSON-ready
        description :func:`load_pipeline` rebuilds the pipeline from (recipe, weights and extractor options)."""
        if self.whitening is not None:
            with open(Path(folder) / WHITENING_FILE, "wb") as file:
                np.savez(file, **self.whitening.state())
        if self.expansion is not None and self.expansion.dba_n:
            with open(Path(folder) / EXPANSION_FILE, "wb") as file:
                np.savez(file, ids=self.expansion.ids, vectors=self.expansion.base)
        extractor = self.extractor
        return {"recipe": self.recipe.settings(), "weights": weights_word(extractor.weights),
                "resize": extractor.resize, "batch_size": extractor.batch_size, "seed": extractor.seed}


def pipeline_extractors(recipe: Recipe, backbone: str | FeatureExtractor | None = None, weights: Weights = "imagenet",
                        **options) -> list:
    """The extractors of ``recipe``: its backbone's (or ``backbone``'s: a name, or an extractor reused as
    it is when the recipe keeps the backbone's own features), then, when it fuses, ``recipe.embedding.fuse_with``'s
    with the same weights and resize policy. A trained model's recipe: its :func:`trained_extractor`."""
    if recipe.embedding.trained:
        return [trained_extractor(recipe, backbone, **options)]
    if isinstance(backbone, FeatureExtractor):
        first = backbone if recipe.embedding.plain_features and type(backbone) is FeatureExtractor else None
        weights, options = backbone.weights, {"resize": backbone.resize, "batch_size": backbone.batch_size,
                                              "seed": backbone.seed, **options}
        backbone = backbone.backbone
    else:
        first = None
    embedding = recipe.embedding.with_backbone(backbone)
    extractors = [first or extractor_for(embedding, embedding.backbone, weights, **options)]
    if embedding.fuse_with:
        extractors.append(extractor_for(embedding, embedding.fuse_with, extractors[0].weights,
                                        **{**options, "resize": extractors[0].resize}))
    return extractors


def extractor_for(embedding: Embedding, backbone: str, weights: Weights = "imagenet", **options) -> FeatureExtractor:
    """The feature extractor ``embedding`` runs for ``backbone``: the backbone's own features, or its last
    convolutional map pooled as the embedding says (:class:`~cbir_tutorial.models.pooling.PooledExtractor`)."""
    if embedding.plain_features:
        return FeatureExtractor(backbone, weights, **options)
    return PooledExtractor(backbone, weights, pooling=embedding.pooling, p=embedding.p, flip=embedding.flip,
                           scales=embedding.scales, **options)


def trained_extractor(recipe: Recipe, backbone: str | FeatureExtractor | None = None, **options) -> TrainedExtractor:
    """The :class:`~cbir_tutorial.models.trained.TrainedExtractor` of ``recipe.embedding.trained`` (``backbone``: None,
    the model's own backbone name, or a TrainedExtractor of the same weights' hash, reused). ``options``:
    ``batch_size``, ``mixed_precision``, ``workers``; a ``resize`` other than the model's is refused, a
    ``seed`` ignored. Raises FileNotFoundError when the folder is gone and ValueError when its weights are
    not those ``recipe.embedding.trained_hash`` names, each naming the folder and the fix."""
    embedding = recipe.embedding
    if isinstance(backbone, TrainedExtractor) and backbone.info["weights_hash"] == embedding.trained_hash:
        return backbone  # the same weights: the same numbers, wherever its folder is
    if isinstance(backbone, FeatureExtractor):
        raise ValueError(f"recipe {recipe.name!r} is the model trained in {embedding.trained}: it brings its own "
                         f"extractor, not {backbone!r}; leave the backbone out")
    embedding.with_backbone(backbone)  # refuses another backbone
    if embedding.fuse_with or not embedding.plain_features:
        raise ValueError(f"recipe {recipe.name!r}: a trained model's embedding is neither pooled again nor fused")
    folder = Path(embedding.trained)
    if not is_trained_folder(folder):
        raise FileNotFoundError(f"the trained model in {folder} (recipe {recipe.name!r}) is not there any more: "
                                f"put the folder back, or build the engine again with recipe=<its new folder>")
    info = read_trained(folder)
    if embedding.trained_hash and info["weights_hash"] != embedding.trained_hash:
        raise ValueError(f"the trained model in {folder} has changed (weights {info['weights_hash']}, not the "
                         f"{embedding.trained_hash} recipe {recipe.name!r} was made with): build the engine again with "
                         f"recipe={str(folder)!r}, or put back the weights it was built with")
    if options.get("resize") not in (None, info["resize"]):
        raise ValueError(f"resize={options['resize']!r}: the model trained in {folder} resizes with "
                         f"{info['resize']!r}; leave resize out")
    return load_trained(folder, info=info, **{key: options[key] for key in ("batch_size", "mixed_precision", "workers")
                                              if options.get(key) is not None})  # checks the weights against trained.json


def load_pipeline(description: dict, folder: Path, extractor: FeatureExtractor | None = None) -> Pipeline:
    """The pipeline :meth:`Pipeline.save` described, extractors built again (or around ``extractor``) and
    its fitted steps read from ``folder`` (DBA fitted again on the saved gallery: deterministic)."""
    recipe = Recipe.from_settings(description["recipe"])
    embedding, post = recipe.embedding, recipe.post
    if extractor is not None and extractor.backbone != embedding.backbone:
        raise ValueError(f"the engine in {folder} was built with {embedding.backbone}, not {extractor.backbone}")
    weights = "imagenet" if embedding.trained else weights_from_word(description["weights"])  # the folder has its own
    extractors = pipeline_extractors(recipe, extractor, weights,
                                     **({} if extractor is not None else
                                        {key: description[key] for key in ("resize", "batch_size", "seed")}))
    pipeline = Pipeline(extractors, recipe)
    if post.whiten_dim != 0:
        pipeline.whitening = PCAWhitening.from_state(saved_arrays(saved_file(folder, WHITENING_FILE, recipe)))
    if post.expands:
        pipeline.expansion = Expansion(post.dba_n, post.qe_n)
        if post.dba_n:
            saved = saved_arrays(saved_file(folder, EXPANSION_FILE, recipe))
            pipeline.expansion.fit(saved["vectors"], saved["ids"])
    return pipeline


def saved_file(folder: Path, name: str, recipe: Recipe) -> Path:
    """``folder / name``; FileNotFoundError naming it when a saved engine of ``recipe`` lacks it."""
    path = Path(folder) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the saved engine's recipe {recipe.name!r} needs it "
                                f"({', '.join(recipe.post.steps())}); save the engine again")
    return path
