"""``python -m cbir_tutorial evaluate --recipe NAME``: the recipe brings its own backbones (no ``--backbone``,
offline), the JSON names the recipe and its steps; bad names exit 2. How much each recipe gains is measured
by ``benchmarks/bench_quality.py`` and ``benchmarks/choose_recipe.py``, not here."""

from __future__ import annotations

import json

from cbir_tutorial.cli import main


def _evaluate_json(capsys, *extra):
    status = main(["evaluate", "--catalogue", "sample", "--k", "10", "--json", *extra])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def test_best_recipe_runs_offline_without_a_backbone(capsys):
    baseline = _evaluate_json(capsys, "--recipe", "baseline", "--limit", "120")
    best = _evaluate_json(capsys, "--recipe", "best", "--limit", "120")
    assert (baseline["recipe"], baseline["steps"], baseline["half"]) == ("baseline", [], "all")
    assert best["recipe"] == "best" and best["steps"] == ["GeM pooling (p=3)", "flip TTA",
                                                          "fusion with efficientnet_lite2 (weight 1)",
                                                          "DBA (n=1, alpha=3)", "alpha-QE (n=2, alpha=3)"]
    assert best["backbone"] == baseline["backbone"] == "efficientnet_lite0" and best["weights"] == "imagenet"
    assert best["n_images"] == baseline["n_images"] >= 120 and 0 < best["map_at_k"] <= 1  # --limit: by category


def test_half_evaluates_one_half_only(capsys):
    result = _evaluate_json(capsys, "--half", "report")
    assert result["half"] == "report" and 300 < result["n_images"] < 470 and result["recipe"] == "baseline"


def test_unknown_recipe_is_a_one_line_error(capsys):
    status = main(["evaluate", "--catalogue", "sample", "--recipe", "fastest"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: --recipe: recipe='fastest' is neither a recipe nor a trained "
                                          "model's folder: choose one of baseline, ")
    assert err.count("\n") == 1
