"""Named retrieval recipes: an embedding (backbone, pooling, augmentation, fusion, or a trained model) and the
post-processing after it (whitening, DBA, αQE).

A :class:`Recipe` is an :class:`Embedding` and its :class:`PostProcessing`; fitted on a catalogue it becomes a
:class:`~cbir_tutorial.search.pipeline.Pipeline` (the extractors, the fitted whitening and the fitted
:class:`~cbir_tutorial.search.expansion.Expansion`) that the engine keeps, so a later query image goes
through exactly the same steps, over whichever index the engine uses. ``SearchEngine.build(catalogue, recipe="best")``,
``python -m cbir_tutorial evaluate --recipe best`` and the explorer all take a name from :data:`RECIPES`,
or the folder of a trained model (:func:`trained_recipe`: the fine-tuned embedding is the recipe's
features, e.g. ``SearchEngine.build(catalogue, recipe="runs/lite0-proxy")`` or ``--recipe runs/lite0-proxy``).

How the settings were chosen (no labels are used by a recipe itself; labels only scored the choices):
the sample was split by product id parity. On the **even-id half** (the tuning half, 386 photos) each
step was tried on top of the previous one with EfficientNet-Lite0, leave-one-out MAP@10 there:

- pooling: average 0.679, max 0.681, GeM p=2/3/4 0.683/0.684/0.684 → GeM with p=3, the literature's
  value for off-the-shelf features (Radenović et al. 2018); + flip TTA 0.694; multi-scale TTA
  (0.75 and 1, or 1 and 1.25) 0.693 / 0.700 for 2-3x the extraction: left out;
- then a grid of 54 label-free recipes on top of GeM + flip (``benchmarks/choose_recipe.py``): with or
  without EfficientNet-Lite2 fused, no whitening or PCA whitening to 64 / 256 dimensions (power 0.5),
  DBA n and αQE n in 0..2 (α=3 as in the literature). Its highest tuning-half score, 0.735, is
  **"best"**: Lite2 fused, no whitening, DBA 1 + αQE 2. The highest with one backbone, 0.716, is
  **"single"**: whitening to 64 dimensions, DBA 1 + αQE 2 (whitening alone lowers the score: 0.691
  at 64 dimensions, 0.671 at 256; full whitening, power 1, much worse: 0.630 / 0.375, notebook 08's whitening
  grid; on the tuning half it pays only together with expansion, and the report half does not confirm it).

The **odd-id half** (the report half) was only scored with the settings fixed; its figures are in
``benchmarks/RESULTS.md`` and notebook 08 (:func:`~cbir_tutorial.evaluation.reports.halves` builds the
two halves).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..models.backbones import OFFLINE_BACKBONE, backbone_spec
from ..models.trained import (TRAINED_FILE, WEIGHTS_FILE, TrainedModelError, is_trained_folder, read_trained,
                              trained_folders)
from .expansion import ALPHA


@dataclass(frozen=True)
class Embedding:
    """What turns an image into one vector: a backbone's features, pooled and augmented as set, fused with a
    second backbone's, or a trained model's embedding. The defaults are the baseline's (average pooling).

    ``backbone``: the backbone whose features it starts from (the one that works offline by default;
    :meth:`with_backbone` swaps it); ``pooling``/``p``/``flip``/``scales``: see
    :class:`~cbir_tutorial.models.pooling.PooledExtractor`; ``fuse_with``: a second backbone whose features are
    concatenated, with equal weight; ``trained``/``trained_hash``: the folder of a trained model whose
    embedding replaces the backbone's features, and the hash of its weights (:func:`trained_recipe`). Made with
    ``trained`` and no hash (``Embedding(trained=DIR)``), it reads the folder at once: it records the resolved
    folder, its weights' hash and its backbone, so an engine built with it refuses the folder once it is
    trained again; a folder that cannot be used raises :class:`~cbir_tutorial.models.trained.TrainedModelError`.
    """

    backbone: str = OFFLINE_BACKBONE
    pooling: str = "avg"
    p: float = 3.0
    flip: bool = False
    scales: tuple = (1.0,)
    fuse_with: str | None = None
    trained: str | None = None
    trained_hash: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(self.scales))
        if self.trained and not self.trained_hash:  # made by hand: record the model it is made with
            folder = Path(self.trained).expanduser().resolve()
            info = read_trained(folder)
            model = backbone_spec(info["backbone"]).name
            if backbone_spec(self.backbone).name not in (model, OFFLINE_BACKBONE):  # the default is replaced
                raise ValueError(f"the model trained in {folder} is on {model}, not {self.backbone}; "
                                 "leave the backbone out")
            object.__setattr__(self, "trained", str(folder))
            object.__setattr__(self, "trained_hash", info["weights_hash"])
            object.__setattr__(self, "backbone", model)

    @property
    def plain_features(self) -> bool:
        """True when the features are the backbone's own (average pooling, no augmentation)."""
        return self.pooling == "avg" and not self.flip and self.scales == (1.0,)

    @property
    def backbones(self) -> list[str]:
        """Every backbone it runs: its own, then the fused one."""
        return [self.backbone] + ([self.fuse_with] if self.fuse_with else [])

    def steps(self) -> list[str]:
        """Its steps past the backbone's own features, in words."""
        steps = [f"fine-tuned embedding from {self.trained}"] if self.trained else []
        if self.pooling == "gem":
            steps.append(f"GeM pooling (p={self.p:g})")
        elif self.pooling == "max":
            steps.append("max pooling")
        if self.flip:
            steps.append("flip TTA")
        if self.scales != (1.0,):
            steps.append(f"multi-scale TTA {self.scales}")
        if self.fuse_with:
            steps.append(f"fusion with {self.fuse_with} (weight 1)")
        return steps

    def with_backbone(self, backbone: str | None) -> "Embedding":
        """This embedding starting from ``backbone`` instead (``None``: unchanged); ValueError for a trained model."""
        if backbone is None or backbone_spec(backbone).name == self.backbone:
            return self
        if self.trained:
            raise ValueError(f"the model trained in {self.trained} is on {self.backbone}: it cannot start from "
                             f"{backbone}; leave the backbone out")
        return replace(self, backbone=backbone_spec(backbone).name)


@dataclass(frozen=True)
class PostProcessing:
    """The steps after the embedding, none by default.

    ``whiten_dim``: PCA-whitening output size, learned on the gallery (``0`` = no whitening, ``None`` = all
    components), ``whiten_power``: 1 full whitening, 0.5 square-root; ``dba_n``: database-side augmentation,
    each gallery vector moved towards its ``dba_n`` nearest (what the index stores); ``qe_n``: α-query
    expansion, each query moved towards its ``qe_n`` nearest before a second search (0 = off), both with
    exponent :data:`~.expansion.ALPHA` (:class:`~.expansion.Expansion` does both, over any index).
    """

    whiten_dim: int | None = 0
    whiten_power: float = 1.0
    dba_n: int = 0
    qe_n: int = 0

    @property
    def expands(self) -> bool:
        """True when vectors move towards their neighbours (DBA or αQE)."""
        return bool(self.dba_n or self.qe_n)

    def steps(self) -> list[str]:
        """The steps in order, in words."""
        steps = []
        if self.whiten_dim != 0:
            steps.append(f"PCA whitening (dim={self.whiten_dim or 'all'}, power={self.whiten_power:g})")
        if self.dba_n:
            steps.append(f"DBA (n={self.dba_n}, alpha={ALPHA:g})")
        if self.qe_n:
            steps.append(f"alpha-QE (n={self.qe_n}, alpha={ALPHA:g})")
        return steps


@dataclass(frozen=True)
class Recipe:
    """A named :class:`Embedding` and the :class:`PostProcessing` after it (the defaults: the baseline).

    :meth:`changed` makes a variant from settings of either part (``BASELINE.changed(name="max",
    pooling="max")``); :meth:`settings` and :meth:`from_settings` are the JSON form a saved engine keeps.
    """

    name: str
    description: str = ""
    embedding: Embedding = Embedding()
    post: PostProcessing = PostProcessing()

    @property
    def key(self) -> str:
        """What tells recipes apart in menus and shelves: the trained model's folder, else the name."""
        return self.embedding.trained or self.name

    @property
    def backbones(self) -> list[str]:
        """Every backbone the recipe runs: its own, then the fused one."""
        return self.embedding.backbones

    def steps(self) -> list[str]:
        """The steps in order, in words (``[]`` for the baseline)."""
        return self.embedding.steps() + self.post.steps()

    def changed(self, **settings) -> "Recipe":
        """This recipe with ``settings`` replaced: ``name``, ``description``, or any field of
        :class:`Embedding` or :class:`PostProcessing`; TypeError naming a setting neither has."""
        parts = {"embedding": {}, "post": {}, "": {}}
        owner = {f.name: part for part, cls in (("embedding", Embedding), ("post", PostProcessing))
                 for f in fields(cls)} | {"name": "", "description": ""}
        for key, value in settings.items():
            if key not in owner:
                raise TypeError(f"{key!r} is not a recipe setting: choose from {', '.join(owner)}")
            parts[owner[key]][key] = value
        return replace(self, **parts[""], embedding=replace(self.embedding, **parts["embedding"]),
                       post=replace(self.post, **parts["post"]))

    def settings(self) -> dict:
        """The settings as a JSON-ready dict (:meth:`from_settings` reads it back)."""
        out = asdict(self)
        out["embedding"]["scales"] = list(self.embedding.scales)
        return out

    @classmethod
    def from_settings(cls, settings: dict) -> "Recipe":
        """The recipe :meth:`settings` wrote."""
        return cls(settings["name"], settings.get("description", ""), Embedding(**settings["embedding"]),
                   PostProcessing(**settings["post"]))

    def with_backbone(self, backbone: str | None) -> "Recipe":
        """This recipe starting from ``backbone`` instead (``None``: unchanged)."""
        embedding = self.embedding.with_backbone(backbone)
        return self if embedding is self.embedding else replace(self, embedding=embedding)


BASELINE = Recipe("baseline", "ImageNet features, global average pooling, L2-normalised, Euclidean distance")
GEM = BASELINE.changed(name="gem", description="GeM pooling of the last conv map (p=3)", pooling="gem")
TTA = GEM.changed(name="gem+flip", description="GeM + horizontal-flip test-time augmentation", flip=True)
WHITEN = TTA.changed(name="gem+flip+whiten", description="... + PCA whitening learned on the gallery",
                     whiten_dim=64, whiten_power=0.5)
DBA = WHITEN.changed(name="gem+flip+whiten+dba", description="... + database-side augmentation", dba_n=1)
SINGLE = DBA.changed(name="single", description="the best with one backbone: GeM + flip + whitening + DBA + "
                     "alpha-QE", qe_n=2)
FUSION = TTA.changed(name="fusion", description="GeM + flip on the chosen backbone and on EfficientNet-Lite2, "
                     "fused", fuse_with="efficientnet_lite2")
BEST = FUSION.changed(name="best", description="fusion + DBA + alpha-QE (no labels)", dba_n=1, qe_n=2)

#: The named recipes, in the order of the cumulative table: each adds a step to the one before, except
#: ``fusion``, which starts again from ``gem+flip`` with a second backbone.
RECIPES: dict[str, Recipe] = {r.name: r for r in (BASELINE, GEM, TTA, WHITEN, DBA, SINGLE, FUSION, BEST)}


def recipe_from_word(recipe: "str | os.PathLike | Recipe") -> Recipe:
    """A :class:`Recipe` from its name (``""`` → baseline) or a trained model's folder
    (:func:`trained_recipe`); raises ValueError naming the choices."""
    if isinstance(recipe, Recipe):
        return recipe
    word = str(recipe).strip().lower() or "baseline"
    if word in RECIPES and not isinstance(recipe, os.PathLike):
        return RECIPES[word]
    folder = Path(str(recipe).strip()).expanduser()
    if is_trained_folder(folder):
        return trained_recipe(folder)
    found = f" ({folder} has no {TRAINED_FILE} and {WEIGHTS_FILE})" if folder.is_dir() else ""
    raise ValueError(f"recipe={str(recipe)!r} is neither a recipe nor a trained model's folder{found}: choose one of "
                     f"{', '.join(RECIPES)}, or give a folder holding the {TRAINED_FILE} and {WEIGHTS_FILE} that "
                     "python -m cbir_tutorial train (save_trained) writes")


def trained_recipe(folder: str | os.PathLike) -> Recipe:
    """The recipe whose features are the trained model's embedding in ``folder`` (already L2-normalised;
    nothing after it): named after the folder, on the model's backbone, with the weights' hash that
    :func:`~.pipeline.trained_extractor` checks when an engine is built or reopened."""
    folder = Path(folder).expanduser().resolve()
    info = read_trained(folder)
    spec = backbone_spec(info["backbone"])
    return Recipe(folder.name, f"{info.get('loss', 'fine-tuned')}, {spec.title}, {info['embedding_dim']}-d "
                  f"(trained model in {folder})",
                  Embedding(backbone=spec.name, trained=str(folder), trained_hash=info["weights_hash"]))


def trained_recipes(folders=()) -> list[Recipe]:
    """The recipes of the trained models in the cache's ``trained`` folder and in ``folders`` (each a
    trained model's folder or a folder of them; see :func:`~cbir_tutorial.models.trained.trained_folders`),
    in that order; a folder that cannot be used is left out (:func:`trained_recipe_choices` says why)."""
    return trained_recipe_choices(folders)[0]


def trained_recipe_choices(folders=()) -> tuple[list[Recipe], dict[str, str]]:
    """``(recipes, broken)``: the recipes of the trained models that :func:`trained_recipes` lists, and the
    folders among them that cannot be used, ``{resolved folder: why, in one line}`` (e.g.
    ``"trained.json: not a JSON object (a list); ..."``), each in the order found."""
    recipes, broken = [], {}
    for folder in trained_folders(folders):
        try:
            recipes.append(trained_recipe(folder))
        except TrainedModelError as error:
            broken[str(folder)] = error.reason
        except (OSError, ValueError) as error:  # e.g. the folder went away since it was listed
            broken[str(folder)] = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return recipes, broken
