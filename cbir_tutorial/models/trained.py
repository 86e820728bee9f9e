"""A fine-tuned embedding model saved as a folder, and the extractor that embeds images with it.

The folder (written by :func:`save_trained`, e.g. at the end of ``python -m cbir_tutorial train``) holds

* ``trained.json`` - backbone, input size, resize policy, embedding size, the loss and the settings it
  was trained with, its history, and :func:`weights_hash` of the weights and of the fields that change
  the embedding (:data:`EMBEDDING_FIELDS`); one schema, :func:`check_trained_info`, checks it wherever it
  is read or written;
* ``embedding.weights.h5`` - the weights of :func:`embedding_model` (a linear embedding, or with ``hidden_dim``
  the projection head's MLP on the backbone's L2-normalised features).

With ``fusion_weight`` ``w`` below 1, the folder's embedding is the trained one fused with the backbone's
frozen ImageNet features, as :func:`cbir_tutorial.search.whitening.fuse` fuses:
``[sqrt(1 - w) · frozen, sqrt(w) · trained]``, L2-normalised (:func:`fused_model`). The trainer chooses ``w``
on categories it held out of training, so that a catalogue's new kinds of product are not searched worse than
with the frozen features.

Everything needed to embed a query is there: :class:`TrainedExtractor` rebuilds the model from the JSON,
loads the weights and checks their hash. A folder that cannot be used raises :class:`TrainedModelError`
(a ValueError), one line naming the folder, the file and what is wrong. Only Keras and the folder are
needed (nothing from :mod:`cbir_tutorial.training`). Without ``--out``, ``python -m cbir_tutorial train`` writes into
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
from .backbones import backbone_spec, feature_model
from .feature_store import FORMAT
from .features import FeatureExtractor
from .runtime import keras_module
from .weights import IMAGENET, Weights

TRAINED_FILE = "trained.json"
WEIGHTS_FILE = "embedding.weights.h5"
#: Format 2: ``weights_hash`` covers :data:`EMBEDDING_FIELDS` too (format 1 hashed the weights alone).
TRAINED_FORMAT = 2
#: The cache sub-folder of trained models written without an explicit folder.
TRAINED_HOME = "trained"
#: The photo sizes a trained model may take, in pixels, both ends included: from the smallest Keras builds
#: its backbones at to over 3x the largest backbone's own (Xception, 299 px); a backbone may refuse sizes
#: inside it (VGG16 takes 224 only). ``trained.json``'s ``input_size`` outside it is refused, and
#: ``python -m cbir_tutorial train --image-size`` takes the same range.
INPUT_SIZE_RANGE = (32, 1024)
#: The embedding sizes a trained model may have, both ends included (the literature uses 64 to 2048).
EMBEDDING_DIM_RANGE = (1, 8192)
#: The ``trained.json`` fields that change what the model computes from a photo: ``weights_hash`` covers
#: them with the weights, so editing one by hand is refused rather than changing every answer
#: (``hidden_dim`` only where the document has it: folders without it keep their hash).
EMBEDDING_FIELDS = ("backbone", "input_size", "resize", "embedding_dim", "hidden_dim", "fusion_weight")


class TrainedModelError(ValueError):
    """A trained-model folder that cannot be used; one line naming the folder, the file and what is wrong."""

    def __init__(self, folder: str | os.PathLike, file: str, problem: str):
        super().__init__(str(folder), file, problem)
        self.folder, self.file, self.problem = Path(folder), file, problem

    def __str__(self) -> str:
        return f"{self.folder}: {self.file}: {self.problem}"

    @property
    def reason(self) -> str:
        """The file and what is wrong with it, without the folder (for a menu label)."""
        return f"{self.file}: {self.problem}"


def _first_line(error: BaseException) -> str:
    """``error``'s message, first line (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_HEX_HASH = re.compile(r"[0-9a-f]{24}")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: ``trained.json``'s fields: name → (required, what its value is, the check). Other fields are kept unread.
_SCHEMA = {
    "format": (True, "a whole number", _whole),
    "backbone": (True, "text", lambda v: isinstance(v, str)),
    "input_size": (True, "a whole number", _whole),
    "resize": (True, "text", lambda v: isinstance(v, str)),
    "embedding_dim": (True, "a whole number", _whole),
    "hidden_dim": (False, "a whole number", _whole),
    "fusion_weight": (False, "a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1),
    "mixing": (False, "a JSON object", lambda v: isinstance(v, dict)),
    "weights_hash": (True, "text", lambda v: isinstance(v, str)),
    "loss": (False, "text", lambda v: isinstance(v, str)),
    "settings": (False, "a JSON object", lambda v: isinstance(v, dict)),
    "classes": (False, "a list of text", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v)),
    "n_train": (False, "a whole number", _whole),
    "n_validation": (False, "a whole number", _whole),
    "best_epoch": (False, "a whole number", _whole),
    "val_map_at_k": (False, "a number", _number),
    "frozen_val_map_at_k": (False, "a number", _number),
    "probe_val_map_at_k": (False, "a number", _number),
    "history": (False, "a list of JSON objects", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v)),
    "stopped_early": (False, "true or false", lambda v: isinstance(v, bool)),
}


def check_trained_info(info, folder: str | os.PathLike) -> dict:
    """``info`` (a ``trained.json`` document of ``folder``) unchanged when it fits the one schema every
    reader and :func:`save_trained` use; else :class:`TrainedModelError` saying what is wrong.

    The schema: a JSON object with ``format`` :data:`TRAINED_FORMAT`, a known ``backbone``, ``input_size``
    in :data:`INPUT_SIZE_RANGE` (pixels), ``resize`` a resize policy, ``embedding_dim`` in
    :data:`EMBEDDING_DIM_RANGE` and ``weights_hash`` (24 hexadecimal digits); the optional fields the
    trainer writes (``loss``, ``settings``, ``history``...) of their types; other fields are allowed.
    """
    def refused(problem: str) -> TrainedModelError:
        return TrainedModelError(folder, TRAINED_FILE, problem)

    if not isinstance(info, dict):
        kind = {list: "a list", str: "text", bool: "true or false", type(None): "null"}.get(type(info), "a number")
        raise refused(f"not a JSON object ({kind}); train again or restore the folder")
    if "format" in info and info["format"] != TRAINED_FORMAT:
        raise refused(f"format {info['format']!r}, this version reads {TRAINED_FORMAT} (made by another version "
                      "of cbir-tutorial): train again")
    missing = [key for key, (required, _, _) in _SCHEMA.items() if required and key not in info]
    if missing:
        raise refused(f"lacks {', '.join(map(repr, missing))} (a trained model's {TRAINED_FILE} names "
                      f"{', '.join(key for key, (required, _, _) in _SCHEMA.items() if required)})")
    for key, (_, kind, fits) in _SCHEMA.items():
        if key in info and not fits(info[key]):
            raise refused(f"{key}={_shown(info[key])}: expected {kind}")
    ranges = {"input_size": (INPUT_SIZE_RANGE, " px"), "embedding_dim": (EMBEDDING_DIM_RANGE, ""),
              "hidden_dim": ((0, EMBEDDING_DIM_RANGE[1]), "")}
    for key, ((low, high), unit) in ranges.items():
        if key in info and not low <= info[key] <= high:
            raise refused(f"{key}={info[key]}: expected {low}..{high}{unit}")
    try:
        backbone_spec(info["backbone"])
    except ValueError as error:
        raise refused(f"backbone={_shown(info['backbone'])}: {_first_line(error)}") from None
    try:
        resize_from_word(info["resize"])
    except ValueError as error:
        raise refused(_first_line(error)) from None
    if not _HEX_HASH.fullmatch(info["weights_hash"]):
        raise refused(f"weights_hash={_shown(info['weights_hash'])}: expected 24 hexadecimal digits")
    return info


def _shown(value) -> str:
    """``repr(value)``, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def embedding_model(backbone: str, embedding_dim: int, *, hidden_dim: int = 0, weights: Weights = IMAGENET,
                    input_size: int | None = None, seed: int = 0):
    """Preprocessed ``(B, S, S, 3)`` images → ``(B, embedding_dim)`` float32, L2-normalised.

    The backbone's feature model (``weights``, input ``S = input_size``, default the backbone's), then a
    Dense layer ``embedding`` (no activation, Glorot-uniform with ``seed``) and ``embedding_l2`` (unit norm).
    ``hidden_dim > 0``: the projection head's MLP
    (:class:`~cbir_tutorial.models.projection_head.ProjectionHead`) instead of one Dense layer: the pooled
    features L2-normalised (``embedding_input_l2``, what :class:`FeatureExtractor` returns), ``embedding_hidden``
    (``hidden_dim`` units, ReLU), then ``embedding``. The new layers compute in float32 whatever the dtype policy.
    """
    keras = keras_module()
    body = feature_model(backbone, weights, seed=seed, input_size=input_size)
    x = body.output
    if hidden_dim:
        x = keras.layers.UnitNormalization(dtype="float32", name="embedding_input_l2")(x)
        x = keras.layers.Dense(int(hidden_dim), activation="relu", dtype="float32", name="embedding_hidden",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1))(x)
    x = keras.layers.Dense(int(embedding_dim), dtype="float32", name="embedding",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    outputs = keras.layers.UnitNormalization(dtype="float32", name="embedding_l2")(x)
    return keras.Model(body.input, outputs, name=f"{backbone_spec(backbone).name}_embedding")


def fused_model(embedding, backbone: str, fusion_weight: float, *, input_size: int | None = None):
    """Preprocessed ``(B, S, S, 3)`` images → ``(B, F + D)`` float32, L2-normalised: the frozen ``backbone``'s
    L2-normalised pooled features (ImageNet weights, ``F`` wide) times ``sqrt(1 - fusion_weight)``, then the
    ``embedding`` model's ``(B, D)`` output times ``sqrt(fusion_weight)``, the whole renormalised: what
    :func:`cbir_tutorial.search.whitening.fuse` gives of the two with weights ``(1 - w, w)``."""
    keras = keras_module()
    w = float(fusion_weight)
    frozen = feature_model(backbone, IMAGENET, input_size=input_size)
    frozen.trainable = False
    x = keras.Input(frozen.input_shape[1:], name="images")
    parts = [keras.layers.Rescaling(np.sqrt(1.0 - w), dtype="float32", name="frozen_share")(
                 keras.layers.UnitNormalization(dtype="float32", name="frozen_l2")(frozen(x))),
             keras.layers.Rescaling(np.sqrt(w), dtype="float32", name="trained_share")(embedding(x))]
    fused = keras.layers.Concatenate(dtype="float32", name="fused")(parts)
    outputs = keras.layers.UnitNormalization(dtype="float32", name="fused_l2")(fused)
    return keras.Model(x, outputs, name=f"{backbone_spec(backbone).name}_fused")


def weights_hash(model, info: dict) -> str:
    """Hex SHA-256 (24 characters) of ``model``'s weights (shapes, dtypes and values, in layer order) and
    of the :data:`EMBEDDING_FIELDS` of ``info`` (its ``trained.json``): what ``weights_hash`` there holds."""
    digest = hashlib.sha256(json.dumps({key: info[key] for key in EMBEDDING_FIELDS if key in info},
                                       sort_keys=True).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        digest.update(f"{w.shape}{w.dtype}".encode())
        digest.update(w.tobytes())
    return digest.hexdigest()[:24]


def save_trained(model, folder: str | os.PathLike, info: dict) -> Path:
    """Write ``model``'s weights and ``trained.json`` (``info`` plus ``format`` and ``weights_hash``) into
    ``folder``; each file is replaced whole. ``info`` needs ``backbone``, ``input_size``, ``resize`` and
    ``embedding_dim`` (and ``hidden_dim`` when the model has one); the description must fit
    :func:`check_trained_info` (checked before anything is written). Returns the JSON's path."""
    description = {"format": TRAINED_FORMAT, **info, "weights_hash": "0" * 24}
    check_trained_info(description, folder)
    description["weights_hash"] = weights_hash(model, description)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / WEIGHTS_FILE  # Keras insists on the .weights.h5 suffix
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.save_weights(staged)
        os.replace(staged, folder / WEIGHTS_FILE)
    atomic_write_bytes(folder / TRAINED_FILE, (json.dumps(description, indent=1) + "\n").encode())
    return folder / TRAINED_FILE


def read_trained(folder: str | os.PathLike) -> dict:
    """The ``trained.json`` of a trained-model folder, checked (:func:`check_trained_info`), once its weights
    file is known to open as HDF5 (no weights are read). FileNotFoundError when a file is missing, else
    :class:`TrainedModelError` naming the folder, the file and what is wrong."""
    folder = Path(folder).expanduser().resolve()
    path = folder / TRAINED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a trained model: no {TRAINED_FILE} (made by python -m cbir_tutorial "
                                "train)")
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder}: {WEIGHTS_FILE} is missing")
    try:
        info = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise TrainedModelError(folder, TRAINED_FILE, f"not valid JSON ({_first_line(error)})") from None
    except OSError as error:
        raise TrainedModelError(folder, TRAINED_FILE, f"cannot be read ({_first_line(error)})") from None
    check_weights_file(folder)
    return check_trained_info(info, folder)


def check_weights_file(folder: str | os.PathLike) -> None:
    """:class:`TrainedModelError` unless ``folder``'s weights file opens as HDF5 (a truncated or foreign
    file does not); reads its header only."""
    import h5py

    try:
        with h5py.File(Path(folder) / WEIGHTS_FILE, "r"):
            pass
    except OSError as error:
        problem = re.sub(r"^Unable to (synchronously )?open file ", "", _first_line(error))
        raise TrainedModelError(folder, WEIGHTS_FILE, f"not a readable HDF5 file {problem}; train again or restore "
                                "the folder") from None


def is_trained_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a trained model (both files present)."""
    path = Path(path).expanduser()
    return (path / TRAINED_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def trained_home() -> Path:
    """The cache's folder of trained models (``$CBIR_TUTORIAL_CACHE/trained``), created."""
    return cache_dir(TRAINED_HOME)


def default_trained_folder(catalogue: str, backbone: str, loss: str) -> Path:
    """Where ``python -m cbir_tutorial train`` writes without ``--out``: ``trained_home()/CATALOGUE-BACKBONE-LOSS``
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
                                    f"{TRAINED_FILE} and {WEIGHTS_FILE}, as python -m cbir_tutorial train writes)")
        found.extend(p for p in inside if p not in found)
    return found


def trained_model_name(info: dict) -> str:
    """The name of a trained folder's model alone, from its ``trained.json`` record ``info``: ``fine-tuned (LOSS)``
    when an epoch beat the probe, else ``probe kept (refitted)`` (or ``probe kept`` without the refit): the
    backbone then never moved and the head was fitted with the supervised contrastive loss, whatever the run's
    loss."""
    if info.get("best_epoch", 1) != 0:
        return f"fine-tuned ({info.get('loss', '?')})"
    return "probe kept (refitted)" if info.get("refit_on") else "probe kept"


class TrainedExtractor(FeatureExtractor):
    """A :class:`FeatureExtractor` whose model is a fine-tuned :func:`embedding_model` read from a folder:
    images in, ``(N, D)`` float32 L2-normalised embeddings out, with the same ``extract`` / ``features_of``
    / cache as the frozen backbones.

    ``weights`` is the folder; :attr:`cache_key` includes the weights' hash, so features of a retrained
    model are never mixed with the old ones. ``info``: the folder's ``trained.json`` when the caller has
    read it already (:func:`read_trained`; checked again, not read again), so the weights are checked
    against the very document the caller checked. ``fusion``: False for the trained embedding alone, without
    the frozen features the folder fuses it with (``fusion_weight``; to compare what training learned).
    ``batch_size`` / ``mixed_precision`` / ``workers`` as in :class:`FeatureExtractor`. A folder that cannot be
    used raises :class:`TrainedModelError`.
    """

    def __init__(self, folder: str | os.PathLike, *, info: dict | None = None, fusion: bool = True,
                 batch_size: int | None = None, mixed_precision: bool | str | None = None, workers: int | None = None):
        folder = Path(folder).expanduser().resolve()
        self.fusion = fusion
        if info is None:
            self.info = read_trained(folder)
        else:
            check_weights_file(folder)
            self.info = check_trained_info(info, folder)
        backbone = backbone_spec(self.info["backbone"])
        dim = int(self.info["embedding_dim"]) + (backbone.feature_dim if self.fused else 0)
        spec = replace(backbone, input_size=int(self.info["input_size"]),
                       feature_layer="fused" if self.fused else "embedding", feature_dim=dim)
        super().__init__(spec.name, str(folder), batch_size=batch_size, mixed_precision=mixed_precision,
                         resize=self.info["resize"], workers=workers, spec=spec)
        self.model  # built now (it sets self.embedding): a folder that cannot be used fails here
        found = weights_hash(self.embedding, self.info)
        if found != self.info["weights_hash"]:
            raise TrainedModelError(folder, TRAINED_FILE, f"the weights and settings hash to {found}, not the "
                                    f"weights_hash {self.info['weights_hash']} it names (a partial save, or a field "
                                    "edited by hand?); train again or restore the folder")

    @property
    def fused(self) -> bool:
        """Whether the folder's embedding is fused with the frozen backbone's features (``fusion_weight`` < 1)."""
        return self.fusion and float(self.info.get("fusion_weight", 1.0)) < 1.0

    def built_model(self):
        """The :func:`embedding_model` that ``trained.json`` describes, with the folder's weights (in
        :attr:`embedding`), inside :func:`fused_model` when the folder fuses it with the frozen features."""
        folder, title = Path(self.weights), self.spec.title
        dim = int(self.info["embedding_dim"])
        try:
            model = embedding_model(self.spec.name, dim, hidden_dim=self.info.get("hidden_dim", 0),
                                    weights=None, input_size=self.spec.input_size)
        except ValueError as error:  # e.g. a backbone that takes one photo size only
            raise TrainedModelError(folder, TRAINED_FILE, f"the {title} model it describes cannot be built "
                                    f"({_first_line(error)})") from None
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                model.load_weights(folder / WEIGHTS_FILE)
        except (OSError, ValueError, KeyError, TypeError) as error:
            shapes = re.search(r"variable\.shape=\([^)]*\), Received: value\.shape=\([^)]*\)", str(error))
            detail = _first_line(error).rstrip(":") + (f"; {shapes.group()}" if shapes else "")
            raise TrainedModelError(folder, WEIGHTS_FILE, f"does not fit the {title} {dim}-d model {TRAINED_FILE} "
                                    f"describes ({detail}); train again or restore the folder") from None
        self.embedding = model
        if not self.fused:
            return model
        return fused_model(model, self.spec.name, self.info["fusion_weight"], input_size=self.spec.input_size)

    def __repr__(self) -> str:
        precision = f", {self.precision}" if self.precision else ""
        fused = (f", fused with the frozen features (weight {self.info['fusion_weight']:g})" if self.fused else "")
        return (f"TrainedExtractor({self.spec.title}, {trained_model_name(self.info)}{fused}, "
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
        if self.fused:
            recipe["fusion_weight"] = self.info["fusion_weight"]
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def load_trained(folder: str | os.PathLike, **options) -> TrainedExtractor:
    """The :class:`TrainedExtractor` of the trained-model ``folder`` (``options``: info, fusion, batch_size,
    mixed_precision, workers)."""
    return TrainedExtractor(folder, **options)
