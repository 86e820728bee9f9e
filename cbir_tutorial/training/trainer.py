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

from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..models.backbones import backbone_spec
from ..models.features import built_in_policy, mixed_precision_policy
from ..models.runtime import keras_module
from ..models.trained import WEIGHTS_FILE, read_trained, weights_hash
from .checkpoint import (CHECKPOINT_FILE, CHECKPOINT_META, CheckpointError, check_replaceable, checkpoint_meta,
                         holds_a_run, resumable_checkpoint, split_record)
from .model import trainable_model
from .output_folder import OutputLock, check_output_folder
from .photos import TrainingPhotos
from .probe import class_mean_proxies, fitted_probe
from .protocols import training_split
from .result import TrainingDivergedError, TrainingResult
from .run_folder import RunFolder
from .settings import TrainingSettings
from .validation import Validation

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_META", "CheckpointError", "Trainer", "TrainingDivergedError",
           "TrainingResult", "TrainingSettings", "checkpoint_meta", "train", "training_split"]


class Trainer(Validation):
    """Fine-tunes ``settings.backbone`` on ``catalogue`` (its ``category`` labels) into the folder ``out``.

    ``catalogue``: the training side of a protocol (products of other categories or held-out products never
    enter); whole categories are held out of training to choose the mixing (``settings.mixing_fraction``) and
    a validation split is carved from the rest (``settings.validation_*``). Call :meth:`run`. ``model``
    is the :class:`~.learner.MetricLearner` that ``fit`` trains, ``net`` its embedding model's parts.
    """

    def __init__(self, catalogue: Catalogue, settings: TrainingSettings, out, *, progress: bool = True):
        self.settings = s = settings.checked()
        self.folder, self.progress = RunFolder(Path(out).expanduser()), progress
        self.say = print if progress else (lambda line: None)  # the run's progress lines
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

    def diverged(self, where: str, what: str) -> TrainingDivergedError:
        """:meth:`.run_folder.RunFolder.diverged` at this run's learning rate."""
        return self.folder.diverged(where, what, self.settings.learning_rate)

    @property
    def out(self) -> Path:
        """The folder the run writes into now (a hidden sibling of the final one while a run with overwrite
        trains)."""
        return self.folder.path

    def run(self, *, resume: bool = False, overwrite: bool = False) -> TrainingResult:
        """Train, saving the best epoch to ``out`` and a checkpoint after each epoch; ``resume``: carry on from
        ``out``'s checkpoint (none: a fresh start). ``out`` is locked (:class:`~.output_folder.OutputLock`); one
        holding a run is refused (:func:`startable`) unless resumed or ``overwrite``: then the run trains in a
        hidden sibling folder swapped in at the end, so the old model stays until the new one is whole."""
        final = check_output_folder(self.out)
        with OutputLock(final):
            meta = startable(final, self.settings, self.record, resume, overwrite)
            if overwrite and holds_a_run(final):
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
            # verbose 2: Keras's line after the run's own once an epoch ends (a live bar would share the run's line)
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


def startable(folder: Path, settings: TrainingSettings, record: dict, resume: bool, overwrite: bool) -> dict | None:
    """The checkpoint record a run into ``folder`` resumes (None: a fresh start), or the refusal
    (:func:`~.checkpoint.resumable_checkpoint`, :func:`~.checkpoint.check_replaceable`)."""
    meta = resumable_checkpoint(folder, settings, resume, overwrite=overwrite, catalogue=record)
    if overwrite and holds_a_run(folder):
        check_replaceable(folder)
    return meta


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
        startable(folder, settings, split_record(catalogue, train_side, validation), resume, overwrite)
        return Trainer(catalogue, settings, folder, progress=progress).run(resume=resume, overwrite=overwrite)
