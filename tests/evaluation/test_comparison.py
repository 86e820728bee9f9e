"""Per-query scores agree with evaluate(); the paired bootstrap, the top-K confusion and the failure sentence
on hand-made cases."""

import numpy as np
import pytest

from cbir_tutorial.evaluation.comparison import (failure_reason, most_confused, paired_bootstrap, paired_verdicts,
                                                 per_query, query_rows, top_k_confusion)
from cbir_tutorial.evaluation.metrics import evaluate
from cbir_tutorial.search.backends import make_index


def toy():
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["", "", "", "solo"], dtype=object)
    centres = {"a": 0, "b": 3, "c": 6, "": 9, "solo": 12}
    features = np.stack([np.full(4, centres[l]) + rng.normal(scale=2.0, size=4) for l in labels])
    return make_index("exact", features), labels


def test_per_query_matches_evaluate_and_leaves_out_unlabelled_and_lonely_products():
    index, labels = toy()
    table = per_query(index, labels, k=5)
    assert table["ap_at_k"].mean() == pytest.approx(evaluate(index, labels, 5).iloc[0]["map_at_k"])
    assert set(table["category"]) == {"a", "b", "c"} and len(table) == 12  # three "" and "solo" are not queries
    rows, n_relevant = query_rows(labels)
    assert rows.tolist() == table["row"].tolist() and n_relevant.tolist() == [4] * 5 + [3] * 4 + [2] * 3
    assert all(len(found) == 5 and row not in found for row, found in zip(table["row"], table["found"]))


def test_paired_bootstrap_cancels_what_two_systems_share():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 1, 400)  # very different queries...
    a, b = difficulty + 0.02, difficulty  # ...and a constant, small gain
    paired = paired_bootstrap(a, b)
    assert paired["difference"] == pytest.approx(0.02)
    assert paired["low"] == pytest.approx(0.02) and paired["high"] == pytest.approx(0.02)
    unpaired_half_width = 1.96 * np.sqrt(a.var(ddof=1) / 400 + b.var(ddof=1) / 400)
    assert unpaired_half_width > 0.02  # unpaired intervals would call it noise
    noise = paired_bootstrap(rng.normal(size=300), rng.normal(size=300), seed=3)
    assert noise["low"] < 0 < noise["high"] and noise["n_queries"] == 300 and noise["level"] == 0.95
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap([1, 2, 3], [1, 2])


def test_paired_verdicts_compare_every_pair_and_name_the_better_system():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0, 1, 300)
    scores = {"strong": difficulty + 0.05, "weak": difficulty, "twin": difficulty + rng.normal(scale=0.01, size=300)}
    table = paired_verdicts(scores, difference="MAP@10 difference")
    assert table.index.tolist() == [("strong", "weak"), ("strong", "twin"), ("weak", "twin")]
    assert table.columns.tolist() == ["MAP@10 difference", "low", "high", "verdict"]
    assert table["verdict"].tolist() == ["strong better", "strong better", "no clear difference"]
    assert table.loc[("strong", "weak"), "MAP@10 difference"] == pytest.approx(0.05)
    one = paired_bootstrap(scores["weak"], scores["strong"], seed=0)
    reverse = paired_verdicts(scores, [("weak", "strong")])
    assert reverse.iloc[0].tolist() == [pytest.approx(one["difference"]), one["low"], one["high"], "strong better"]
    with pytest.raises(KeyError, match="no scores for \\['nope'\\]"):
        paired_verdicts(scores, [("strong", "nope")])


def test_top_k_confusion_rows_sum_to_one_and_the_diagonal_is_precision():
    queries = ["shirt", "shirt", "bag"]
    results = [["shirt", "top", "top"], ["shirt", "shirt", "top"], ["bag", "bag", "shirt"]]
    table = top_k_confusion(queries, results)
    assert table.index.tolist() == ["bag", "shirt"] and table.columns.tolist() == ["bag", "shirt", "top"]
    assert np.allclose(table.sum(axis=1), 1)
    assert table.loc["shirt", "shirt"] == pytest.approx(3 / 6) and table.loc["shirt", "top"] == pytest.approx(3 / 6)
    assert top_k_confusion(queries, results, normalise=False).loc["bag", "bag"] == 2
    worst = most_confused(table, 2)
    assert worst.iloc[0].tolist() == ["shirt", "top", pytest.approx(0.5)]
    assert worst.iloc[1].tolist() == ["bag", "shirt", pytest.approx(1 / 3)]


def test_failure_reason_names_the_confusion_and_a_small_category():
    assert failure_reason("Flats", 1, ["Heels", "Heels", "Flats", "Sandals"]) == (
        "1 of 4 results are Flats; 2 are Heels: the engine confuses Flats with Heels (only 1 other Flats in the catalogue).")
    assert failure_reason("Bags", 20, ["Bags", "Watches"]) == "1 of 2 results are Bags; 1 are Watches."

