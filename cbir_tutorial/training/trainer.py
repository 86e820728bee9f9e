r"""The fine-tuning loop: warm-up of the new layers, then the last blocks at a smaller learning rate.

Each epoch draws P×K batches (:mod:`.sampler`), augments them (:mod:`.augment`), takes one step of the
chosen loss (:mod:`.losses`) per batch, then embeds the validation split and computes its leave-one-out
MAP@k. The best epoch so far is saved as a trained-model folder (:func:`~cbir_tutorial.models.trained.save_trained`);
training stops after ``patience`` epochs without a better validation MAP. A checkpoint written whole
after every epoch (weights, proxies, optimiser state, history) lets ``resume=True`` carry on from the last
complete epoch: batches and augmentation depend only on the seed, the epoch and the step, so a resumed run
repeats what an uninterrupted one does.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..data.images import ImageError, load_rgb
from ..models.backbones import backbone_spec
from ..models.features import built_in_policy, default_batch_size, gpus, mixed_precision_policy
from ..models.runtime import keras_module, tensorflow_module
from ..models.trained import save_trained
from ..paths import atomic_write_bytes
from .augment import augmented
from .losses import loss_from_word, multi_similarity_loss, proxy_anchor_loss, proxy_variable
from .model import trainable_model
from .protocols import category_map_at_k, validation_split
from .sampler import pk_batches

CHECKPOINT_FILE = "checkpoint.npz"
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
        return replace(self, loss=loss_from_word(self.loss), backbone=backbone_spec(self.backbone).name)


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
        s = self.settings
        self.spec = backbone_spec(s.backbone)
        self.size = int(s.image_size or self.spec.input_size)
        labels = catalogue.labels.astype(str)
        labelled = labels != ""
        train, validation = validation_split(labels, labelled, fraction=s.validation_fraction,
                                             by=s.validation_by, seed=s.seed)
        rows = np.flatnonzero(train | validation)
        pixels, kept, self.skipped = decoded_images([catalogue.paths[r] for r in rows], self.size, s.resize)
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
        return [float(self._probe_step(features[rows], self.train_codes[rows])) for rows in batches]

    def validation_map(self, frozen: bool = False) -> float:
        """Leave-one-out MAP@k of the current model on the validation split (no augmentation); ``frozen``: of
        the backbone's pooled features instead (what the search engine uses without training)."""
        embeddings = self._batched(self._pooled if frozen else self._embed, self.validation_rows)
        return category_map_at_k(embeddings, self.validation_labels, self.settings.k)

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
                "probe_val_map": result.probe_val_map, "bad_epochs": bad_epochs}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **self._state())
        atomic_write_bytes(self.out / CHECKPOINT_FILE, buffer.getvalue())

    def _load_checkpoint(self, result: TrainingResult) -> int:
        """Restore the last complete epoch; returns the epochs without improvement so far."""
        meta = resumable_checkpoint(self.out, self.settings, resume=True)
        with np.load(self.out / CHECKPOINT_FILE) as state:
            self._restore(state)
        result.history, result.best_epoch, result.best_val_map = meta["history"], meta["best_epoch"], meta["best_val_map"]
        result.frozen_val_map = meta["frozen_val_map"]
        result.probe_val_map = meta.get("probe_val_map", float("nan"))
        return int(meta["bad_epochs"])

    def _description(self, result: TrainingResult) -> dict:
        s = self.settings
        return {"backbone": s.backbone, "input_size": self.size, "resize": s.resize, "embedding_dim": s.embedding_dim,
                "loss": s.loss, "settings": asdict(s), "classes": [str(c) for c in self.classes],
                "n_train": int(len(self.train_rows)), "n_validation": int(len(self.validation_rows)),
                "best_epoch": result.best_epoch, "val_map_at_k": result.best_val_map,
                "frozen_val_map_at_k": result.frozen_val_map, "probe_val_map_at_k": result.probe_val_map,
                "history": result.history}

    def run(self, *, resume: bool = False) -> TrainingResult:
        """Train, saving the best epoch to ``out`` and a checkpoint after each epoch; ``resume``: carry on from
        ``out``'s checkpoint (a fresh start when there is none). Refuses to overwrite a checkpoint without
        ``resume``."""
        from tqdm.auto import tqdm

        s = self.settings
        self.out.mkdir(parents=True, exist_ok=True)
        result = TrainingResult(self.out, skipped=self.skipped)
        bad_epochs = 0
        if resumable_checkpoint(self.out, s, resume) is not None:
            bad_epochs = self._load_checkpoint(result)
        else:
            result.frozen_val_map = self.validation_map(frozen=True)
            if self.progress:
                print(f"validation MAP@{s.k} of the frozen {s.backbone} features: {result.frozen_val_map:.4f}")
            if s.probe_steps:
                losses = self.probe()
                result.probe_val_map = self.validation_map()
                if self.progress:
                    print(f"linear probe ({s.probe_steps} steps on frozen features): loss {np.mean(losses[-10:]):.4f}, "
                          f"validation MAP@{s.k} {result.probe_val_map:.4f}")
                result.best_epoch, result.best_val_map = 0, result.probe_val_map
                save_trained(self.net.model, self.out, self._description(result))
        start = len(result.history)
        for epoch in range(start, s.epochs):
            if bad_epochs >= s.patience:
                result.stopped_early = True
                break
            began = time.perf_counter()
            fine_tune = epoch >= s.warmup_epochs and bool(self.net.backbone)
            batches = pk_batches(self.train_codes, s.classes_per_batch, s.images_per_class, seed=s.seed, epoch=epoch)
            bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{s.epochs} "
                       f"({'fine-tune' if fine_tune else 'warm-up'})", unit="batch", disable=not self.progress,
                       leave=False)
            losses = []
            for b, rows in enumerate(batches):
                losses.append(self.step(rows, fine_tune=fine_tune, epoch=epoch, batch=b))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                bar.update()
            bar.close()
            val_map = self.validation_map()
            result.history.append({"epoch": epoch + 1, "phase": "fine-tune" if fine_tune else "warm-up",
                                   "loss": float(np.mean(losses)), "val_map": val_map,
                                   "seconds": round(time.perf_counter() - began, 2)})
            if val_map > result.best_val_map:
                result.best_epoch, result.best_val_map, bad_epochs = epoch + 1, val_map, 0
                save_trained(self.net.model, self.out, self._description(result))
            else:
                bad_epochs += 1
            self._save_checkpoint(result, bad_epochs)
            if self.progress:
                print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, validation MAP@{s.k} {val_map:.4f}"
                      + (" (best)" if result.best_epoch == epoch + 1 else ""))
        save_trained_history(self.out, result)
        return result


def resumable_checkpoint(out, settings: TrainingSettings, resume: bool) -> dict | None:
    """The metadata of ``out``'s checkpoint (None when there is none); ValueError when there is one and
    ``resume`` is off, or when it was made with other settings than ``settings`` (but for
    :data:`RESUMABLE_CHANGES`). Reads no weights: cheap enough to call before building a model."""
    path = Path(out).expanduser() / CHECKPOINT_FILE
    if not path.is_file():
        return None
    if not resume:
        raise ValueError(f"{path.parent} already holds a training checkpoint: resume it (--resume) "
                         "or train into another folder")
    with np.load(path) as state:
        meta = json.loads(str(state["meta"]))
    saved, settings = TrainingSettings(**meta["settings"]), settings.checked()
    differing = [f.name for f in fields(TrainingSettings) if f.name not in RESUMABLE_CHANGES
                 and getattr(saved, f.name) != getattr(settings, f.name)]
    if differing:
        raise ValueError(f"{path} was made with other settings ({', '.join(differing)}); "
                         "resume with the same ones or train into another folder")
    return meta


def save_trained_history(out: Path, result: TrainingResult) -> None:
    """Rewrite ``out``'s ``trained.json`` with the run's whole history (the weights stay the best epoch's)."""
    from ..models.trained import TRAINED_FILE, read_trained

    info = read_trained(out)
    info.update(history=result.history, stopped_early=result.stopped_early)
    atomic_write_bytes(out / TRAINED_FILE, (json.dumps(info, indent=1) + "\n").encode())


def train(catalogue: Catalogue, out, settings: TrainingSettings | None = None, *, resume: bool = False,
          progress: bool = True) -> TrainingResult:
    """Fine-tune on ``catalogue`` into ``out`` (see :class:`Trainer`); ``settings`` default
    :meth:`TrainingSettings.for_this_machine`."""
    settings = settings or TrainingSettings.for_this_machine()
    resumable_checkpoint(out, settings, resume)  # a refusal comes before the minutes of building the model
    return Trainer(catalogue, settings, out, progress=progress).run(resume=resume)
