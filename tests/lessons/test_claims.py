"""A claim prints ✓ or ⚠ with its reason for a learner and raises under the test-run settings; the notebooks
make their claims through it, never with a bare ``assert``."""

from pathlib import Path

import numpy as np
import pytest

from cbir_tutorial.lessons.claims import STRICT_VARIABLE, ClaimFailed, claim, strict_mode
from cbir_tutorial.lessons.parameters import settings_file

ROOT = Path(__file__).resolve().parents[2]


def test_a_claim_that_holds_prints_a_tick_and_returns_nothing_a_cell_would_show(capsys):
    assert claim(np.float64(0.3) < 0.5, "the distance is below 0.5", environ={}) is None
    assert capsys.readouterr().out == "✓ the distance is below 0.5\n"


def test_a_claim_that_fails_warns_a_learner_with_the_reason_and_goes_on(capsys):
    assert claim(np.bool_(False), "the pair is closer", otherwise="try other photos", environ={}) is None
    assert capsys.readouterr().out == "⚠ not this time: the pair is closer\n  try other photos\n"
    assert claim(False, "no reason given", environ={STRICT_VARIABLE: "0"}) is None
    assert capsys.readouterr().out == "⚠ not this time: no reason given\n"


def test_a_claim_that_fails_raises_under_strict_mode(capsys):
    with pytest.raises(ClaimFailed, match=r"the notebook says: the pair is closer; in this run it does not hold \(try"):
        claim(False, "the pair is closer", otherwise="try other photos", environ={STRICT_VARIABLE: "yes"})
    assert isinstance(ClaimFailed("x"), AssertionError)
    claim(True, "holds", environ={STRICT_VARIABLE: "1"})
    assert capsys.readouterr().out == "✓ holds\n"


def test_a_claim_ending_a_notebook_cell_shows_only_its_line():
    """IPython shows a cell's last value unless it is None: a claim must not add a stray ``True``."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        result = shell.run_cell("from cbir_tutorial.lessons.claims import claim\nclaim(1 < 2, 'one is less than two')",
                                store_history=False)
    finally:
        InteractiveShell.clear_instance()
    assert result.success and result.result is None


def test_strict_mode_words_and_the_test_run_sets_it(monkeypatch):
    assert not strict_mode({}) and not strict_mode({STRICT_VARIABLE: "off"})
    assert all(strict_mode({STRICT_VARIABLE: word}) for word in ("1", "true", " YES ", "on"))
    monkeypatch.setenv(STRICT_VARIABLE, "1")
    assert strict_mode()
    assert strict_mode(settings_file(ROOT / "notebooks" / "test_run.env")), "the notebooks' test run must be strict"


def test_a_timing_claim_only_ever_prints_even_in_strict_mode(capsys):
    claim(False, "the index is faster than the loop", otherwise="a busy machine", timing=True,
          environ={"CBIR_TUTORIAL_STRICT": "1"})
    assert "⚠ not this time: the index is faster than the loop" in capsys.readouterr().out
    with pytest.raises(ClaimFailed):
        claim(False, "the index is faster than the loop", environ={"CBIR_TUTORIAL_STRICT": "1"})
