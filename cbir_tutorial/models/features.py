"""Turning images into L2-normalised feature vectors: batched, decoded ahead of the model, cached per image."""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .backbones import OFFLINE_BACKBONE, Backbone, BackboneChoice, WeightsUnavailableError, backbone_spec, feature_model
from .weights import IMAGENET, RANDOM_WORDS, Weights
from .feature_store import FORMAT, FeatureStore, feature_store, image_key
from .finite import check_finite
from ..data.images import ImageError, ImageSource, SkippedImage, load_rgb, resize_from_word
from ..paths import cache_dir

GPU_BATCH_SIZE = 128
CPU_BATCH_SIZE = 32
#: Batches decoded ahead of the one the model is running on: with a GPU, so JPEG decoding never starves
#: it; on a CPU decoding and the model share the cores, and one batch ahead already hides decoding.
GPU_PREFETCH_BATCHES = 2
CPU_PREFETCH_BATCHES = 1
#: Mixed-precision words: ``auto`` (on with a GPU), ``on``, ``off``, or the 16-bit type to compute in.
PRECISION_WORDS = ("auto", "on", "off", "float16", "bfloat16")


def gpus(devices: Sequence | None = None) -> list:
    """The GPUs among ``devices`` (objects with ``device_type``, as ``tf.config.list_physical_devices()``
    returns; default: this machine's)."""
    if devices is None:
        from .runtime import tensorflow_module

        devices = tensorflow_module().config.list_physical_devices()
    return [d for d in devices if getattr(d, "device_type", "") == "GPU"]


def default_batch_size(devices: Sequence | None = None) -> int:
    """Images per model call: :data:`GPU_BATCH_SIZE` with a GPU, else :data:`CPU_BATCH_SIZE`."""
    return GPU_BATCH_SIZE if gpus(devices) else CPU_BATCH_SIZE


def mixed_precision_from_word(word) -> str:
    """One of :data:`PRECISION_WORDS` from ``None``/``"auto"``/``""``, ``True``/``"on"``/``"yes"``/``"1"``,
    ``False``/``"off"``/``"no"``/``"none"``/``"0"``, ``"float16"`` or ``"bfloat16"``; ValueError otherwise."""
    text = "auto" if word is None else str(word).strip().lower()
    aliases = {"": "auto", "true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "none": "off", "0": "off"}
    text = aliases.get(text, text)
    if text not in PRECISION_WORDS:
        raise ValueError(f"mixed_precision={word!r}: use one of {', '.join(PRECISION_WORDS)} (or True / False)")
    return text


def mixed_precision_policy(mixed_precision: bool | str | None = None, devices: Sequence | None = None) -> str | None:
    """The Keras dtype policy the model computes in: ``"mixed_float16"`` on a GPU, ``"mixed_bfloat16"``
    on a CPU, or None (float32).

    ``mixed_precision``: None or ``"auto"`` (on with a GPU), True/``"on"``, False/``"off"``, or the
    16-bit type ``"float16"`` / ``"bfloat16"``.
    """
    word = mixed_precision_from_word(mixed_precision)
    if word in ("float16", "bfloat16"):
        return f"mixed_{word}"
    if word == "off":
        return None
    on = word == "on" or bool(gpus(devices))
    return ("mixed_float16" if gpus(devices) else "mixed_bfloat16") if on else None


@dataclass
class Extraction:
    """Features of the images that could be read, and which could not.

    ``features``: ``(N_ok, D)`` float32, L2-normalised, in input order without the skipped images;
    ``kept``: ``(N,)`` bool, True where the input image gave a row of ``features``;
    ``skipped``: the images left out, with the reason;
    ``reused`` / ``extracted``: images answered from the cache / decoded and run through the model
    (``from_cache``: nothing had to be extracted).
    """

    features: np.ndarray
    kept: np.ndarray
    skipped: list[SkippedImage] = field(default_factory=list)
    from_cache: bool = False
    reused: int = 0
    extracted: int = 0

    def part(self, mask: np.ndarray, paths) -> "Extraction":
        """The extraction of the images where ``(N,)`` bool ``mask`` is set (``paths``: the ``N`` images), in order."""
        mask = np.asarray(mask, dtype=bool)
        chosen = {str(path) for path in np.asarray(paths, dtype=object)[mask]}
        return Extraction(self.features[mask[self.kept]], self.kept[mask],
                          [s for s in self.skipped if str(s.path) in chosen], self.from_cache)

    def report(self, limit: int = 10) -> str:
        """One line of counts, then up to ``limit`` skipped files with their reasons."""
        cached = ""
        if self.from_cache:
            cached = " (features from cache)"
        elif self.reused:
            cached = f" ({self.reused} from cache, {self.extracted} extracted)"
        lines = [f"{int(self.kept.sum())} of {len(self.kept)} images indexed, {len(self.skipped)} skipped" + cached]
        lines += [f"  skipped {s.path}: {s.reason}" for s in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


class FeatureExtractor:
    """A backbone cut at its feature layer: images in, ``(N, D)`` float32 L2-normalised features out.

    ``backbone``: ``vgg16`` (fc1, 4096-d, 224 px), ``resnet50`` (avg_pool, 2048-d, 224 px), ``xception``
    (avg_pool, 2048-d, 299 px) or ``efficientnet_lite0`` (avg_pool, 1280-d, 224 px, offline ImageNet
    weights). ``weights``: ``"imagenet"``, ``"random"`` / ``None`` (untrained) or a weights file.
    ``resize``: ``"squash"`` (stretch to square) or ``"pad"`` (keep aspect, pad on white).
    ``batch_size``: None or 0 for :func:`default_batch_size` (larger on a GPU).
    ``mixed_precision``: see :func:`mixed_precision_policy` (default: on with a GPU); it applies to this
    model only, and features are float32 and L2-normalised either way. ``spec``: the backbone as this
    extractor runs it when it is not the table's (a trained model's input size and embedding; its
    ``weights`` are then taken as given); :meth:`built_model` builds the model.

    The model is built on first use (:attr:`model`, or the first photo that is not in the cache): an
    extraction answered from the cache builds none. :func:`available_extractor` builds it at once, so that
    missing ImageNet weights are found there.
    """

    def __init__(self, backbone: str = OFFLINE_BACKBONE, weights: Weights = "imagenet", *, batch_size: int | None = None,
                 mixed_precision: bool | str | None = None, resize: str = "squash", workers: int | None = None,
                 seed: int = 0, spec: Backbone | None = None):
        self.choice = BackboneChoice.of(backbone, weights) if spec is None else BackboneChoice(spec.name, weights)
        self.spec = spec or backbone_spec(self.choice.backbone)
        self.weights = self.choice.weights
        self.batch_size = int(batch_size or default_batch_size())
        self.prefetch_batches = GPU_PREFETCH_BATCHES if gpus() else CPU_PREFETCH_BATCHES
        if self.batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive number of images (or 0 for the default)")
        self.precision = mixed_precision_policy(mixed_precision)
        self.resize = resize_from_word(resize)
        self.workers = workers or min(8, (os.cpu_count() or 2) + 1)
        self.seed = seed
        self._model = self._inference = None

    @property
    def model(self):
        """The Keras model, images → features: :meth:`built_model`, called once, under the extractor's
        precision policy."""
        if self._model is None:
            self._model = built_in_policy(self.built_model, self.precision)
        return self._model

    def built_model(self):
        """A new Keras model of the backbone, images → features."""
        return feature_model(self.spec.name, self.weights, seed=self.seed)

    @property
    def _infer(self):
        """The traced function that turns pixels into features (:meth:`inference`), made once."""
        if self._inference is None:
            self._inference = self.inference()
        return self._inference

    def inference(self):
        """A traced function of :attr:`model`: see :func:`compiled_inference`."""
        return compiled_inference(self.model, self.spec)

    @property
    def backbone(self) -> str:
        """The canonical backbone name, e.g. ``"resnet50"``."""
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    @property
    def pretrained(self) -> bool:
        return self.weights is not None

    @property
    def mixed_precision(self) -> bool:
        return self.precision is not None

    def __repr__(self) -> str:
        precision = f", {self.precision}" if self.precision else ""
        return (f"FeatureExtractor({self.choice.label}, {self.input_size} px "
                f"{self.resize}, {self.spec.feature_layer} -> {self.feature_dim}-d{precision})")

    def features_of_pixels(self, images: np.ndarray, names: Sequence[str] | None = None) -> np.ndarray:
        """``(B, S, S, 3)`` uint8/float RGB in 0..255 → ``(B, D)`` float32 L2-normalised features.

        ValueError when the model gives NaN or infinity for an image, naming it (``names``: the images'
        paths, in order; else its number in the batch) and the likely cause.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected images of shape (B, {self.input_size}, {self.input_size}, 3), "
                             f"got {images.shape}")
        features = self._infer(images).numpy()
        check_finite(features, what="images' features", names=names,
                     fix=f"{self!r} outputs NaN or infinity, most likely because its training diverged; "
                         "retrain it with a lower learning rate, or use other weights")
        return features

    def features_of(self, source: ImageSource) -> np.ndarray:
        """One image (path, bytes, file object or PIL image) → ``(D,)`` features; raises ImageError, and
        ValueError when the model gives NaN or infinity for it (see :meth:`features_of_pixels`)."""
        pixels = load_rgb(source, self.input_size, self.resize)
        name = str(source) if isinstance(source, (str, os.PathLike)) else "the query image"
        return self.features_of_pixels(pixels[None], [name])[0]

    @property
    def cache_key(self) -> str:
        """Hex key of everything that changes the numbers: backbone, layer, weights, input size, resize
        policy and precision (not the batch size or the number of workers)."""
        recipe = {
            "format": FORMAT, "backbone": self.spec.name, "layer": self.spec.feature_layer,
            "weights": _weights_id(self.weights, self.seed), "input_size": self.input_size,
            "resize": self.resize, "precision": self.precision or "float32", "normalised": "unit_length",
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]

    def store(self, cache: bool | str | Path = True) -> FeatureStore:
        """The per-image feature store of this recipe under ``cache`` (True: the package's cache folder)."""
        folder = cache_dir("features") if cache is True else Path(cache)
        return feature_store(folder, f"{self.spec.name}-{self.cache_key}", self.feature_dim)

    def extract(self, paths: Sequence[str | Path], *, cache: bool | str | Path = True,
                progress: bool = True) -> Extraction:
        """Features of every readable image in ``paths`` (see :class:`Extraction`).

        Images are decoded on ``workers`` threads, ``prefetch_batches`` batches ahead of the model (2 with
        a GPU, 1 on a CPU).
        With ``cache`` (True or a folder) every image's features are kept in a :class:`FeatureStore`
        under its file's path, size and mtime: only images not seen before (new or changed files, or
        those of an interrupted run) are extracted, and rows are written to disk as they are made.
        Unreadable images are remembered with their reason until their file changes.
        """
        paths = [str(p) for p in paths]
        out = np.zeros((len(paths), self.feature_dim), dtype=np.float32)
        reasons: dict[int, str] = {}
        store = None if cache is False else self.store(cache)
        if store is not None:
            keys = [image_key(p) for p in paths]
            known, reasons = store.fill(keys, out)
            check_finite(out, what="cached images' features", names=paths,  # rows still to extract are 0
                         fix=f"the feature cache {store.folder} holds NaN or infinity for them (written by an "
                             "older version from a broken model): delete that folder, or extract with cache=False")
            todo = np.flatnonzero(~known)
        else:
            keys, todo = None, np.arange(len(paths))
        reused = len(paths) - len(todo)
        with store.writer() if store is not None else nullcontext() as writer:
            reasons.update(self._fill(paths, todo, out, writer, keys, progress))
        kept = np.ones(len(paths), dtype=bool)
        kept[list(reasons)] = False
        skipped = [SkippedImage(paths[i], reasons[i]) for i in sorted(reasons)]
        return Extraction(_compacted(out, kept), kept, skipped, from_cache=store is not None and len(todo) == 0,
                          reused=reused, extracted=len(todo))

    def _fill(self, paths: list[str], todo: np.ndarray, out: np.ndarray, writer, keys, progress: bool) -> dict[int, str]:
        """Extract rows ``todo`` of ``out`` (and hand them to ``writer``); returns ``{row: reason}`` of the
        unreadable ones."""
        reasons: dict[int, str] = {}
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        if not batches:
            return reasons
        self._infer  # the model built before the bar starts: weights that cannot be read fail before any work
        bar = _progress_bar(len(todo), f"{self.spec.name} features", progress)
        with ThreadPoolExecutor(self.workers) as pool:
            ahead = max(1, self.prefetch_batches)
            pending = deque(self._decode(pool, paths, rows) for rows in batches[:ahead])
            for b, rows in enumerate(batches):
                decoded = [f.result() for f in pending.popleft()]
                if b + ahead < len(batches):  # while the model runs batch b, batches b+1..b+ahead decode
                    pending.append(self._decode(pool, paths, batches[b + ahead]))
                good = [i for i, (pixels, _, _) in enumerate(decoded) if pixels is not None]
                for row, (pixels, reason, lasting) in zip(rows, decoded):
                    if pixels is None:
                        reasons[int(row)] = reason
                        if writer is not None and lasting:
                            writer.skip(keys[row], reason)
                if good:
                    features = self.features_of_pixels(np.stack([decoded[i][0] for i in good]),
                                                       [paths[r] for r in rows[good]])
                    out[rows[good]] = features
                    if writer is not None:
                        writer.add([keys[r] for r in rows[good]], features)
                bar.update(len(rows))
        bar.close()
        return reasons

    def _decode(self, pool: Executor, paths: list[str], rows: np.ndarray) -> list[Future]:
        return [pool.submit(_pixels_or_reason, paths[r], self.input_size, self.resize) for r in rows]


def _pixels_or_reason(path: str, size: int, resize: str) -> tuple[np.ndarray | None, str, bool]:
    """``(pixels, "", True)``, or ``(None, reason, lasting)``: ``lasting`` when the file itself is at fault
    (worth remembering until it changes) rather than something unexpected."""
    try:
        return load_rgb(path, size, resize), "", True
    except ImageError as e:
        return None, str(e).removeprefix(f"{path}: "), True
    except Exception as e:  # one unexpected failure must not sink a catalogue
        return None, f"unexpected {type(e).__name__}: {e}", False


def _compacted(out: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``out[kept]`` without a second copy: kept rows moved up in place, chunk by chunk (a view of ``out``)."""
    if kept.all():
        return out
    rows = np.flatnonzero(kept)
    step = 4096
    for start in range(0, len(rows), step):  # destination rows never pass the source rows still to move
        chunk = rows[start:start + step]
        out[start:start + len(chunk)] = out[chunk]
    return out[:len(rows)]


def built_in_policy(build: Callable, policy: str | None):
    """``build()``'s model, its layers built under the Keras dtype ``policy`` (None: float32); Keras's global
    policy is restored."""
    if policy is None:
        return build()
    from .runtime import keras_module

    keras = keras_module()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        return build()
    finally:
        keras.config.set_dtype_policy(previous)


def compiled_inference(model, spec):
    """A traced function of ``model``: ``(B, S, S, 3)`` float32 pixels (0..255, ``S = spec.input_size``) →
    ``(B, D)`` float32 L2-normalised features, ``spec``'s own preprocessing inside the graph."""
    from .runtime import tensorflow_module

    tf = tensorflow_module()

    size = spec.input_size
    preprocess = spec.preprocess_function()

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def infer(images):
        return unit_length(tf.cast(model(preprocess(images), training=False), tf.float32))

    return infer


def unit_length(features):
    """``(N, D)`` float32 tensor → each row divided by its length (an all-zero row stays zero). Rows are first
    scaled by their largest absolute value: ``tf.math.l2_normalize`` alone leaves rows shorter than 1e-6 (an
    untrained network's features) short, its epsilon bounding the squared length from below."""
    from .runtime import tensorflow_module

    tf = tensorflow_module()
    scaled = features / tf.maximum(tf.reduce_max(tf.abs(features), axis=-1, keepdims=True), 1e-37)
    return tf.math.l2_normalize(scaled, axis=-1)


def _weights_id(weights: Weights, seed: int) -> str:
    if weights is None:
        return f"random-seed{seed}"
    if str(weights) == "imagenet":
        return "imagenet"
    stat = Path(weights).stat()
    return f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over ``total`` images (a widget in a notebook); a silent one when ``enabled`` is false or the
    environment sets ``TQDM_DISABLE`` (as the course site's and the tests' runs do). tqdm's own reading of that
    variable only changes the default of ``disable``, and its notebook bar passes ``disable`` itself, so the
    variable is read here, at each call."""
    from tqdm.auto import tqdm

    switched_off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in {"", "0", "false", "no", "off"}
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled or switched_off, leave=False)


def fallback_message(choice: BackboneChoice, fallback: BackboneChoice) -> str:
    """The one line said when ``choice``'s ImageNet weights cannot be had and ``fallback`` is used."""
    instead = ("RANDOM, untrained weights" if fallback.backbone == choice.backbone
               else f"{fallback.label} (shipped with pip)")
    return f"{choice.label}: unavailable (offline?) -> using {instead} instead."


def available_extractor(backbone: str = OFFLINE_BACKBONE, weights=IMAGENET, fallback: str | None = "random",
                        **options):
    """A :class:`~cbir_tutorial.models.features.FeatureExtractor`, falling back when ImageNet weights are
    unavailable.

    ``fallback``: ``"random"`` (the same architecture, untrained: labelled RANDOM everywhere), a backbone
    name such as ``"efficientnet_lite0"`` (its ImageNet weights install with pip), or ``None`` to raise
    :class:`~cbir_tutorial.models.backbones.WeightsUnavailableError`. One line says what was used instead.
    """
    choice = BackboneChoice.of(backbone, weights)
    try:
        extractor = FeatureExtractor(choice.backbone, choice.weights, **options)
        extractor.model  # built now: weights that cannot be had are found here, not at the first photo
        return extractor
    except WeightsUnavailableError:
        if fallback is None:
            raise
        other = (BackboneChoice(choice.backbone, None) if str(fallback).lower() in RANDOM_WORDS
                 else BackboneChoice.of(fallback, IMAGENET))
        print(fallback_message(choice, other))
        return FeatureExtractor(other.backbone, other.weights, **options)
