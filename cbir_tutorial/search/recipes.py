"""Named retrieval recipes: which pooling, augmentation, fusion, whitening and expansion an engine uses.

A :class:`Recipe` is a list of settings, its backbone(s) included; fitted on a catalogue it becomes a
:class:`~cbir_tutorial.search.pipeline.Pipeline` (the extractors and the fitted whitening) that the engine
keeps, so a later query image goes through exactly the same steps, and its expansion steps choose the
engine's index (``"expanded"``). ``SearchEngine.build(catalogue, recipe="best")``,
``python -m cbir_tutorial evaluate --recipe best`` and the explorer all take a name from :data:`RECIPES`,
or the folder of a trained model (:func:`trained_recipe`: the fine-tuned embedding is the recipe's
features, e.g. ``SearchEngine.build(catalogue, recipe="runs/lite0-proxy")`` or ``--recipe runs/lite0-proxy``).

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
class Recipe:
    """Settings of every step; the defaults are the baseline (average pooling, nothing after).

    ``backbone``: the backbone whose features the recipe starts from (the one that works offline by
    default; :meth:`with_backbone` swaps it);
    ``pooling``/``p``/``flip``/``scales``: see :class:`~cbir_tutorial.models.pooling.PooledExtractor`;
    ``fuse_with``: a second backbone whose features are concatenated, with equal weight;
    ``whiten_dim``: PCA-whitening output size (``0`` = no whitening, ``None`` = all components),
    ``whiten_power``: 1 full whitening, 0.5 square-root; ``dba_n``/``qe_n``: neighbours used by database
    augmentation / α-query expansion (0 = off), with exponent :data:`~.expansion.ALPHA`;
    ``trained``/``trained_hash``: the folder of a trained model whose embedding replaces the backbone's
    features, and the hash of the weights the recipe was made with (:func:`trained_recipe`). A recipe made
    with ``trained`` and no hash (``Recipe("mine", trained=DIR)``) reads the folder at once: it records the
    resolved folder, its weights' hash and its backbone, so an engine built with it refuses the folder once
    it is trained again; a folder that cannot be used raises
    :class:`~cbir_tutorial.models.trained.TrainedModelError`.
    """

    name: str
    description: str = ""
    backbone: str = OFFLINE_BACKBONE
    pooling: str = "avg"
    p: float = 3.0
    flip: bool = False
    scales: tuple = (1.0,)
    fuse_with: str | None = None
    whiten_dim: int | None = 0
    whiten_power: float = 1.0
    dba_n: int = 0
    qe_n: int = 0
    trained: str | None = None
    trained_hash: str | None = None

    def __post_init__(self):
        if self.trained and not self.trained_hash:  # made by hand: record the model it is made with
            folder = Path(self.trained).expanduser().resolve()
            info = read_trained(folder)
            model = backbone_spec(info["backbone"]).name
            if backbone_spec(self.backbone).name not in (model, OFFLINE_BACKBONE):  # the default is replaced
                raise ValueError(f"recipe {self.name!r}: the model trained in {folder} is on {model}, not "
                                 f"{self.backbone}; leave the backbone out")
            object.__setattr__(self, "trained", str(folder))
            object.__setattr__(self, "trained_hash", info["weights_hash"])
            object.__setattr__(self, "backbone", model)

    @property
    def key(self) -> str:
        """What tells recipes apart in menus and shelves: the trained model's folder, else the name."""
        return self.trained or self.name

    @property
    def plain_features(self) -> bool:
        """True when the features are the backbone's own (average pooling, no augmentation)."""
        return self.pooling == "avg" and not self.flip and tuple(self.scales) == (1.0,)

    def steps(self) -> list[str]:
        """The steps in order, in words (``[]`` for the baseline)."""
        steps = [f"fine-tuned embedding from {self.trained}"] if self.trained else []
        if self.pooling == "gem":
            steps.append(f"GeM pooling (p={self.p:g})")
        elif self.pooling == "max":
            steps.append("max pooling")
        if self.flip:
            steps.append("flip TTA")
        if tuple(self.scales) != (1.0,):
            steps.append(f"multi-scale TTA {tuple(self.scales)}")
        if self.fuse_with:
            steps.append(f"fusion with {self.fuse_with} (weight 1)")
        if self.whiten_dim != 0:
            steps.append(f"PCA whitening (dim={self.whiten_dim or 'all'}, power={self.whiten_power:g})")
        if self.dba_n:
            steps.append(f"DBA (n={self.dba_n}, alpha={ALPHA:g})")
        if self.qe_n:
            steps.append(f"alpha-QE (n={self.qe_n}, alpha={ALPHA:g})")
        return steps

    def settings(self) -> dict:
        """The settings as a JSON-ready dict (:meth:`from_settings` reads it back)."""
        out = asdict(self)
        out["scales"] = list(self.scales)
        return out

    @classmethod
    def from_settings(cls, settings: dict) -> "Recipe":
        """The recipe :meth:`settings` wrote (settings this version no longer has are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in settings.items() if key in known}
        return cls(**{**values, "scales": tuple(values.get("scales", (1.0,)))})

    def with_backbone(self, backbone: str | None) -> "Recipe":
        """This recipe starting from ``backbone`` instead (``None``: unchanged)."""
        if backbone is None or backbone_spec(backbone).name == self.backbone:
            return self
        if self.trained:
            raise ValueError(f"recipe {self.name!r} is the model trained in {self.trained} on {self.backbone}: "
                             f"it cannot start from {backbone}; leave the backbone out")
        return replace(self, backbone=backbone_spec(backbone).name)

    @property
    def backbones(self) -> list[str]:
        """Every backbone the recipe runs: its own, then the fused one."""
        return [self.backbone] + ([self.fuse_with] if self.fuse_with else [])

    @property
    def expands(self) -> bool:
        """True when the recipe moves vectors towards their neighbours (DBA or αQE): its index is ``"expanded"``."""
        return bool(self.dba_n or self.qe_n)

    def index_choice(self, index: str = "exact", options: dict | None = None) -> tuple[str, dict]:
        """``(backend name, options)`` of the engine's index: ``index`` as asked, or ``"expanded"`` (exact
        search after DBA / αQE) for a recipe that expands, which only the exact backend can do."""
        if not self.expands:
            return index, dict(options or {})
        if index != "exact" or options:
            raise ValueError(f"recipe {self.name!r} expands queries (DBA / alpha-QE) on an exact index of its own: "
                             f"use index='exact' without options, not {index!r}")
        return "expanded", {"qe_n": self.qe_n, "dba_n": self.dba_n}


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
                     "cbir-tutorial train (save_trained) writes")


def trained_recipe(folder: str | os.PathLike) -> Recipe:
    """The recipe whose features are the trained model's embedding in ``folder`` (already L2-normalised;
    nothing after it): named after the folder, on the model's backbone, with the weights' hash that
    :func:`~.pipeline.trained_extractor` checks when an engine is built or reopened."""
    folder = Path(folder).expanduser().resolve()
    info = read_trained(folder)
    spec = backbone_spec(info["backbone"])
    return Recipe(folder.name, f"{info.get('loss', 'fine-tuned')}, {spec.title}, {info['embedding_dim']}-d "
                  f"(trained model in {folder})", backbone=spec.name, trained=str(folder),
                  trained_hash=info["weights_hash"])


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
