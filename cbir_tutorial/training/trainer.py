r"""The fine-tuning run (:func:`train`): the probe, Keras's ``fit`` with callbacks, the mixing, the refit.

1. **The probe** (epoch 0, the first best model): the embedding head, the projection head's MLP, fitted alone on
   the frozen features (:mod:`.probe`); Proxy-Anchor's proxies start at its class means.
2. **``fit``** of a :class:`.learner.MetricLearner` on P×K batches of augmented photos, the backbone's last
   blocks learning after ``warmup_epochs``, Keras's mixed precision on a GPU. The callbacks (:mod:`.callbacks`)
   measure the validation MAP@k after every epoch, save the model when it clearly beats every earlier epoch
   and the probe, write the checkpoint (``BackupAndRestore``: a resumed run repeats an uninterrupted one) and
   stop early; the best model is then read back, never below the probe on validation.
3. **The mixing** (:mod:`.mixing`): the best embedding fused with the frozen features, the weight chosen on
   whole categories held out of training, so that kinds of product it never saw are searched no worse.
4. **The refit**: a probe kept is fitted again on every product of the training side (``refit_probe``).

A run fails loudly, before any photo is decoded where it can (the folder: :mod:`.output_folder`, the catalogue:
:func:`~.protocols.training_split`, a checkpoint: :mod:`.checkpoint`); a loss or embedding that is not finite
stops it at once (:class:`TrainingDivergedError`); a failed write leaves every file whole (:mod:`.run_folder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..models.backbones import backbone_spec
from ..models.features import built_in_policy, default_batch_size, mixed_precision_policy
from ..models.runtime import keras_module
from ..models.trained import WEIGHTS_FILE, read_trained, weights_hash
from .checkpoint import (CHECKPOINT_FILE, CHECKPOINT_META, CheckpointError, check_replaceable, checkpoint_meta,
                         holds_a_run, resumable_checkpoint, split_record)
from .model import trainable_model
from .output_folder import OutputLock, check_output_folder
from .photos import TrainingPhotos
from .probe import class_mean_proxies, fitted_probe, gain_over_probe
from .protocols import category_ap_at_k, training_split
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
        self.photos = TrainingPhotos.decoded(catalogue, s, self.size)
        self.record = split_record(catalogue, *self.photos.split[:2])
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
        self.model, self.optimizer = learner.compiled_learner(self.net, preprocess, s, len(self.photos.classes),
                                                              self.precision)
        p = self.photos
        self.batches = learner.PKBatches(p.pixels[p.train_rows], p.train_codes, s.classes_per_batch,
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
        p = self.photos
        return float(self.model.train_on_batch((p.pixels[p.train_rows[rows]], seed), p.train_codes[rows]))

    def _batched(self, model, positions: np.ndarray) -> np.ndarray:
        """``model`` (a compiled images → vectors function) over the decoded photos at ``positions``, in
        device-sized batches: ``(len(positions), D)`` float32."""
        batch, images = default_batch_size(), self.photos.pixels[positions]
        return np.concatenate([np.asarray(model(images[i:i + batch]), dtype=np.float32)
                               for i in range(0, len(images), batch)])

    def pooled_features(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), D)`` float32 L2-normalised: the backbone's pooled features (no augmentation) of
        the decoded photos at ``positions``, what the head receives (and what the frozen engine searches)."""
        return self._batched(self._pooled, positions)

    def probe(self) -> list[float]:
        """Fit the head alone on the frozen features of the training photos (:func:`.probe.fitted_probe`) and
        start the proxies at its class means; returns the losses."""
        p = self.photos
        features = self.pooled_features(p.train_rows)
        head = self._fitted_head(features, p.train_codes, "the probe")
        if self.model.proxies is not None:
            self.model.proxies.assign(class_mean_proxies(head.transform(features), p.train_codes, len(p.classes)))
        return head.history

    def _fitted_head(self, features: np.ndarray, labels, what: str):
        try:
            return fitted_probe(self.net.model, features, labels, self.settings)
        except FloatingPointError as error:
            where, _, problem = str(error).partition(": ")
            raise self.diverged(f"{what}'s {where}", problem) from None

    def refit_probe(self) -> int:
        """Fit the probe again, from its start, on every decoded photo of the training side (train, validation
        and held-out categories): what the run keeps when no epoch beat the probe. Returns how many photos."""
        everything = np.arange(len(self.photos.pixels))
        self._fitted_head(self.pooled_features(everything), self.photos.labels, "the refitted probe")
        return len(everything)

    def validation_scores(self, frozen: bool = False, *, after: str = "the last step") -> np.ndarray:
        """``(Q,)`` leave-one-out AP@k of each validation query (no augmentation), in a fixed order; ``frozen``:
        of the backbone's pooled features instead (what the search engine uses without training). Embeddings
        that are not finite raise :class:`TrainingDivergedError` (``after``: where the run is)."""
        embeddings = self._batched(self._pooled if frozen else self._embed, self.photos.validation_rows)
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any() and not frozen:
            raise self.diverged(after, f"{int(bad.sum())} of the {len(bad)} validation embeddings hold NaN or "
                                       "infinity")
        return category_ap_at_k(embeddings, self.photos.validation_labels, self.settings.k)

    def gain_over_probe(self, scores: np.ndarray) -> dict | None:
        """:func:`.probe.gain_over_probe` of ``scores`` (at ``beat_probe_level``); None without a probe."""
        s = self.settings
        return None if self.probe_scores is None else gain_over_probe(scores, self.probe_scores,
                                                                        s.beat_probe_level, s.seed)

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
        trained = self._batched(self._embed, np.concatenate([self.photos.validation_rows, self.photos.held_out_rows]))
        labels = np.concatenate([self.photos.validation_labels, self.photos.held_out_labels])
        return fusion_choice(frozen, trained, labels, self.photos.classes, self.settings.k,
                             n_validation=len(self.photos.validation_rows))

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
        p, result = self.photos, TrainingResult(self.out, skipped=self.photos.skipped)
        best, backup = SaveBest(self, result), RunBackup(self, result, meta)
        mixable = len(p.held_out_rows) and s.weights == "imagenet"  # the fused model's frozen part is ImageNet's
        frozen = self.pooled_features(np.concatenate([p.validation_rows, p.held_out_rows])) if mixable else None
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
                best.save()
        early = KeepBest(self, result, monitor="val_map", mode="max", patience=s.patience)
        if meta is not None and bad_epochs(meta["history"], meta.get("probe_val_map", float("nan"))) >= s.patience:
            backup.restore()  # it had stopped early: nothing more to learn
            result.stopped_early = True
        else:
            # verbose 2: Keras's line once an epoch ends, after the run's own; a live bar would still be open when
            # the run's line prints, and the two would share a line
            self.model.fit(self.batches, epochs=s.epochs, callbacks=[Epochs(self, result), best, backup, early],
                           verbose=2 if self.progress else 0)
            result.stopped_early = early.stopped_epoch > 0
        self.net.model.load_weights(self.out / WEIGHTS_FILE)  # the best epoch's (or the probe's)
        saved = read_trained(self.out) if meta is not None else {}
        if "mixing" in saved:  # resumed after its choices: made again, they would see what the refit learned
            result.mixing, result.refit = saved["mixing"], int(saved.get("refit_on", 0))
        else:
            result.mixing = self.mixing(frozen)
            if result.best_epoch == 0 and s.refit_probe:
                result.refit = self.refit_probe()
                best.save()
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
