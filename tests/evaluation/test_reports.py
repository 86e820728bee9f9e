"""The recipe reports of notebook 8: the two halves, the per-query scores, each step's paired verdict, the bar
chart, and the command line printing the same MAP@K as the recipe table."""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.evaluation.reports import (BUILDS_ON, half_masks, halves, per_query_scores, readable,
                                              recipe_table, step_verdicts, steps_that_hold)
from cbir_tutorial.search.recipes import RECIPES
from cbir_tutorial.ui.plotting import grouped_bars_figure


def test_the_halves_are_even_and_odd_product_ids(sample_catalogue):
    tuning, report = half_masks(sample_catalogue)
    ids = sample_catalogue.table["id"].astype(int).to_numpy()
    assert (ids[tuning] % 2 == 0).all() and (ids[report] % 2 == 1).all() and (tuning ^ report).all()
    first, second = halves(sample_catalogue)
    assert len(first) == tuning.sum() and len(second) == report.sum()


def test_ids_that_are_not_whole_numbers_are_split_by_their_hash():
    """A folder of images has paths for ids ("bags/10004"): notebook 8 crashed on them (review 9)."""
    import types

    paths = [f"{folder}/{n}" for folder in ("bags", "shirts") for n in range(10000, 10020)]
    tuning, report = half_masks(types.SimpleNamespace(table=pd.DataFrame({"id": paths})))
    assert (tuning ^ report).all() and 12 <= tuning.sum() <= 28  # about half, not all on one side
    assert tuning.tolist() == half_masks(types.SimpleNamespace(table=pd.DataFrame({"id": paths})))[0].tolist()
    numbers = types.SimpleNamespace(table=pd.DataFrame({"id": ["10004", 10005, 10006.0, "x"]}))
    assert half_masks(numbers)[0].tolist()[:3] == [True, False, True]


def test_every_named_recipe_but_the_baseline_builds_on_a_named_recipe():
    assert set(BUILDS_ON) == set(RECIPES) - {"baseline"} and set(BUILDS_ON.values()) <= set(RECIPES)


def test_each_step_is_compared_with_the_one_before_and_with_the_baseline():
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.2, 0.8, 300)
    scores = {"baseline": baseline, "gem": baseline + 0.05 + rng.normal(0, 0.01, 300),  # a clear gain
              "gem+flip": baseline + 0.05 + rng.normal(0, 0.2, 300)}  # no gain over gem, a noisy one over baseline
    table = step_verdicts(scores, k=10)
    assert table.index.tolist() == [("gem", "baseline"), ("gem+flip", "gem"), ("gem+flip", "baseline")]
    assert table["against"].tolist() == ["its step", "its step", "baseline"]
    assert list(table.columns) == ["MAP@10 difference", "low", "high", "verdict", "against"]
    assert table.loc[("gem", "baseline"), "verdict"] == "gem better"
    assert table.loc[("gem+flip", "gem"), "verdict"] == "no clear difference"
    assert steps_that_hold(table) == ["gem"]


def test_bars_side_by_side_with_their_values():
    table = pd.DataFrame({"recipe": ["baseline", "best"], "map_all": [0.73, 0.75], "map_report": [0.70, 0.73]})
    fig = grouped_bars_figure(table, "recipe", {"map_all": "whole", "map_report": "report half"}, ylabel="MAP@10",
                              title="recipes")
    ax = fig.axes[0]
    assert [round(b.get_height(), 2) for b in ax.patches] == [0.73, 0.75, 0.70, 0.73]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "best"]
    assert ax.get_ylim() == pytest.approx((0.0, 1.0)), "bars start at 0: their heights compare as their values"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["whole", "report half"]


def test_the_command_line_and_the_per_query_scores_agree_with_the_recipe_table(sample_catalogue):
    """What notebook 8 prints as its recipe table is what ``evaluate --recipe NAME --json`` prints, on the whole
    catalogue and with ``--half report`` on the report half."""
    from cbir_tutorial.cli import main

    catalogue = sample_catalogue.stratified_sample(60, seed=0)  # what --limit 60 indexes
    names = ["baseline", "gem+flip+whiten"]
    table = recipe_table(catalogue, names, "efficientnet_lite0", k=5, parts=("all", "report")).set_index("recipe")
    scores = per_query_scores(catalogue, names, "efficientnet_lite0", k=5)
    for name in names:
        for half, column in (("all", "map_all"), ("report", "map_report")):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert main(["evaluate", "--recipe", name, "--backbone", "efficientnet_lite0", "--catalogue", "sample",
                             "--k", "5", "--json", "--limit", "60", "--half", half]) == 0
            printed = json.loads(out.getvalue())
            assert printed["map_at_k"] == pytest.approx(table.loc[name, column], abs=1e-4), (name, half)
        assert scores[name].mean() == pytest.approx(table.loc[name, "map_all"], abs=1e-6), name
    assert len({len(a) for a in scores.values()}) == 1


def test_a_readable_table_is_indexed_by_its_rows_named_in_words_and_has_no_negative_zero():
    table = pd.DataFrame({"recipe": ["baseline", "gem"], "steps": ["-", "GeM"], "map_all": [0.73012, 0.7449],
                          "map_tuning": [0.7, 0.71], "map_report": [0.75, 0.76]})
    shown = readable(table, k=10)
    assert shown.index.name == "recipe" and shown.index.tolist() == ["baseline", "gem"]
    assert shown.columns.tolist() == ["steps", "MAP@10, whole", "MAP@10, tuning half", "MAP@10, report half"]
    assert shown.loc["gem", "MAP@10, whole"] == 0.745 and table["map_all"].iloc[1] == 0.7449  # a copy
    verdicts = pd.DataFrame({"MAP@10 difference": [-0.0002, 0.01], "low": [-0.0004, 0.002], "verdict": ["-", "a"]},
                            index=pd.MultiIndex.from_tuples([("a", "b"), ("c", "d")], names=["first", "second"]))
    low = readable(verdicts)["low"]
    assert low.iloc[0] == 0 and str(low.iloc[0]) == "0.0" and readable(verdicts).index.names == ["first", "second"]
    head = pd.DataFrame({"gallery": ["seen"], "n_images": [12], "backbone_map": [0.5], "head_map": [0.6],
                         "gain": [0.1]})
    assert readable(head).columns.tolist() == ["products", "backbone MAP@10", "head MAP@10", "gain"]
    assert readable(head)["products"].dtype.kind == "i"


def test_a_readable_metrics_table_names_its_columns_and_leaves_out_the_constant_k():
    scores = pd.DataFrame({"category": ["(all)", "Bags"], "n_queries": [10, 4], "n_relevant_mean": [3.5, 2.0],
                           "precision_at_k": [0.5, 0.25], "recall_at_k": [0.6, 0.5], "map_at_k": [0.41234, 0.3],
                           "k": [10, 10]})
    shown = readable(scores, k=10)
    assert shown.index.name == "category" and shown.columns.tolist() == [
        "queries", "relevant per query", "P@10", "R@10", "MAP@10"]
    assert shown.loc["(all)", "MAP@10"] == 0.412 and shown["queries"].dtype.kind == "i"
    assert readable(scores.assign(n_relevant_mean=[117.0667, 2.0]))["relevant per query"].tolist() == [117.1, 2.0]
    assert "k" in readable(scores, k=5).columns  # a k that is not the one named: kept
    report = pd.DataFrame({"n_test": [380], "map_at_10": [0.71], "crop_recall@1": [0.94]},
                          index=pd.MultiIndex.from_tuples([("unseen-products", "frozen")], names=["protocol", "model"]))
    assert readable(report).columns.tolist() == ["test products", "MAP@10", "crop R@1"]
