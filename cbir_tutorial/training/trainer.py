r"""The fine-tuning run: the head fitted on frozen features first, then Keras's ``fit`` with callbacks.

1. **The probe** (epoch 0, saved as the first best model): the embedding head, the projection head's MLP,
   fitted alone on the frozen features of the training photos as
   :class:`~cbir_tutorial.models.projection_head.ProjectionHead` fits; Proxy-Anchor's proxies start at its
   class means.
2. **``fit``** of a :class:`.learner.MetricLearner` on P×K batches of augmented photos; the backbone's last
   blocks learn after ``warmup_epochs``; Keras's mixed precision (a ``LossScaleOptimizer``) on a GPU. The
   callbacks (:mod:`.callbacks`) measure the validation MAP@k after every epoch, save the model when it beats
   every earlier epoch and beats the probe by more than the validation split's noise (a paired bootstrap
   interval above 0, ``beat_probe_level``), write the checkpoint (``BackupAndRestore``) and stop after
   ``patience`` epochs without a better validation MAP (``EarlyStopping``); the model saved is then read back:
   it is never below the probe on validation, and is the probe unless fine-tuning clearly beat it.
   ``resume=True`` carries on from the last complete epoch: batches and augmentation depend only on the seed,
   the epoch and the step, so a resumed run repeats an uninterrupted one.
3. **The mixing** (:mod:`.mixing`): the saved model's embedding is the best epoch's fused with the frozen
   features, the weight chosen on whole categories held out of training (``mixing_fraction``) so that kinds
   of product it never saw are searched no worse than with the frozen features.
4. **The refit**: when the probe was kept, it is fitted again on every product of the training side, the
   validation photos and held-out categories included (``refit_probe``): the choices are made, and the head
   a user gets has seen the data the projection head sees.

A run fails loudly, never quietly. Before any photo is decoded, :func:`train` checks the folder (writable,
not held by another run: :mod:`.output_folder`), the catalogue (:func:`~.protocols.training_split`) and, to
resume, the checkpoint (:mod:`.checkpoint`). A trained model is replaced only with ``overwrite=True``, whole.
A loss or embedding that is not finite stops the run at once (:class:`TrainingDivergedError`), naming the step
and the learning rate; a failed write (a full disk) leaves every file whole and says what the folder holds
(:mod:`.run_folder`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..data.images import ImageError, decoded_images
from ..models.backbones import backbone_spec
from ..models.features import built_in_policy, default_batch_size, mixed_precision_policy
from ..models.runtime import keras_module
from ..models.trained import WEIGHTS_FILE, read_trained, weights_hash
from .checkpoint import (CHECKPOINT_FILE, CHECKPOINT_META, CheckpointError, check_replaceable, checkpoint_meta,
                         holds_a_run, resumable_checkpoint, split_record)
from .model import trainable_model
from .output_folder import OutputLock, check_output_folder
from .protocols import category_ap_at_k, sides_problem, training_split
from .run_folder import RunFolder
from .settings import TrainingSettings

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_META", "CheckpointError", "Trainer", "TrainingDivergedError",
           "TrainingResult", "TrainingSettings", "checkpoint_meta", "train", "training_split"]


class TrainingDivergedError(RuntimeError):
    """A loss or an embedding that is not finite: the run stopped there; one line naming the epoch and step."""


@dataclass
class TrainingResult:
    """What a run did: ``history`` (one dict per epoch: ``epoch``, ``phase``, ``loss``, ``val_map``,
    ``seconds`` and, after a probe, ``gain`` over its validation MAP, its interval ``gain_low`` / ``gain_high``
    and ``beats_probe``, :meth:`Trainer.gain_over_probe`), the ``best_epoch`` and its ``best_val_map`` (epoch
    0: the probe was best), ``frozen_val_map`` (the backbone's own features on the same validation split),
    ``probe_val_map`` (the head fitted on frozen features; NaN without one), ``refit`` (the photos the kept
    probe was fitted again on; 0: not refitted), ``mixing`` (the fusion weight chosen and its curve,
    :meth:`Trainer.mixing`) and ``folder`` (the saved trained model)."""

    folder: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_map: float = -1.0
    frozen_val_map: float = float("nan")
    probe_val_map: float = float("nan")
    refit: int = 0
    stopped_early: bool = False
    skipped: list[str] = field(default_factory=list)
    mixing: dict = field(default_factory=dict)


class Trainer:
    """Fine-tunes ``settings.backbone`` on ``catalogue`` (its ``category`` labels) into the folder ``out``.

    ``catalogue``: the training side of a protocol (products of other categories or held-out products never
    enter); whole categories are held out of training to choose the mixing (``settings.mixing_fraction``) and
    a validation split is carved from the rest (``settings.validation_*``). Call :meth:`run`. ``model``
    is the :class:`~.learner.MetricLearner` that ``fit`` trains, ``net`` its embedding model's parts.
    """

    def __init__(self, catalogue: Catalogue, settings: TrainingSettings, out, *, progress: bool = True):
        self.settings = s = settings.checked()
        self.folder, self.progress = RunFolder(Path(out).expanduser()), progress
        self.spec = backbone_spec(s.backbone)
        self.size = int(s.image_size or self.spec.input_size)
        labels = catalogue.labels.astype(str)
        train, validation, held_out = training_split(labels, s)
        self.record = split_record(catalogue, train, validation)
        rows = np.flatnonzero(train | validation | held_out)
        pixels, kept, self.skipped = decoded_images([catalogue.paths[r] for r in rows], self.size, s.resize)
        if not kept.any():
            more = f" (and {len(self.skipped) - 3} more)" if len(self.skipped) > 3 else ""
            raise ImageError(f"none of the {len(rows)} photos to train on could be read: "
                             f"{'; '.join(self.skipped[:3])}{more}")
        problem = sides_problem(labels[rows[kept]][train[rows[kept]]], labels[rows[kept]][validation[rows[kept]]])
        if problem:
            raise ImageError(f"{len(self.skipped)} of the {len(rows)} photos to train on could not be read (the "
                             f"first: {self.skipped[0]}), and without them {problem}")
        rows, self.pixels = rows[kept], pixels
        self.train_rows = np.flatnonzero(train[rows])  # positions in self.pixels
        self.validation_rows = np.flatnonzero(validation[rows])
        self.held_out_rows = np.flatnonzero(held_out[rows])  # categories never trained on
        self.held_out_labels = labels[rows][self.held_out_rows]
        self.classes, codes = np.unique(labels[rows][self.train_rows], return_inverse=True)
        self.train_codes = codes.astype(np.int32)
        self.validation_labels = labels[rows][self.validation_rows]
        self.all_labels = labels[rows]  # every decoded photo's category, what a refit probe learns
        self.probe_scores: np.ndarray | None = None  # the probe's validation AP@k, query by query
        self.precision = mixed_precision_policy(s.mixed_precision)
        self._build()

    def _build(self) -> None:
        from . import learner  # imports TensorFlow

        keras, s = keras_module(), self.settings
        keras.utils.set_random_seed(s.seed)
        self.net = built_in_policy(lambda: trainable_model(
            s.backbone, s.embedding_dim, s.trainable_blocks, hidden_dim=s.hidden_dim, weights=s.weights,
            input_size=self.size, seed=s.seed), self.precision)
        preprocess = self.spec.preprocess_function()
        self.model = learner.MetricLearner(self.net.model, preprocess, s.loss, n_classes=len(self.classes),
                                           augment=s.augment, seed=s.seed)
        proxies = [self.model.proxies] if self.model.proxies is not None else []
        self.optimizer = learner.GroupAdamW(
            s.learning_rate, weight_decay=s.weight_decay, backbone=self.net.backbone, no_decay=proxies,
            factors=[(v, s.backbone_lr_scale) for v in self.net.backbone] + [(p, s.proxy_lr_scale) for p in proxies])
        scaled = self.precision == "mixed_float16"
        self.model.compile(optimizer=keras.mixed_precision.LossScaleOptimizer(self.optimizer) if scaled
                           else self.optimizer, jit_compile=False)
        self.batches = learner.PKBatches(self.pixels[self.train_rows], self.train_codes, s.classes_per_batch,
                                         s.images_per_class, seed=s.seed)
        self.model(self.batches[0][0])  # builds the learner, then its optimiser (a checkpoint restores both)
        self.model.optimizer.build(self.model.trainable_variables)
        self._embed = learner.embedding_function(self.net.model, preprocess)
        pooled = keras.Model(self.net.model.input, self.net.model.get_layer("embedding_input_l2").output)
        self._pooled = learner.embedding_function(pooled, preprocess)

    # --------------------------------------------------------------------------------------------
    def step(self, rows: np.ndarray, *, fine_tune: bool, epoch: int = 0, batch: int = 0) -> float:
        """One optimiser step (Keras's ``train_on_batch``, the step ``fit`` takes) on the batch ``rows``
        (positions in the train side); ``fine_tune``: the backbone's last blocks move too. Returns the loss."""
        self.optimizer.fine_tune.assign(float(fine_tune))
        seed = np.array([self.settings.seed, epoch * 100_000 + batch], dtype=np.int64)
        return float(self.model.train_on_batch((self.pixels[self.train_rows[rows]], seed), self.train_codes[rows]))

    def _batched(self, model, positions: np.ndarray) -> np.ndarray:
        """``model`` (a compiled images → vectors function) over the decoded photos at ``positions``, in
        device-sized batches: ``(len(positions), D)`` float32."""
        batch, images = default_batch_size(), self.pixels[positions]
        return np.concatenate([np.asarray(model(images[i:i + batch]), dtype=np.float32)
                               for i in range(0, len(images), batch)])

    def pooled_features(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), D)`` float32 L2-normalised: the backbone's pooled features (no augmentation) of
        the decoded photos at ``positions``, what the head receives (and what the frozen engine searches)."""
        return self._batched(self._pooled, positions)

    def probe(self) -> list[float]:
        """Fit the head alone on the frozen features of the training photos (``settings.probe_steps`` steps of
        :meth:`ProjectionHead.fit <cbir_tutorial.models.projection_head.ProjectionHead.fit>`), copy it in and
        start the proxies at its class means; returns the losses."""
        features = self.pooled_features(self.train_rows)
        head = self._fitted_head(features, self.train_codes, "the probe")
        if self.model.proxies is not None:
            embedded = head.transform(features)
            means = np.stack([embedded[self.train_codes == c].mean(axis=0) for c in range(len(self.classes))])
            self.model.proxies.assign(means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12))
        return head.history

    def _fitted_head(self, features: np.ndarray, labels, what: str):
        """The head fitted on ``(N, F)`` frozen features and their labels, copied into the model (``what``
        names the fit in the error of a loss that is not finite)."""
        from ..models.projection_head import ProjectionHead

        s = self.settings
        head = ProjectionHead(features.shape[1], s.embedding_dim, s.hidden_dim, seed=s.seed).fit(
            features, labels, steps=s.probe_steps, learning_rate=s.learning_rate)
        bad = [i for i, loss in enumerate(head.history) if not np.isfinite(loss)]
        if bad:
            raise self.diverged(f"{what}'s step {bad[0] + 1} of {s.probe_steps}", f"the loss is {head.history[bad[0]]}")
        for mine, its in (("embedding_hidden", "head_hidden"), ("embedding", "head_out")):
            self.net.model.get_layer(mine).set_weights(head.model.get_layer(its).get_weights())
        return head

    def refit_probe(self) -> int:
        """Fit the probe again, from its start, on every decoded photo of the training side (train, validation
        and held-out categories): what the run keeps when no epoch beat the probe. Returns how many photos."""
        everything = np.arange(len(self.pixels))
        self._fitted_head(self.pooled_features(everything), self.all_labels, "the refitted probe")
        return len(everything)

    def validation_scores(self, frozen: bool = False, *, after: str = "the last step") -> np.ndarray:
        """``(Q,)`` leave-one-out AP@k of each validation query (no augmentation), in a fixed order; ``frozen``:
        of the backbone's pooled features instead (what the search engine uses without training). Embeddings
        that are not finite raise :class:`TrainingDivergedError` (``after``: where the run is)."""
        embeddings = self._batched(self._pooled if frozen else self._embed, self.validation_rows)
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any() and not frozen:
            raise self.diverged(after, f"{int(bad.sum())} of the {len(bad)} validation embeddings hold NaN or "
                                       "infinity")
        return category_ap_at_k(embeddings, self.validation_labels, self.settings.k)

    def gain_over_probe(self, scores: np.ndarray) -> dict | None:
        """The paired bootstrap interval (:func:`~cbir_tutorial.evaluation.comparison.paired_bootstrap`, at
        ``beat_probe_level``) of ``scores``' validation MAP minus the probe's, and ``beats``: whether the model
        that scored them replaces the probe (the interval lies above 0; with level 0, any gain). None
        without a probe."""
        from ..evaluation.comparison import paired_bootstrap

        if self.probe_scores is None:
            return None
        level, gain = self.settings.beat_probe_level, float(np.mean(scores) - np.mean(self.probe_scores))
        if not level:
            return {"difference": gain, "beats": gain > 0}
        interval = paired_bootstrap(scores, self.probe_scores, level=level, seed=self.settings.seed)
        return {**interval, "beats": interval["low"] > 0}

    def validation_map(self, frozen: bool = False, *, after: str = "the last step") -> float:
        """Leave-one-out MAP@k of the current model on the validation split: the mean of
        :meth:`validation_scores`."""
        return float(np.mean(self.validation_scores(frozen, after=after)))

    def mixing(self, frozen: np.ndarray | None) -> dict:
        """The fusion weight of the folder's best model and how it was chosen (:func:`.mixing.fusion_choice`;
        :func:`.mixing.no_fusion` without held-out categories). ``frozen``: the frozen features of the validation
        then held-out photos, computed before any training; the model holds the folder's best weights."""
        from .mixing import fusion_choice, no_fusion

        if frozen is None:
            return no_fusion(self.settings.mixing_fraction)
        trained = self._batched(self._embed, np.concatenate([self.validation_rows, self.held_out_rows]))
        labels = np.concatenate([self.validation_labels, self.held_out_labels])
        return fusion_choice(frozen, trained, labels, self.classes, self.settings.k,
                             n_validation=len(self.validation_rows))

    def diverged(self, where: str, what: str) -> TrainingDivergedError:
        """The error of a run that diverged at ``where`` (``what`` is not finite), saying what the folder keeps
        and which setting to lower."""
        kept, again = self.folder.left()
        return TrainingDivergedError(f"training diverged at {where}: {what}; {kept}: lower the learning rate "
                                     f"(learning_rate={self.settings.learning_rate:g}, --learning-rate) and train "
                                     f"again{again}")

    @property
    def out(self) -> Path:
        """The folder the run writes into now (a hidden sibling of the final one while a run with overwrite
        trains)."""
        return self.folder.path

    def save_checkpoint(self, result: TrainingResult) -> None:
        """Write the checkpoint whole (:meth:`.run_folder.RunFolder.save_checkpoint`) with the run's record."""
        from .callbacks import bad_epochs

        meta = {"settings": asdict(self.settings), "history": result.history, "best_epoch": result.best_epoch,
                "best_val_map": result.best_val_map, "frozen_val_map": result.frozen_val_map,
                "probe_val_map": result.probe_val_map, "catalogue": self.record,
                "probe_scores": None if self.probe_scores is None else self.probe_scores.tolist(),
                "bad_epochs": bad_epochs(result.history, result.probe_val_map)}
        self.folder.save_checkpoint(self.model, meta, len(result.history))

    def load_checkpoint(self, result: TrainingResult, meta: dict) -> None:
        """Restore the last complete epoch from the checkpoint (``meta``: its checked record) into the learner,
        its optimiser and ``result``."""
        for key in ("history", "best_epoch", "best_val_map", "frozen_val_map", "probe_val_map"):
            setattr(result, key, meta.get(key, float("nan")))
        if meta.get("probe_scores") is not None:
            self.probe_scores = np.asarray(meta["probe_scores"], dtype=float)
        self.folder.load_checkpoint(self.model, len(result.history), result.best_epoch)

    def save_best(self, result: TrainingResult) -> None:
        """Save the model as the best so far, whole (:meth:`.run_folder.RunFolder.save_best`)."""
        s = self.settings
        info = {"backbone": s.backbone, "input_size": self.size, "resize": s.resize, "embedding_dim": s.embedding_dim,
                "hidden_dim": s.hidden_dim, "loss": s.loss, "settings": asdict(s),
                "classes": [str(c) for c in self.classes], "n_train": int(len(self.train_rows)),
                "n_validation": int(len(self.validation_rows)), "best_epoch": result.best_epoch,
                "val_map_at_k": result.best_val_map, "frozen_val_map_at_k": result.frozen_val_map,
                "probe_val_map_at_k": result.probe_val_map, "refit_on": result.refit, "history": result.history}
        if result.mixing:  # chosen before a refit: a resumed run reads it back (the held-out photos are seen now)
            info.update(mixing=result.mixing, fusion_weight=result.mixing["weight"])
        self.folder.save_best(self.net.model, info, result.best_epoch)

    def run(self, *, resume: bool = False, overwrite: bool = False) -> TrainingResult:
        """Train, saving the best epoch to ``out`` and a checkpoint after each epoch; ``resume``: carry on from
        ``out``'s checkpoint (a fresh start when there is none). ``out`` is locked for the run
        (:class:`~.output_folder.OutputLock`). A folder holding a checkpoint or a trained model is refused
        (:func:`~.checkpoint.resumable_checkpoint`) unless resumed or ``overwrite``: then the run trains in a
        hidden sibling folder and swaps it in at the end, so the old model stays until the new one is whole."""
        final = check_output_folder(self.out)
        with OutputLock(final):
            meta = resumable_checkpoint(final, self.settings, resume, overwrite=overwrite, catalogue=self.record)
            if overwrite and holds_a_run(final):
                check_replaceable(final)
                with self.folder.replacing():
                    result = self._train(None)
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
        from .callbacks import Epochs, KeepBest, RunBackup, SaveBest, bad_epochs
        from .mixing import fusion_summary

        s = self.settings
        result = TrainingResult(self.out, skipped=self.skipped)
        mixable = len(self.held_out_rows) and s.weights == "imagenet"  # the fused model's frozen part is ImageNet's
        frozen = self.pooled_features(np.concatenate([self.validation_rows, self.held_out_rows])) if mixable else None
        if meta is None:
            result.frozen_val_map = self.validation_map(frozen=True)
            self.say(f"validation MAP@{s.k} of the frozen {s.backbone} features: {result.frozen_val_map:.4f}")
            if s.probe_steps:
                losses = self.probe()
                self.probe_scores = self.validation_scores(after="the probe's last step")
                result.probe_val_map = float(np.mean(self.probe_scores))
                self.say(f"probe (the head fitted on frozen features, {s.probe_steps} steps): loss "
                         f"{np.mean(losses[-10:]):.4f}, validation MAP@{s.k} {result.probe_val_map:.4f}")
                result.best_epoch, result.best_val_map = 0, result.probe_val_map
                self.save_best(result)
        early = KeepBest(self, result, monitor="val_map", mode="max", patience=s.patience)
        if meta is not None and bad_epochs(meta["history"], meta.get("probe_val_map", float("nan"))) >= s.patience:
            self.load_checkpoint(result, meta)  # it had stopped early: nothing more to learn
            result.stopped_early = True
        else:
            callbacks = [Epochs(self, result), SaveBest(self, result), RunBackup(self, result, meta), early]
            self.model.fit(self.batches, epochs=s.epochs, callbacks=callbacks, verbose=1 if self.progress else 0)
            result.stopped_early = early.stopped_epoch > 0
        self.net.model.load_weights(self.out / WEIGHTS_FILE)  # the best epoch's (or the probe's)
        saved = read_trained(self.out) if meta is not None else {}
        if "mixing" in saved:  # resumed after its choices: made again, they would see what the refit learned
            result.mixing, result.refit = saved["mixing"], int(saved.get("refit_on", 0))
        else:
            result.mixing = self.mixing(frozen)
            if result.best_epoch == 0 and s.refit_probe:
                result.refit = self.refit_probe()
                self.save_best(result)
                self.say(f"no epoch beat the probe on validation: the probe, fitted again on all {result.refit} "
                         "photos of the training side, is the trained model")
        summary = fusion_summary(result.mixing, s.k)
        if summary:
            self.say(summary)
        info = read_trained(self.out)
        info.update(history=result.history, stopped_early=result.stopped_early, mixing=result.mixing,
                    fusion_weight=result.mixing["weight"])
        info["weights_hash"] = weights_hash(self.net.model, info)
        self.folder.write_info(info)
        return result

    def say(self, line: str) -> None:
        """Print ``line`` when the run shows its progress."""
        if self.progress:
            print(line)


def train(catalogue: Catalogue, out, settings: TrainingSettings | None = None, *, resume: bool = False,
          overwrite: bool = False, progress: bool = True) -> TrainingResult:
    """Fine-tune on ``catalogue`` into ``out`` (see :class:`Trainer`); ``settings`` default
    :meth:`TrainingSettings.for_this_machine`. ``resume``: carry on from ``out``'s checkpoint; ``overwrite``:
    replace the trained model or checkpoint ``out`` holds (whole, at the end of the run).

    Refusals come before the minutes of decoding photos and building the model: ``out`` a file, under a
    file, read-only (:class:`~.output_folder.OutputFolderError`) or written by another run
    (:class:`~.output_folder.FolderBusyError`); the catalogue unfit for training (:func:`training_split`);
    a folder or checkpoint that cannot be resumed (:func:`~.checkpoint.resumable_checkpoint`)."""
    settings = (settings or TrainingSettings.for_this_machine()).checked()
    folder = check_output_folder(out)
    with OutputLock(folder):
        train_side, validation, _ = training_split(catalogue.labels, settings)
        resumable_checkpoint(folder, settings, resume, overwrite=overwrite,
                             catalogue=split_record(catalogue, train_side, validation))
        if overwrite and holds_a_run(folder):
            check_replaceable(folder)
        return Trainer(catalogue, settings, folder, progress=progress).run(resume=resume, overwrite=overwrite)
