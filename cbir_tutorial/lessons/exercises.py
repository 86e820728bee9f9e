"""Checked exercises: the learner writes a small function, the package says at once whether it is right.

The pattern, in a notebook (notebooks 08 and 09 follow it too)::

    # exercise cell: the learner replaces the `...` line with code
    from cbir_tutorial.lessons.exercises import check, exercise

    @exercise("ap_at_k")
    def my_ap_at_k(relevant, n_relevant, k):
        \"\"\"AP@K of one result list: ...\"\"\"
        ...  # your code

    # check cell, right below (the ";" keeps Jupyter from echoing the returned True/False)
    check("ap_at_k", my_ap_at_k);

    # or, to use the learner's function once it is right:
    if check("ap_at_k", my_ap_at_k):
        print(my_ap_at_k([1, 0, 1], 2, 3))

* ``exercise(name)`` returns the learner's function unchanged once its body holds code. While the body is
  still only ``...`` (or ``pass``), it returns a stand-in that raises :class:`NotDone` when called, or,
  in **solutions mode** (environment variable ``CBIR_TUTORIAL_SOLUTIONS=1``, set by the notebooks'
  test run), the solution from :mod:`cbir_tutorial.lessons.solutions`.
* ``check(name, function)`` runs the function on the exercise's test cases, against the solution. It
  prints ``not done yet: ...`` for a stand-in (so "run all" goes on), one line naming the first wrong
  case (the input, the right value, the learner's value) with a hint when the answer matches a typical
  mistake, or a success line. In solutions mode a wrong answer raises :class:`AssertionError`, so the
  notebooks' test run fails if a solution or a check breaks.

Adding an exercise: its solution goes in ``solutions.py`` (same name), its :class:`Exercise` in
:data:`EXERCISES` (test cases, how to describe a case, typical mistakes as wrong functions with their
hints), and tests/lessons/test_exercises.py checks that every mistake gets its hint.
"""

from __future__ import annotations

import ast
import copy
import inspect
import os
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import solutions

SOLUTIONS_VARIABLE = "CBIR_TUTORIAL_SOLUTIONS"


class NotDone(NotImplementedError):
    """Raised by an exercise's stand-in while the learner has not written the function yet."""


def solutions_mode(environ=None) -> bool:
    """True when ``CBIR_TUTORIAL_SOLUTIONS`` is 1/true/yes: unwritten exercises use the package's solution."""
    environ = os.environ if environ is None else environ
    return environ.get(SOLUTIONS_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``cases`` are argument tuples, ``describe(*args)`` names a case for a message,
    ``mistakes`` pairs a hint with a typical wrong function (its output identifies the mistake)."""

    name: str
    cases: tuple[tuple, ...]
    describe: Callable[..., str]
    mistakes: tuple[tuple[str, Callable], ...] = ()
    atol: float = 1e-6

    @property
    def solution(self) -> Callable:
        return getattr(solutions, self.name)

    def problem(self, function: Callable) -> str | None:
        """What is wrong with ``function`` on the first failing case (with a hint), or None when all pass."""
        for args in self.cases:
            expected = self.solution(*copy.deepcopy(args))
            what = self.describe(*args)
            try:
                got = function(*copy.deepcopy(args))
            except NotDone:
                raise
            except Exception as error:  # the learner's bug: report it, never crash the check
                return f"{what}: your function raised {type(error).__name__}: {error}"
            if _same(got, expected, self.atol):
                continue
            hint = next((hint for hint, wrong in self.mistakes if _same(got, _quietly(wrong, args), self.atol)), "")
            if _shape(got) != _shape(expected):
                text = f"{what} should have shape {_shape(expected)}, yours has shape {_shape(got)}"
            else:
                text = f"{what} should be {_shown(expected)}, yours is {_shown(got)}"
            return text + (f": {hint}" if hint else "")
        return None


def _quietly(function: Callable, args: tuple) -> Any:
    try:
        return function(*copy.deepcopy(args))
    except Exception:
        return None


def _shape(value) -> tuple:
    return np.shape(value) if value is not None else ()


def _same(got, expected, atol: float) -> bool:
    if got is None:
        return False
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False
    expected = np.asarray(expected, dtype=float)
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=atol, rtol=1e-5))


def _shown(value) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        number = array.item()
        return f"{number:,}" if isinstance(number, (int, np.integer)) else f"{number:.3f}"
    return np.array2string(array, precision=3, threshold=12, separator=", ")


def _items(values) -> list:
    return np.asarray(values).tolist()


def _list(values) -> str:
    return np.array2string(np.asarray(values), separator=", ", threshold=12, precision=2)


# Test cases: small, fixed, and chosen so that every typical mistake gives a different answer.
_rng = np.random.default_rng(7)
_IMAGE = _rng.integers(0, 10, size=(5, 6)).astype(float)
_KERNEL = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [-2.0, 0.0, 1.0]])
_MAPS = _rng.normal(size=(2, 3, 4, 5))
_FEATURES = _rng.normal(size=(4, 3)) * np.array([[1.0], [5.0], [0.2], [2.0]])
_QUERIES, _GALLERY = _rng.normal(size=(2, 4)), _rng.normal(size=(5, 4)) * 3
_COSINE_GALLERY = np.array([[1.0, 0.1], [10.0, 6.0], [0.2, 1.0], [-1.0, 0.0], [3.0, 0.5]])
_HITS = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
_DISTANCES = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.4, 0.7])
_ALLOWED = np.array([True, False, True, True, False, True, False, True])
_LABELS = np.array(["shoe", "shoe", "shoe", "bag", "", "", "watch", "bag", "shoe", "belt"], dtype=object)


def _halve_and_shift(x):
    """F(x) = 0.5 * reversed(x) - 1"""
    return 0.5 * x[::-1] - 1


def _double(x):
    """F(x) = 2x"""
    return 2 * x


def _category_sizes(labels):
    values, inverse, counts = np.unique(np.asarray(labels, dtype=object), return_inverse=True, return_counts=True)
    return counts[inverse]


def _sorted_indices(distances, k, allowed):
    order = np.argsort(distances, kind="stable")[:k]
    return order[allowed[order]]


EXERCISES: dict[str, Exercise] = {e.name: e for e in [
    Exercise(
        "query_mask", ((_LABELS,), (_LABELS[:4],)),
        lambda labels: f"the query mask of labels {_items(labels)}",
        (("did you keep the unlabelled products (category \"\")? They have no category to be relevant to",
          lambda labels: _category_sizes(labels) >= 2),
         ("did you keep categories with a single product? Such a query can never find a relevant result",
          lambda labels: np.asarray(labels, dtype=object) != ""))),
    Exercise(
        "chance_precision", ((_LABELS,), (np.array(["a"] * 6 + ["b"] * 2 + ["c"], dtype=object),)),
        lambda labels: f"the chance precision of labels {_items(labels)}",
        (("did you divide by N instead of N - 1? The query is never among its own results",
          lambda labels: float(np.mean((_category_sizes(labels)[solutions.query_mask(labels)] - 1) / len(labels)))),
         ("did you count the query itself as relevant (n_c instead of n_c - 1)?",
          lambda labels: float(np.mean(_category_sizes(labels)[solutions.query_mask(labels)] / (len(labels) - 1)))),
         ("did you average over categories instead of over queries? A large category has more queries",
          lambda labels: float(np.mean([(np.sum(labels == c) - 1) / (len(labels) - 1)
                                        for c in np.unique(labels[solutions.query_mask(labels)])]))),
         ("did you average over every product? Only those of the query mask are queries",
          lambda labels: float(np.mean((_category_sizes(labels) - 1) / (len(labels) - 1)))))),
    Exercise(
        "conv3x3", ((_IMAGE, _KERNEL), (_IMAGE.T.copy(), np.ones((3, 3)))),
        lambda image, kernel: f"the convolution of a {image.shape[0]}x{image.shape[1]} image by kernel {_list(kernel)}",
        (("you flipped the kernel: that is the convolution of mathematics; Conv2D (and `convolve`) slide the "
          "kernel as it is, a cross-correlation", lambda image, kernel: solutions.conv3x3(image, kernel[::-1, ::-1])),
         ("a valid 3x3 convolution has no padding: the output loses one pixel on each side, (H-2, W-2)",
          lambda image, kernel: solutions.conv3x3(np.pad(image, 1), kernel)))),
    Exercise(
        "output_size", ((224, 3, 1, 0), (7, 7, 1, 3), (224, 3, 2, 1), (10, 3, 2, 0), (10, 5, 3, 2)),
        lambda n, kernel, stride, padding: f"output_size(n={n}, kernel={kernel}, stride={stride}, padding={padding})",
        (("(n + 2p - k) / s counts the steps between the first and the last position: add 1 for the first one",
          lambda n, k, s, p: (n + 2 * p - k) // s),
         ("padding p adds p zeros on EACH side: n + 2p pixels in all", lambda n, k, s, p: (n + p - k) // s + 1),
         ("a position where the kernel does not fit entirely is not computed: round down, not up",
          lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1),
         ("did you ignore the padding?", lambda n, k, s, p: (n - k) // s + 1))),
    Exercise(
        "conv_parameters", ((3, 3, 64), (3, 64, 128, False), (1, 256, 64), (5, 1, 1)),
        lambda k, c_in, c_out, bias=True: f"a {k}x{k} Conv2D from {c_in} to {c_out} channels ({'with' if bias else 'no'} bias)",
        (("did you forget the bias (one per output channel)? Or add it when bias=False?",
          lambda k, c_in, c_out, bias=True: k * k * c_in * c_out + (0 if bias else c_out)),
         ("each kernel is as deep as the input: k*k*c_in weights per output channel",
          lambda k, c_in, c_out, bias=True: k * k * c_out + (c_out if bias else 0)),
         ("the bias is one number per OUTPUT channel, not per input channel",
          lambda k, c_in, c_out, bias=True: k * k * c_in * c_out + (c_in if bias else 0)))),
    Exercise(
        "global_average_pool", ((_MAPS,), (_MAPS[:, :1],)),
        lambda maps: f"global average pooling of maps of shape {maps.shape} (batch, height, width, channels)",
        (("you averaged over the channels (axis 3): average over the positions (axes 1 and 2), one number per channel",
          lambda maps: maps.mean(axis=3)),
         ("that is global MAX pooling: average instead", lambda maps: maps.max(axis=(1, 2))),
         ("you summed the positions: divide by their number (height x width)", lambda maps: maps.sum(axis=(1, 2))))),
    Exercise(
        "l2_normalise", ((_FEATURES,), (_FEATURES[:, :2],)),
        lambda features: f"the L2-normalised rows of {_list(features)}",
        (("you scaled the columns (axis=0) to length 1: scale each row, one photo's vector",
          lambda f: f / np.linalg.norm(f, axis=0, keepdims=True)),
         ("you divided by the norm of the whole matrix: each row needs its own (axis=1, keepdims=True)",
          lambda f: f / np.linalg.norm(f)),
         ("you divided by the sum of the values: the length is the square root of the sum of squares",
          lambda f: f / f.sum(axis=1, keepdims=True)))),
    Exercise(
        "receptive_field", (([(3, 1)] * 3,), ([(3, 2), (3, 1)],), ([(7, 2), (3, 2), (3, 1), (3, 1)],), ([(1, 1)],)),
        lambda layers: f"the receptive field of (kernel, stride) layers {layers}",
        (("did you add up the kernel sizes? Each k x k layer widens the field by k - 1 input steps",
          lambda layers: sum(k for k, s in layers)),
         ("did you ignore the strides? After a stride-2 layer, one step of the next layer covers 2 input pixels",
          lambda layers: 1 + sum(k - 1 for k, s in layers)),
         ("a layer's own stride does not widen its own field: multiply by the strides of the layers BEFORE it",
          lambda layers: 1 + sum((k - 1) * int(np.prod([s for _, s in layers[:i + 1]])) for i, (k, _) in enumerate(layers))))),
    Exercise(
        "residual", ((np.array([-2.0, -0.5, 0.0, 1.0, 3.0]), _halve_and_shift), (np.array([[1.0, -1.0], [-3.0, 0.5]]), _double)),
        lambda x, branch: f"the residual block for x = {_list(x)} with {branch.__doc__}",
        (("apply the ReLU AFTER adding the skip connection: relu(F(x) + x)", lambda x, f: x + np.maximum(f(x), 0)),
         ("you forgot the skip connection: add x to F(x) before the ReLU", lambda x, f: np.maximum(f(x), 0)),
         ("the block ends with a ReLU: relu(F(x) + x)", lambda x, f: f(x) + x))),
    Exercise(
        "separable_parameters", ((3, 64, 128), (3, 728, 728), (5, 3, 16)),
        lambda k, c_in, c_out: f"a {k}x{k} separable convolution from {c_in} to {c_out} channels (no bias)",
        (("that is a regular convolution's count: k*k*c_in*c_out", lambda k, c_in, c_out: k * k * c_in * c_out),
         ("the depthwise step has ONE k x k filter per input channel: k*k*c_in, not k*k*c_in*c_out",
          lambda k, c_in, c_out: k * k * c_in * c_out + c_in * c_out),
         ("you forgot the pointwise 1x1 convolution that mixes the channels: c_in*c_out weights",
          lambda k, c_in, c_out: k * k * c_in))),
    Exercise(
        "euclidean_distances", ((_QUERIES, _GALLERY), (_GALLERY[:1], _GALLERY)),
        lambda q, g: f"the distances between {q.shape[0]} queries and {g.shape[0]} gallery vectors of width {q.shape[1]}",
        (("those are squared distances: take the square root", lambda q, g: solutions.euclidean_distances(q, g) ** 2),
         ("the result has one ROW per query: shape (M, N)", lambda q, g: solutions.euclidean_distances(q, g).T),
         ("that is the dot product (a similarity), not a distance", lambda q, g: q @ g.T))),
    Exercise(
        "cosine_top_k", ((_COSINE_GALLERY, np.array([1.0, 0.0]), 3), (_COSINE_GALLERY, np.array([0.0, 2.0]), 5)),
        lambda g, q, k: f"the top {k} of gallery {_list(g)} for query {_list(q)}",
        (("you returned the least similar first: cosine is a similarity, sort it in decreasing order",
          lambda g, q, k: np.argsort((g @ q) / (np.linalg.norm(g, axis=1) * np.linalg.norm(q)), kind="stable")[:k]),
         ("you ranked by the dot product: divide by the vectors' lengths (cosine ignores length)",
          lambda g, q, k: np.argsort(-(g @ q), kind="stable")[:k]),
         ("Euclidean distance ranks like cosine only between unit vectors: normalise first",
          lambda g, q, k: np.argsort(np.linalg.norm(g - q, axis=1), kind="stable")[:k]))),
    Exercise(
        "precision_at_k", ((_HITS[0], 5), (_HITS[0], 3), (np.array([1, 0, 0, 1, 1, 1]), 2)),
        lambda relevant, k: f"P@{k} of {_items(relevant)}",
        (("only the first k results count: cut the list at k", lambda r, k: float(np.sum(r) / k)),
         ("divide by k, not by the length of the list", lambda r, k: float(np.sum(r[:k]) / len(r))),
         ("that is the number of relevant results: divide it by k", lambda r, k: float(np.sum(r[:k]))))),
    Exercise(
        "ap_at_k", ((_HITS[0], 3, 5), (_HITS[1], 4, 5), (_HITS[2], 8, 5), (np.array([1, 0, 0, 0, 0, 1, 1]), 2, 5),
                    (_HITS[3], 0, 5)),
        lambda relevant, n_relevant, k: f"AP@{k} of {_items(relevant)} with R = {n_relevant}",
        (("did you divide by K instead of min(K, R)?",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / k),
         ("did you divide by R instead of min(K, R)? A list of K results holds at most K relevant ones",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / n if n else 0.0),
         ("did you divide by the relevant results FOUND? Then missing ones cost nothing: divide by min(K, R)",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / max(np.sum(r[:k]), 1)),
         ("did you average the precision at EVERY rank? Only ranks holding a relevant result count",
          lambda r, n, k: float(np.mean(solutions.precision_curve(r[:k])))),
         ("only the first k results count: cut the list at k",
          lambda r, n, k: solutions.ap_at_k(r, n, len(r)) * min(len(r), n) / min(k, n) if n else 0.0))),
    Exercise(
        "map_at_k", ((_HITS, [3, 4, 8, 2], 5), (_HITS[:3], [3, 4, 8], 5), (_HITS[:, :3], [1, 1, 1, 1], 3)),
        lambda hits, n_relevant, k: f"MAP@{k} of the result lists {np.asarray(hits).tolist()} with R = {_items(n_relevant)}",
        (("every query counts, also one that found nothing (its AP is 0)",
          lambda h, n, k: float(np.mean([solutions.ap_at_k(r, m, k) for r, m in zip(h, n) if np.sum(r[:k])]))),
         ("that is the mean precision@K: MAP averages AP@K, which rewards relevant results that come early",
          lambda h, n, k: float(np.mean([solutions.precision_at_k(r, k) for r in h]))),
         ("did you divide each AP@K by K instead of min(K, R)?",
          lambda h, n, k: float(np.mean([solutions.ap_at_k(r, m, k) * min(k, m) / k for r, m in zip(h, n)]))))),
    Exercise(
        "filtered_top_k", ((_DISTANCES, _ALLOWED, 3), (_DISTANCES, _ALLOWED, 5), (_DISTANCES, ~_ALLOWED, 2)),
        lambda d, allowed, k: f"the {k} nearest allowed rows for distances {_items(d)} and allowed {allowed.astype(int).tolist()}",
        (("you took the k nearest first and filtered them afterwards, so fewer than k come back: filter first",
          lambda d, allowed, k: _sorted_indices(d, k, allowed)),
         ("those are positions among the allowed products: map them back to catalogue rows (np.flatnonzero(allowed))",
          lambda d, allowed, k: np.argsort(d[allowed], kind="stable")[:k]),
         ("nearest first: sort the distances in increasing order",
          lambda d, allowed, k: np.flatnonzero(allowed)[np.argsort(-d[allowed], kind="stable")[:k]]))),
    Exercise(
        "precision_curve", ((_HITS[0],), (np.array([0, 1, 1, 0, 1, 0, 0, 1]),)),
        lambda relevant: f"the precision curve of {_items(relevant)}",
        (("precision@j divides the relevant results so far by j, not by the length of the list",
          lambda r: np.cumsum(r) / len(r)),
         ("divide the running count of relevant results by the rank j", lambda r: np.cumsum(r).astype(float)),
         ("precision@j counts the relevant results among the first j: a running sum (np.cumsum)",
          lambda r: np.asarray(r, dtype=float) / np.arange(1, len(r) + 1)))),
]}


def _not_done(name: str, function_name: str) -> Callable:
    def stand_in(*args, **kwargs):
        raise NotDone(f"{function_name} is not written yet: replace the `...` line of the exercise cell with your "
                      f"code and run that cell again (or set {SOLUTIONS_VARIABLE}=1 to use the package's solution).")

    stand_in.__name__ = function_name
    stand_in.not_done = True
    stand_in.exercise = name
    return stand_in


def is_stub(function: Callable) -> bool:
    """True when ``function``'s body holds nothing but a docstring, ``...`` or ``pass``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        body = tree.body[0].body
    except (OSError, TypeError, SyntaxError, IndexError, AttributeError):
        return function.__code__.co_code in {_empty.__code__.co_code, _empty_documented.__code__.co_code}
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
               and (s.value.value is Ellipsis or isinstance(s.value.value, str))) for s in body)


def _empty():
    ...


def _empty_documented():
    """A docstring."""
    ...


def exercise(name: str) -> Callable[[Callable], Callable]:
    """Decorator for an exercise cell's function: see the module docstring."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")

    def decorate(function: Callable) -> Callable:
        if not is_stub(function):
            return function
        if solutions_mode():
            return EXERCISES[name].solution
        return _not_done(name, function.__name__)

    return decorate


def check(name: str, function: Callable) -> bool:
    """Run ``function`` on exercise ``name``'s cases; print what is wrong (with a hint) or a success line.

    Returns True when right. In solutions mode a wrong answer raises :class:`AssertionError`.
    """
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    item = EXERCISES[name]
    if getattr(function, "not_done", False):
        print(f"not done yet: {name}: write the body of {function.__name__} in the cell above, run it, then run "
              "this cell again.")
        return False
    try:
        problem = item.problem(function)
    except NotDone as error:
        print(f"not done yet: {name}: {error}")
        return False
    if problem is None:
        print(f"✓ {name}: right on all {len(item.cases)} test cases.")
        return True
    if solutions_mode():
        raise AssertionError(f"{name}: {problem}")
    print(f"✗ {name}: {problem}")
    return False
