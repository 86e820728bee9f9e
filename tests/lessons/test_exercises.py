"""Every check accepts its solution, rejects each typical mistake with that mistake's hint, and never
crashes a notebook on an unwritten exercise."""

import numpy as np
import pytest

from cbir_tutorial.lessons import solutions
from cbir_tutorial.lessons.exercises import EXERCISES, NotDone, check, exercise, is_stub, solutions_mode

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


def test_the_message_names_the_case_the_right_value_and_the_learners():
    def divides_by_k(relevant, n_relevant, k):
        relevant = np.asarray(relevant[:k], dtype=float)
        return float((np.cumsum(relevant) / np.arange(1, k + 1) * relevant).sum() / k)

    assert EXERCISES["ap_at_k"].problem(divides_by_k) == (
        "AP@5 of [1, 0, 1, 1, 0] with R = 3 should be 0.806, yours is 0.483: "
        "did you divide by K instead of min(K, R)?")


def test_a_wrong_shape_and_an_exception_are_reported_not_raised(capsys):
    assert "should have shape (3, 4), yours has shape (5, 6)" in EXERCISES["conv3x3"].problem(lambda image, k: image)

    def broken(relevant, k):
        return relevant[k + 100]

    assert check("precision_at_k", broken) is False
    assert "P@5 of [1, 0, 1, 1, 0]: your function raised IndexError" in capsys.readouterr().out


def test_an_unwritten_exercise_says_not_done_and_its_stand_in_raises(capsys):
    @exercise("ap_at_k")
    def my_ap_at_k(relevant, n_relevant, k):
        """AP@K of one result list."""
        ...  # your code

    assert check("ap_at_k", my_ap_at_k) is False
    assert capsys.readouterr().out.startswith("not done yet: ap_at_k: write the body of my_ap_at_k")
    with pytest.raises(NotDone, match="my_ap_at_k is not written yet"):
        my_ap_at_k([1, 0], 1, 2)


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

    notebooks = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("0[1-7]_*.ipynb"))
    assert len(notebooks) == 7
    for path in notebooks:
        code = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        names = []
        for i, source in enumerate(code):
            for name, function in re.findall(r'@exercise\("(\w+)"\)\ndef (\w+)\(', source):
                assert name in EXERCISES, (path.name, name)
                body = source.split(f"def {function}(", 1)[1]
                assert body.rstrip().endswith("...  # your code: replace this line"), (path.name, name)  # no solution
                assert f'check("{name}", {function})' in code[i + 1], (path.name, name)
                names.append(name)
        assert len(names) >= 2, path.name
