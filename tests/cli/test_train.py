"""``python -m cbir_tutorial train``: fine-tuning on a folder catalogue of real photos, refused over a checkpoint
and resumed with ``--resume``; a protocol reports the frozen, projected and fine-tuned models."""

import json

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.cli import main
from cbir_tutorial.models.trained import read_trained
from cbir_tutorial.training.report import trained_model_name
from cbir_tutorial.training.trainer import CHECKPOINT_FILE

TINY = ["--format", "folder", "--preset", "cpu", "--image-size", "32", "--embedding-dim", "8", "--no-progress",
        "--loss", "multi-similarity"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory, sample_catalogue):
    """A folder catalogue of 3 categories × 8 real photos (category = sub-folder)."""
    root = tmp_path_factory.mktemp("shop")
    table = sample_catalogue.table
    for category in ("Tshirts", "Watches", "Handbags"):
        (root / category).mkdir()
        for path in table.loc[table["category"] == category, "path"].iloc[:8]:
            (root / category / path.rsplit("/", 1)[-1]).write_bytes(open(path, "rb").read())
    return root


def checkpoint(folder):
    with np.load(folder / CHECKPOINT_FILE) as state:
        return {k: state[k] for k in state.files if k != "meta"}


@pytest.mark.slow
def test_train_then_resume_carries_on_from_the_checkpoint(shop, tmp_path, capsys):
    """The command line's side of resuming: a folder holding a checkpoint is refused without ``--resume`` and
    carried on with it. That the resumed run repeats an uninterrupted one, weight for weight, is
    tests/training/test_trainer.py's ``test_resume_continues_as_an_uninterrupted_run`` (the same ``train``)."""
    split = tmp_path / "split"
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "1", "--out", str(split)]) == 0
    first = checkpoint(split)
    assert len(read_trained(split)["history"]) == 1
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "2", "--out", str(split)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--catalogue", str(shop), *TINY, "--epochs", "2", "--out", str(split), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "best epoch" in out and "frozen efficientnet_lite0 features" in out and "Trained model written to" in out
    assert [h["epoch"] for h in read_trained(split)["history"]] == [1, 2]
    moved = [key for key in first if not np.array_equal(checkpoint(split)[key], first[key])]
    assert moved, "the resumed epoch changed no weight of the checkpoint"


@pytest.mark.parametrize("options, message", [
    (["--loss", "triplet"], "--loss 'triplet' is not supported"),
    (["--protocol", "unseen-shops"], "--protocol 'unseen-shops' is not supported"),
    (["--backbone", "alexnet"], "Unknown backbone"),
])
def test_train_errors_are_one_line(shop, tmp_path, capsys, options, message):
    status = main(["train", "--catalogue", str(shop), "--format", "folder", "--out", str(tmp_path / "m"), *options])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_with_a_protocol_reports_the_three_models(shop, tmp_path, capsys):
    out = tmp_path / "m"
    status = main(["train", "--catalogue", str(shop), *TINY, "--epochs", "1", "--out", str(out),
                   "--protocol", "unseen-products", "--no-cache"])
    printed = capsys.readouterr().out
    assert status == 0 and "unseen products of seen categories" in printed
    rows = json.loads((out / "report.json").read_text())
    trained = read_trained(out)  # an epoch beat the probe (fine-tuned) or the probe was kept
    assert [r["model"] for r in rows] == ["frozen efficientnet_lite0", "projection head",
                                          trained_model_name(trained)]
    assert rows[-1]["model"] == ("fine-tuned (multi-similarity)" if trained["best_epoch"] else "probe kept (refitted)")
    for row in rows:
        assert row["n_test"] == 12  # half of each category's 8 photos held out
        assert 0 <= row["map_at_10"] <= 1
        assert all(0 <= row[f"{kind}_recall@{k}"] <= 1 for kind in ("crop", "colour", "scale") for k in (1, 10))
        assert row["crop_recall@1"] <= row["crop_recall@10"]
    # ready extractors (a notebook reporting several protocols builds each model once) give the same table
    from cbir_tutorial.data.loaders import load_catalogue
    from cbir_tutorial.models.features import FeatureExtractor
    from cbir_tutorial.models.trained import load_trained
    from cbir_tutorial.training.protocols import unseen_products_split
    from cbir_tutorial.training.report import protocol_report

    catalogue = load_catalogue(str(shop), "folder")
    again = protocol_report(catalogue, unseen_products_split(catalogue.labels, seed=0), load_trained(out),
                            frozen=FeatureExtractor("efficientnet_lite0"), cache=False)
    pd.testing.assert_frame_equal(again, pd.DataFrame(rows), check_dtype=False, atol=1e-6)
