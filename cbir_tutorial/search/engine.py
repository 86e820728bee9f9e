"""The search engine: a catalogue, the pipeline that turns its images into vectors, and an index over them."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.catalogue import Catalogue
from ..data.images import ImageSource
from ..models.features import Extraction, FeatureExtractor
from ..models.weights import Weights
from ..paths import replace_folder, temporary_sibling
from .backends import Index, allowed_mask, index_class, load_index, make_index, row_digests, saved_arrays
from .filters import Filters, filter_table
from .keys import product_keys, unique_keys
from .pipeline import Pipeline, load_pipeline, pipeline_extractors
from .recipes import Recipe, recipe_from_word

#: The file that marks a folder as a saved engine.
ENGINE_FILE = "engine.json"
#: The layout of ``engine.json`` this version writes and reads (4: a recipe is an embedding and its post-processing).
ENGINE_VERSION = 4
#: The file of a saved engine holding the digest of each product's extracted features.
DIGESTS_FILE = "digests.npy"
RESULT_COLUMNS = ["rank", "id", "brand", "description", "price", "category", "distance", "path", "row"]


class SearchEngine:
    """Catalogue products ranked by Euclidean distance between L2-normalised image features.

    ``catalogue``: the indexed products; ``pipeline``: the fitted
    :class:`~cbir_tutorial.search.pipeline.Pipeline` that turns an image into the vectors ``index`` holds
    (the baseline: one backbone's features; with DBA, the index holds the augmented vectors and the
    pipeline's expansion the others; searches go through its αQE); ``index``: any
    :class:`~cbir_tutorial.search.backends.Index` holding one vector per product under its key
    (:func:`~.keys.product_keys` of the product id);
    ``extraction``: what the build extracted and skipped; ``changes``: products added, updated or removed
    since the pipeline was fitted (:meth:`refit` sets it to 0). :meth:`build` makes all three from a
    catalogue and a recipe; :meth:`load` reopens a saved engine; :meth:`add` and :meth:`remove` follow a
    catalogue that changes.
    """

    def __init__(self, catalogue: Catalogue, pipeline: Pipeline, index: Index, extraction: Extraction | None = None,
                 *, changes: int = 0, digests: np.ndarray | None = None):
        keys = unique_keys(catalogue.table["id"], f"catalogue {catalogue.name!r}")
        if len(keys) != len(index) or not np.array_equal(np.sort(keys), np.sort(index.ids)):
            raise ValueError(f"catalogue {catalogue.name!r} has {len(keys)} products but the index holds {len(index)} "
                             "vectors of other products: build the engine from the catalogue it indexes")
        self.catalogue = catalogue
        self.pipeline = pipeline
        self.index = index
        self.extraction = extraction
        self.changes = int(changes)
        self.keys = keys
        self._rows = pd.Index(keys)
        # without digests: those of the stored vectors, which are the extracted features for a baseline recipe of one
        # backbone (other recipes: the next add of a product rewrites it once)
        self.digests = (row_digests(self.features) if digests is None
                        else np.asarray(digests, dtype=np.uint64))

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
        """``(N, D)`` float32 features of the catalogue's products, in catalogue order (before DBA)."""
        return self.vectors_of(self.keys)

    def vectors_of(self, keys) -> np.ndarray:
        """``(n, D)`` float32 vectors of the products of index ``keys`` in the pipeline's space (before DBA)."""
        expansion = self.pipeline.expansion
        return self.index.vectors(keys) if expansion is None else expansion.vectors_of(self.index, keys)

    @classmethod
    def build(cls, catalogue: Catalogue, backbone: str | FeatureExtractor | None = None,
              weights: Weights = "imagenet", *, recipe: "str | Recipe" = "baseline", index: str = "exact",
              index_options: dict | None = None, cache=True, progress: bool = True,
              **extractor_options) -> "SearchEngine":
        """Extract (or load cached) features of ``catalogue`` with ``recipe``'s steps and index them.

        ``recipe``: a name from :data:`~cbir_tutorial.search.recipes.RECIPES` (``"baseline"``, ``"best"``...),
        a :class:`Recipe`, or the folder of a trained model (``python -m cbir_tutorial train``: its fine-tuned
        embedding, see :func:`~cbir_tutorial.search.recipes.trained_recipe`); it names its own backbone(s)
        (EfficientNet-Lite0 by default, whose ImageNet weights install offline). ``backbone``: another
        backbone to start from (a name, or a ready :class:`FeatureExtractor`), with ``weights`` and
        ``extractor_options`` (``resize``, ``batch_size``...); a trained model takes none of them.
        ``index``: ``"exact"`` (default), ``"faiss-flat"``, ``"faiss-ivf"``, ``"faiss-hnsw"`` or ``"milvus"``,
        with ``index_options`` for it (e.g. ``{"dtype": "bfloat16"}``, ``{"nlist": 256}``,
        ``{"uri": "http://host:19530"}``); a recipe's DBA and αQE work over each of them.
        Product ids must be unique (ValueError naming the repeated ones).
        """
        unique_keys(catalogue.table["id"], f"catalogue {catalogue.name!r}")  # before any extraction
        recipe = recipe_from_word(recipe)
        index_class(index)  # a wrong name fails before any extraction
        extractors = pipeline_extractors(recipe, backbone, weights, **extractor_options)
        extractions = [e.extract(catalogue.paths, cache=cache, progress=progress) for e in extractors]
        return cls.fitted(catalogue, recipe, extractors, extractions, index=index, index_options=index_options)

    @classmethod
    def fitted(cls, catalogue: Catalogue, recipe: "str | Recipe", extractors: list, extractions: list, *,
               index: str = "exact", index_options: dict | None = None) -> "SearchEngine":
        """The engine of ``recipe`` fitted on ``catalogue`` from its ``extractions`` (one per extractor, over
        the catalogue's images): the products every extractor could read are indexed, the pipeline's fitted
        steps learned on them. The one fitting path: :meth:`build`, the recipe reports and the explorer's
        shelf all come here."""
        recipe = recipe_from_word(recipe)
        kept = np.logical_and.reduce([x.kept for x in extractions])
        if not kept.any():
            raise ValueError(f"No readable image in catalogue {catalogue.name!r}:\n{extractions[0].report()}")
        indexed = catalogue.subset(kept)
        keys = product_keys(indexed.table["id"])
        pipeline = Pipeline(list(extractors), recipe.with_backbone(extractors[0].backbone))
        raw = kept_features(extractions, kept)
        features = pipeline.fit(raw, keys)
        stored = features if pipeline.expansion is None else pipeline.expansion.stored(features, keys)
        built = make_index(index, stored, keys, indexed.table, **dict(index_options or {}))
        return cls(indexed, pipeline, built, extractions[0], digests=image_digests(raw))

    def add(self, catalogue: Catalogue, *, cache=True, progress: bool = False) -> dict:
        """Follow a catalogue that changed: its products whose id is new are added, those whose id exists are
        updated when one of their fields (``path`` included: a moved photo folder updates every product) or
        their photo's features changed (images through the fitted pipeline: nothing is refitted; the feature cache
        serves the images already seen), the others left as they are. Products the engine holds and
        ``catalogue`` lacks stay: they leave with :meth:`remove`. Returns ``{"added", "updated",
        "unchanged", "skipped"}`` counts (``skipped``: unreadable images, see ``self.extraction``; a product
        already indexed keeps its old entry then). Product ids must be unique in ``catalogue``. With DBA in the
        recipe, every change refits it over the whole gallery (one ``N x N`` similarity pass, blocked: about
        ``N^2 D`` multiply-adds) and the index receives each product whose augmented vector moved."""
        incoming_keys = unique_keys(catalogue.table["id"], f"catalogue {catalogue.name!r}")
        extractions = [e.extract(catalogue.paths, cache=cache, progress=progress) for e in self.pipeline.extractors]
        kept = np.logical_and.reduce([x.kept for x in extractions])
        self.extraction = extractions[0]
        counts = {"added": 0, "updated": 0, "unchanged": 0, "skipped": int((~kept).sum())}
        if not kept.any():
            return counts
        incoming = catalogue.subset(kept)
        raw = kept_features(extractions, kept)
        vectors = self.pipeline.transform(raw)
        keys = incoming_keys[kept]
        digests = image_digests(raw)
        rows = self._rows.get_indexer(keys)
        known = rows >= 0
        table = incoming.table.reindex(columns=self.catalogue.table.columns, fill_value="")
        same = np.zeros(len(keys), dtype=bool)
        if known.any():
            old = self.catalogue.table.iloc[rows[known]].reset_index(drop=True)
            fields = (old.fillna("").astype(str).to_numpy()
                      == table[known].reset_index(drop=True).fillna("").astype(str).to_numpy()).all(axis=1)
            same[known] = fields & (self.digests[rows[known]] == digests[known])
        changed = ~same
        counts.update(added=int((~known).sum()), updated=int((known & changed).sum()), unchanged=int(same.sum()))
        if changed.any():
            updated = known & changed
            new_table = self.catalogue.table.copy()
            new_table.iloc[rows[updated]] = table[updated].to_numpy()
            new_digests = self.digests.copy()
            new_digests[rows[updated]] = digests[updated]
            added = ~known
            new_table = pd.concat([new_table, table[added]], ignore_index=True)
            new_keys = np.concatenate([self.keys, keys[added]])
            self._store(vectors[changed], keys[changed], (), new_table, new_keys)
            self._set_catalogue(new_table, np.concatenate([new_digests, digests[added]]), new_keys)
            self.changes += int(changed.sum())
        return counts

    def remove(self, ids) -> int:
        """Remove the products of ``ids`` (product ids, as in the catalogue's ``id`` column); KeyError naming
        the ids the engine does not hold, and then nothing is removed. Returns how many were removed."""
        ids = np.asarray([str(i) for i in np.atleast_1d(np.asarray(ids, dtype=object))], dtype=object)
        keys = product_keys(ids)
        rows = self._rows.get_indexer(keys)
        if (rows < 0).any():
            missing = ids[rows < 0]
            raise KeyError(f"{len(missing)} product id(s) not in the engine: {', '.join(missing[:10].tolist())}"
                           f"{' ...' if len(missing) > 10 else ''}; nothing was removed")
        rows = np.unique(rows)
        keep = np.ones(len(self), dtype=bool)
        keep[rows] = False
        table = self.catalogue.table[keep].reset_index(drop=True)
        self._store(np.zeros((0, self.index.dim), np.float32), np.zeros(0, np.int64), self.keys[rows], table,
                    self.keys[keep])
        self._set_catalogue(table, self.digests[keep], self.keys[keep])
        self.changes += len(rows)
        return len(rows)

    def _store(self, vectors: np.ndarray, keys: np.ndarray, removed: np.ndarray, table: pd.DataFrame,
               table_keys: np.ndarray) -> None:
        """Put ``vectors`` under ``keys`` into the index and take ``removed`` out; with DBA, also every product
        whose augmented vector moved (``table``: the products' fields after the change, row for row with
        ``table_keys``)."""
        if len(removed):
            self.index.remove(removed)
        expansion = self.pipeline.expansion
        if expansion is not None and expansion.dba_n:
            keys, vectors = expansion.update(vectors, keys, removed)
        if len(keys):
            rows = pd.Index(table_keys).get_indexer(keys)
            self.index.add(vectors, keys, table.iloc[rows].reset_index(drop=True))

    def _set_catalogue(self, table: pd.DataFrame, digests: np.ndarray, keys: np.ndarray) -> None:
        """The engine's products after a change: their table, feature digests and keys, row for row."""
        c = self.catalogue
        self.catalogue = Catalogue(table, name=c.name, root=c.root, n_dropped=c.n_dropped, notes=c.notes)
        self.keys, self._rows, self.digests = keys, pd.Index(keys), digests

    def refit(self, *, cache=True, progress: bool = False) -> "SearchEngine":
        """A new engine built on the current catalogue: the pipeline refitted (whitening learned on today's
        gallery) with the same extractors' weights and options, and a new index of the same kind and options
        (faiss-ivf's ``nlist`` included); its ``changes`` is 0. This engine is left as it is (save the new one
        over its folder to replace it); a Milvus index gets a new collection, and this engine's stays until
        ``engine.index.drop()``."""
        options = {key: value for key, value in self.index.get_config().items()
                   if key not in ("kind", "collection")}
        return type(self).build(self.catalogue, self.extractor, recipe=self.recipe, index=self.index.name,
                                index_options=options, cache=cache, progress=progress)

    def info(self) -> dict:
        """JSON-ready: products, recipe and its steps, index (name and options), changes since the fit."""
        config = {key: value for key, value in self.index.get_config().items() if key != "kind"}
        return {"catalogue": self.catalogue.name, "products": len(self), "recipe": self.recipe.name,
                "steps": self.recipe.steps(), "backbones": self.recipe.backbones, "index": self.index.name,
                "index_options": config, "dim": self.index.dim, "changes_since_fit": self.changes}

    def save(self, folder) -> Path:
        """Write the engine into ``folder``: ``engine.json`` (the pipeline: recipe, weights, extractor
        options; the catalogue's name; changes since the fit), ``catalogue.json`` (the indexed products),
        ``digests.npy`` (one digest per product's extracted features, which :meth:`add` compares), ``index/`` and, for a
        recipe with whitening, ``whitening.npz``. Atomic: a reader sees the old folder or the whole new
        one (on Linux, never no folder), and what a killed save left beside it is removed by the next one.
        A Milvus index saves its connection and the checksum of its rows; its rows stay in the Milvus database,
        where :meth:`add` and :meth:`remove` change them at once: a process killed between a change and its save
        leaves a folder whose checksum the database no longer matches, which :meth:`load` refuses (build the
        engine again) rather than answer from a mix."""
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
            np.save(tmp / DIGESTS_FILE, self.digests)
            description = {
                "version": ENGINE_VERSION, "pipeline": self.pipeline.save(tmp),
                "catalogue": {"name": self.catalogue.name, "n_dropped": self.catalogue.n_dropped,
                              "root": None if self.catalogue.root is None else str(self.catalogue.root),
                              "notes": list(self.catalogue.notes)},
                "rows": len(self), "changes": self.changes,
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
        digests = saved_arrays(folder / DIGESTS_FILE)[""]
        if len(digests) != len(catalogue):
            raise ValueError(f"{folder / DIGESTS_FILE} holds {len(digests)} digests for {len(catalogue)} products: "
                             "build the engine again")
        index = load_index(folder / "index", **({} if index_uri is None else {"uri": index_uri}))
        return cls(catalogue, pipeline, index, changes=int(description.get("changes", 0)), digests=digests)

    def __len__(self) -> int:
        return len(self.catalogue)

    def __repr__(self) -> str:
        return (f"SearchEngine({self.catalogue.name!r}, {len(self)} products, recipe {self.recipe.name!r}, "
                f"{self.extractor!r}, {self.index!r})")

    def row_of(self, product_id) -> int:
        """The catalogue row of ``product_id``; KeyError naming it when the engine does not hold it."""
        row = self._rows.get_indexer(product_keys([product_id]))[0]
        if row < 0:
            raise KeyError(f"product id {product_id!r} is not in the engine ({len(self):,} products)")
        return int(row)

    def query_features(self, query: ImageSource | np.ndarray | int) -> np.ndarray:
        """``(D,)`` features of a query: an image (path, bytes, file, PIL), a feature vector or a catalogue row."""
        if isinstance(query, (int, np.integer)):
            return self.vectors_of([self.keys[self._checked_row(query)]])[0]
        if isinstance(query, np.ndarray) and query.ndim == 1 and query.dtype.kind == "f":
            return query.astype(np.float32)
        return self.pipeline.features_of(query)

    def _checked_row(self, row) -> int:
        if not 0 <= int(row) < len(self):
            raise IndexError(f"row {int(row)} is not a catalogue row: the engine holds {len(self):,} products, rows "
                             f"0 to {len(self) - 1:,} (to search by product id, use search_product)")
        return int(row)

    def search(self, query: ImageSource | np.ndarray | int, k: int = 10, *, filters: Filters | None = None,
               exclude_self: bool | None = None) -> pd.DataFrame:
        """The ``k`` nearest products as a table with :data:`RESULT_COLUMNS`, nearest first.

        ``query``: an image (path, bytes, file, PIL), a feature vector or a catalogue row number (which
        leaves itself out unless ``exclude_self=False``); ``filters``: only the products that pass
        (:class:`~.filters.Filters`; its ``ids`` are product ids), on every index backend.
        """
        is_row = isinstance(query, (int, np.integer))
        exclude = None
        if is_row and exclude_self is not False:
            exclude = self.keys[[self._checked_row(query)]]
        distances, keys = self.searched(self.query_features(query), k, exclude_ids=exclude, filters=filters)
        return self.results_table(distances, keys)

    def searched(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """``(distances, keys)`` of the ``k`` nearest products of ``(D,)`` or ``(Q, D)`` query vectors, through the
        recipe's αQE when it has one, as :meth:`Index.search` (``exclude_ids``: index keys; ``filters``: its
        ``ids`` product ids)."""
        filters = self.index_filters(filters)
        expansion = self.pipeline.expansion
        if expansion is None:
            return self.index.search(queries, k, exclude_ids=exclude_ids, filters=filters)
        return expansion.search(self.index, queries, k, exclude_ids=exclude_ids, filters=filters,
                                passes=None if filters is None else self._passes(filters))

    def _passes(self, filters: Filters):
        """``keys -> (n,) bool``: which products of index keys ``filters`` (as the index reads them) lets through."""
        def passes(keys):
            table = self.catalogue.table.iloc[self._rows.get_indexer(keys)].reset_index(drop=True)
            mask = allowed_mask(filters, filter_table(table, len(table)), np.asarray(keys))
            return np.ones(len(keys), dtype=bool) if mask is None else mask
        return passes

    def search_stored(self, keys=None, k: int = 10):
        """Leave-one-out search: the products of index ``keys`` (all when None) as queries, each left out of its
        own results (and of its expansion); ``(distances, keys)`` as :meth:`searched`."""
        keys = self.keys if keys is None else np.asarray(keys, dtype=np.int64).reshape(-1)
        return self.searched(self.vectors_of(keys), k, exclude_ids=keys)

    def search_product(self, product_id, k: int = 10, *, filters: Filters | None = None) -> pd.DataFrame:
        """The ``k`` products nearest to the catalogue's product ``product_id`` (itself left out)."""
        return self.search(self.row_of(product_id), k, filters=filters)

    def index_filters(self, filters: Filters | None) -> Filters | None:
        """``filters`` as the index reads them: product ids turned into the index's keys."""
        if filters is None or filters.ids is None:
            return filters
        return replace(filters, ids=tuple(product_keys(filters.ids).tolist()))

    def results_table(self, distances: np.ndarray, keys: np.ndarray) -> pd.DataFrame:
        """The products of index ``keys`` (-1 padding left out) with their ``distances``, as a results table."""
        rows = self._rows.get_indexer(np.asarray(keys, dtype=np.int64).reshape(-1))
        found = rows >= 0
        rows, distances = rows[found], np.asarray(distances, dtype=np.float32).reshape(-1)[found]
        table = self.catalogue.table.iloc[rows]
        return pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "id": table["id"].to_numpy(), "brand": table["brand"].to_numpy(),
            "description": table["description"].to_numpy(), "price": table["price"].to_numpy(),
            "category": table["category"].to_numpy(), "distance": distances,
            "path": table["path"].to_numpy(), "row": rows.astype(np.int64),
        })


def image_digests(raw: list[np.ndarray]) -> np.ndarray:
    """``(n,)`` uint64 digests of each product's extracted features (every backbone's), what :meth:`SearchEngine.add`
    compares to tell a changed photo. Not of the pipeline's output: a matrix product's last bits depend on the batch
    it ran in (BLAS kernels differ by CPU), while the feature cache returns a photo's features bit for bit (with
    ``cache=False`` an unchanged photo extracted again may differ in its last bits and be rewritten)."""
    return row_digests(np.hstack(raw))


def kept_features(extractions: list, kept: np.ndarray) -> list[np.ndarray]:
    """Each extraction's features of the ``kept`` images (``kept``: over the catalogue; an extraction holds the
    rows it could read, so those another backbone could not read are dropped from it)."""
    return [x.features if kept[x.kept].all() else x.features[np.flatnonzero(kept[x.kept])] for x in extractions]
