"""``--recipe`` of ``evaluate``, ``search`` and ``demo``: a named recipe brings its own backbones (no ``--backbone``,
offline), a trained model's folder its fine-tuned embedding; the JSON names the recipe and its steps; bad names
exit 2. How much each recipe gains is measured by ``benchmarks/bench_quality.py`` and
``benchmarks/choose_recipe.py``, not here."""

from __future__ import annotations

import json

import pytest

from cbir_tutorial.cli import main
from cbir_tutorial.models.trained import read_trained, trained_model_name


def evaluate_json(capsys, *extra):
    status = main(["evaluate", "--catalogue", "sample", "--k", "10", "--json", *extra])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.slow
def test_best_recipe_runs_offline_without_a_backbone(capsys):
    baseline = evaluate_json(capsys, "--recipe", "baseline", "--limit", "120")
    best = evaluate_json(capsys, "--recipe", "best", "--limit", "120")
    assert (baseline["recipe"], baseline["steps"], baseline["half"]) == ("baseline", [], "all")
    assert best["recipe"] == "best" and best["steps"] == ["GeM pooling (p=3)", "flip TTA",
                                                          "fusion with efficientnet_lite2 (weight 1)",
                                                          "DBA (n=1, alpha=3)", "alpha-QE (n=2, alpha=3)"]
    assert best["backbone"] == baseline["backbone"] == "efficientnet_lite0" and best["weights"] == "imagenet"
    assert best["n_images"] == baseline["n_images"] >= 120 and 0 < best["map_at_k"] <= 1  # --limit: by category


def test_unknown_recipe_is_a_one_line_error(capsys):
    status = main(["evaluate", "--catalogue", "sample", "--recipe", "fastest"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: --recipe: recipe='fastest' is neither a recipe nor a trained "
                                          "model's folder: choose one of baseline, ")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_the_command_line_takes_a_trained_folder_as_recipe(trained_folder, sample_dir, capsys):
    options = ["--catalogue", "sample", "--limit", "30", "--no-cache", "--recipe", str(trained_folder)]
    assert main(["evaluate", *options, "--json", "--k", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recipe"] == trained_folder.name and report["weights"] == str(trained_folder.resolve())
    assert report["steps"] == [f"fine-tuned embedding from {trained_folder.resolve()}"]
    assert report["n_images"] >= 30 and 0 <= report["map_at_k"] <= 1

    query = str(sorted((sample_dir / "images").glob("*.jpg"))[5])
    assert main(["search", *options, "--query", query, "--k", "3"]) == 0
    out = capsys.readouterr().out
    # the extractor says what the folder's model is: fine-tuned with its loss, or the probe kept
    assert "Top 3 of" in out and "TrainedExtractor" in out
    assert trained_model_name(read_trained(trained_folder)) in out

    assert main(["evaluate", *options, "--weights", "random"]) == 2
    assert "brings its own weights; leave --weights out" in capsys.readouterr().err
    assert main(["evaluate", "--recipe", "bestest", "--limit", "30"]) == 2
    err = capsys.readouterr().err
    assert "--recipe: recipe='bestest' is neither" in err and "baseline" in err and "trained.json" in err
