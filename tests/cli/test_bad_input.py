"""Bad input to the command line is one error line naming the option or file and the fix, exit status 2, with
nothing written half: numbers out of range, a file given for a folder, an option that does not apply, a
training folder in use or holding a model, a checkpoint that cannot be resumed, a run that diverges, a full
disk. What was used instead of what was asked (``--limit``, ``--out``) is printed."""

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cbir_tutorial.cli import main
from cbir_tutorial.models.trained import TRAINED_FILE, WEIGHTS_FILE, read_trained
from cbir_tutorial.training import photos
from cbir_tutorial.training.output_folder import lock_path
from cbir_tutorial.training.trainer import CHECKPOINT_FILE
from run_folders import made_once

TINY = ["--format", "folder", "--preset", "cpu", "--image-size", "32", "--embedding-dim", "8", "--no-progress",
        "--loss", "multi-similarity", "--epochs", "1"]


def one_error_line(capsys) -> str:
    return error_line(capsys.readouterr().err)


def error_line(err: str) -> str:
    """The one line of ``err`` (progress bars, rewritten in place with ``\\r``, left out)."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in err.split("\n")]
    lines = [line for line in lines if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def copy_photos(root, sample_catalogue, per_category: dict[str, int]):
    """A folder catalogue of real sample photos: ``{category: how many}``, one sub-folder each."""
    table = sample_catalogue.table
    for category, n in per_category.items():
        (root / category).mkdir(parents=True)
        for path in table.loc[table["category"] == category, "path"].iloc[:n]:
            (root / category / os.path.basename(path)).write_bytes(open(path, "rb").read())
    return root


@pytest.fixture(scope="module")
def shop(tmp_path_factory, sample_catalogue):
    """3 categories × 8 real photos, one folder for every worker (:func:`finished_run` records its path)."""
    per_category = {"Tshirts": 8, "Watches": 8, "Handbags": 8}
    return made_once(tmp_path_factory, "bad-input-shop",
                     lambda folder: copy_photos(folder / "shop", sample_catalogue, per_category))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fails a test that decodes a photo to train: a refusal must come before that work."""
    def decoded(*args, **kwargs):
        raise AssertionError("photos were decoded before the refusal")

    monkeypatch.setattr(photos, "decoded_images", decoded)


# --------------------------------------------------------------------------------------------------
# Numbers out of range


@pytest.mark.parametrize("argv, expected", [
    (["train", "--seed", "-1"], "argument --seed: -1 is out of range: expected a whole number from 0 to 4294967295"),
    (["train", "--embedding-dim", "0"], "argument --embedding-dim: 0 is out of range: expected a whole number from 1 "
                                        "to 8192"),
    (["train", "--image-size", "-5"], "argument --image-size: -5 is out of range: expected a whole number from 32 "
                                      "to 1024"),
    (["train", "--image-size", "0"], "argument --image-size: 0 is out of range"),
    (["train", "--image-size", "30000"], "argument --image-size: 30000 is out of range"),
    (["train", "--image-size", "big"], "argument --image-size: 'big': expected a whole number from 32 to 1024"),
    (["train", "--limit", "-5"], "argument --limit: -5 is out of range: expected a whole number, 1 or more"),
    (["evaluate", "--limit", "0"], "argument --limit: 0 is out of range: expected a whole number, 1 or more"),
    (["search", "--k", "0", "--query", "q.jpg"], "argument --k: 0 is out of range"),
    (["train", "--epochs", "0"], "argument --epochs: 0 is out of range"),
    (["train", "--learning-rate", "-1"], "argument --learning-rate: '-1': expected a positive number"),
    (["train", "--photos", "back"], "argument --photos: invalid choice: 'back'"),
])
def test_numbers_out_of_range_name_the_option_and_its_range(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--catalogue", "/no/such/catalogue"])
    assert exit.value.code == 2
    err = one_error_line(capsys)
    assert expected in err and f"python -m cbir_tutorial {argv[0]} --help" in err


# --------------------------------------------------------------------------------------------------
# Catalogues and the options that choose in them


def test_a_file_is_not_a_catalogue(tmp_path, sample_catalogue, capsys):
    a_file = tmp_path / "hostname"
    a_file.write_text("shop-server\n")
    status = main(["search", "--catalogue", str(a_file), "--query", sample_catalogue.paths[0]])
    assert status == 2
    assert f"--catalogue {a_file} is a file: give the catalogue's folder" in one_error_line(capsys)


def test_photos_applies_only_to_farfetch_listings(shop, capsys):
    assert main(["evaluate", "--catalogue", str(shop), "--format", "folder", "--photos", "model", "--no-cache"]) == 2
    assert "--photos model applies only to Farfetch listings" in one_error_line(capsys)


def test_nothing_to_evaluate_exits_2_the_same_way_with_json(tmp_path, sample_catalogue, capsys):
    lonely = copy_photos(tmp_path / "lonely", sample_catalogue, {"Tshirts": 1, "Watches": 1})
    argv = ["evaluate", "--catalogue", str(lonely), "--format", "folder", "--no-cache"]
    assert main(argv) == 2
    text = one_error_line(capsys)
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert error_line(captured.err) == text and captured.out == ""  # nothing where the JSON would be
    assert "no category has 2 or more products among the 2 images" in text


@pytest.mark.slow
def test_limit_prints_how_many_products_it_used(shop, capsys):
    assert main(["evaluate", "--catalogue", str(shop), "--format", "folder", "--limit", "3", "--k", "2",
                 "--no-cache"]) == 0
    assert ("--limit 3: 6 products used (at least 2 of each of its 3 categories are kept, the rest in proportion)"
            in capsys.readouterr().out)
    assert main(["evaluate", "--catalogue", str(shop), "--format", "folder", "--limit", "100", "--k", "2",
                 "--no-cache"]) == 0
    assert "--limit 100: 24 products used (the catalogue has 24)" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# search --out


def test_search_out_refuses_a_folder_before_indexing(shop, tmp_path, capsys, monkeypatch):
    from cbir_tutorial import cli

    monkeypatch.setattr(cli, "_catalogue", lambda args: pytest.fail("indexed before refusing --out"))
    query = next(shop.glob("Watches/*.jpg"))
    assert main(["search", "--catalogue", str(shop), "--query", str(query), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path} is a folder: give the file to write" in one_error_line(capsys)
    assert not tmp_path.with_name(tmp_path.name + ".png").exists()
    assert main(["search", "--catalogue", str(shop), "--query", str(query), "--out", str(tmp_path / "grid.txt")]) == 2
    assert ".txt is not an image type matplotlib writes; end the name with .png" in one_error_line(capsys)


def test_search_out_without_a_suffix_prints_the_file_it_wrote(shop, tmp_path, capsys):
    query = next(shop.glob("Watches/*.jpg"))
    assert main(["search", "--catalogue", str(shop), "--format", "folder", "--query", str(query), "--k", "3",
                 "--no-cache", "--out", str(tmp_path / "grid")]) == 0
    written = tmp_path / "grid.png"
    assert written.stat().st_size > 1000 and not (tmp_path / "grid").exists()
    assert f"Result grid written to {written.resolve()}\n" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# train: what the catalogue must hold


def test_one_category_is_refused_before_any_work(tmp_path, sample_catalogue, capsys, no_decoding):
    one = copy_photos(tmp_path / "one", sample_catalogue, {"Watches": 8})
    assert main(["train", "--catalogue", str(one), *TINY, "--out", str(tmp_path / "m")]) == 2
    err = one_error_line(capsys)
    assert "metric learning needs products of at least 2 categories; found 1 (Watches, 8 products)" in err
    assert not (tmp_path / "m").exists()


def test_small_categories_say_which_split_needs_what(shop, tmp_path, capsys, no_decoding):
    assert main(["train", "--catalogue", str(shop), *TINY, "--limit", "1", "--out", str(tmp_path / "m")]) == 2
    captured = capsys.readouterr()
    assert "--limit 1: 6 products used (at least 2 of each of its 3 categories" in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert ("the validation split (held-out products of the training categories, validation_by='products') of 6 "
            "products in 3 categories (the largest has 2): no category has 4+ products" in err)
    assert "2 of a category to test and 2 to train" in err and "give more products per category" in err
    assert main(["train", "--catalogue", str(shop), *TINY, "--protocol", "unseen-products", "--limit", "1",
                 "--out", str(tmp_path / "m")]) == 2
    assert "--protocol unseen-products: no category has 4+ products (the largest of the 3 categories has 2)" in \
        one_error_line(capsys)


def test_no_readable_photo_says_so_with_the_reasons(tmp_path, capsys):
    for category in ("bags", "shoes"):
        (tmp_path / "broken" / category).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "broken" / category / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a photo")
    assert main(["train", "--catalogue", str(tmp_path / "broken"), *TINY, "--out", str(tmp_path / "m")]) == 2
    err = one_error_line(capsys)
    assert "none of the 8 photos to train on could be read: " in err and "0.jpg" in err and "(and 5 more)" in err
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------------------
# train --out


def test_out_a_file_under_a_file_or_read_only_is_refused_before_any_work(shop, tmp_path, capsys, no_decoding):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    assert main(["train", "--catalogue", str(shop), *TINY, "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file, not a folder" in one_error_line(capsys)
    assert main(["train", "--catalogue", str(shop), *TINY, "--out", str(a_file / "run")]) == 2
    assert f"--out {a_file / 'run'}: {a_file} is a file, not a folder" in one_error_line(capsys)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root writes anywhere the file system lets it: take a read-only one
        read_only = next((p for p in ("/sys", "/proc/sys") if os.path.isdir(p) and not writable(p)), None)
        if read_only is None:
            pytest.skip("no read-only folder for this user")
    assert main(["train", "--catalogue", str(shop), *TINY, "--out", f"{read_only}/run"]) == 2
    err = one_error_line(capsys)
    assert f"--out {read_only}/run: cannot be written (it would be made in {read_only})" in err
    assert a_file.read_text() == "mine\n"


def writable(folder) -> bool:
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_first(shop, tmp_path, capsys, no_decoding):
    out = tmp_path / "m"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cbir_tutorial.training.output_folder import OutputLock\n"
                               "with OutputLock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(["train", "--catalogue", str(shop), *TINY, "--out", str(out)]) == 2
        err = one_error_line(capsys)
        assert f"--out {out}: another training run is writing it (pid {holder.pid} on " in err
        assert f"lock file {lock_path(out)}" in err and "wait for it to end, or train into another folder" in err
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_a_trained_model_is_replaced_only_with_overwrite(shop, finished_run, tmp_path, capsys):
    out = tmp_path / "m"
    shutil.copytree(finished_run, out)  # the same tiny run, trained once for the module
    (out / CHECKPOINT_FILE).unlink()  # a trained model folder, as copied or shared without its checkpoint
    before = read_trained(out)
    capsys.readouterr()
    for resume in ([], ["--resume"]):
        assert main(["train", "--catalogue", str(shop), *TINY, "--seed", "3", "--out", str(out), *resume]) == 2
        err = one_error_line(capsys)
        assert f"--out {out}: holds a trained model ({TRAINED_FILE}, {WEIGHTS_FILE})" in err
        assert "replace it with --overwrite" in err
    assert main(["train", "--catalogue", str(shop), *TINY, "--out", str(out), "--resume", "--overwrite"]) == 2
    assert "--resume carries on from the checkpoint in --out, --overwrite replaces it: choose one" in \
        one_error_line(capsys)
    assert read_trained(out) == before
    assert main(["train", "--catalogue", str(shop), *TINY, "--seed", "3", "--out", str(out), "--overwrite"]) == 0
    after = read_trained(out)
    assert after["settings"]["seed"] == 3 and after["weights_hash"] != before["weights_hash"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no sibling left: no temporary folder, no lock


@pytest.mark.slow
def test_resume_refuses_another_catalogue_naming_both(shop, finished_run, tmp_path, capsys, sample_catalogue):
    out = tmp_path / "m"
    shutil.copytree(finished_run, out)  # the same tiny run, trained once for the module
    smaller = copy_photos(tmp_path / "smaller", sample_catalogue, {"Tshirts": 7, "Watches": 8, "Handbags": 8})
    capsys.readouterr()
    assert main(["train", "--catalogue", str(smaller), *TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = one_error_line(capsys)
    assert f"{out / CHECKPOINT_FILE}: was made on another catalogue (it was made on " in err
    assert "this catalogue gives " in err and "only in the checkpoint's: 'Tshirts/" in err
    assert "resume with the one it was made on (the same --catalogue, --limit and --seed)" in err


# --------------------------------------------------------------------------------------------------
# train --resume with a checkpoint that cannot be resumed


@pytest.fixture(scope="module")
def finished_run(shop, tmp_path_factory):
    """The folder of one tiny finished run (1 epoch), its checkpoint kept: trained once per run, whichever worker
    asks first. Tests work on a copy."""
    def finished(folder):
        assert main(["train", "--catalogue", str(shop), *TINY, "--out", str(folder / "m")]) == 0
        return folder / "m"

    return made_once(tmp_path_factory, "bad-input-finished", finished)


def rewritten_checkpoint(path, change):
    with np.load(path) as state:
        arrays = {k: state[k] for k in state.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(meta, arrays)
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def truncated(path):
    path.write_bytes(path.read_bytes()[:5000])


def empty(path):
    path.write_bytes(b"")


def missing_keys(path):
    rewritten_checkpoint(path, lambda meta, arrays: meta.pop("bad_epochs"))


def unknown_setting(path):
    rewritten_checkpoint(path, lambda meta, arrays: meta["settings"].update(dropout=0.5))


def a_directory(path):
    path.unlink()
    path.mkdir()


def pickled(path):
    path.write_bytes(pickle.dumps({"meta": "{}"}))


@pytest.mark.parametrize("damage, problem", [
    (truncated, "is not a whole .npz archive (File is not a zip file: truncated?)"),
    (empty, "is empty (a run killed while creating it?)"),
    (missing_keys, "its meta record lacks bad_epochs"),
    (unknown_setting, "records settings this version does not know (dropout)"),
    (a_directory, "is a folder, not a checkpoint file"),
    (pickled, "is not an .npz archive: a pickle, or another kind of file, which is never loaded"),
])
def test_a_checkpoint_that_cannot_be_resumed_is_refused_before_any_work(finished_run, shop, tmp_path, capsys,
                                                                         no_decoding, damage, problem):
    import shutil

    out = tmp_path / "m"
    shutil.copytree(finished_run, out)
    damage(out / CHECKPOINT_FILE)
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {out / CHECKPOINT_FILE}: {problem}")
    assert err.endswith("start again with --overwrite (overwrite=True) instead of --resume, or train into another "
                        "folder")


# --------------------------------------------------------------------------------------------------
# train: a run that fails part way


def test_a_diverged_run_stops_at_once_and_saves_nothing(shop, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["train", "--catalogue", str(shop), *TINY, "--learning-rate", "1e30", "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert "error: training diverged at the probe's " in err and "; nothing was saved: " in err
    assert "lower the learning rate (learning_rate=1e+30, --learning-rate) and train again" in err
    assert not out.exists()


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_keeps_the_folder_whole(shop, finished_run, tmp_path, capsys, monkeypatch):
    """The checkpoint of epoch 2 meets a full disk: the folder keeps epoch 1's checkpoint and the best model, both
    whole, and a resumed run carries on from there."""
    out = tmp_path / "m"
    shutil.copytree(finished_run, out)  # the same tiny run, trained once for the module
    fsync = os.fsync

    def full(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f".{CHECKPOINT_FILE}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    capsys.readouterr()
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 2
    err = one_error_line(capsys)
    assert f"could not write the checkpoint of epoch 2 in {out} (No space left on device): the folder keeps " \
           "the checkpoint of epoch 1 and the best model so far (epoch " in err
    assert "each whole; free some space (or fix the folder) and resume (--resume) to carry on" in err
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_FILE, TRAINED_FILE, WEIGHTS_FILE])
    with np.load(out / CHECKPOINT_FILE) as state:
        assert len(json.loads(str(state["meta"]))["history"]) == 1
    read_trained(out)
    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert [h["epoch"] for h in read_trained(out)["history"]] == [1, 2]
