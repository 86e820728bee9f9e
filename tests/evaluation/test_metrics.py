import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbir_tutorial.search.backends import make_index
from cbir_tutorial.evaluation.metrics import (average_precision_at_k, checked_results, evaluate, map_at_k,
                                              precision_at_k, recall_at_k, relevance_mask)


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
    return make_index("exact", x), np.array(["a", "a", "a", "b", "b", "c"], dtype=object)


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
    table = evaluate(make_index("exact", np.eye(3, dtype=np.float32)), np.array(["a", "b", ""], dtype=object))
    assert isinstance(table, pd.DataFrame) and table.empty


def test_evaluate_reads_one_label_per_stored_vector_in_index_ids_order():
    """An index keeps its ids sorted, whatever order the vectors came in: the labels follow ``index.ids``."""
    by_row, labels = line_index()
    ids = np.array([70, 20, 50, 10, 40, 30])  # the line's points given under these ids
    index = make_index("exact", by_row.vectors(), ids)
    order = np.argsort(ids)
    assert index.ids.tolist() == ids[order].tolist()
    pd.testing.assert_frame_equal(evaluate(index, labels[order], k=2), evaluate(by_row, labels, k=2))
    assert evaluate(index, labels, k=2).iloc[0]["map_at_k"] < 1.0  # labels in the order given: wrong
    with pytest.raises(ValueError, match="5 labels for an index of 6 items"):
        evaluate(index, labels[:5], k=2)


# Every score is in [0, 1], whatever comes in: a ranking holding the query itself or a row twice, or an R that
# is too small, would score above 1 and is refused instead (a leave-one-out ranking never holds them).

PROPERTIES = settings(max_examples=300, deadline=None)
LABELS = ["a", "b", "c", ""]


def scores(mask, n_relevant, k):
    return {"P@K": precision_at_k(mask, k), "recall@K": recall_at_k(mask, n_relevant, k),
            "AP@K": average_precision_at_k(mask, n_relevant, k), "MAP@K": np.array([map_at_k(mask, n_relevant, k)])}


def assert_in_0_1(values: dict):
    for name, value in values.items():
        assert ((value >= 0) & (value <= 1)).all(), f"{name} = {value} is outside [0, 1]"


def by_hand(hits: list[bool], r: int, k: int) -> dict:
    """P@K, recall@K and AP@K of one query, from the formulas in the module's docstring."""
    hits = hits[:k]
    ap = sum(sum(hits[:j + 1]) / (j + 1) for j in range(k) if hits[j]) / min(k, r) if r else 0.0
    return {"P@K": sum(hits) / k, "recall@K": sum(hits) / r if r else 0.0, "AP@K": ap}


@st.composite
def galleries(draw, min_size=1):
    """Labels of a gallery of 1..12 items (a few classes, some unlabelled "") and one query row in it."""
    n = draw(st.integers(min_size, 12))
    labels = np.array(draw(st.lists(st.sampled_from(LABELS), min_size=n, max_size=n)), dtype=object)
    return labels, draw(st.integers(0, n - 1))


def leave_one_out_r(labels, query) -> int:
    return int((labels == labels[query]).sum()) - 1 if labels[query] != "" else 0


@PROPERTIES
@given(gallery=galleries(min_size=2), data=st.data())
def test_a_leave_one_out_ranking_scores_in_0_1_as_the_formulas_say(gallery, data):
    labels, query = gallery
    others = [row for row in range(len(labels)) if row != query]
    ranking = data.draw(st.permutations(others))[:data.draw(st.integers(1, len(others)))]
    k = data.draw(st.integers(1, len(ranking)))
    r = leave_one_out_r(labels, query)
    mask = relevance_mask([labels[query]], labels[ranking])
    found = scores(mask, [r], k)
    assert_in_0_1(found)
    for name, value in by_hand(mask[0].tolist(), r, k).items():
        assert found[name][0] == pytest.approx(value), name
    if r and mask[0, :min(k, r)].all():  # every place a perfect list can fill is relevant
        assert found["AP@K"][0] == 1.0


@PROPERTIES
@given(gallery=galleries(), data=st.data())
def test_any_ranking_of_gallery_rows_scores_in_0_1_or_is_refused_for_counting_more_than_r(gallery, data):
    labels, query = gallery
    ranking = data.draw(st.lists(st.integers(0, len(labels) - 1), min_size=1, max_size=len(labels) + 3))
    k = data.draw(st.integers(1, len(ranking)))
    r = leave_one_out_r(labels, query)
    mask = relevance_mask([labels[query]], labels[ranking])
    if mask.sum() > r:  # the query itself, or a relevant row twice
        for metric in (recall_at_k, average_precision_at_k, map_at_k):
            with pytest.raises(ValueError, match=rf"^1 of 1 queries have more relevant results than n_relevant says "
                                                 rf"exist \(query 0: {mask.sum()} relevant results, R = {r}\)"):
                metric(mask, [r], k)
    else:
        assert_in_0_1(scores(mask, [r], k))
    assert 0 <= precision_at_k(mask, k)[0] <= 1


@PROPERTIES
@given(data=st.data())
def test_any_mask_and_counts_score_in_0_1_or_are_refused(data):
    q, width = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 8))
    mask = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=width, max_size=width), min_size=q, max_size=q)))
    n_relevant = np.array(data.draw(st.lists(st.integers(0, width + 2), min_size=q, max_size=q)))
    k = data.draw(st.integers(1, width))
    over = mask.sum(axis=1) > n_relevant
    if over.any():
        with pytest.raises(ValueError, match=rf"^{over.sum()} of {q} queries have more relevant results"):
            map_at_k(mask, n_relevant, k)
    else:
        assert_in_0_1(scores(mask, n_relevant, k))


def test_degenerate_inputs_score_in_0_1_or_say_what_is_wrong():
    assert average_precision_at_k(np.zeros((1, 4), bool), [0])[0] == 0.0  # R = 0
    same = np.ones((1, 5), bool)  # every item of one label: a perfect list, R = 9 > K
    assert [s[0] for s in scores(same, [9], 5).values()] == [1.0, pytest.approx(5 / 9), 1.0, 1.0]
    with pytest.raises(ValueError, match="only 5 results per query were retrieved"):
        average_precision_at_k(same, [9], 6)  # K > the list (K > N - 1 in leave-one-out)
    with pytest.raises(ValueError, match=r"query 0: 2 relevant results, R = 1\)"):
        average_precision_at_k(np.array([[True, True, False]]), [1])  # the only relevant item, twice
    with pytest.raises(ValueError, match=r"query 0: 1 relevant results, R = 0\)"):
        recall_at_k(np.array([[False, True]]), [0])  # a relevant result where none exists: the query itself
    with pytest.raises(ValueError, match=r"n_relevant must count items \(0 or more\); query 1 has R = -1"):
        average_precision_at_k(np.zeros((2, 3), bool), [2, -1])
    with pytest.raises(ValueError, match=r"query 0 has R = nan"):
        recall_at_k(np.zeros((1, 3), bool), [np.nan])
    with pytest.raises(ValueError, match="n_relevant has 1 values for 2 queries"):
        map_at_k(np.zeros((2, 3), bool), [2])
    with pytest.raises(ValueError, match="map_at_k of no queries is undefined"):
        map_at_k(np.zeros((0, 3), bool), [])


def test_results_holding_their_query_or_a_row_twice_are_refused_naming_the_query():
    rows = np.array([4, 7])
    assert checked_results(rows, np.array([[1, 2, -1, -1], [3, 4, 5, -1]])).shape == (2, 4)  # -1: padding
    with pytest.raises(ValueError, match=r"row 7 is among its own results; 1 queries with themselves"):
        checked_results(rows, np.array([[1, 2, 3], [7, 4, 5]]))
    with pytest.raises(ValueError, match=r"query row 4 has a result twice: \[2, 1, 2\]"):
        checked_results(rows, np.array([[2, 1, 2], [3, 4, 5]]))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_evaluate_scores_in_0_1_when_every_distance_is_nan():
    # features of 1e20 are finite, but their squared distances overflow float32: every distance is NaN.
    # The query itself must not come back as its own result (it did, first, and MAP@5 came out above 1).
    _, labels = line_index()
    rng = np.random.default_rng(0)
    overflowing = make_index("exact", rng.normal(size=(6, 64)).astype(np.float32) * np.float32(1e20))
    table = evaluate(overflowing, labels, k=5)
    assert table[["precision_at_k", "recall_at_k", "map_at_k"]].stack().between(0, 1).all(), table
    assert np.isnan(overflowing.search_stored([0], 3)[0]).all()
    per = table.set_index("category")
    # rows ranked in index order (all distances alike): b@4 → 0, 1, 2, 3(b), 5: AP = (1/4) / min(5, 1)
    assert per.loc["b", "map_at_k"] == pytest.approx((1 / 4 + 1 / 4) / 2)


def test_evaluate_counts_a_backends_padding_as_not_relevant():
    # faiss IVF with nprobe=1 searches one list: the two "b" products sit alone in theirs, so a "b" query gets
    # one result and -1 padding, which was read as labels[-1] == "b": AP@10 = 10, P@10 = 1.
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, (78, 4)), rng.normal(0, 0.01, (2, 4)) + 100]).astype(np.float32)
    labels = np.array(["a"] * 78 + ["b"] * 2, dtype=object)
    index = make_index("faiss-ivf", x, nlist=2, nprobe=1)
    assert (index.search_stored([78], 10)[1][0, 1:] == -1).all()  # the padding this test is about
    per = evaluate(index, labels, k=10).set_index("category")
    assert per.loc["b", "map_at_k"] == 1.0 and per.loc["b", "precision_at_k"] == pytest.approx(0.1)
    assert per.loc["a", "map_at_k"] == 1.0 and per.loc["a", "precision_at_k"] == 1.0
