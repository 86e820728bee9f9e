r"""The fine-tuning loop: warm-up of the new layers, then the last blocks at a smaller learning rate.

Each epoch draws P×K batches (:mod:`.sampler`), augments them (:mod:`.augment`), takes one step of the
chosen loss (:mod:`.losses`) per batch, then embeds the validation split and computes its leave-one-out
MAP@k. The best epoch so far is saved as a trained-model folder (:func:`~cbir_tutorial.models.trained.save_trained`);
training stops after ``patience`` epochs without a better validation MAP. A checkpoint written whole
after every epoch (weights, proxies, optimiser state, history) lets ``resume=True`` carry on from the last
complete epoch: batches and augmentation depend only on the seed, the epoch and the step, so a resumed run
repeats what an uninterrupted one does.

A run fails loudly, never quietly. Before any photo is decoded, :func:`train` checks the folder (writable,
not held by another run: :mod:`.output_folder`), the catalogue (2+ categories, a validation split it can
draw) and, to resume, the checkpoint (readable, the same settings and the same catalogue: its product ids
and split are recorded). A trained model is replaced only with ``overwrite=True``, whole (trained in a
sibling folder, then swapped in). A loss or embedding that is not finite stops the run at once
(:class:`TrainingDivergedError`) before anything of it is saved; a write that fails (a full disk) leaves
every file whole and says what the folder still holds (:class:`~.output_folder.OutputWriteError`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..data.images import ImageError, load_rgb
from ..models.backbones import backbone_spec
from ..models.features import built_in_policy, default_batch_size, gpus, mixed_precision_policy
from ..models.runtime import keras_module, tensorflow_module
from ..models.trained import TRAINED_FILE, WEIGHTS_FILE, save_trained
from ..paths import PathError, atomic_write_bytes, replace_folder, temporary_sibling
from .augment import augmented
from .losses import loss_from_word, multi_similarity_loss, proxy_anchor_loss, proxy_variable
from .model import trainable_model
from .output_folder import OutputFolderError, OutputLock, OutputWriteError, check_output_folder
from .protocols import category_map_at_k, validation_split
from .sampler import pk_batches

CHECKPOINT_FILE = "checkpoint.npz"
#: The files a run writes in its folder (the command line adds a protocol's ``report.json``); a folder holding
#: others besides hidden ones is never replaced whole.
RUN_FILES = (CHECKPOINT_FILE, TRAINED_FILE, WEIGHTS_FILE, "report.json")
#: What a checkpoint's ``meta`` record holds (``catalogue``: the product ids of each side of the split).
CHECKPOINT_META = ("settings", "history", "best_epoch", "best_val_map", "frozen_val_map", "bad_epochs", "catalogue")
#: The fix named by every refusal of a checkpoint that cannot be resumed.
CHECKPOINT_FIX = "start again with --overwrite (overwrite=True) instead of --resume, or train into another folder"
#: The sampler's epoch number for the linear probe's batches (apart from every training epoch's).
PROBE_EPOCH = 1_000_000
#: Settings that may change between a run and its resumption (the others must match).
RESUMABLE_CHANGES = ("epochs", "patience")


@dataclass(frozen=True)
class TrainingSettings:
    """Every choice of a fine-tuning run; the defaults are meant for a GPU (see :meth:`cpu`).

    ``probe_steps``: steps of the new layers alone on the frozen backbone's features of the unaugmented
    training photos, before any epoch (a linear probe: cheap, since the backbone runs once per photo; the
    fine-tuning then starts from a fitted embedding instead of a random projection, LP-FT, Kumar et al. 2022);
    ``trainable_blocks``: backbone blocks fine-tuned after ``warmup_epochs`` epochs of the new layers alone;
    ``learning_rate``: the embedding layer's (AdamW, ``weight_decay``); the proxies learn at
    ``learning_rate * proxy_lr_scale`` (Adam) and the backbone's blocks at ``learning_rate *
    backbone_lr_scale``. A batch is ``classes_per_batch`` × ``images_per_class`` images.
    ``image_size``: None for the backbone's own. ``validation_fraction`` / ``validation_by``: see
    :func:`~cbir_tutorial.training.protocols.validation_split`. ``patience``: epochs without a better
    validation MAP@``k`` before stopping. ``mixed_precision``: as
    :func:`~cbir_tutorial.models.features.mixed_precision_policy` ("auto": on with a GPU).
    """

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    loss: str = "proxy-anchor"
    embedding_dim: int = 256
    trainable_blocks: int = 4
    probe_steps: int = 300
    epochs: int = 30
    warmup_epochs: int = 2
    learning_rate: float = 1e-3
    backbone_lr_scale: float = 0.1
    proxy_lr_scale: float = 10.0
    weight_decay: float = 1e-4
    classes_per_batch: int = 16
    images_per_class: int = 4
    image_size: int | None = None
    resize: str = "squash"
    augment: bool = True
    validation_fraction: float = 0.2
    validation_by: str = "products"
    patience: int = 5
    k: int = 10
    seed: int = 0
    mixed_precision: str = "auto"

    @classmethod
    def cpu(cls, **changes) -> "TrainingSettings":
        """A preset for a laptop's CPU: batches of 8×4, the last 2 blocks, 12 epochs (1 of warm-up).

        Measured on 2 cores: 390 sample photos (the train side of the unseen-products split), 224 px, 12
        epochs of 10 batches took 8 minutes (multi-similarity) to 24 minutes (Proxy-Anchor, while the cores
        were shared with other work)."""
        return replace(cls(classes_per_batch=8, images_per_class=4, trainable_blocks=2, epochs=12, warmup_epochs=1,
                           patience=4), **changes)

    @classmethod
    def for_this_machine(cls, **changes) -> "TrainingSettings":
        """The GPU defaults when TensorFlow sees a GPU, else :meth:`cpu`."""
        return replace(cls(), **changes) if gpus() else cls.cpu(**changes)

    def checked(self) -> "TrainingSettings":
        """These settings with the loss and backbone names made canonical; ValueError for impossible ones."""
        if self.warmup_epochs < 0 or self.epochs < 1 or self.trainable_blocks < 0 or self.probe_steps < 0:
            raise ValueError(f"epochs={self.epochs}, warmup_epochs={self.warmup_epochs}, "
                             f"trainable_blocks={self.trainable_blocks}, probe_steps={self.probe_steps}: "
                             "need epochs >= 1 and the others >= 0")
        if not (np.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"learning_rate={self.learning_rate}: need a finite number >= 0 (0: nothing moves)")
        return replace(self, loss=loss_from_word(self.loss), backbone=backbone_spec(self.backbone).name)


class TrainingDivergedError(RuntimeError):
    """A loss or an embedding that is not finite: the run stopped there; one line naming the epoch and step."""


class CheckpointError(PathError):
    """A checkpoint that cannot be resumed; one line: the file, what is wrong, the fix."""


@dataclass
class TrainingResult:
    """What a run did: ``history`` (one dict per epoch: ``epoch``, ``phase``, ``loss``, ``val_map``,
    ``seconds``), the ``best_epoch`` and its ``best_val_map`` (epoch 0: the linear probe was best),
    ``frozen_val_map`` (the backbone's own features on the same validation split, before any training),
    ``probe_val_map`` (after the linear probe; NaN without one) and ``folder`` (the saved trained model)."""

    folder: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_map: float = -1.0
    frozen_val_map: float = float("nan")
    probe_val_map: float = float("nan")
    stopped_early: bool = False
    skipped: list[str] = field(default_factory=list)


def decoded_images(paths, size: int, resize: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(pixels (N_ok, size, size, 3) uint8, kept (N,) bool, reasons of the unreadable images)``."""
    pixels, kept, reasons = [], np.zeros(len(paths), dtype=bool), []
    for i, path in enumerate(paths):
        try:
            pixels.append(load_rgb(path, size, resize))
            kept[i] = True
        except ImageError as error:
            reasons.append(str(error))
    return np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8), kept, reasons


def training_split(labels, settings: TrainingSettings) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` ``(N,)`` bool masks of a catalogue's ``labels`` (:func:`validation_split` with
    ``settings.validation_*``); ValueError, saying which side needs what, when metric learning cannot be done
    or measured: fewer than 2 categories, no split to draw, or a side with fewer than 2 categories (a MAP
    over one category is 1 whatever the model)."""
    labels = np.asarray(labels, dtype=object).astype(str)
    labelled = labels != ""
    names, counts = np.unique(labels[labelled], return_counts=True)
    if len(names) < 2:
        found = f" ({names[0]}, {counts[0]} products)" if len(names) else ""
        raise ValueError(f"metric learning needs products of at least 2 categories; found {len(names)}{found}: add "
                         "photos of other categories")
    kind = ("held-out products of the training categories" if settings.validation_by == "products"
            else "held-out training categories")
    where = (f"the validation split ({kind}, validation_by={settings.validation_by!r}) of {int(labelled.sum())} "
             f"products in {len(names)} categories (the largest has {counts.max()})")
    try:
        train, validation = validation_split(labels, labelled, fraction=settings.validation_fraction,
                                             by=settings.validation_by, seed=settings.seed)
    except ValueError as error:
        raise ValueError(f"{where}: {error}; give more products per category") from None
    problem = _sides_problem(labels[train], labels[validation])
    if problem:
        raise ValueError(f"{where}: {problem}")
    return train, validation


def _sides_problem(train_labels: np.ndarray, validation_labels: np.ndarray) -> str | None:
    """What makes a split unusable for training and validation, or None."""
    train_names = np.unique(train_labels)
    names, counts = np.unique(validation_labels, return_counts=True)
    scored = names[counts >= 2]  # a category scores only with another of its products to find
    if len(train_names) < 2:
        return f"its training side holds {_categories(train_names)}: metric learning needs 2 or more"
    if len(scored) < 2:
        return (f"its validation side holds {_categories(scored)} with 2+ products: a MAP over fewer than 2 "
                "categories is 1 whatever the model; give more products per category, or more categories")
    return None


def _categories(names) -> str:
    """``"no category"``, ``"1 category (Watches)"``, ``"3 categories"``."""
    if len(names) == 0:
        return "no category"
    return f"1 category ({names[0]})" if len(names) == 1 else f"{len(names)} categories"


def split_record(catalogue: Catalogue, train: np.ndarray, validation: np.ndarray) -> dict:
    """What a checkpoint records of the catalogue it was made on: the product ids of each side, in catalogue
    order, and the training categories."""
    ids = catalogue.table["id"].astype(str).to_numpy()
    labels = catalogue.labels.astype(str)
    return {"train": ids[train].tolist(), "validation": ids[validation].tolist(),
            "classes": sorted(set(labels[train].tolist()))}


def _catalogue_difference(saved: dict, now: dict) -> str | None:
    """How the catalogue ``now`` differs from the one a checkpoint recorded (``saved``), or None."""
    if all(saved.get(key) == now[key] for key in ("train", "validation", "classes")):
        return None

    def some(ids: list[str]) -> str:
        return ", ".join(map(repr, ids[:3])) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")

    before = set(saved.get("train", [])) | set(saved.get("validation", []))
    after = set(now["train"]) | set(now["validation"])
    text = (f"it was made on {len(saved.get('train', []))} training + {len(saved.get('validation', []))} validation "
            f"products, this catalogue gives {len(now['train'])} + {len(now['validation'])}")
    gone, new = sorted(before - after), sorted(after - before)
    if gone:
        text += f"; only in the checkpoint's: {some(gone)}"
    if new:
        text += f"; only in this one: {some(new)}"
    if not gone and not new:
        text += "; the same products, split or labelled otherwise"
    return text


class _LossScale:
    """Dynamic loss scaling for float16 (starts at 2¹⁵, halves and skips the step on an overflow, doubles
    after 1000 finite steps); a no-op otherwise."""

    def __init__(self, on: bool):
        tf = tensorflow_module()
        self.on = on
        self.scale = tf.Variable(2.0 ** 15 if on else 1.0, trainable=False, dtype=tf.float32)
        self.good = tf.Variable(0, trainable=False, dtype=tf.int64)

    def after_finite_step(self) -> None:
        if self.on:
            tf = tensorflow_module()
            self.good.assign_add(1)
            double = self.good >= 1000
            self.scale.assign(tf.where(double, self.scale * 2, self.scale))
            self.good.assign(tf.where(double, tf.constant(0, tf.int64), self.good))

    def after_overflow(self) -> None:
        if self.on:
            self.scale.assign(self.scale / 2)
            self.good.assign(0)


class Trainer:
    """Fine-tunes ``settings.backbone`` on ``catalogue`` (its ``category`` labels) into the folder ``out``.

    ``catalogue``: the training side of a protocol (products of other categories or held-out products never
    enter); a validation split is carved from it (``settings.validation_*``). Call :meth:`run`.
    """

    def __init__(self, catalogue: Catalogue, settings: TrainingSettings, out, *, progress: bool = True):
        self.settings = settings.checked()
        self.out = Path(out).expanduser()
        self.progress = progress
        self._on_disk: dict[str, str] = {}  # what the folder holds of this run: {"checkpoint"/"best": words}
        self._replacing: Path | None = None  # the folder a run with overwrite replaces at its end
        s = self.settings
        self.spec = backbone_spec(s.backbone)
        self.size = int(s.image_size or self.spec.input_size)
        labels = catalogue.labels.astype(str)
        train, validation = training_split(labels, s)
        self.record = split_record(catalogue, train, validation)
        rows = np.flatnonzero(train | validation)
        pixels, kept, self.skipped = decoded_images([catalogue.paths[r] for r in rows], self.size, s.resize)
        if not kept.any():
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            raise ImageError(f"none of the {len(rows)} photos to train on could be read: "
                             f"{'; '.join(self.skipped[:3])}{more}")
        problem = _sides_problem(labels[rows[kept]][train[rows[kept]]], labels[rows[kept]][validation[rows[kept]]])
        if problem:
            raise ImageError(f"{len(self.skipped)} of the {len(rows)} photos to train on could not be read (the "
                             f"first: {self.skipped[0]}), and without them {problem}")
        rows = rows[kept]
        self.pixels = pixels
        self.train_rows = np.flatnonzero(train[rows])  # positions in self.pixels
        self.validation_rows = np.flatnonzero(validation[rows])
        self.classes, codes = np.unique(labels[rows][self.train_rows], return_inverse=True)
        self.train_codes = codes.astype(np.int32)
        self.validation_labels = labels[rows][self.validation_rows]
        self.precision = mixed_precision_policy(s.mixed_precision)
        self._build()

    def _build(self) -> None:
        keras, tf = keras_module(), tensorflow_module()
        s = self.settings
        keras.utils.set_random_seed(s.seed)
        self.net = built_in_policy(lambda: trainable_model(s.backbone, s.embedding_dim, s.trainable_blocks,
                                                           weights=s.weights, input_size=self.size, seed=s.seed),
                                   self.precision)
        self.proxies = proxy_variable(len(self.classes), s.embedding_dim, seed=s.seed) if s.loss == "proxy-anchor" else None
        groups = {"head": (self.net.head, keras.optimizers.AdamW(s.learning_rate, weight_decay=s.weight_decay))}
        if self.proxies is not None:
            groups["proxies"] = ([self.proxies], keras.optimizers.Adam(s.learning_rate * s.proxy_lr_scale))
        if self.net.backbone:
            groups["backbone"] = (self.net.backbone, keras.optimizers.AdamW(s.learning_rate * s.backbone_lr_scale,
                                                                             weight_decay=s.weight_decay))
        for variables, optimizer in groups.values():
            optimizer.build(variables)
        self.groups = groups
        self.loss_scale = _LossScale(self.precision == "mixed_float16")
        preprocess = self.spec.preprocess_function()
        model = self.net.model

        def loss_of(embeddings, labels):
            if self.proxies is not None:
                return proxy_anchor_loss(embeddings, labels, self.proxies)
            return multi_similarity_loss(embeddings, labels)

        def apply(names, grads):
            start = 0
            for n in names:
                count = len(groups[n][0])
                groups[n][1].apply_gradients(zip(grads[start:start + count], groups[n][0]))
                start += count

        def step(images, labels, seed, fine_tune: bool):
            x = augmented(images, seed) if s.augment else tf.cast(images, tf.float32)
            names = [n for n in groups if fine_tune or n != "backbone"]
            variables = [v for n in names for v in groups[n][0]]
            with tf.GradientTape() as tape:
                loss = loss_of(model(preprocess(x), training=False), labels)
                scaled = loss * self.loss_scale.scale
            grads = [g / self.loss_scale.scale for g in tape.gradient(scaled, variables)]
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])

            def finite_step():
                apply(names, grads)
                self.loss_scale.after_finite_step()
                return tf.constant(True)

            def skip():
                self.loss_scale.after_overflow()
                return tf.constant(False)

            tf.cond(finite, finite_step, skip)
            return loss

        self._steps = {phase: tf.function(lambda i, l, sd, p=phase: step(i, l, sd, p)) for phase in (False, True)}
        self._embed = tf.function(lambda images: model(preprocess(tf.cast(images, tf.float32)), training=False))
        pooled = keras.Model(model.input, model.get_layer("embedding").input)
        self._pooled = tf.function(lambda images: pooled(preprocess(tf.cast(images, tf.float32)), training=False))
        embedding = model.get_layer("embedding")

        def probe_step(features, labels):
            names = [n for n in ("head", "proxies") if n in groups]
            variables = [v for n in names for v in groups[n][0]]
            with tf.GradientTape() as tape:
                loss = loss_of(embedding(features), labels)
            apply(names, tape.gradient(loss, variables))
            return loss

        self._probe_step = tf.function(probe_step)

    # --------------------------------------------------------------------------------------------
    def step(self, rows: np.ndarray, *, fine_tune: bool, epoch: int = 0, batch: int = 0) -> float:
        """One optimiser step on the batch ``rows`` (``(P*K,)`` positions in the train side, as
        :func:`~.sampler.pk_batches` draws them); ``fine_tune``: the backbone's last blocks move too.
        The augmentation depends only on ``(seed, epoch, batch)``. Returns the batch's loss."""
        seed = np.array([self.settings.seed, epoch * 100_000 + batch], dtype=np.int64)
        return float(self._steps[fine_tune](self.pixels[self.train_rows[rows]], self.train_codes[rows], seed))

    def _batched(self, model, positions: np.ndarray) -> np.ndarray:
        """``model`` (a compiled images → vectors function) over the decoded photos at ``positions``, in
        device-sized batches: ``(len(positions), D)`` float32."""
        batch = default_batch_size()
        images = self.pixels[positions]
        return np.concatenate([np.asarray(model(images[i:i + batch]), dtype=np.float32)
                               for i in range(0, len(images), batch)])

    def pooled_features(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), D)`` float32: the backbone's pooled features (no augmentation) of the decoded
        photos at ``positions``, what the embedding layer receives."""
        return self._batched(self._pooled, positions)

    def probe(self) -> list[float]:
        """``settings.probe_steps`` steps of the embedding layer (and proxies) alone, on P×K batches of the
        frozen features of the training photos; returns the losses."""
        s = self.settings
        features = self.pooled_features(self.train_rows)
        batches = pk_batches(self.train_codes, s.classes_per_batch, s.images_per_class, n_batches=s.probe_steps,
                             seed=s.seed, epoch=PROBE_EPOCH)
        losses = []
        for i, rows in enumerate(batches):
            losses.append(float(self._probe_step(features[rows], self.train_codes[rows])))
            if not np.isfinite(losses[-1]):
                raise self.diverged(f"the linear probe's step {i + 1} of {len(batches)}", f"the loss is {losses[-1]}")
        return losses

    def validation_map(self, frozen: bool = False, *, after: str = "the last step") -> float:
        """Leave-one-out MAP@k of the current model on the validation split (no augmentation); ``frozen``: of
        the backbone's pooled features instead (what the search engine uses without training). Embeddings
        that are not finite raise :class:`TrainingDivergedError` (``after``: where the run is)."""
        embeddings = self._batched(self._pooled if frozen else self._embed, self.validation_rows)
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any() and not frozen:
            raise self.diverged(after, f"{int(bad.sum())} of the {len(bad)} validation embeddings hold NaN or "
                                       "infinity")
        return category_map_at_k(embeddings, self.validation_labels, self.settings.k)

    def diverged(self, where: str, what: str) -> TrainingDivergedError:
        """The error of a run that diverged at ``where`` (``what`` is not finite), saying what the folder keeps
        and which setting to lower."""
        s = self.settings
        if self._replacing is not None:
            kept, again = f"{self._replacing} is left as it was", " (--overwrite again, or another folder)"
        elif self._on_disk:
            kept, again = f"{self.out} keeps {self._kept()}", " with --overwrite, or into another folder"
        else:
            kept, again = "nothing was saved", ""
        return TrainingDivergedError(f"training diverged at {where}: {what}; {kept}: lower the learning rate "
                                     f"(learning_rate={s.learning_rate:g}, --learning-rate) and train again{again}")

    def _state(self) -> dict[str, np.ndarray]:
        state = {f"model_{i}": w for i, w in enumerate(self.net.model.get_weights())}
        if self.proxies is not None:
            state["proxies"] = np.asarray(self.proxies)
        for name, (_, optimizer) in self.groups.items():
            state.update({f"opt_{name}_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
        state["loss_scale"] = np.array([float(self.loss_scale.scale.numpy()), float(self.loss_scale.good.numpy())])
        return state

    def _restore(self, state) -> None:
        n = sum(1 for key in state.files if key.startswith("model_"))
        self.net.model.set_weights([state[f"model_{i}"] for i in range(n)])
        if self.proxies is not None:
            self.proxies.assign(state["proxies"])
        for name, (_, optimizer) in self.groups.items():
            for i, v in enumerate(optimizer.variables):
                v.assign(state[f"opt_{name}_{i}"])
        self.loss_scale.scale.assign(float(state["loss_scale"][0]))
        self.loss_scale.good.assign(int(state["loss_scale"][1]))

    def _save_checkpoint(self, result: TrainingResult, bad_epochs: int) -> None:
        meta = {"settings": asdict(self.settings), "history": result.history, "best_epoch": result.best_epoch,
                "best_val_map": result.best_val_map, "frozen_val_map": result.frozen_val_map,
                "probe_val_map": result.probe_val_map, "bad_epochs": bad_epochs, "catalogue": self.record}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **self._state())
        epoch = len(result.history)
        try:
            atomic_write_bytes(self.out / CHECKPOINT_FILE, buffer.getvalue())
        except OSError as error:
            raise self._write_failed(f"the checkpoint of epoch {epoch}", error) from None
        self._on_disk["checkpoint"] = f"the checkpoint of epoch {epoch}"

    def _save_best(self, result: TrainingResult) -> None:
        """Save the model as the best so far: both files are written whole in a hidden folder inside ``out``,
        then moved in, so a failed write (a full disk) leaves the previous best model as it was."""
        staging = temporary_sibling(self.out / "best")
        try:
            save_trained(self.net.model, staging, self._description(result))
            for name in (WEIGHTS_FILE, TRAINED_FILE):
                os.replace(staging / name, self.out / name)
        except OSError as error:
            raise self._write_failed(f"the best model (epoch {result.best_epoch})", error) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._on_disk["best"] = f"the best model so far (epoch {result.best_epoch})"

    def _kept(self) -> str:
        """What the folder holds of this run, in words: its checkpoint and best model."""
        return " and ".join(self._on_disk[key] for key in ("checkpoint", "best") if key in self._on_disk)

    def _write_failed(self, what: str, error: OSError) -> OutputWriteError:
        """The error of a write that failed, saying what the folder still holds."""
        reason = error.strerror or str(error)
        if self._replacing is not None:
            kept, fix = f"{self._replacing} is left as it was", "train again with --overwrite"
        elif self._on_disk:
            kept = f"the folder keeps {self._kept()}, each whole"
            fix = "resume (--resume) to carry on" if "checkpoint" in self._on_disk else "train again"
        else:
            kept, fix = "nothing of this run was kept", "train again"
        failed = OutputWriteError(f"could not write {what} in {self.out} ({reason}): {kept}; free some space (or "
                                  f"fix the folder) and {fix}")
        failed.errno = error.errno
        return failed

    def _load_checkpoint(self, result: TrainingResult, meta: dict) -> int:
        """Restore the last complete epoch from ``out``'s checkpoint (``meta``: its checked metadata); returns
        the epochs without improvement so far."""
        path = self.out / CHECKPOINT_FILE
        try:
            with np.load(path, allow_pickle=False) as state:
                self._restore(state)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            problem = f"lacks {error}" if isinstance(error, KeyError) else _first_line(error)
            raise CheckpointError(path, f"its weights do not fit the model its settings describe ({problem}); "
                                        f"{CHECKPOINT_FIX}") from None
        result.history, result.best_epoch, result.best_val_map = meta["history"], meta["best_epoch"], meta["best_val_map"]
        result.frozen_val_map = meta["frozen_val_map"]
        result.probe_val_map = meta.get("probe_val_map", float("nan"))
        epoch = len(result.history)
        self._on_disk.update(checkpoint=f"the checkpoint of epoch {epoch}",
                             best=f"the best model so far (epoch {result.best_epoch})")
        return int(meta["bad_epochs"])

    def _description(self, result: TrainingResult) -> dict:
        s = self.settings
        return {"backbone": s.backbone, "input_size": self.size, "resize": s.resize, "embedding_dim": s.embedding_dim,
                "loss": s.loss, "settings": asdict(s), "classes": [str(c) for c in self.classes],
                "n_train": int(len(self.train_rows)), "n_validation": int(len(self.validation_rows)),
                "best_epoch": result.best_epoch, "val_map_at_k": result.best_val_map,
                "frozen_val_map_at_k": result.frozen_val_map, "probe_val_map_at_k": result.probe_val_map,
                "history": result.history}

    def run(self, *, resume: bool = False, overwrite: bool = False) -> TrainingResult:
        """Train, saving the best epoch to ``out`` and a checkpoint after each epoch; ``resume``: carry on from
        ``out``'s checkpoint (a fresh start when there is none). ``out`` is locked for the run
        (:class:`~.output_folder.OutputLock`). A folder holding a checkpoint or a trained model is refused
        (:func:`resumable_checkpoint`) unless resumed or ``overwrite``: then the run trains in a hidden sibling
        folder and swaps it in at the end, so the old model stays until the new one is whole."""
        final = check_output_folder(self.out)
        with OutputLock(final):
            meta = resumable_checkpoint(final, self.settings, resume, overwrite=overwrite, catalogue=self.record)
            if overwrite and holds_a_run(final):
                check_replaceable(final)
                staging = temporary_sibling(final)
                staging.mkdir()
                self.out, self._replacing = staging, final
                try:
                    result = self._train(None)
                    replace_folder(staging, final)
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                finally:
                    self.out, self._replacing = final, None
                result.folder = final
                return result
            created = not final.exists()
            final.mkdir(parents=True, exist_ok=True)
            try:
                return self._train(meta)
            except BaseException:
                if created and not any(final.iterdir()):
                    final.rmdir()  # nothing was saved: no empty folder left behind
                raise

    def _train(self, meta: dict | None) -> TrainingResult:
        """The run itself, into ``self.out``, from the checkpoint whose ``meta`` is given (None: from the start)."""
        from tqdm.auto import tqdm

        s = self.settings
        result = TrainingResult(self.out, skipped=self.skipped)
        bad_epochs = 0
        if meta is not None:
            bad_epochs = self._load_checkpoint(result, meta)
        else:
            result.frozen_val_map = self.validation_map(frozen=True)
            if self.progress:
                print(f"validation MAP@{s.k} of the frozen {s.backbone} features: {result.frozen_val_map:.4f}")
            if s.probe_steps:
                losses = self.probe()
                result.probe_val_map = self.validation_map(after="the linear probe's last step")
                if self.progress:
                    print(f"linear probe ({s.probe_steps} steps on frozen features): loss {np.mean(losses[-10:]):.4f}, "
                          f"validation MAP@{s.k} {result.probe_val_map:.4f}")
                result.best_epoch, result.best_val_map = 0, result.probe_val_map
                self._save_best(result)
        start = len(result.history)
        for epoch in range(start, s.epochs):
            if bad_epochs >= s.patience:
                result.stopped_early = True
                break
            began = time.perf_counter()
            fine_tune = epoch >= s.warmup_epochs and bool(self.net.backbone)
            phase = "fine-tune" if fine_tune else "warm-up"
            batches = pk_batches(self.train_codes, s.classes_per_batch, s.images_per_class, seed=s.seed, epoch=epoch)
            bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{s.epochs} ({phase})", unit="batch",
                       disable=not self.progress, leave=False)
            losses = []
            for b, rows in enumerate(batches):
                losses.append(self.step(rows, fine_tune=fine_tune, epoch=epoch, batch=b))
                if not np.isfinite(losses[-1]):
                    bar.close()
                    raise self.diverged(f"epoch {epoch + 1} ({phase}), step {b + 1} of {len(batches)}",
                                        f"the loss is {losses[-1]}")
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                bar.update()
            bar.close()
            val_map = self.validation_map(after=f"the end of epoch {epoch + 1} ({phase})")
            result.history.append({"epoch": epoch + 1, "phase": phase, "loss": float(np.mean(losses)),
                                   "val_map": val_map, "seconds": round(time.perf_counter() - began, 2)})
            if val_map > result.best_val_map:
                result.best_epoch, result.best_val_map, bad_epochs = epoch + 1, val_map, 0
                self._save_best(result)
            else:
                bad_epochs += 1
            self._save_checkpoint(result, bad_epochs)
            if self.progress:
                print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, validation MAP@{s.k} {val_map:.4f}"
                      + (" (best)" if result.best_epoch == epoch + 1 else ""))
        try:
            save_trained_history(self.out, result)
        except OSError as error:
            raise self._write_failed(f"the history in {TRAINED_FILE}", error) from None
        return result


def holds_a_run(folder) -> bool:
    """Whether ``folder`` holds a training checkpoint or a trained model (either of its files)."""
    folder = Path(folder).expanduser()
    return any(os.path.lexists(folder / name) for name in (CHECKPOINT_FILE, TRAINED_FILE, WEIGHTS_FILE))


def check_replaceable(folder: Path) -> None:
    """OutputFolderError unless every file in ``folder`` is one a run writes (:data:`RUN_FILES`) or hidden:
    replacing it whole must delete nothing else."""
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
    if foreign:
        raise OutputFolderError(folder, f"holds files a training run does not write ({', '.join(foreign[:3])}"
                                        f"{' ...' if len(foreign) > 3 else ''}), which replacing it would delete: "
                                        "move them, or train into another folder")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` record of the checkpoint file ``path``, checked without reading any weights: an ``.npz``
    archive (never unpickled), with the :data:`CHECKPOINT_META` fields, settings this version knows and
    weight arrays; else :class:`CheckpointError` naming the file and what is wrong."""
    path = Path(path)

    def refused(problem: str) -> CheckpointError:
        return CheckpointError(path, f"{problem}; {CHECKPOINT_FIX}")

    if path.is_dir():
        raise refused("is a folder, not a checkpoint file")
    try:
        state = np.load(path, allow_pickle=False)
    except EOFError:
        raise refused("is empty (a run killed while creating it?)") from None
    except zipfile.BadZipFile as error:
        raise refused(f"is not a whole .npz archive ({_first_line(error)}: truncated?)") from None
    except ValueError as error:
        if "pickle" not in str(error):
            raise refused(f"cannot be read ({_first_line(error)})") from None
        raise refused("is not an .npz archive: a pickle, or another kind of file, which is never loaded (unpickling "
                      "can run any code)") from None
    except OSError as error:
        raise refused(f"cannot be read ({error.strerror or _first_line(error)})") from None
    if not isinstance(state, np.lib.npyio.NpzFile):
        raise refused("is a single NumPy array, not a checkpoint archive")
    with state:
        names = set(state.files)
        if "meta" not in names:
            raise refused("has no meta record (not written by cbir-tutorial train)")
        try:
            meta = json.loads(str(state["meta"]))
        except ValueError as error:
            problem = "holds pickled data, never loaded" if "pickle" in str(error) else "is not JSON"
            raise refused(f"its meta record {problem} ({_first_line(error)})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise refused(f"its meta record cannot be read ({_first_line(error)})") from None
    if not isinstance(meta, dict):
        raise refused("its meta record is not a JSON object")
    missing = [key for key in CHECKPOINT_META if key not in meta]
    if missing:
        raise refused(f"its meta record lacks {', '.join(missing)} (written by another version of cbir-tutorial?)")
    if not isinstance(meta["settings"], dict):
        raise refused("its settings are not a JSON object")
    unknown = sorted(set(meta["settings"]) - {f.name for f in fields(TrainingSettings)})
    if unknown:
        raise refused(f"records settings this version does not know ({', '.join(unknown)})")
    absent = [name for name in ("model_0", "loss_scale") if name not in names]
    if absent:
        raise refused(f"lacks its weights ({', '.join(absent)})")
    return meta


def resumable_checkpoint(out, settings: TrainingSettings, resume: bool, *, overwrite: bool = False,
                         catalogue: dict | None = None) -> dict | None:
    """The metadata of ``out``'s checkpoint when the run resumes it, else None (a fresh start).

    ValueError, before any work: ``resume`` with ``overwrite``; a checkpoint or a trained model in ``out``
    without ``resume`` or ``overwrite``; a trained model but no checkpoint to ``resume``; a checkpoint that
    cannot be read (:class:`CheckpointError`, :func:`checkpoint_meta`), made with other settings than
    ``settings`` (but for :data:`RESUMABLE_CHANGES`) or, when ``catalogue`` (:func:`split_record`) is given,
    on another catalogue. Reads no weights: cheap enough to call before building a model."""
    folder = Path(out).expanduser()
    path = folder / CHECKPOINT_FILE
    if resume and overwrite:
        raise ValueError("resume carries on from a checkpoint, overwrite replaces it: choose one")
    if not os.path.lexists(path):
        model = [name for name in (TRAINED_FILE, WEIGHTS_FILE) if os.path.lexists(folder / name)]
        if model and not overwrite:
            resumed = " but no checkpoint to resume" if resume else ""
            raise OutputFolderError(folder, f"holds a trained model ({', '.join(model)}){resumed}: replace it with "
                                            "--overwrite (overwrite=True), or train into another folder")
        return None
    if not resume:
        if overwrite:
            return None
        raise OutputFolderError(folder, "already holds a training checkpoint: resume it (--resume), replace it "
                                        "(--overwrite, overwrite=True) or train into another folder")
    meta = checkpoint_meta(path)
    saved, settings = TrainingSettings(**meta["settings"]), settings.checked()
    differing = [f.name for f in fields(TrainingSettings) if f.name not in RESUMABLE_CHANGES
                 and getattr(saved, f.name) != getattr(settings, f.name)]
    if differing:
        raise CheckpointError(path, f"was made with other settings ({', '.join(differing)}); resume with the same "
                                    "ones or train into another folder")
    difference = catalogue is not None and _catalogue_difference(meta["catalogue"], catalogue)
    if difference:
        raise CheckpointError(path, f"was made on another catalogue ({difference}): resume with the one it was made "
                                    "on (the same --catalogue, --limit and --seed), or train into another folder")
    return meta


def save_trained_history(out: Path, result: TrainingResult) -> None:
    """Rewrite ``out``'s ``trained.json`` with the run's whole history (the weights stay the best epoch's)."""
    from ..models.trained import read_trained

    info = read_trained(out)
    info.update(history=result.history, stopped_early=result.stopped_early)
    atomic_write_bytes(out / TRAINED_FILE, (json.dumps(info, indent=1) + "\n").encode())


def train(catalogue: Catalogue, out, settings: TrainingSettings | None = None, *, resume: bool = False,
          overwrite: bool = False, progress: bool = True) -> TrainingResult:
    """Fine-tune on ``catalogue`` into ``out`` (see :class:`Trainer`); ``settings`` default
    :meth:`TrainingSettings.for_this_machine`. ``resume``: carry on from ``out``'s checkpoint; ``overwrite``:
    replace the trained model or checkpoint ``out`` holds (whole, at the end of the run).

    Refusals come before the minutes of decoding photos and building the model: ``out`` a file, under a
    file, read-only (:class:`~.output_folder.OutputFolderError`) or written by another run
    (:class:`~.output_folder.FolderBusyError`); the catalogue unfit for training (:func:`training_split`);
    a folder or checkpoint that cannot be resumed (:func:`resumable_checkpoint`)."""
    settings = (settings or TrainingSettings.for_this_machine()).checked()
    folder = check_output_folder(out)
    with OutputLock(folder):
        train_side, validation = training_split(catalogue.labels, settings)
        resumable_checkpoint(folder, settings, resume, overwrite=overwrite,
                             catalogue=split_record(catalogue, train_side, validation))
        if overwrite and holds_a_run(folder):
            check_replaceable(folder)
        return Trainer(catalogue, settings, folder, progress=progress).run(resume=resume, overwrite=overwrite)
