"""A question says ✓ or ✗ with its explanation after any answer, waits for an unanswered one (or takes the right
answer in solutions mode), and never raises on a wrong guess; every notebook asks one and checks three items or
more."""

import json
import re
from pathlib import Path

import pytest

from cbir_tutorial.lessons import questions
from cbir_tutorial.lessons.questions import LESSONS, QUESTIONS, Question

ROOT = Path(__file__).resolve().parents[2]
FIXED = questions.nb01.p1
DECIDED_BY_THE_RUN = questions.nb07.p1


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    monkeypatch.delenv("CBIR_TUTORIAL_SOLUTIONS", raising=False)


def printed(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_a_right_answer_gets_a_tick_and_the_explanation(capsys):
    assert FIXED.check(" (C) ")
    assert capsys.readouterr().out.splitlines()[1] == FIXED.explanation  # unwrapped, as the prompt
    FIXED.check("c")
    out = printed(capsys)
    assert out.startswith("✓ chance_and_k: (c) neither") and "(n_c - 1) / (N - 1)" in out


def test_a_wrong_answer_gets_the_right_one_and_the_explanation_without_raising(monkeypatch, capsys):
    monkeypatch.setenv("CBIR_TUTORIAL_SOLUTIONS", "1")
    assert not FIXED.check("a")
    out = printed(capsys)
    assert out.startswith("✗ chance_and_k: you said (a) precision@1") and "the answer is (c) neither" in out
    assert "precision divides by K" in out


def test_the_run_decides_when_the_question_has_no_fixed_answer(capsys):
    assert DECIDED_BY_THE_RUN.check("b", actual="b")
    assert not DECIDED_BY_THE_RUN.check("a", actual="b")
    assert "this run says (b) fall" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs actual="):
        DECIDED_BY_THE_RUN.check("a")


def test_unanswered_waits_for_a_learner_and_takes_the_right_answer_in_solutions_mode(monkeypatch, capsys):
    waiting = FIXED.check(...)
    assert not waiting and not waiting.answered  # a cell shows its measurement only once answered
    assert capsys.readouterr().out.startswith("not answered yet: chance_and_k: set my_prediction to one of 'a'")
    assert FIXED.check("a").answered and not FIXED.check("a")  # answered, wrong
    capsys.readouterr()
    monkeypatch.setenv("CBIR_TUTORIAL_SOLUTIONS", "1")
    assert FIXED.check(...).answered and DECIDED_BY_THE_RUN.check(None, actual="c")
    assert capsys.readouterr().out.count("✓") == 2


def test_a_letter_that_is_no_choice_is_reported(capsys):
    assert not FIXED.check("d")
    assert capsys.readouterr().out.startswith("✗ chance_and_k: 'd' is not one of 'a', 'b', 'c'")


def test_ask_prints_the_prompt_and_every_choice(capsys):
    FIXED.ask()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == FIXED.prompt  # one line: the notebook's or the site's box wraps it to its width
    out = " ".join(" ".join(lines).split())
    assert "precision@1 or its precision@10?" in out and all(f" ({l}) " in out for l in FIXED.letters)


def test_every_question_is_well_formed_and_placed_in_its_lesson():
    for name, question in QUESTIONS.items():
        assert isinstance(question, Question) and question.name == name
        assert len(question.letters) == len(set(question.letters)) >= 2
        assert question.answer in ("", *question.letters)
    for lesson, names in LESSONS.items():
        assert [q.name for q in vars(getattr(questions, lesson)).values()] == names


def _code(path):
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_each_question_is_asked_then_checked_in_its_notebook(lesson):
    path, = (ROOT / "notebooks").glob(f"{lesson[2:]}_*.ipynb")
    code = "\n".join(_code(path))
    for number, _ in enumerate(LESSONS[lesson], start=1):
        asked = code.find(f"questions.{lesson}.p{number}.ask()")
        checked = code.find(f"questions.{lesson}.p{number}.check(my_prediction")
        assert 0 <= asked < checked, (path.name, number)


NOTEBOOKS = sorted(path.name[:2] for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_asks_a_question():
    assert sorted(lesson[2:] for lesson in LESSONS) == NOTEBOOKS and len(NOTEBOOKS) == 10


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_lesson_has_at_least_three_checked_items(notebook):
    path, = (ROOT / "notebooks").glob(f"{notebook}_*.ipynb")
    code = "\n".join(_code(path))
    checked = len(re.findall(r"\bnb\d\d\.q\d\.check\(", code)) + len(re.findall(r"\.p\d\.check\(", code))
    assert checked >= 3, f"{path.name}: {checked} checked exercises and questions"


def test_the_untrained_ratio_question_says_both_networks_give_unit_vectors():
    question = QUESTIONS["untrained_ratio"]
    assert "no common scale" not in question.prompt + question.explanation
    assert "unit vectors" in question.prompt and "range 0-2" in question.prompt
    assert "which distances are smaller" in question.prompt
    # a ratio of distances is unchanged by a common scale, but it does not depend only on their order
    assert "multiplied by the same factor" in question.explanation
    assert "depends only on which distances are smaller" not in question.explanation


def test_the_untrained_ratio_explanation_offers_its_cause_as_a_guess_and_notebook_3_does_not_repeat_the_prompt():
    question = QUESTIONS["untrained_ratio"]
    assert "probably" in question.explanation and "should show as a lower ratio" in question.explanation
    assert "usually shows" not in question.explanation
    path, = (ROOT / "notebooks").glob("03_*.ipynb")
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
    after = next(i for i, text in enumerate(cells) if "questions.nb03.p1.check(" in text) + 1
    assert cells[after].startswith("Three photos are an anecdote") and "probably" in cells[after]
    assert not [text for text in ("unit vectors", "range 0", "which distances are smaller") if text in cells[after]]


def test_the_forgetting_explanation_says_results_md_measured_it_at_the_clis_cpu_settings():
    explanation = QUESTIONS["forgetting"].explanation
    assert "CLI's CPU settings" in explanation and "full settings" not in explanation


def test_the_forgetting_question_names_no_fixed_k_and_counts_the_probe_as_training():
    question = QUESTIONS["forgetting"]
    assert "MAP@10" not in question.prompt and "MAP@k" in question.prompt
    assert not question.explanation.startswith("Fine-tuning") and "probe" in question.explanation


def test_the_index_vs_loop_explanation_says_its_benchmark_figures_come_from_another_setup():
    explanation = QUESTIONS["index_vs_loop"].explanation
    assert "10,000 x 2048" in explanation and "batches of 64" in explanation
    assert "one BLAS thread" in explanation and "can be lower" in explanation


def test_the_explorer_question_is_named_for_whatever_k_the_learner_chose():
    assert LESSONS["nb07"] == ["precision_at_double_k"] and "precision_at_20" not in QUESTIONS
