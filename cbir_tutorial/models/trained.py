"""A fine-tuned embedding model saved as a folder, and the extractor that embeds images with it.

The folder (written by :func:`save_trained`, e.g. at the end of ``cbir-tutorial train``) holds

* ``trained.json`` - backbone, input size, resize policy, embedding size, the loss and the settings it
  was trained with, its history, and :func:`weights_hash` of the weights;
* ``embedding.weights.h5`` - the weights of :func:`embedding_model`.

Everything needed to embed a query is there: :class:`TrainedExtractor` rebuilds the model from the JSON,
loads the weights and checks their hash. Only Keras and the folder are needed (nothing from
:mod:`cbir_tutorial.training`). Without ``--out``, ``cbir-tutorial train`` writes into
:func:`trained_home` (the cache's ``trained`` folder), where the explorer's recipe menu finds it
(:func:`trained_folders`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.images import resize_from_word
from ..paths import atomic_write_bytes, cache_dir
from .backbones import BackboneChoice, backbone_spec, feature_model
from .feature_store import FORMAT
from .features import (CPU_PREFETCH_BATCHES, GPU_PREFETCH_BATCHES, FeatureExtractor, built_in_policy,
                       _compiled_inference, default_batch_size, gpus, mixed_precision_policy)
from .runtime import keras_module
from .weights import IMAGENET, Weights

TRAINED_FILE = "trained.json"
WEIGHTS_FILE = "embedding.weights.h5"
TRAINED_FORMAT = 1
#: The cache sub-folder of trained models written without an explicit folder.
TRAINED_HOME = "trained"


def embedding_model(backbone: str, embedding_dim: int, *, weights: Weights = IMAGENET, input_size: int | None = None,
                    seed: int = 0):
    """Preprocessed ``(B, S, S, 3)`` images → ``(B, embedding_dim)`` float32, L2-normalised.

    The backbone's feature model (``weights``, input ``S = input_size``, default the backbone's), then a
    Dense layer ``embedding`` (no activation, Glorot-uniform with ``seed``) and ``embedding_l2``
    (unit norm); both new layers compute in float32 whatever the dtype policy.
    """
    keras = keras_module()
    body = feature_model(backbone, weights, seed=seed, input_size=input_size)
    x = keras.layers.Dense(int(embedding_dim), dtype="float32", name="embedding",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(body.output)
    outputs = keras.layers.UnitNormalization(dtype="float32", name="embedding_l2")(x)
    return keras.Model(body.input, outputs, name=f"{backbone_spec(backbone).name}_embedding")


def weights_hash(model) -> str:
    """Hex SHA-256 (24 characters) of ``model``'s weights: shapes, dtypes and values, in layer order."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.shape}{w.dtype}".encode())
        digest.update(w.tobytes())
    return digest.hexdigest()[:24]


def save_trained(model, folder: str | os.PathLike, info: dict) -> Path:
    """Write ``model``'s weights and ``trained.json`` (``info`` plus ``format`` and ``weights_hash``) into
    ``folder``; each file is replaced whole. ``info`` needs ``backbone``, ``input_size``, ``resize`` and
    ``embedding_dim``. Returns the JSON's path."""
    missing = [key for key in ("backbone", "input_size", "resize", "embedding_dim") if key not in info]
    if missing:
        raise ValueError(f"save_trained: info lacks {missing}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / WEIGHTS_FILE  # Keras insists on the .weights.h5 suffix
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.save_weights(staged)
        os.replace(staged, folder / WEIGHTS_FILE)
    description = {"format": TRAINED_FORMAT, **info, "weights_hash": weights_hash(model)}
    atomic_write_bytes(folder / TRAINED_FILE, (json.dumps(description, indent=1) + "\n").encode())
    return folder / TRAINED_FILE


def read_trained(folder: str | os.PathLike) -> dict:
    """The ``trained.json`` of a trained-model folder; FileNotFoundError / ValueError saying what is wrong."""
    folder = Path(folder).expanduser()
    path = folder / TRAINED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a trained model: no {TRAINED_FILE} (made by cbir-tutorial train)")
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder}: {WEIGHTS_FILE} is missing")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if info.get("format") != TRAINED_FORMAT:
        raise ValueError(f"{path}: format {info.get('format')!r}, this version reads {TRAINED_FORMAT}")
    return info


def is_trained_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a trained model (both files present)."""
    path = Path(path).expanduser()
    return (path / TRAINED_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def trained_home() -> Path:
    """The cache's folder of trained models (``$CBIR_TUTORIAL_CACHE/trained``), created."""
    return cache_dir(TRAINED_HOME)


def default_trained_folder(catalogue: str, backbone: str, loss: str) -> Path:
    """Where ``cbir-tutorial train`` writes without ``--out``: ``trained_home()/CATALOGUE-BACKBONE-LOSS``
    (characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``)."""
    name = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)).strip("._") or "model"
                    for part in (catalogue, backbone, loss))
    return trained_home() / name


def trained_folders(folders=()) -> list[Path]:
    """The trained-model folders in :func:`trained_home`, then in ``folders`` (each a trained model's
    folder, or a folder whose sub-folders are scanned, one level deep): resolved, sorted by name within
    each place, without repeats. A folder of ``folders`` holding no trained model raises FileNotFoundError."""
    given = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    found: list[Path] = []
    for place in [trained_home(), *given]:
        place = Path(place).expanduser().resolve()
        inside = [place] if is_trained_folder(place) else (
            sorted(p for p in place.iterdir() if p.is_dir() and is_trained_folder(p)) if place.is_dir() else [])
        if not inside and place != trained_home().resolve():
            raise FileNotFoundError(f"{place}: no trained model there (a trained model's folder holds "
                                    f"{TRAINED_FILE} and {WEIGHTS_FILE}, as cbir-tutorial train writes)")
        found.extend(p for p in inside if p not in found)
    return found


class TrainedExtractor(FeatureExtractor):
    """A :class:`FeatureExtractor` whose model is a fine-tuned :func:`embedding_model` read from a folder:
    images in, ``(N, D)`` float32 L2-normalised embeddings out, with the same ``extract`` / ``features_of``
    / cache as the frozen backbones.

    ``weights`` is the folder; :attr:`cache_key` includes the weights' hash, so features of a retrained
    model are never mixed with the old ones. ``batch_size`` / ``mixed_precision`` / ``workers`` as in
    :class:`FeatureExtractor`.
    """

    def __init__(self, folder: str | os.PathLike, *, batch_size: int | None = None,
                 mixed_precision: bool | str | None = None, workers: int | None = None):
        folder = Path(folder).expanduser().resolve()
        self.info = read_trained(folder)
        base = backbone_spec(self.info["backbone"])
        self.spec = replace(base, input_size=int(self.info["input_size"]), feature_layer="embedding",
                            feature_dim=int(self.info["embedding_dim"]))
        self.weights = str(folder)
        self.choice = BackboneChoice(base.name, self.weights)
        self.batch_size = int(batch_size or default_batch_size())
        if self.batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive number of images (or 0 for the default)")
        self.prefetch_batches = GPU_PREFETCH_BATCHES if gpus() else CPU_PREFETCH_BATCHES
        self.precision = mixed_precision_policy(mixed_precision)
        self.resize = resize_from_word(self.info["resize"])
        self.workers = workers or min(8, (os.cpu_count() or 2) + 1)
        self.seed = 0
        self.model = built_in_policy(lambda: embedding_model(base.name, self.spec.feature_dim, weights=None,
                                                             input_size=self.spec.input_size), self.precision)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            self.model.load_weights(folder / WEIGHTS_FILE)
        found = weights_hash(self.model)
        if found != self.info["weights_hash"]:
            raise ValueError(f"{folder}: the weights' hash {found} is not the {self.info['weights_hash']} "
                             f"{TRAINED_FILE} names (a partial save?); train again or restore the folder")
        self._infer = _compiled_inference(self.model, self.spec)

    def __repr__(self) -> str:
        precision = f", {self.precision}" if self.precision else ""
        return (f"TrainedExtractor({self.spec.title} fine-tuned with {self.info.get('loss', '?')}, "
                f"{self.input_size} px {self.resize} -> {self.feature_dim}-d{precision}, {self.weights})")

    @property
    def cache_key(self) -> str:
        """Hex key of everything that changes the numbers: backbone, the weights' hash, embedding size,
        input size, resize policy and precision."""
        recipe = {
            "format": FORMAT, "trained": TRAINED_FORMAT, "backbone": self.spec.name,
            "weights_hash": self.info["weights_hash"], "dim": self.feature_dim, "input_size": self.input_size,
            "resize": self.resize, "precision": self.precision or "float32",
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def load_trained(folder: str | os.PathLike, **options) -> TrainedExtractor:
    """The :class:`TrainedExtractor` of the trained-model ``folder`` (``options``: batch_size, mixed_precision,
    workers)."""
    return TrainedExtractor(folder, **options)
