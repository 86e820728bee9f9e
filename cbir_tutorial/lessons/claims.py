"""Claims a notebook's text makes about this run's numbers, checked where they are made.

A lesson says "the two shoes are closer to each other than to the bag" and a cell checks it. A bare
``assert`` would stop "Run all" the moment a learner experiments (another category, another K), so a
notebook writes instead::

    from cbir_tutorial.lessons.claims import claim

    claim(same < other, "the two shoes are closer to each other than to the bag",
          otherwise="with other photos the ImageNet features need not order three products this way")

which prints ``✓ the two shoes are ...`` when the claim holds, and ``⚠ not this time: the two shoes ...``
with the ``otherwise`` reason when it does not, and goes on. Under the notebooks' test-run settings
(``CBIR_TUTORIAL_STRICT=1`` in ``notebooks/test_run.env``) a claim that does not hold raises
:class:`ClaimFailed`, so a change that breaks what the text says fails the tests.
"""

from __future__ import annotations

import os
from typing import Mapping

STRICT_VARIABLE = "CBIR_TUTORIAL_STRICT"
TRUE_WORDS = ("1", "true", "yes", "on")


class ClaimFailed(AssertionError):
    """A claim of a notebook's text did not hold during a strict (test) run."""


def strict_mode(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CBIR_TUTORIAL_STRICT`` is 1/true/yes/on: a claim that does not hold raises."""
    environ = os.environ if environ is None else environ
    return environ.get(STRICT_VARIABLE, "").strip().lower() in TRUE_WORDS


def claim(holds, statement: str, *, otherwise: str = "", timing: bool = False,
          environ: Mapping[str, str] | None = None) -> None:
    """Print ``✓ statement`` when ``holds`` is true, else ``⚠ not this time: statement`` and ``otherwise``
    (why it may fail, what to look at).

    ``holds``: anything with a truth value (a numpy bool too). Under :func:`strict_mode` a claim that does
    not hold raises :class:`ClaimFailed` naming the statement instead, unless ``timing``: a claim about how long
    something took only ever prints (a shared machine's timings are noise; speed targets live in the
    benchmarks, never in tests). ``environ`` replaces ``os.environ``
    (for tests). Returns None, so a claim that ends a notebook cell shows its line and nothing else (a
    returned bool would print a stray ``True`` under it); a cell that needs the value keeps it itself.
    """
    if holds:
        print(f"✓ {statement}")
        return
    if strict_mode(environ) and not timing:
        raise ClaimFailed(f"the notebook says: {statement}; in this run it does not hold"
                          + (f" ({otherwise})" if otherwise else ""))
    print(f"⚠ not this time: {statement}" + (f"\n  {otherwise}" if otherwise else ""))
