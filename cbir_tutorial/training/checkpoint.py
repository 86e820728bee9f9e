"""A run's checkpoint: one ``.npz`` archive written whole after every epoch, and the checks before resuming it.

The archive holds the learner's weights (``model_0``...: the embedding model's and the proxies), the
optimiser's state (``optimizer_0``...: moments, step count, loss scale) and a JSON ``meta`` record (the
settings, the history, the early-stopping state and the catalogue's split). It is never unpickled. A run
folder is refused before any work when it cannot be resumed or must not be overwritten
(:func:`resumable_checkpoint`).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from ..data.catalogue import Catalogue
from ..models.trained import TRAINED_FILE, WEIGHTS_FILE
from ..paths import PathError
from .output_folder import OutputFolderError
from .settings import TrainingSettings

CHECKPOINT_FILE = "checkpoint.npz"
#: The files a run writes in its folder (the command line adds a protocol's ``report.json``); a folder holding
#: others besides hidden ones is never replaced whole.
RUN_FILES = (CHECKPOINT_FILE, TRAINED_FILE, WEIGHTS_FILE, "report.json")
#: What a checkpoint's ``meta`` record holds (``catalogue``: the product ids of each side of the split).
CHECKPOINT_META = ("settings", "history", "best_epoch", "best_val_map", "frozen_val_map", "bad_epochs", "catalogue")
#: The arrays every checkpoint holds besides ``meta``.
CHECKPOINT_ARRAYS = ("model_0", "optimizer_0")
#: The fix named by every refusal of a checkpoint that cannot be resumed.
CHECKPOINT_FIX = "start again with --overwrite (overwrite=True) instead of --resume, or train into another folder"
#: Settings that may change between a run and its resumption (the others must match).
RESUMABLE_CHANGES = ("epochs", "patience")


class CheckpointError(PathError):
    """A checkpoint that cannot be resumed; one line: the file, what is wrong, the fix."""


def first_line(error: BaseException) -> str:
    """``error``'s message, first line (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def split_record(catalogue: Catalogue, train: np.ndarray, validation: np.ndarray) -> dict:
    """What a checkpoint records of the catalogue it was made on: the product ids of each side, in catalogue
    order, and the training categories."""
    ids = catalogue.table["id"].astype(str).to_numpy()
    labels = catalogue.labels.astype(str)
    return {"train": ids[train].tolist(), "validation": ids[validation].tolist(),
            "classes": sorted(set(labels[train].tolist()))}


def catalogue_difference(saved: dict, now: dict) -> str | None:
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


def checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` record of the checkpoint file ``path``, checked without reading any weights: an ``.npz``
    archive (never unpickled), with the :data:`CHECKPOINT_META` fields, settings this version knows and
    the :data:`CHECKPOINT_ARRAYS`; else :class:`CheckpointError` naming the file and what is wrong."""
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
        raise refused(f"is not a whole .npz archive ({first_line(error)}: truncated?)") from None
    except ValueError as error:
        if "pickle" not in str(error):
            raise refused(f"cannot be read ({first_line(error)})") from None
        raise refused("is not an .npz archive: a pickle, or another kind of file, which is never loaded (unpickling "
                      "can run any code)") from None
    except OSError as error:
        raise refused(f"cannot be read ({error.strerror or first_line(error)})") from None
    if not isinstance(state, np.lib.npyio.NpzFile):
        raise refused("is a single NumPy array, not a checkpoint archive")
    with state:
        names = set(state.files)
        if "meta" not in names:
            raise refused("has no meta record (not written by python -m cbir_tutorial train)")
        try:
            meta = json.loads(str(state["meta"]))
        except ValueError as error:
            problem = "holds pickled data, never loaded" if "pickle" in str(error) else "is not JSON"
            raise refused(f"its meta record {problem} ({first_line(error)})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as error:
            raise refused(f"its meta record cannot be read ({first_line(error)})") from None
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
    absent = [name for name in CHECKPOINT_ARRAYS if name not in names]
    if absent:
        raise refused(f"lacks its weights ({', '.join(absent)})")
    return meta


def checkpoint_arrays(path: Path, prefix: str) -> list[np.ndarray]:
    """The arrays ``PREFIX_0``, ``PREFIX_1``... of the checkpoint ``path``, in order."""
    with np.load(path, allow_pickle=False) as state:
        n = sum(1 for key in state.files if key.startswith(f"{prefix}_"))
        return [state[f"{prefix}_{i}"] for i in range(n)]


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
    difference = catalogue is not None and catalogue_difference(meta["catalogue"], catalogue)
    if difference:
        raise CheckpointError(path, f"was made on another catalogue ({difference}): resume with the one it was made "
                                    "on (the same --catalogue, --limit and --seed), or train into another folder")
    return meta
