"""The search engine: a catalogue, the pipeline that turns its images into vectors, and an index over them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.catalogue import Catalogue
from ..data.images import ImageSource
from ..models.features import Extraction, FeatureExtractor
from ..models.weights import Weights
from ..paths import replace_folder, temporary_sibling
from .backends import Index, load_index, make_index
from .pipeline import Pipeline, fit_pipeline, load_pipeline, pipeline_extractors
from .recipes import Recipe, recipe_from_word

#: The file that marks a folder as a saved engine.
ENGINE_FILE = "engine.json"
#: The layout of ``engine.json`` this version writes and reads.
ENGINE_VERSION = 2
RESULT_COLUMNS = ["rank", "id", "brand", "description", "price", "category", "distance", "path", "row"]


class SearchEngine:
    """Catalogue products ranked by Euclidean distance between L2-normalised image features.

    ``catalogue``: the indexed products, in the index's row order; ``pipeline``: the fitted
    :class:`~cbir_tutorial.search.pipeline.Pipeline` that turns a query image into the vectors ``index``
    holds (the baseline: one backbone's features); ``index``: any
    :class:`~cbir_tutorial.search.backends.Index`; ``extraction``: what the build extracted and skipped.
    :meth:`build` makes all three from a catalogue and a recipe; :meth:`load` reopens a saved engine.
    """

    def __init__(self, catalogue: Catalogue, pipeline: Pipeline, index: Index, extraction: Extraction | None = None):
        if len(catalogue) != len(index):
            raise ValueError(f"{len(catalogue)} products but {len(index)} index rows")
        self.catalogue = catalogue
        self.pipeline = pipeline
        self.index = index
        self.extraction = extraction

    @property
    def recipe(self) -> Recipe:
        """The recipe the engine was built with (``baseline`` at least)."""
        return self.pipeline.recipe

    @property
    def extractor(self) -> FeatureExtractor:
        """The feature extractor of the recipe's first backbone."""
        return self.pipeline.extractor

    @property
    def features(self) -> np.ndarray:
        """``(N, D)`` float32 features as the index stores them: the index's own array for exact float32
        storage (the engine keeps one copy of the gallery), a decoded copy otherwise."""
        return self.index.vectors()

    @classmethod
    def build(cls, catalogue: Catalogue, backbone: str | FeatureExtractor | None = None,
              weights: Weights = "imagenet", *, recipe: "str | Recipe" = "baseline", index: str = "exact",
              index_options: dict | None = None, cache=True, progress: bool = True,
              **extractor_options) -> "SearchEngine":
        """Extract (or load cached) features of ``catalogue`` with ``recipe``'s steps and index them.

        ``recipe``: a name from :data:`~cbir_tutorial.search.recipes.RECIPES` (``"baseline"``, ``"best"``...),
        a :class:`Recipe`, or the folder of a trained model (``cbir-tutorial train``: its fine-tuned
        embedding, see :func:`~cbir_tutorial.search.recipes.trained_recipe`); it names its own backbone(s)
        (EfficientNet-Lite0 by default, whose ImageNet weights install offline). ``backbone``: another
        backbone to start from (a name, or a ready :class:`FeatureExtractor`), with ``weights`` and
        ``extractor_options`` (``resize``, ``batch_size``...); a trained model takes none of them.
        ``index``: ``"exact"`` (default), ``"faiss-flat"``, ``"faiss-ivf"``, ``"faiss-hnsw"`` or ``"milvus"``,
        with ``index_options`` for it (e.g. ``{"dtype": "bfloat16"}``, ``{"nlist": 256}``,
        ``{"uri": "http://host:19530"}``); a recipe that expands queries uses its own exact ``"expanded"`` index.
        """
        recipe = recipe_from_word(recipe)
        name, options = recipe.index_choice(index, index_options)
        extractors = pipeline_extractors(recipe, backbone, weights, **extractor_options)
        extractions = [e.extract(catalogue.paths, cache=cache, progress=progress) for e in extractors]
        kept = np.logical_and.reduce([x.kept for x in extractions])
        if not kept.any():
            raise ValueError(f"No readable image in catalogue {catalogue.name!r}:\n{extractions[0].report()}")
        raw = [x.features if kept[x.kept].all() else x.features[np.flatnonzero(kept[x.kept])] for x in extractions]
        pipeline, features = fit_pipeline(recipe, extractors, raw)
        indexed = catalogue.subset(kept)
        return cls(indexed, pipeline, make_index(name, features, metadata=indexed.table, **options), extractions[0])

    def save(self, folder) -> Path:
        """Write the engine into ``folder``: ``engine.json`` (the pipeline: recipe, weights, extractor
        options; the catalogue's name), ``catalogue.json`` (the indexed products), ``index/`` and, for a
        recipe with whitening, ``whitening.npz``. Atomic: a reader sees the old folder or the whole new
        one (on Linux, never no folder), and what a killed save left beside it is removed by the next one.
        A Milvus index saves its connection and the checksum of its rows; its rows stay in the Milvus database."""
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
            description = {
                "version": ENGINE_VERSION, "pipeline": self.pipeline.save(tmp),
                "catalogue": {"name": self.catalogue.name, "n_dropped": self.catalogue.n_dropped,
                              "root": None if self.catalogue.root is None else str(self.catalogue.root),
                              "notes": list(self.catalogue.notes)},
                "rows": len(self),
            }
            (tmp / ENGINE_FILE).write_text(json.dumps(description, indent=1) + "\n")
            replace_folder(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder, extractor: FeatureExtractor | None = None, *,
             index_uri: str | None = None) -> "SearchEngine":
        """Reopen an engine written by :meth:`save`, without extracting features again.

        The pipeline's extractors (needed for image queries) are built again from the saved recipe,
        weights and options, around ``extractor`` when one is given. An engine of a trained model reads it
        from the folder it was built with, and refuses (naming the folder) when it was moved or deleted or
        its weights changed since. ``index_uri``: the Milvus database holding a Milvus engine's rows (a
        ``.db`` file or ``http://host:19530``); the ``uri`` saved in the folder is used only when it is this
        machine's default Milvus Lite file, so a folder someone sent you never opens another database.
        """
        folder = Path(folder).expanduser()
        path = folder / ENGINE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a saved engine (see SearchEngine.save)")
        description = json.loads(path.read_text())
        if not isinstance(description, dict) or description.get("version") != ENGINE_VERSION:
            version = description.get("version") if isinstance(description, dict) else None
            raise ValueError(f"{path}: an engine saved in format {version!r}; this version reads format "
                             f"{ENGINE_VERSION}: build the engine again (SearchEngine.build, then save)")
        table = pd.read_json(folder / "catalogue.json", orient="split", dtype=False)
        info = description["catalogue"]
        catalogue = Catalogue(table, name=info["name"], root=None if info["root"] is None else Path(info["root"]),
                              n_dropped=info["n_dropped"], notes=tuple(info["notes"]))
        pipeline = load_pipeline(description["pipeline"], folder, extractor)
        return cls(catalogue, pipeline, load_index(folder / "index", uri=index_uri))

    def __len__(self) -> int:
        return len(self.catalogue)

    def __repr__(self) -> str:
        return (f"SearchEngine({self.catalogue.name!r}, {len(self)} products, recipe {self.recipe.name!r}, "
                f"{self.extractor!r}, {self.index!r})")

    def query_features(self, query: ImageSource | np.ndarray | int) -> np.ndarray:
        """``(D,)`` features of a query: an image (path, bytes, file, PIL), a feature vector or a catalogue row."""
        if isinstance(query, (int, np.integer)):
            return self.index.vectors([int(query)])[0]
        if isinstance(query, np.ndarray) and query.ndim == 1 and query.dtype.kind == "f":
            return query.astype(np.float32)
        return self.pipeline.features_of(query)

    def search(self, query: ImageSource | np.ndarray | int, k: int = 10, *,
               allowed: np.ndarray | None = None, exclude_self: bool | None = None,
               where: str | None = None) -> pd.DataFrame:
        """The ``k`` nearest products as a table with :data:`RESULT_COLUMNS`, nearest first.

        A catalogue row as ``query`` leaves itself out unless ``exclude_self=False``; ``allowed`` is an
        optional ``(N,)`` bool filter over the catalogue rows; ``where`` a Milvus filter expression over the
        product fields (``milvus`` index only, see :meth:`~.filters.Filters.milvus_expression`).
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
