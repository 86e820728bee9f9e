"""What a training run writes into its folder, each file whole, and what it says the folder holds when a
write fails or the run diverges.

A run writes two things: its checkpoint (:data:`~.checkpoint.CHECKPOINT_FILE`, after every epoch) and its best
model (:data:`~cbir_tutorial.models.trained.WEIGHTS_FILE` and :data:`~cbir_tutorial.models.trained.TRAINED_FILE`,
when an epoch is kept). Each is written beside its place and moved in (:func:`~cbir_tutorial.paths.
atomic_write_bytes`), so a full disk leaves the previous one as it was; :class:`RunFolder` remembers what is
there, for the errors. A run with ``overwrite`` trains in a hidden sibling and swaps it in at the end
(:meth:`RunFolder.replacing`), so the old model stays until the new one is whole. Keras's
``BackupAndRestore`` and ``ModelCheckpoint`` write one file with no say in how; these few lines give the
guarantees above.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..models.trained import TRAINED_FILE, WEIGHTS_FILE, save_trained
from ..paths import atomic_write_bytes, replace_folder, temporary_sibling
from .checkpoint import CHECKPOINT_FILE, CHECKPOINT_FIX, CheckpointError, checkpoint_arrays, first_line
from .output_folder import OutputWriteError
from .result import TrainingDivergedError


class RunFolder:
    """The folder ``path`` a run writes into, and what it holds of this run so far."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.on_disk: dict[str, str] = {}  # {"checkpoint"/"best": what it is, in words}
        self.replaced: Path | None = None  # the folder a run with overwrite replaces at its end

    @contextlib.contextmanager
    def replacing(self):
        """Train into a hidden sibling of ``path`` for the block, then swap it in for ``path`` whole; a block
        that raises leaves ``path`` as it was and removes the sibling."""
        final = self.path
        staging = temporary_sibling(final)
        staging.mkdir()
        self.path, self.replaced = staging, final
        try:
            yield
            replace_folder(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self.path, self.replaced = final, None

    def kept(self) -> str:
        """What the folder holds of this run, in words: its checkpoint and best model."""
        return " and ".join(self.on_disk[key] for key in ("checkpoint", "best") if key in self.on_disk)

    def diverged(self, where: str, what: str, learning_rate: float) -> TrainingDivergedError:
        """The error of a run that diverged at ``where`` (``what`` is not finite), saying what the folder keeps
        and which setting to lower."""
        if self.replaced is not None:
            kept, again = f"{self.replaced} is left as it was", " (--overwrite again, or another folder)"
        elif self.on_disk:
            kept, again = f"{self.path} keeps {self.kept()}", " with --overwrite, or into another folder"
        else:
            kept, again = "nothing was saved", ""
        return TrainingDivergedError(f"training diverged at {where}: {what}; {kept}: lower the learning rate "
                                     f"(learning_rate={learning_rate:g}, --learning-rate) and train again{again}")

    def write_failed(self, what: str, error: OSError) -> OutputWriteError:
        """The error of a write of ``what`` that failed, saying what the folder still holds."""
        reason = error.strerror or str(error)
        if self.replaced is not None:
            kept, fix = f"{self.replaced} is left as it was", "train again with --overwrite"
        elif self.on_disk:
            kept = f"the folder keeps {self.kept()}, each whole"
            fix = "resume (--resume) to carry on" if "checkpoint" in self.on_disk else "train again"
        else:
            kept, fix = "nothing of this run was kept", "train again"
        failed = OutputWriteError(f"could not write {what} in {self.path} ({reason}): {kept}; free some space (or "
                                  f"fix the folder) and {fix}")
        failed.errno = error.errno
        return failed

    def save_checkpoint(self, model, meta: dict, epoch: int) -> None:
        """Write the checkpoint of ``epoch`` whole: ``model``'s weights, its optimiser's state and ``meta``."""
        arrays = {f"model_{i}": w for i, w in enumerate(model.get_weights())}
        arrays.update({f"optimizer_{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)})
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        try:
            atomic_write_bytes(self.path / CHECKPOINT_FILE, buffer.getvalue())
        except OSError as error:
            raise self.write_failed(f"the checkpoint of epoch {epoch}", error) from None
        self.on_disk["checkpoint"] = f"the checkpoint of epoch {epoch}"

    def load_checkpoint(self, model, epochs: int, best_epoch: int) -> None:
        """Restore ``model`` and its optimiser from the checkpoint (of ``epochs`` epochs, the best ``best_epoch``)."""
        path = self.path / CHECKPOINT_FILE
        try:
            model.set_weights(checkpoint_arrays(path, "model"))
            state = checkpoint_arrays(path, "optimizer")
            if len(state) != len(model.optimizer.variables):
                raise ValueError(f"{len(state)} optimiser arrays, the model's optimiser has "
                                 f"{len(model.optimizer.variables)}")
            for variable, value in zip(model.optimizer.variables, state):
                variable.assign(value)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise CheckpointError(path, f"its weights do not fit the model its settings describe "
                                        f"({first_line(error)}); {CHECKPOINT_FIX}") from None
        self.on_disk.update(checkpoint=f"the checkpoint of epoch {epochs}",
                            best=f"the best model so far (epoch {best_epoch})")

    def save_best(self, embedding_model, info: dict, epoch: int) -> None:
        """Save ``embedding_model`` with ``info`` as the best model so far (of ``epoch``): both files are written
        in a hidden folder inside the run's, then moved in, so a failed write leaves the previous best whole."""
        staging = temporary_sibling(self.path / "best")
        try:
            save_trained(embedding_model, staging, info)
            for name in (WEIGHTS_FILE, TRAINED_FILE):
                os.replace(staging / name, self.path / name)
        except OSError as error:
            raise self.write_failed(f"the best model (epoch {epoch})", error) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.on_disk["best"] = f"the best model so far (epoch {epoch})"

    def write_info(self, info: dict) -> None:
        """Write ``info`` as the saved model's record (:data:`~cbir_tutorial.models.trained.TRAINED_FILE`), whole."""
        try:
            atomic_write_bytes(self.path / TRAINED_FILE, (json.dumps(info, indent=1) + "\n").encode())
        except OSError as error:
            raise self.write_failed(f"the history in {TRAINED_FILE}", error) from None
