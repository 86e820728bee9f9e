import numpy as np
import pandas as pd
import pytest

from cbir_tutorial.search.exact import EuclideanIndex
from cbir_tutorial.evaluation.metrics import (average_precision_at_k, evaluate, map_at_k, precision_at_k, recall_at_k,
                                   relevance_mask)


def test_relevance_mask_by_label_and_by_function():
    mask = relevance_mask(["shirt", "bag"], [["shirt", "bag", "shirt"], ["bag", "bag", "shoe"]])
    assert mask.tolist() == [[True, False, True], [True, True, False]]
    assert relevance_mask([""], [["", "a"]]).tolist() == [[False, False]]  # unknown is never relevant
    tops = relevance_mask(["shirt"], [["t-shirt", "shirt", "bag"]], relevant=lambda q, r: r.endswith("shirt"))
    assert tops.tolist() == [[True, True, False]]


def test_hand_computed_average_precision():
    # relevant at ranks 1 and 3 of 4, R = 2: (1/1 + 2/3) / min(4, 2)
    mask = np.array([[True, False, True, False]])
    assert average_precision_at_k(mask, [2])[0] == pytest.approx((1 + 2 / 3) / 2)
    assert precision_at_k(mask, 4)[0] == 0.5
    assert precision_at_k(mask, 1)[0] == 1.0
    assert recall_at_k(mask, [2], 4)[0] == 1.0
    # at K = 2 only rank 1 counts: (1/1) / min(2, 2)
    assert average_precision_at_k(mask, [2], 2)[0] == pytest.approx(0.5)


def test_normaliser_is_min_k_r_when_r_exceeds_k():
    perfect = np.ones((1, 5), dtype=bool)
    assert average_precision_at_k(perfect, [50])[0] == 1.0  # min(5, 50) = 5, not R = 50
    assert recall_at_k(perfect, [50])[0] == pytest.approx(0.1)
    late = np.array([[False, False, False, False, True]])
    assert average_precision_at_k(late, [50])[0] == pytest.approx((1 / 5) / 5)


def test_query_without_relevant_items_scores_zero():
    mask = np.zeros((2, 3), dtype=bool)
    assert average_precision_at_k(mask, [0, 4]).tolist() == [0.0, 0.0]
    assert recall_at_k(mask, [0, 4]).tolist() == [0.0, 0.0]
    assert map_at_k(np.array([[True, True], [False, False]]), [2, 0]) == pytest.approx(0.5)


def test_k_beyond_the_retrieved_list_is_refused():
    with pytest.raises(ValueError, match="only 3 results"):
        precision_at_k(np.ones((1, 3), dtype=bool), 5)


def line_index():
    # points on a line: a a a b b c, x = 0 1 2 10 11 30
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]], dtype=np.float32)
    return EuclideanIndex(x), np.array(["a", "a", "a", "b", "b", "c"], dtype=object)


def test_evaluate_leave_one_out_by_hand():
    index, labels = line_index()
    table = evaluate(index, labels, k=2)
    assert table["category"].tolist() == ["(all)", "a", "b"]  # "c" has one member: never a query
    per = table.set_index("category")
    # a@0 → 1(a),2(a): AP 1; a@1 → 0(a),2(a): 1; a@2 → 1(a),0(a): 1
    assert per.loc["a", "map_at_k"] == pytest.approx(1.0)
    # b@10 → 11(b) then 2(a): AP = 1/min(2,1) = 1; P@2 = 0.5
    assert per.loc["b", "map_at_k"] == pytest.approx(1.0)
    assert per.loc["b", "precision_at_k"] == pytest.approx(0.5)
    assert per.loc["(all)", "n_queries"] == 5
    assert per.loc["(all)", "precision_at_k"] == pytest.approx((3 * 1.0 + 2 * 0.5) / 5)
    assert per.loc["a", "n_relevant_mean"] == 2 and (table["k"] == 2).all()


def test_evaluate_with_a_relevance_function():
    index, labels = line_index()
    everything = evaluate(index, labels, k=2, relevant=lambda q, r: True)
    assert everything.iloc[0]["map_at_k"] == pytest.approx(1.0)
    assert everything.iloc[0]["n_queries"] == 5


def test_evaluate_with_no_class_of_two_returns_an_empty_table():
    table = evaluate(EuclideanIndex(np.eye(3, dtype=np.float32)), np.array(["a", "b", ""], dtype=object))
    assert isinstance(table, pd.DataFrame) and table.empty
