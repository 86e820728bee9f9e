"""Turning images into L2-normalised feature vectors: batched, streamed, cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..choices import BackboneChoice, Weights, resize_from_word
from .backbones import backbone_spec, feature_model
from ..data.catalogue import Catalogue
from ..data.images import ImageError, ImageSource, SkippedImage, load_rgb
from ..paths import atomic_write_bytes, cache_dir

CACHE_FORMAT = 1


@dataclass
class Extraction:
    """Features of the images that could be read, and which could not.

    ``features``: ``(N_ok, D)`` float32, L2-normalised, in input order without the skipped images;
    ``kept``: ``(N,)`` bool, True where the input image gave a row of ``features``;
    ``skipped``: the images left out, with the reason.
    """

    features: np.ndarray
    kept: np.ndarray
    skipped: list[SkippedImage] = field(default_factory=list)
    from_cache: bool = False

    def report(self, limit: int = 10) -> str:
        """One line of counts, then up to ``limit`` skipped files with their reasons."""
        lines = [f"{int(self.kept.sum())} of {len(self.kept)} images indexed, {len(self.skipped)} skipped"
                 + (" (features from cache)" if self.from_cache else "")]
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
    """

    def __init__(self, backbone: str = "resnet50", weights: Weights = "imagenet", *, batch_size: int = 32,
                 resize: str = "squash", workers: int | None = None, seed: int = 0):
        self.choice = BackboneChoice.of(backbone, weights)
        self.spec = backbone_spec(self.choice.backbone)
        self.weights = self.choice.weights
        self.batch_size = int(batch_size)
        self.resize = resize_from_word(resize)
        self.workers = workers or min(8, (os.cpu_count() or 2) + 1)
        self.seed = seed
        self.model = feature_model(self.spec.name, self.weights, seed=seed)
        self._infer = _compiled_inference(self.model, self.spec)

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

    def __repr__(self) -> str:
        return (f"FeatureExtractor({self.choice.label}, {self.input_size} px "
                f"{self.resize}, {self.spec.feature_layer} -> {self.feature_dim}-d)")

    def features_of_pixels(self, images: np.ndarray) -> np.ndarray:
        """``(B, S, S, 3)`` uint8/float RGB in 0..255 → ``(B, D)`` float32 L2-normalised features."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected images of shape (B, {self.input_size}, {self.input_size}, 3), "
                             f"got {images.shape}")
        return self._infer(images).numpy()

    def features_of(self, source: ImageSource) -> np.ndarray:
        """One image (path, bytes, file object or PIL image) → ``(D,)`` features; raises ImageError."""
        pixels = load_rgb(source, self.input_size, self.resize)
        return self.features_of_pixels(pixels[None])[0]

    def cache_key(self, paths: Sequence[str]) -> str:
        """Hex key naming the features of ``paths`` under this backbone, weights, size and resize policy."""
        recipe = {
            "format": CACHE_FORMAT, "backbone": self.spec.name, "layer": self.spec.feature_layer,
            "weights": _weights_id(self.weights, self.seed), "input_size": self.input_size,
            "resize": self.resize, "images": _files_fingerprint(paths),
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]

    def extract(self, paths: Sequence[str | Path], *, cache: bool | str | Path = True,
                progress: bool = True) -> Extraction:
        """Features of every readable image in ``paths`` (see :class:`Extraction`).

        Images are decoded on ``workers`` threads while the model runs on the previous batch, so
        memory stays at two batches whatever the catalogue size; rows are written straight into the
        output (an on-disk ``.npy`` when caching). With ``cache`` (True or a folder), a finished run is
        reused when backbone, weights, input size, resize policy and the image files are unchanged.
        """
        paths = [str(p) for p in paths]
        folder = None if cache is False else (cache_dir("features") if cache is True else Path(cache))
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            stem = folder / f"{self.spec.name}-{self.cache_key(paths)}"
            cached = _read_cache(stem, len(paths), self.feature_dim)
            if cached is not None:
                return cached
            tmp = stem.with_name(f".{stem.name}.{os.getpid()}.tmp.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                            shape=(len(paths), self.feature_dim))
        else:
            out = np.zeros((len(paths), self.feature_dim), dtype=np.float32)
        try:
            kept, skipped = self._fill(paths, out, progress)
            if folder is not None:
                out.flush()
                del out
                result = _write_cache(stem, tmp, kept, skipped)
                return result
            return Extraction(out[kept], kept, skipped)
        finally:
            if folder is not None:
                Path(tmp).unlink(missing_ok=True)

    def extract_catalogue(self, catalogue: Catalogue, **kwargs) -> tuple[Catalogue, np.ndarray, Extraction]:
        """``(catalogue without unreadable images, (N_ok, D) features in its row order, extraction)``."""
        extraction = self.extract(catalogue.paths, **kwargs)
        return catalogue.subset(extraction.kept), extraction.features, extraction

    def _fill(self, paths: list[str], out: np.ndarray, progress: bool) -> tuple[np.ndarray, list[SkippedImage]]:
        kept = np.zeros(len(paths), dtype=bool)
        skipped: list[SkippedImage] = []
        starts = range(0, len(paths), self.batch_size)
        bar = _progress_bar(len(paths), f"{self.spec.name} features", progress)
        with ThreadPoolExecutor(self.workers) as pool:
            pending = self._decode(pool, paths, 0)
            for start in starts:
                decoded = [f.result() for f in pending]
                nxt = start + self.batch_size
                pending = self._decode(pool, paths, nxt) if nxt < len(paths) else []
                good = [i for i, item in enumerate(decoded) if isinstance(item, np.ndarray)]
                for i, item in enumerate(decoded):
                    if not isinstance(item, np.ndarray):
                        skipped.append(SkippedImage(paths[start + i], item))
                if good:
                    rows = start + np.asarray(good)
                    out[rows] = self.features_of_pixels(np.stack([decoded[i] for i in good]))
                    kept[rows] = True
                bar.update(len(decoded))
        bar.close()
        return kept, skipped

    def _decode(self, pool: Executor, paths: list[str], start: int) -> list[Future]:
        return [pool.submit(_pixels_or_reason, p, self.input_size, self.resize)
                for p in paths[start:start + self.batch_size]]


def _pixels_or_reason(path: str, size: int, resize: str) -> np.ndarray | str:
    try:
        return load_rgb(path, size, resize)
    except ImageError as e:
        return str(e).removeprefix(f"{path}: ")
    except Exception as e:  # one unexpected failure must not sink a catalogue
        return f"unexpected {type(e).__name__}: {e}"


def _compiled_inference(model, spec):
    from .runtime import tensorflow_module

    tf = tensorflow_module()

    size = spec.input_size
    preprocess = spec.preprocess_function()

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def infer(images):
        features = model(preprocess(images), training=False)
        return tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1)

    return infer


def _weights_id(weights: Weights, seed: int) -> str:
    if weights is None:
        return f"random-seed{seed}"
    if str(weights) == "imagenet":
        return "imagenet"
    stat = Path(weights).stat()
    return f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _files_fingerprint(paths: Iterable[str]) -> str:
    """Hash of each file's absolute path, size and modification time, in order."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{os.path.abspath(path)}\tmissing\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache(stem: Path, tmp_npy: Path, kept: np.ndarray, skipped: list[SkippedImage]) -> Extraction:
    """Commit a finished extraction: features file first, then the metadata that vouches for it."""
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    meta.unlink(missing_ok=True)
    os.replace(tmp_npy, npy)
    record = {"format": CACHE_FORMAT, "sha256": _file_sha256(npy), "n": int(len(kept)),
              "skipped": [[s.path, s.reason] for s in skipped],
              "skipped_rows": np.flatnonzero(~kept).tolist()}
    atomic_write_bytes(meta, json.dumps(record).encode())
    return Extraction(np.load(npy)[kept], kept, skipped)


def _read_cache(stem: Path, n: int, dim: int) -> Extraction | None:
    """The cached extraction, or None when absent, unfinished, corrupt or of the wrong shape."""
    npy, meta = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        record = json.loads(meta.read_text())
        if record.get("format") != CACHE_FORMAT or record["n"] != n or record["sha256"] != _file_sha256(npy):
            raise ValueError("metadata does not match the features file")
        features = np.load(npy)
        if features.shape != (n, dim) or features.dtype != np.float32:
            raise ValueError(f"features have shape {features.shape}, expected {(n, dim)}")
        kept = np.ones(n, dtype=bool)
        kept[record["skipped_rows"]] = False
        skipped = [SkippedImage(path, reason) for path, reason in record["skipped"]]
        return Extraction(features[kept], kept, skipped, from_cache=True)
    except Exception as e:  # a stale or corrupt cache is rebuilt, never trusted
        print(f"Feature cache {npy.name} is unusable ({e}); extracting again.")
        npy.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        return None


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
