"""The search engine: a catalogue, a feature extractor and an index, queried with an image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..choices import Weights, weights_from_word, weights_word
from ..data.catalogue import Catalogue
from ..models.features import Extraction, FeatureExtractor
from ..paths import replace_folder, temporary_sibling
from ..data.images import ImageSource
from .backends import Index, load_index, make_index
from ..evaluation.metrics import evaluate

#: The file that marks a folder as a saved engine.
ENGINE_FILE = "engine.json"
RESULT_COLUMNS = ["rank", "id", "brand", "description", "price", "category", "distance", "path", "row"]


class SearchEngine:
    """Catalogue products ranked by Euclidean distance between L2-normalised image features.

    Built with :meth:`build` (extracts, or reads cached, features of every catalogue image). Products
    whose image cannot be read are left out and listed in ``extraction.skipped``; ``catalogue`` holds
    the indexed products only, in the row order of ``features``. ``recipe``: the fitted
    :class:`~cbir_tutorial.search.recipes.FittedRecipe` the features come from (None: the baseline);
    query images go through its steps too.
    """

    def __init__(self, catalogue: Catalogue, extractor: FeatureExtractor, features: np.ndarray | None = None,
                 extraction: Extraction | None = None, dtype=np.float32, *, index: str | Index = "exact",
                 index_options: dict | None = None, recipe=None):
        """``index``: a backend name (see :data:`~.backends.INDEXES`) built over ``features`` with
        ``index_options`` (``dtype`` is the exact index's storage), or an already built :class:`Index`.
        A ``recipe`` with query expansion brings its own exact index."""
        if recipe is not None and recipe.index is not None:
            if not (isinstance(index, str) and index == "exact") and index is not recipe.index:
                raise ValueError(f"recipe {recipe.recipe.name!r} expands queries on its own exact index: "
                                 f"use index='exact', not {index!r}")
            index, features = recipe.index, None
        if not isinstance(index, str):
            if features is not None:
                raise ValueError("give features or a built index, not both")
        else:
            if features is None:
                raise ValueError("features are needed to build an index")
            options = dict(index_options or {})
            if index == "exact":
                options.setdefault("dtype", dtype)
            index = make_index(index, features, metadata=catalogue.table, **options)
        if len(catalogue) != len(index):
            raise ValueError(f"{len(catalogue)} products but {len(index)} feature rows")
        self.catalogue = catalogue
        self.extractor = extractor
        self.extraction = extraction
        self.index = index
        self.recipe = recipe

    @property
    def features(self) -> np.ndarray:
        """``(N, D)`` float32 features as the index stores them: the index's own array for exact float32
        storage (the engine keeps one copy of the gallery), a decoded copy otherwise."""
        return self.index.vectors()

    @classmethod
    def build(cls, catalogue: Catalogue, backbone: str | FeatureExtractor = "resnet50",
              weights: Weights = "imagenet", *, cache=True, progress: bool = True, dtype=np.float32,
              recipe=None, index: str = "exact", index_options: dict | None = None,
              **extractor_options) -> "SearchEngine":
        """Extract (or load cached) features of ``catalogue`` with ``backbone`` and index them.

        ``recipe``: a name from :data:`~cbir_tutorial.search.recipes.RECIPES` (e.g. ``"best"``) or a
        ``Recipe``; its pooling, fusion, whitening and expansion are applied and kept with the engine.
        ``index``: ``"exact"`` (default), ``"faiss-flat"``, ``"faiss-ivf"``, ``"faiss-hnsw"`` or ``"milvus"``,
        with ``index_options`` for it (e.g. ``{"nlist": 256}``, ``{"uri": "http://host:19530"}``).
        """
        if recipe is not None:
            from .recipes import build_engine

            return build_engine(cls, catalogue, backbone, weights, recipe, cache=cache, progress=progress,
                                dtype=dtype, index=index, index_options=index_options, **extractor_options)
        extractor = (backbone if isinstance(backbone, FeatureExtractor)
                     else FeatureExtractor(backbone, weights, **extractor_options))
        kept, features, extraction = extractor.extract_catalogue(catalogue, cache=cache, progress=progress)
        if len(kept) == 0:
            raise ValueError(f"No readable image in catalogue {catalogue.name!r}:\n{extraction.report()}")
        return cls(kept, extractor, features, extraction, dtype=dtype, index=index, index_options=index_options)

    def save(self, folder) -> Path:
        """Write the engine into ``folder``: ``engine.json`` (backbone, weights, extractor options, recipe,
        catalogue name), ``catalogue.json`` (the indexed products), ``index/`` and, for a recipe with
        whitening, ``whitening.npz``. Atomic: a reader sees the old folder or the whole new one (on Linux,
        never no folder), and what a killed save left beside it is removed by the next one. A Milvus
        index saves its connection and the checksum of its rows; its rows stay in the Milvus database."""
        folder = Path(folder).expanduser().resolve()
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists() and not (folder / ENGINE_FILE).is_file():
            raise FileExistsError(f"{folder} exists and is not a saved engine: choose another folder")
        tmp = temporary_sibling(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            self.index.save(tmp / "index")
            self.catalogue.table.to_json(tmp / "catalogue.json", orient="split", index=False)
            extractor = self.extractor
            description = {
                "version": 1, "backbone": extractor.backbone, "weights": weights_word(extractor.weights),
                "resize": extractor.resize, "batch_size": extractor.batch_size, "seed": extractor.seed,
                "catalogue": {"name": self.catalogue.name, "n_dropped": self.catalogue.n_dropped,
                              "root": None if self.catalogue.root is None else str(self.catalogue.root),
                              "notes": list(self.catalogue.notes)},
                "rows": len(self),
                "recipe": None if self.recipe is None else self.recipe.recipe.settings(),
            }
            if self.recipe is not None and self.recipe.whitening is not None:
                with open(tmp / "whitening.npz", "wb") as file:
                    np.savez(file, **self.recipe.whitening.state())
            (tmp / ENGINE_FILE).write_text(json.dumps(description, indent=1) + "\n")
            replace_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder, extractor: FeatureExtractor | None = None, *,
             index_uri: str | None = None) -> "SearchEngine":
        """Reopen an engine written by :meth:`save`, without extracting features again.

        The feature extractor (needed for image queries) is rebuilt from the saved backbone and weights,
        unless ``extractor`` is given. ``index_uri``: the Milvus database holding a Milvus engine's rows
        (a ``.db`` file or ``http://host:19530``); the ``uri`` saved in the folder is used only when it is
        this machine's default Milvus Lite file, so a folder someone sent you never opens another database.
        """
        folder = Path(folder).expanduser()
        path = folder / ENGINE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a saved engine (see SearchEngine.save)")
        description = json.loads(path.read_text())
        table = pd.read_json(folder / "catalogue.json", orient="split", dtype=False)
        info = description["catalogue"]
        catalogue = Catalogue(table, name=info["name"], root=None if info["root"] is None else Path(info["root"]),
                              n_dropped=info["n_dropped"], notes=tuple(info["notes"]))
        if extractor is None:
            extractor = FeatureExtractor(description["backbone"], weights_from_word(description["weights"]),
                                         resize=description["resize"], batch_size=description["batch_size"],
                                         seed=description["seed"])
        elif extractor.backbone != description["backbone"]:
            raise ValueError(f"the engine in {folder} was built with {description['backbone']}, "
                             f"not {extractor.backbone}")
        index = load_index(folder / "index", uri=index_uri)
        recipe = None
        if description.get("recipe"):
            from .recipes import saved_recipe

            recipe = saved_recipe(description["recipe"], extractor, index, folder / "whitening.npz")
            extractor = recipe.extractors[0]
        return cls(catalogue, extractor, index=index, recipe=recipe)

    def __len__(self) -> int:
        return len(self.catalogue)

    def __repr__(self) -> str:
        return f"SearchEngine({self.catalogue.name!r}, {len(self)} products, {self.extractor!r})"

    def query_features(self, query: ImageSource | np.ndarray | int) -> np.ndarray:
        """``(D,)`` features of a query: an image (path, bytes, file, PIL), a feature vector or a catalogue row."""
        if isinstance(query, (int, np.integer)):
            return self.index.vectors([int(query)])[0]
        if isinstance(query, np.ndarray) and query.ndim == 1 and query.dtype.kind == "f":
            return query.astype(np.float32)
        if self.recipe is not None:
            return self.recipe.features_of(query)
        return self.extractor.features_of(query)

    def search(self, query: ImageSource | np.ndarray | int, k: int = 10, *,
               allowed: np.ndarray | None = None, exclude_self: bool | None = None,
               where: str | None = None) -> pd.DataFrame:
        """The ``k`` nearest products as a table with :data:`RESULT_COLUMNS`, nearest first.

        A catalogue row as ``query`` leaves itself out unless ``exclude_self=False``; ``allowed`` is an
        optional ``(N,)`` bool filter over the catalogue rows; ``where`` a Milvus filter expression over the
        product fields (``milvus`` index only, see :func:`~.milvus_index.filter_expression`).
        """
        is_row = isinstance(query, (int, np.integer))
        exclude = np.array([int(query)]) if is_row and exclude_self is not False else None
        options = {} if where is None else {"where": where}
        distances, rows = self.index.search(self.query_features(query), k, exclude=exclude, allowed=allowed,
                                            **options)
        return self.results_table(distances, rows)

    def results_table(self, distances: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
        """Catalogue rows ``rows`` with their ``distances`` as a results table."""
        table = self.catalogue.table.iloc[rows]
        out = pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "id": table["id"].to_numpy(), "brand": table["brand"].to_numpy(),
            "description": table["description"].to_numpy(), "price": table["price"].to_numpy(),
            "category": table["category"].to_numpy(), "distance": np.asarray(distances, dtype=np.float32),
            "path": table["path"].to_numpy(), "row": np.asarray(rows, dtype=np.int64),
        })
        return out

    def evaluate(self, k: int = 10, **options) -> pd.DataFrame:
        """Leave-one-out precision@K and MAP@K over the catalogue (see :func:`metrics.evaluate`)."""
        return evaluate(self.index, self.catalogue.labels, k, **options)
