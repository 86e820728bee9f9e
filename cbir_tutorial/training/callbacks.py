"""The callbacks of a run's ``fit``: Keras's own, told about the probe and the run's folder.

In ``fit``'s list in this order, so that after each epoch the validation score exists before anything is
saved and the checkpoint is written before early stopping decides: :class:`Epochs`, :class:`SaveBest`,
:class:`RunBackup`, :class:`KeepBest`. Importing this module imports TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..models.runtime import keras_module

keras = keras_module()


def bad_epochs(history: list, probe_val_map: float) -> int:
    """Epochs since the validation MAP last rose above every earlier epoch's and the probe's (NaN: no probe):
    what early stopping counts. It follows the validation MAP itself, not the kept model, so a run still
    improving goes on while its gain over the probe is not yet clear."""
    best, since = (probe_val_map if np.isfinite(probe_val_map) else -np.inf), 0
    for epoch, line in enumerate(history, start=1):
        if line["val_map"] > best:
            best, since = line["val_map"], epoch
    return len(history) - since


def kept(line: dict, result) -> bool:
    """Whether the epoch of ``line`` (a line of ``result.history``) becomes the model kept: its validation MAP
    beats every earlier kept model's (the probe's first) and its gain over the probe is clear (no probe: any)."""
    return line.get("beats_probe", True) and line["val_map"] > result.best_val_map


class Epochs(keras.callbacks.Callback):
    """Before each epoch, its phase (``warm-up``, or ``fine-tune`` once the backbone's blocks learn) and its
    batches; after each step, a loss that is not finite stops the run, naming the step; after the epoch, the
    validation MAP@k in ``logs["val_map"]`` and a line of ``result.history``, with its gain over the probe and
    whether that gain is clear (``beats_probe``, :meth:`~.trainer.Trainer.gain_over_probe`)."""

    def __init__(self, trainer, result):
        super().__init__()
        self.trainer, self.result = trainer, result

    def on_epoch_begin(self, epoch, logs=None):
        t = self.trainer
        fine_tune = epoch >= t.settings.warmup_epochs and bool(t.net.backbone)
        self.phase, self.began = ("fine-tune" if fine_tune else "warm-up"), time.perf_counter()
        t.optimizer.fine_tune.assign(float(fine_tune))
        t.batches.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])  # the epoch's mean so far: not finite from the first bad step on
        if not np.isfinite(loss):
            epoch = len(self.result.history) + 1
            raise self.trainer.diverged(f"epoch {epoch} ({self.phase}), step {batch + 1} of "
                                        f"{len(self.trainer.batches)}", f"the loss is {loss}")

    def on_epoch_end(self, epoch, logs=None):
        t, k = self.trainer, self.trainer.settings.k
        scores = t.validation_scores(after=f"the end of epoch {epoch + 1} ({self.phase})")
        logs["val_map"] = val_map = float(np.mean(scores))
        gain = t.gain_over_probe(scores)
        beats = gain is None or gain["beats"]
        line = {"epoch": epoch + 1, "phase": self.phase, "loss": float(logs["loss"]), "val_map": val_map}
        if gain is not None:  # the gain over the probe, its interval (with a level) and the verdict
            line.update({f"gain_{key}" if key != "difference" else "gain": gain[key]
                         for key in ("difference", "low", "high") if key in gain}, beats_probe=bool(gain["beats"]))
        self.result.history.append({**line, "seconds": round(time.perf_counter() - self.began, 2)})
        best = " (best)" if kept(line, self.result) else ""
        versus = "" if gain is None or "low" not in gain else (
            f", {gain['difference']:+.4f} over the probe ({gain['level']:.0%} interval {gain['low']:+.4f} to "
            f"{gain['high']:+.4f}{'' if beats else ': not a clear gain'})")
        t.say(f"epoch {epoch + 1} ({self.phase}): loss {logs['loss']:.4f}, validation MAP@{k} {val_map:.4f}"
              f"{versus}{best}")


class SaveBest(keras.callbacks.Callback):
    """``ModelCheckpoint(save_best_only=True)`` for a trained-model folder: the embedding model is saved
    (:meth:`save`) when its validation MAP beats every earlier epoch's and clearly beats the probe's
    (:func:`kept`)."""

    def __init__(self, trainer, result):
        super().__init__()
        self.trainer, self.result = trainer, result

    def on_epoch_end(self, epoch, logs=None):
        if kept(self.result.history[-1], self.result):
            self.result.best_epoch, self.result.best_val_map = epoch + 1, logs["val_map"]
            self.save()

    def save(self) -> None:
        """Save the embedding model as the best so far, whole (:meth:`.run_folder.RunFolder.save_best`), with
        what a user of the trained model reads (:func:`~cbir_tutorial.models.trained.read_trained`)."""
        t, r, s = self.trainer, self.result, self.trainer.settings
        info = {"backbone": s.backbone, "input_size": t.size, "resize": s.resize, "embedding_dim": s.embedding_dim,
                "hidden_dim": s.hidden_dim, "loss": s.loss, "settings": asdict(s),
                "classes": [str(c) for c in t.photos.classes], "n_train": int(len(t.photos.train_rows)),
                "n_validation": int(len(t.photos.validation_rows)), "best_epoch": r.best_epoch,
                "val_map_at_k": r.best_val_map, "frozen_val_map_at_k": r.frozen_val_map,
                "probe_val_map_at_k": r.probe_val_map, "refit_on": r.refit, "history": r.history}
        if r.mixing:  # chosen before a refit: a resumed run reads it back (the held-out photos are seen now)
            info.update(mixing=r.mixing, fusion_weight=r.mixing["weight"])
        t.folder.save_best(t.net.model, info, r.best_epoch)


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` with the run's own backup file: ``checkpoint.npz`` in the run's folder,
    written whole after every epoch (the learner's weights, the optimiser's state and the run's record),
    never deleted (a finished run can be resumed with more epochs). At the start of ``fit`` it restores the
    checkpoint whose record ``meta`` the run has checked (None: a fresh run), and ``fit`` goes on from the
    epoch after it."""

    def __init__(self, trainer, result, meta: dict | None):
        super().__init__(str(trainer.out), delete_checkpoint=False)
        self.trainer, self.result, self.meta = trainer, result, meta

    def on_train_begin(self, logs=None):
        if self.meta is not None:
            self.restore()
            self.model._initial_epoch = len(self.result.history)  # what BackupAndRestore tells fit

    def restore(self) -> None:
        """Restore the last complete epoch of the checkpoint into the learner, its optimiser, the trainer's
        probe scores and the run's result."""
        t, r, meta = self.trainer, self.result, self.meta
        for key in ("history", "best_epoch", "best_val_map", "frozen_val_map", "probe_val_map"):
            setattr(r, key, meta.get(key, float("nan")))
        if meta.get("probe_scores") is not None:
            t.probe_scores = np.asarray(meta["probe_scores"], dtype=float)
        t.folder.load_checkpoint(t.model, len(r.history), r.best_epoch)

    def _save_model(self):
        t, r = self.trainer, self.result
        meta = {"settings": asdict(t.settings), "history": r.history, "best_epoch": r.best_epoch,
                "best_val_map": r.best_val_map, "frozen_val_map": r.frozen_val_map,
                "probe_val_map": r.probe_val_map, "catalogue": t.record,
                "probe_scores": None if t.probe_scores is None else t.probe_scores.tolist(),
                "bad_epochs": bad_epochs(r.history, r.probe_val_map)}
        t.folder.save_checkpoint(t.model, meta, len(r.history))


class KeepBest(keras.callbacks.EarlyStopping):
    """Keras's ``EarlyStopping`` on ``val_map`` that starts from the run's best validation MAP so far - the
    probe's, or on resume the best of the checkpoint's epochs - and the epochs since it (:func:`bad_epochs`).
    It stops the run; the model kept is the one :class:`SaveBest` saved (the trainer reads it back after
    ``fit``), never below the probe."""

    def __init__(self, trainer, result, **options):
        super().__init__(**options)
        self.trainer, self.result = trainer, result

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        history, probe = self.result.history, self.result.probe_val_map
        scores = [line["val_map"] for line in history] + ([probe] if np.isfinite(probe) else [])
        if scores:
            self.best, self.wait = max(scores), bad_epochs(history, probe)
