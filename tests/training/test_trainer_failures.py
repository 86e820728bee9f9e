"""A training run fails loudly, never quietly: a diverged loss stops it before anything of it is saved; its
folder is held by one run at a time and replaced only when asked, whole; a full disk leaves every file whole;
a catalogue it cannot learn or measure, unreadable photos and a checkpoint it cannot read are refused saying
what is wrong."""

import errno
import json
import os
import threading

import numpy as np
import pytest

from cbir_tutorial.data.catalogue import Catalogue
from cbir_tutorial.models.trained import TRAINED_FILE, WEIGHTS_FILE, TrainedExtractor, read_trained
from cbir_tutorial.models.runtime import keras_module
from cbir_tutorial.training import learner, output_folder, photos, trainer
from cbir_tutorial.training.output_folder import FolderBusyError, OutputLock, OutputWriteError, lock_path
from cbir_tutorial.training.trainer import (CHECKPOINT_FILE, CheckpointError, Trainer, TrainingDivergedError,
                                            TrainingSettings, checkpoint_meta, train, training_split)
from tiny_training import tiny

ops = keras_module().ops


def labelled(sizes: dict[str, int]) -> np.ndarray:
    return np.array([name for name, n in sizes.items() for _ in range(n)], dtype=object)


# --------------------------------------------------------------------------------------------------
# What a catalogue must hold to train and to measure


@pytest.mark.parametrize("sizes, message", [
    ({"Watches": 12}, "metric learning needs products of at least 2 categories; found 1 (Watches, 12 products)"),
    ({"": 5}, "metric learning needs products of at least 2 categories; found 0: add photos"),
    ({"Watches": 3, "Tshirts": 3}, "the validation split (held-out products of the training categories, "
                                   "validation_by='products') of 6 products in 2 categories (the largest has 3): no "
                                   "category has 4+ products (the largest of the 2 categories has 3): holding "
                                   "products out needs 2 of a category to test and 2 to train; give more products"),
    ({"Watches": 8, "Tshirts": 2, "Shoes": 3},
     "its validation side holds 1 category (Watches) with 2+ products: a MAP over fewer than 2 categories is 1 "
     "whatever the model"),
])
def test_a_catalogue_that_cannot_train_or_be_measured_says_which_side_needs_what(sizes, message):
    with pytest.raises(ValueError) as refused:
        training_split(labelled(sizes), TrainingSettings.cpu())
    assert message in str(refused.value)


def test_validation_by_categories_needs_two_held_out_categories():
    settings = TrainingSettings.cpu(validation_by="categories")
    with pytest.raises(ValueError, match=r"held-out training categories, validation_by='categories'\) of 24 products "
                                         r"in 3 categories .*its validation side holds 1 category \("):
        training_split(labelled({"A": 8, "B": 8, "C": 8}), settings)
    train_side, validation, _ = training_split(labelled({c: 4 for c in "ABCDEFGHIJ"}), settings)
    assert validation.sum() == 8 and not (train_side & validation).any()


def test_photos_that_cannot_be_read_are_counted_with_their_reasons(tiny_catalogue, tmp_path):
    table = tiny_catalogue.table.copy()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    table.loc[table["category"] != "Tshirts", "path"] = str(broken)
    some_broken = Catalogue(table.reset_index(drop=True), "some broken")
    with pytest.raises(ValueError, match=r"^16 of the 24 photos to train on could not be read \(the first: "
                                         r".*broken\.jpg.*\), and without them its training side holds 1 "
                                         r"category \(Tshirts\): metric learning needs 2 or more$"):
        Trainer(some_broken, tiny(), tmp_path / "m", progress=False)
    table["path"] = str(broken)
    with pytest.raises(ValueError, match=r"^none of the 24 photos to train on could be read: .*broken\.jpg.*; .*; "
                                         r".* \(and 21 more\)$"):
        Trainer(Catalogue(table, "all broken"), tiny(), tmp_path / "m", progress=False)


# --------------------------------------------------------------------------------------------------
# A run that diverges


def test_a_diverged_epoch_stops_the_run_at_once_and_saves_nothing(tiny_catalogue, tmp_path):
    out = tmp_path / "m"
    with pytest.raises(TrainingDivergedError) as diverged:
        train(tiny_catalogue, out, tiny(learning_rate=1e30, probe_steps=0), progress=False)
    message = str(diverged.value)
    assert message.startswith("training diverged at ") and "epoch 1 (warm-up)" in message
    assert "; nothing was saved: lower the learning rate (learning_rate=1e+30, --learning-rate)" in message
    assert not out.exists() and not lock_path(out).exists()


def test_a_diverged_probe_names_its_step_and_copies_nothing(tiny_catalogue, tmp_path):
    run = Trainer(tiny_catalogue, tiny(learning_rate=1e30, probe_steps=20), tmp_path / "m", progress=False)
    before = [np.asarray(w).copy() for w in run.net.model.weights]
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at the probe's step \d+ of 20: the loss is "
                                                    r"(nan|inf); nothing was saved: lower the learning rate"):
        run.probe()
    assert all(np.array_equal(a, np.asarray(w)) for a, w in zip(before, run.net.model.weights))


@pytest.mark.slow
def test_a_run_that_diverges_later_keeps_what_it_saved_before(tiny_catalogue, tmp_path, monkeypatch):
    compute_loss = learner.MetricLearner.compute_loss

    def diverging(self, *args, **kwargs):  # the loss of the 4th step (epoch 2, step 2) is infinite
        return ops.where(self.optimizer.iterations == 3, float("inf"), compute_loss(self, *args, **kwargs))

    monkeypatch.setattr(learner.MetricLearner, "compute_loss", diverging)
    out = tmp_path / "m"
    with pytest.raises(TrainingDivergedError) as diverged:
        train(tiny_catalogue, out, tiny(), progress=False)
    best = read_trained(out)["best_epoch"]
    assert str(diverged.value).startswith(
        f"training diverged at epoch 2 (fine-tune), step 2 of 2: the loss is inf; {out} keeps the checkpoint of "
        f"epoch 1 and the best model so far (epoch {best}): lower the learning rate (learning_rate=0.001, "
        "--learning-rate) and train again with --overwrite, or into another folder")
    assert len(checkpoint_meta(out / CHECKPOINT_FILE)["history"]) == 1
    TrainedExtractor(out)  # whole: its weights match its hash


# --------------------------------------------------------------------------------------------------
# One run at a time per folder


@pytest.mark.parametrize("system_lock", [True, False], ids=["flock", "exclusive-file"])
def test_a_folder_is_held_by_one_run_at_a_time(tmp_path, monkeypatch, system_lock):
    if not system_lock:
        monkeypatch.setattr(output_folder, "fcntl", None)  # as on Windows
    out = tmp_path / "m"
    refusals = []

    def second_run():
        try:
            with OutputLock(out):
                pass
        except FolderBusyError as error:
            refusals.append(str(error))

    with OutputLock(out):
        with OutputLock(out):  # the same run taking it again inside
            pass
        assert lock_path(out).read_text().startswith(f"pid {os.getpid()} on ")
        thread = threading.Thread(target=second_run)
        thread.start()
        thread.join()
    assert len(refusals) == 1 and refusals[0].startswith(f"{out}: another training run is writing it (pid "
                                                         f"{os.getpid()} on ")
    assert not lock_path(out).exists()
    with OutputLock(out):  # free again
        pass


# --------------------------------------------------------------------------------------------------
# A trained model replaced only when asked, whole


@pytest.mark.slow
def test_overwrite_replaces_the_model_whole_or_not_at_all(tiny_catalogue, tmp_path, monkeypatch):
    out = tmp_path / "m"
    train(tiny_catalogue, out, tiny(epochs=1, probe_steps=5), progress=False)
    before = read_trained(out)
    with pytest.raises(ValueError, match="already holds a training checkpoint: resume it .* replace it"):
        train(tiny_catalogue, out, tiny(epochs=1, probe_steps=5), progress=False)

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "probe", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_catalogue, out, tiny(epochs=1, probe_steps=5, seed=4), overwrite=True, progress=False)
    assert read_trained(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    TrainedExtractor(out)

    (out / "notes.txt").write_text("mine\n")
    monkeypatch.setattr(photos, "decoded_images", lambda *a, **k: pytest.fail("decoded before refusing"))
    with pytest.raises(ValueError, match=r"holds files a training run does not write \(notes.txt\), which replacing "
                                         r"it would delete"):
        train(tiny_catalogue, out, tiny(epochs=1, probe_steps=5, seed=4), overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine\n"


# --------------------------------------------------------------------------------------------------
# A full disk


@pytest.mark.slow
def test_a_full_disk_while_saving_the_best_model_keeps_the_previous_one_whole(tiny_catalogue, tmp_path, monkeypatch):
    scores = iter(np.linspace(0.1, 0.9, 9))
    # every epoch is best, and clearly beats the probe
    monkeypatch.setattr(trainer.Trainer, "validation_scores", lambda *args, **kwargs: np.full(5, next(scores)))
    fsync, saves = os.fsync, []

    def full(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(name).startswith(f".{TRAINED_FILE}.") and "/.best." in name:
            saves.append(name)
            if len(saves) == 2:  # the best model of epoch 1 (the probe's was the first)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "m"
    with pytest.raises(OutputWriteError) as failed:
        train(tiny_catalogue, out, tiny(), progress=False)
    assert failed.value.errno == errno.ENOSPC
    assert str(failed.value) == (f"could not write the best model (epoch 1) in {out} (No space left on device): the "
                                 "folder keeps the best model so far (epoch 0), each whole; free some space (or fix "
                                 "the folder) and train again")
    assert sorted(p.name for p in out.iterdir()) == sorted([TRAINED_FILE, WEIGHTS_FILE])
    assert read_trained(out)["best_epoch"] == 0
    TrainedExtractor(out)


# --------------------------------------------------------------------------------------------------
# Checkpoints that cannot be read


def test_checkpoints_of_other_kinds_are_named_and_never_unpickled(tmp_path):
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"single\.npz: is a single NumPy array, not a checkpoint archive; start "
                                              r"again with --overwrite"):
        checkpoint_meta(single)
    pickled_meta = tmp_path / "pickled.npz"
    np.savez(pickled_meta, meta=np.array([{"settings": {}}], dtype=object), model_0=np.zeros(2))
    with pytest.raises(CheckpointError, match=r"pickled\.npz: its meta record holds pickled data, never loaded"):
        checkpoint_meta(pickled_meta)
    not_json = tmp_path / "not_json.npz"
    np.savez(not_json, meta=np.array("{settings"), model_0=np.zeros(2))
    with pytest.raises(CheckpointError, match=r"not_json\.npz: its meta record is not JSON"):
        checkpoint_meta(not_json)
    no_weights = tmp_path / "no_weights.npz"
    meta = {key: {} if key == "settings" else [] for key in trainer.CHECKPOINT_META}
    np.savez(no_weights, meta=np.array(json.dumps(meta)))
    with pytest.raises(CheckpointError, match=r"no_weights\.npz: lacks its weights \(model_0, optimizer_0\)"):
        checkpoint_meta(no_weights)
