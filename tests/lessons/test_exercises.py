"""Every check accepts its solution, rejects each typical mistake with that mistake's hint, refuses a
function that wraps the package's own implementation (with the exercise's hint), never shows the expected
value, and never crashes a notebook on an unwritten exercise."""

import importlib

import numpy as np
import pytest

from cbir_tutorial.lessons import exercises, solutions
from cbir_tutorial.lessons.exercises import (EXERCISES, LESSONS, NotDone, check, exercise, exercise_for, is_stub,
                                             solutions_mode, uses_the_package)

MISTAKES = [(name, hint, wrong) for name, item in EXERCISES.items() for hint, wrong in item.mistakes]


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    monkeypatch.delenv("CBIR_TUTORIAL_SOLUTIONS", raising=False)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_solution_passes_its_check(name, capsys):
    assert check(name, getattr(solutions, name)) is True
    assert capsys.readouterr().out.startswith(f"✓ {name}: right on all")


@pytest.mark.parametrize("name, hint, wrong", MISTAKES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MISTAKES)])
def test_a_typical_mistake_is_rejected_with_its_hint(name, hint, wrong, capsys):
    assert check(name, wrong) is False
    out = capsys.readouterr().out
    assert out.startswith(f"✗ {name}: ") and out.rstrip().endswith(hint), out


def _package_twin(path):
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return importlib.import_module(path)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_function_that_calls_the_package_is_refused_with_the_hint(name, capsys):
    item = EXERCISES[name]
    solution = item.solution_function

    def wraps_the_solution(*args):  # right answers, but from the package
        return solution(*args)

    assert check(name, wraps_the_solution) is False
    out = capsys.readouterr().out
    assert "uses the package's own `cbir_tutorial.lessons.solutions." in out and out.rstrip().endswith(item.hint_text)
    for path in item.package:
        twin = _package_twin(path)

        def wraps_the_package(*args):
            return twin(*args)

        assert check(name, wraps_the_package) is False
        out = capsys.readouterr().out
        assert "uses the package's own `cbir_tutorial." in out and out.rstrip().endswith(item.hint_text), out


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_wrong_answer_gets_a_hint_and_never_the_expected_value(name, capsys):
    item = EXERCISES[name]

    def wrong(*args):
        value = np.asarray(solutions.__dict__[name](*args), dtype=float)
        return value + 0.5  # right shape, wrong values: no typical mistake

    assert check(name, wrong) is False
    out = capsys.readouterr().out.rstrip()
    assert out.endswith(item.hint_text), out
    expected = np.asarray(item.solution_function(*item.cases[0]), dtype=float)
    if expected.ndim == 0:
        assert f"{float(expected):.3f}" not in out.split(": ", 1)[1].replace(item.hint_text, ""), out


def test_the_message_names_the_case_and_the_learners_value_not_the_right_one():
    def divides_by_k(ranks, n_relevant, k):
        found = np.array([r for r in ranks if r <= k], dtype=float)
        return float(np.sum(np.arange(1, len(found) + 1) / found) / k)

    assert EXERCISES["ap_at_k"].problem(divides_by_k) == (
        "AP@5 with relevant results at ranks [1, 3, 4] and R = 3 is not 0.483: did you divide by K instead of "
        "min(K, R)? When R < K, a perfect list could not score 1")


def test_the_package_is_found_through_imports_modules_closures_and_helpers():
    import cbir_tutorial
    from cbir_tutorial.evaluation.metrics import precision_at_k

    def via_module(relevant, k):
        return cbir_tutorial.evaluation.metrics.precision_at_k(relevant[None], k)[0]

    def via_import(relevant, k):
        from cbir_tutorial.evaluation import metrics
        return metrics.precision_at_k(relevant[None], k)[0]

    def helper(relevant, k):
        return precision_at_k(relevant[None], k)[0]

    def via_helper(relevant, k):
        return helper(relevant, k)

    def own(relevant, k):
        return float(np.sum(relevant[:k]) / k)

    assert uses_the_package(via_module) == "`cbir_tutorial`"
    assert uses_the_package(via_import) == "`cbir_tutorial.evaluation`"
    assert uses_the_package(via_helper) == "`cbir_tutorial.evaluation.metrics.precision_at_k`"
    assert uses_the_package(own) == ""


def test_kaggle_learn_verbs_check_hint_solution(capsys):
    q = exercises.nb06.q2
    assert q is exercise_for("ap_at_k")
    verdict = q.check(solutions.ap_at_k)
    assert verdict and repr(verdict) == "Verdict(right)"
    assert not q.check(lambda ranks, n_relevant, k: 0.0)
    q.hint()
    q.solution()
    out = capsys.readouterr().out
    assert f"Hint (ap_at_k): {q.hint_text}" in out and "def ap_at_k(" in out
    for lesson, names in LESSONS.items():
        assert [e.name for e in vars(getattr(exercises, lesson)).values()] == names
        assert len(names) >= 2, lesson


def test_passes_says_whether_a_function_is_written_and_right_printing_nothing(capsys):
    q = exercises.nb02.q1

    @q.write
    def unwritten(image, kernel):
        ...

    def calls_an_unwritten_one(image, kernel):
        return unwritten(image, kernel)

    assert q.passes(solutions.conv3x3)
    assert not q.passes(unwritten) and not q.passes(calls_an_unwritten_one)
    assert not q.passes(lambda image, kernel: image) and capsys.readouterr().out == ""


def test_a_wrong_shape_and_an_exception_are_reported_not_raised(capsys):
    assert "should have shape (5, 6), yours has shape (3, 4)" in EXERCISES["conv3x3"].problem(
        lambda image, k: image[1:-1, 1:-1])

    def broken(relevant, k):
        return relevant[k + 100]

    assert check("precision_at_k", broken) is False
    assert "P@5 of [1, 0, 1, 1, 0]: your function raised IndexError" in capsys.readouterr().out


def test_an_unwritten_exercise_says_not_done_and_its_stand_in_raises(capsys):
    @exercise("ap_at_k")
    def my_ap_at_k(ranks, n_relevant, k):
        """AP@K of one result list."""
        ...  # your code

    assert check("ap_at_k", my_ap_at_k) is False
    assert capsys.readouterr().out.startswith("not done yet: ap_at_k: write the body of my_ap_at_k")
    with pytest.raises(NotDone, match="my_ap_at_k is not written yet"):
        my_ap_at_k([1], 1, 2)


def test_solutions_mode_fills_in_unwritten_exercises_and_keeps_written_ones(monkeypatch):
    monkeypatch.setenv("CBIR_TUTORIAL_SOLUTIONS", "1")
    assert solutions_mode()

    @exercise("receptive_field")
    def unwritten(layers):
        pass

    @exercise("receptive_field")
    def written(layers):
        return 1 + sum(k - 1 for k, _ in layers)  # ignores the strides

    assert unwritten is solutions.receptive_field
    assert written([(3, 1)]) == 3
    with pytest.raises(AssertionError, match="did you ignore the strides"):
        check("receptive_field", written)


def test_is_stub_and_unknown_names():
    def empty(x):
        """Doc."""

    def one_line(x):
        return x

    assert is_stub(empty) and not is_stub(one_line)
    with pytest.raises(ValueError, match="unknown exercise 'ap_at_j'; the exercises are: query_mask"):
        exercise("ap_at_j")


def test_every_lesson_notebook_has_unsolved_exercises_each_followed_by_its_check():
    import json
    import re
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[01][0-9]_*.ipynb"))
    assert len(notebooks) == 10
    for path in notebooks:
        lesson = "nb" + path.name[:2]
        code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        names = []
        for i, source in enumerate(code):
            for nb, q, function in re.findall(r"@(nb\d\d)\.(q\d)\.write\ndef (\w+)\(", source):
                assert nb == lesson, (path.name, nb)
                name = vars(getattr(exercises, nb))[q].name
                body = source.split(f"def {function}(", 1)[1]
                assert body.rstrip().endswith("...  # your code: replace this line"), (path.name, name)  # no solution
                assert f"{nb}.{q}.check({function})" in code[i + 1], (path.name, name)
                twins = [p.rpartition(".")[2] for p in EXERCISES[name].package]
                before = "\n".join(code[:i])
                for twin in twins:  # the package's implementation is not imported above its exercise
                    assert not re.search(rf"import[^\n]*\b{twin}\b", before), (path.name, name, twin)
                names.append(name)
        assert names == LESSONS[lesson], path.name


def test_the_training_solutions_agree_with_the_package_on_their_cases():
    from cbir_tutorial.training.losses import multi_similarity_loss
    from cbir_tutorial.training.protocols import instance_recall_at_k

    for embeddings, labels in EXERCISES["multi_similarity_loss"].cases:
        assert solutions.multi_similarity_loss(embeddings, labels) == pytest.approx(
            float(multi_similarity_loss(embeddings, labels)), rel=1e-5)
    for found, queries, k in EXERCISES["instance_recall_at_k"].cases:
        assert solutions.instance_recall_at_k(found, queries, k) == instance_recall_at_k(found == queries[:, None], k)


def test_conv3x3_is_the_same_padded_convolution_of_the_package():
    from cbir_tutorial.lessons.convolution import convolve

    for image, kernel in EXERCISES["conv3x3"].cases:
        assert solutions.conv3x3(image, kernel).shape == image.shape
        np.testing.assert_allclose(solutions.conv3x3(image, kernel), convolve(image, kernel, padding="same"),
                                   atol=1e-4)


def test_euclidean_distances_refuses_the_array_of_differences_with_the_hint(capsys):
    import tracemalloc

    def with_differences(queries, gallery):  # right values, through an (M, N, D) array
        return np.sqrt(((queries[:, None] - gallery[None]) ** 2).sum(axis=2))

    item = EXERCISES["euclidean_distances"]
    assert check("euclidean_distances", with_differences) is False
    out = capsys.readouterr().out.rstrip()
    assert "right values, but for 50 queries" in out and "without such an array" in out, out
    assert out.endswith(item.hint_text) and not tracemalloc.is_tracing()
    tracemalloc.start()  # a learner's own tracing stays on
    try:
        assert item.problem(solutions.euclidean_distances) is None
        assert "without such an array" in item.problem(with_differences)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def _nested_loops(queries, gallery):
    out = np.zeros((len(queries), len(gallery)))
    for i in range(len(queries)):
        for j in range(len(gallery)):
            out[i, j] = np.sqrt(((queries[i] - gallery[j]) ** 2).sum())
    return out


def _one_query_at_a_time(queries, gallery):  # small memory, right values: only the loop is wrong
    return np.stack([np.sqrt(((gallery - q) ** 2).sum(axis=1)) for q in queries])


def _while_loop(queries, gallery):
    rows, i = [], 0
    while i < len(queries):
        rows.append(np.sqrt(((gallery - queries[i]) ** 2).sum(axis=1)))
        i += 1
    return np.array(rows)


def _vectorised_by_numpy(queries, gallery):
    pair = np.vectorize(lambda i, j: np.sqrt(((queries[i] - gallery[j]) ** 2).sum()))
    return pair(*np.indices((len(queries), len(gallery))))


def _through_a_helper(queries, gallery):
    return _one_query_at_a_time(queries, gallery)


@pytest.mark.parametrize("looping", [_nested_loops, _one_query_at_a_time, _while_loop, _vectorised_by_numpy,
                                     _through_a_helper])
def test_euclidean_distances_refuses_a_python_loop(looping, capsys):
    item = EXERCISES["euclidean_distances"]
    assert check("euclidean_distances", looping) is False
    out = capsys.readouterr().out.rstrip()
    assert "right values, but through" in out and "without a Python loop" in out, out
    assert out.endswith(item.hint_text)


def _never_sorts(distances, allowed, k):  # the k nearest allowed rows, in argpartition's order
    rows = np.flatnonzero(allowed)
    return rows[np.argpartition(distances[rows], min(k, len(rows) - 1))[:k]]


def _cosine_never_sorts(gallery, query, k):
    similarity = (gallery @ query) / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(query))
    return np.argpartition(-similarity, k - 1)[:k]


def _in_row_order(distances, allowed, k):
    rows = np.flatnonzero(allowed)
    return np.sort(rows[np.argsort(distances[rows], kind="stable")[:k]])


@pytest.mark.parametrize("name, unsorted", [("filtered_top_k", _never_sorts), ("filtered_top_k", _in_row_order),
                                            ("cosine_top_k", _cosine_never_sorts)])
def test_a_top_k_that_is_never_sorted_is_refused_with_the_order_hint(name, unsorted, capsys):
    item = EXERCISES[name]
    assert check(name, unsorted) is False
    out = capsys.readouterr().out.rstrip()
    assert out.endswith(item.order_hint) and "in the wrong order" in out, out


def test_the_filter_cases_allow_twenty_rows_and_more():
    allowed = [int(np.sum(allowed)) for _, allowed, _ in EXERCISES["filtered_top_k"].cases]
    assert max(allowed) >= 300 and sum(n >= 20 for n in allowed) >= 2, allowed


@pytest.mark.parametrize("name, revealing", [
    ("l2_normalise", ["np.linalg.norm(", "keepdims"]), ("int8_roundtrip", ["rint(", "/ 254", "(high + low) / 2"]),
    ("instance_recall_at_k", [".any(axis=1)", "[:, :k]"]), ("receptive_field", ["(k - 1) * jump", "multiplies"]),
    ("filtered_top_k", ["flatnonzero"]), ("cosine_top_k", ["argsort"])])
def test_a_hint_is_a_nudge_not_the_solution(name, revealing):
    hint = EXERCISES[name].hint_text
    assert not [text for text in revealing if text in hint], hint
