"""Checked exercises, Kaggle Learn style: the learner writes a small function, ``q.check(fn)`` says at once
whether it is right, ``q.hint()`` gives a nudge and ``q.solution()`` shows a worked answer.

The pattern, in a notebook::

    # exercise cell: the learner replaces the `...` line with code
    from cbir_tutorial.lessons.exercises import nb06

    @nb06.q2.write
    def my_ap_at_k(ranks, n_relevant, k):
        \"\"\"AP@K of one result list: ...\"\"\"
        ...  # your code: replace this line

    # check cell, right below
    nb06.q2.check(my_ap_at_k)
    # nb06.q2.hint()      # a nudge
    # nb06.q2.solution()  # the answer

    # or, to use the learner's function once it is right:
    if nb06.q2.check(my_ap_at_k):
        print(my_ap_at_k([1, 3], 2, 3))

* ``q.write`` (or ``exercise(name)``) returns the learner's function unchanged once its body holds code.
  While the body is still only ``...`` (or ``pass``), it returns a stand-in that raises :class:`NotDone`
  when called, or, in **solutions mode** (environment variable ``CBIR_TUTORIAL_SOLUTIONS=1``, set by the
  notebooks' test run), the solution from :mod:`cbir_tutorial.lessons.solutions`.
* ``q.passes(function)`` says the same silently (True when written and right), for a later cell that uses the
  learner's function only then.
* ``q.check(function)`` (or ``check(name, function)``) first refuses a function that is or uses this package
  (the exercise is to write the step, not to wrap the package's own implementation; the solution itself passes
  only in solutions mode) or a library that does the step (:data:`OTHER_LIBRARIES`: Keras, TensorFlow, torch,
  scipy.signal, scipy.ndimage, scipy.spatial, sklearn, faiss, OpenCV, scikit-image), then runs it on the
  exercise's test cases; a mask must be a bool array. It prints ``not done yet: ...`` for a stand-in (so "run
  all" goes on), one line naming the first wrong case, the learner's value and a hint about the likely mistake
  (never the expected value), or a success line. In solutions mode a wrong answer raises
  :class:`AssertionError`, so the notebooks' test run fails if a solution or a check breaks.

Adding an exercise: its solution goes in ``solutions.py`` (same name), its :class:`Exercise` in
:data:`EXERCISES` (test cases, how to describe a case, a general hint, the package's own implementation,
typical mistakes as wrong functions with their hints), its place in a lesson in :data:`LESSONS`; and
tests/lessons/test_exercises.py checks that every mistake and a function calling the package get a hint.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dis
import functools
import heapq
import importlib
import importlib.util
import inspect
import itertools
import linecache
import os
import re
import sys
import textwrap
import tracemalloc
import types
from dataclasses import dataclass, replace
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
    ``hint_text`` is the nudge of :meth:`hint`, ``package`` names the package's own implementation(s) of
    the step (dotted paths; a learner's function that uses the package is refused), and ``mistakes`` pairs
    a hint with a typical wrong function (its output identifies the mistake). ``rule(function)``, when
    given, is a condition on how the answer is computed, checked once the values are right: what is wrong,
    or None. ``order_hint``, when given, is the hint for an answer that holds the right values in another
    order (a top k that was never sorted)."""

    name: str
    cases: tuple[tuple, ...]
    describe: Callable[..., str]
    mistakes: tuple[tuple[str, Callable], ...] = ()
    atol: float = 1e-6
    hint_text: str = ""
    package: tuple[str, ...] = ()
    rule: Callable[[Callable], str | None] | None = None
    order_hint: str = ""

    @property
    def solution_function(self) -> Callable:
        return getattr(solutions, self.name)

    def problem(self, function: Callable) -> str | None:
        """What is wrong with ``function`` (with a hint), or None when it passes every case."""
        refused = self.refusal(function)
        if refused:
            return f"{refused}: the exercise is to write this step yourself, with numpy. Hint: {self.hint_text}"
        for args in self.cases:
            expected = self.solution_function(*copy.deepcopy(args))
            what = self.describe(*args)
            try:
                got = function(*copy.deepcopy(args))
            except NotDone:
                raise
            except Exception as error:  # the learner's bug: report it with the general hint, never crash the check
                raised = f"{what}: your function raised {type(error).__name__}: {str(error).strip().rstrip('.')}"
                return raised + (f". Hint: {self.hint_text}" if self.hint_text else "")
            if _same(got, expected, self.atol):
                if isinstance(expected, np.ndarray) and expected.dtype == bool and not (
                        isinstance(got, np.ndarray) and got.dtype == bool):
                    if type(got).__module__.split(".")[0] == "pandas":
                        return (f"{what}: right values, but a pandas {type(got).__name__} instead of a numpy bool "
                                "array: return a numpy array (`.to_numpy()` turns your Series into one)")
                    return (f"{what}: right values, but {_kind(got)} instead of a bool array. A mask must be "
                            "one: used to index the catalogue, a 0/1 int array picks rows 0 and 1, not the rows "
                            "where it holds 1 (compare with ==, !=, >= and combine with &: numpy gives bools)")
                continue
            hint = next((hint for hint, wrong in self.mistakes
                         if _same(got, _quietly(wrong, args), self.atol, nan_equal=True)),
                        self.order_hint if self.order_hint and _reordered(got, expected) else self.hint_text)
            if got is None and expected is not None:
                return f"{what}: your function returned None: did you forget `return`?"
            if _shape(got) != _shape(expected):
                text = f"{what} should have shape {_shape(expected)}, yours has shape {_shape(got)}"
            else:
                text = f"{what}: yours gives {_shown(got)}"
            return text + (f": {hint}" if hint else "")
        broken = self.rule(function) if self.rule else None
        return f"{broken}: {self.hint_text}" if broken else None

    def refusal(self, function: Callable) -> str:
        """Why ``function`` is not an answer of the learner's own, or '': it is the package's own function (its
        solution too, except in solutions mode, where the notebooks' test run passes it), or it uses the
        package (:func:`uses_the_package`) or a library that does the step (:func:`uses_a_library`). The
        exercise's typical mistakes are judged by their values, never refused."""
        if any(function is wrong for _, wrong in self.mistakes):
            return ""
        if function is self.solution_function and solutions_mode():
            return ""
        for inner in _wrapped(function):
            own = _package_name(inner)
            if own:
                return f"that is the package's own `{own}`, not a function of yours"
            used = uses_the_package(inner)
            if used:
                return f"your function uses the package's own {used}"
            used = uses_a_library(inner)
            if used:
                return f"your function uses {used}, which does the step for you"
        return ""

    # Kaggle Learn's verbs
    def write(self, function: Callable) -> Callable:
        """Decorator for the exercise cell's function: see the module docstring."""
        return exercise(self.name)(function)

    def check(self, function: Callable) -> "Verdict":
        """Run ``function`` on the cases; print what is wrong (with a hint) or a success line."""
        return Verdict(check(self.name, function))

    def passes(self, function: Callable) -> bool:
        """True when ``function`` is written and right, printing nothing: for a later cell that uses the learner's
        function only once its check passed."""
        if getattr(function, "not_done", False):
            return False
        try:
            return self.problem(function) is None
        except NotDone:
            return False

    def hint(self) -> None:
        """Print a nudge towards the answer."""
        print(f"Hint ({self.name}): {self.hint_text}")

    def solution(self) -> None:
        """Print a worked answer (the package's solution, numpy only), whole: with its imports and the other
        solutions it calls, so that it runs pasted alone into a cell."""
        print(f"Solution ({self.name}):\n\n{pasteable_source(self.solution_function)}")


def pasteable_source(function: Callable) -> str:
    """The source of the solution ``function`` as it runs pasted alone into a cell: numpy's import, the typing
    names its annotations use, and before it the other solutions it calls (``map_at_k`` calls ``ap_at_k``)."""
    needed, todo = [], [function]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        needed.insert(0, current)
        codes = [current.__code__]
        while codes:
            code = codes.pop()
            codes.extend(k for k in code.co_consts if isinstance(k, types.CodeType))
            todo.extend(value for name in code.co_names
                        if isinstance(value := getattr(solutions, name, None), types.FunctionType)
                        and value.__module__ == solutions.__name__ and value not in needed)
    sources = [textwrap.dedent(inspect.getsource(f)) for f in needed]
    typing = [name for name in ("Callable", "Sequence") if any(re.search(rf"\b{name}\b", s) for s in sources)]
    header = ["import numpy as np"] + ([f"from typing import {', '.join(typing)}"] if typing else [])
    return "\n".join(header) + "\n\n\n" + "\n\n".join(sources)


class Verdict:
    """What ``q.check`` returns: true when right; shows nothing in a notebook (the check printed already).
    ``answered``: false while the exercise or question is not done yet (a later cell may wait for it)."""

    def __init__(self, right: bool, *, answered: bool = True):
        self.right, self.answered = bool(right), bool(answered)

    def __bool__(self) -> bool:
        return self.right

    def __repr__(self) -> str:
        return f"Verdict({'right' if self.right else 'not yet'})"

    def _ipython_display_(self) -> None:
        pass


def _referenced(function: Callable, seen: set) -> list:
    """Global, closure and default values ``function``'s code refers to, with its nested functions' too."""
    code = getattr(function, "__code__", None)
    if code is None or id(function) in seen:
        return []
    seen.add(id(function))
    names, codes, strings = set(), [code], set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        strings.update(k for k in c.co_consts if isinstance(k, str))
    globals_ = getattr(function, "__globals__", {})
    values = [("import " + n, n) for n in names if n.split(".")[0] == "cbir_tutorial"]
    values += [(n, globals_[n]) for n in names if n in globals_]
    values += [(n, cell.cell_contents) for n, cell in zip(code.co_freevars, function.__closure__ or ())
               if _filled(cell)]
    values += [("default", v) for v in (*(function.__defaults__ or ()), *(function.__kwdefaults__ or {}).values())]
    if names & _NAMESPACE_READERS:  # globals()["pool"], vars()[...], eval("pool"): a global named by a string
        values += [(f"globals()[{s!r}]", globals_[s]) for s in sorted(strings) if s in globals_]
    module = getattr(function, "__module__", None)
    values += [(label, inner) for label, value in list(values) for inner in _contents(value, module)]
    return values


#: Names through which code reads a global by a string: ``globals()["pool"]``, ``vars()[...]``, ``eval("pool")``.
_NAMESPACE_READERS = {"globals", "vars", "eval"}


def _contents(value, module, depth: int = 3, limit: int = 1000) -> list:
    """What ``value`` holds that code could call, ``depth`` levels down (the first ``limit`` items of each): the
    keys and values of a dict, the items of a list, tuple or set, the attributes of a ``SimpleNamespace``, a
    ``functools.partial``'s function and arguments, the function (and object) of a method, staticmethod or
    classmethod, and the attributes, class and bases of a class or an object the learner defined (in ``module``,
    the learner's function's: ``__main__`` in a notebook). A package function hidden in one of them (``{"gap":
    pool}["gap"](maps)``, a callable object whose ``__call__`` uses the package) is then found like one the code
    names."""
    found, todo, seen = [], [(value, 0)], set()
    while todo:
        current, level = todo.pop()
        if id(current) in seen or level >= depth:
            continue
        seen.add(id(current))
        if isinstance(current, dict):
            inner = itertools.chain.from_iterable(current.items())
        elif isinstance(current, (list, tuple, set, frozenset)):
            inner = current
        elif isinstance(current, functools.partial):
            inner = [current.func, *current.args, *current.keywords.values()]
        elif isinstance(current, (staticmethod, classmethod)):
            inner = [current.__func__]
        elif isinstance(current, types.MethodType):
            inner = [current.__func__, current.__self__]
        elif isinstance(current, types.SimpleNamespace):
            inner = vars(current).values()
        elif isinstance(current, type) and current.__module__ == module:
            inner = [*vars(current).values(), *current.__bases__]
        elif (module is not None and getattr(type(current), "__module__", None) == module
              and not isinstance(current, (types.FunctionType, type))):
            inner = [type(current), *getattr(current, "__dict__", {}).values()]
        else:
            continue
        inner = list(itertools.islice(inner, limit))
        found += inner
        todo += [(v, level + 1) for v in inner]
    return found


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _wrapped(function: Callable, depth: int = 3) -> list:
    """``function`` and the callables it wraps, ``depth`` levels down: a ``functools.partial``'s function and the
    callables among its arguments, a bound method's function, a callable object's ``__call__`` and the callables
    it holds; what the refusal of an answer reads, so that wrapping the package's function hides nothing."""
    found, todo = [], [(function, 0)]
    while todo:
        current, level = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        if level >= depth:
            continue
        inner = []
        if isinstance(current, functools.partial):
            inner = [current.func, *current.args, *current.keywords.values()]
        elif isinstance(current, types.MethodType):
            inner = [current.__func__, current.__self__]
        elif not isinstance(current, (types.FunctionType, types.BuiltinFunctionType, type)) and callable(current):
            inner = [type(current).__call__, *getattr(current, "__dict__", {}).values()]
        todo.extend((value, level + 1) for value in inner if callable(value))
    return found


def _package_name(value) -> str:
    """The dotted ``cbir_tutorial`` name of ``value`` when it belongs to the package, else ''."""
    if isinstance(value, str):
        return value if value.split(".")[0] == "cbir_tutorial" else ""
    if isinstance(value, types.ModuleType):
        return value.__name__ if value.__name__.split(".")[0] == "cbir_tutorial" else ""
    module = getattr(value, "__module__", None) or ""
    if not isinstance(module, str) or module.split(".")[0] != "cbir_tutorial":
        return ""
    return f"{module}.{getattr(value, '__qualname__', getattr(value, '__name__', type(value).__name__))}"


#: Names through which code imports a module named by a string: ``importlib.import_module``, ``__import__``,
#: ``importlib.util``'s spec functions, ``sys.modules``; and the same objects, for an alias made outside the function.
_IMPORTER_NAMES = {"importlib", "import_module", "__import__", "find_spec", "module_from_spec",
                   "spec_from_file_location", "modules"}
_IMPORTERS = (importlib.import_module, builtins.__import__, importlib.util.find_spec, importlib.util.module_from_spec,
              importlib.util.spec_from_file_location, sys.modules)


def _imported_by_name(function: Callable, references: list, libraries: tuple = ()) -> str:
    """The ``cbir_tutorial`` module that ``function``'s code imports from a string, or '': an importer (see
    :data:`_IMPORTER_NAMES`) and a string constant naming the package, in the code or its nested functions (Python
    folds ``"cbir_tutorial." + "lessons"`` into one constant; separate pieces are read joined in their order).
    ``references``: what :func:`_referenced` found, for an importer bound to another name outside the function.
    With ``libraries``: the entry of ``libraries`` so imported instead (``import_module("scipy.stats")``)."""
    names, texts, codes = set(), [], [getattr(function, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is None:
            continue
        names.update(code.co_names)
        pieces = []
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                codes.append(constant)
            else:
                pieces += [c for c in (constant if isinstance(constant, tuple) else (constant,)) if isinstance(c, str)]
        texts += pieces + ["".join(pieces)]
    if not (names & _IMPORTER_NAMES or any(value is importer for _, value in references for importer in _IMPORTERS)):
        return ""
    if libraries:
        return next((found for found in (_library(text.strip(), libraries) for text in texts) if found), "")
    named = next((match[0] for match in map(re.compile(r"cbir_tutorial[\w.]*").search, texts) if match), "")
    # sys.modules read with a key built at run time (a search of its names): no exercise needs it but to reach the
    # package, so it counts as the package even when no string names it
    reads_sys_modules = ("modules" in names and ("sys" in names or any(value is sys for _, value in references))
                         or any(value is sys.modules for _, value in references))
    return named or ("cbir_tutorial" if reads_sys_modules else "")


def uses_the_package(function: Callable, depth: int = 3) -> str:
    """The first ``cbir_tutorial`` name (function, class or module) ``function`` refers to, or ''.

    Read from its code object (names, imports inside it, closures, defaults) and, ``depth`` levels down,
    the learner's own helper functions it calls; the package's exercise stand-ins are not the package.
    """
    seen: set = set()
    todo = [(function, 0)]
    while todo:
        current, level = todo.pop()
        first_visit = id(current) not in seen
        references = _referenced(current, seen)
        imported = _imported_by_name(current, references) if first_visit else ""
        if imported:
            return f"`{imported}`"
        for label, value in references:
            if getattr(value, "not_done", False):
                continue
            if label.startswith("import "):
                return f"`{value}`"
            name = _package_name(value)
            if name:
                return f"`{name}`"
            if (level < depth and isinstance(value, types.FunctionType)
                    and value.__module__ == getattr(function, "__module__", None)):
                todo.append((value, level + 1))
    return ""


#: Libraries that would do an exercise's step in one call (a Keras ``Conv2D`` or ``GlobalAveragePooling2D``,
#: ``tf.math.l2_normalize``, ``scipy.signal.correlate2d``, ``sklearn.preprocessing.normalize``,
#: ``scipy.spatial.distance.cdist``, ``faiss.pairwise_distances``, OpenCV's ``cv2.filter2D``, scikit-image's
#: filters...): the exercises ask for numpy, and an answer that uses one of these is refused.
OTHER_LIBRARIES = ("keras", "tf_keras", "tensorflow", "torch", "torchvision", "jax", "sklearn", "scipy.signal",
                   "scipy.ndimage", "scipy.spatial", "faiss", "cv2", "skimage")


def _library(name: str, libraries: tuple = OTHER_LIBRARIES) -> str:
    """The entry of ``libraries`` that the dotted ``name`` belongs to, or ''."""
    return next((library for library in libraries if name == library or name.startswith(library + ".")), "")


def _names_read(function: Callable) -> set:
    """The global, attribute and import names ``function``'s code (nested functions included) reads."""
    names, codes = set(), [getattr(function, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is not None:
            names.update(code.co_names)
            codes.extend(k for k in code.co_consts if isinstance(k, types.CodeType))
    return names


def _library_of(value, attributes: set, libraries: tuple = OTHER_LIBRARIES) -> str:
    """The entry of ``libraries`` that ``value`` (a module, function, class or object) comes from, or ''.
    ``attributes``: the names the code reads, for a module whose attribute is the library (``scipy`` then
    ``.signal``)."""
    if isinstance(value, types.ModuleType):
        return _library(value.__name__, libraries) or next(
            (found for a in sorted(attributes) if (found := _library(f"{value.__name__}.{a}", libraries))), "")
    module = getattr(value, "__module__", None)
    return (_library(module if isinstance(module, str) else "", libraries)
            or _library(getattr(type(value), "__module__", ""), libraries))


def uses_a_library(function: Callable, depth: int = 3, libraries: tuple = OTHER_LIBRARIES) -> str:
    """The first name ``function`` refers to from one of ``libraries`` (default :data:`OTHER_LIBRARIES`), with its
    library, or ''.

    Read like :func:`uses_the_package`: imports inside it (``from scipy import signal`` too), its globals (a module,
    a function, a Keras layer built outside), closures and defaults, and the learner's own helper functions
    ``depth`` levels down.
    """
    seen: set = set()
    todo = [(function, 0)]
    while todo:
        current, level = todo.pop()
        names = _names_read(current)
        references = list(_referenced(current, seen))
        imported = _imported_by_name(current, references, libraries)  # import_module("scipy.stats")
        if imported:
            return f"`{imported}`"
        for label, value in references:
            library = _library_of(value, names, libraries)
            if library:
                return f"`{library}`" if isinstance(value, types.ModuleType) else f"`{label}` (from {library})"
            if (level < depth and isinstance(value, types.FunctionType)
                    and value.__module__ == getattr(function, "__module__", None)):
                todo.append((value, level + 1))
        local = [n for n in names if n not in getattr(current, "__globals__", {})]
        # `import tensorflow as tf` inside the function, or `from scipy import signal` (the library one name below)
        imported = sorted(n for n in local if _library(n, libraries)) or sorted(
            f"{n}.{a}" for n in local for a in names if _library(f"{n}.{a}", libraries))
        if imported:
            return f"`{_library(imported[0], libraries)}`"
    return ""


def _quietly(function: Callable, args: tuple) -> Any:
    """``function(*args)``, or None when it raises; numpy's warnings silenced (a typical mistake may divide by 0)."""
    try:
        with np.errstate(all="ignore"):
            return function(*copy.deepcopy(args))
    except Exception:
        return None


def _shape(value) -> tuple:
    return np.shape(value) if value is not None else ()


def _same(got, expected, atol: float, nan_equal: bool = False) -> bool:
    """True when ``got`` has ``expected``'s shape and values; ``nan_equal``: a NaN matches a NaN (a mistake that
    divides by zero is recognised by where its NaN fall; a right answer never holds one). Text is never a number:
    numpy would read ``"7"`` (or a list of such strings) as 7, so a str or bytes answer is refused before the cast."""
    if got is None or isinstance(got, (str, bytes)):
        return False
    try:
        if np.asarray(got).dtype.kind in "SU":
            return False
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False
    expected = np.asarray(expected, dtype=float)
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=atol, rtol=1e-5,
                                                            equal_nan=nan_equal))


def _kind(value) -> str:
    """``value``'s type in words: "a list", "an int64 array"..."""
    if isinstance(value, np.ndarray):
        name = str(value.dtype)
        return f"{'an' if name[0] in 'aeiou' else 'a'} {name} array"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _reordered(got, expected) -> bool:
    """True when ``got`` holds the values of the 1-D ``expected`` in another order."""
    try:
        got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    except (TypeError, ValueError):
        return False
    return got.ndim == expected.ndim == 1 and got.shape == expected.shape and bool(
        np.array_equal(np.sort(got), np.sort(expected)))


def _shown(value) -> str:
    """``value`` as a check's message shows it: a number (thousands separated, or 3 decimals) or an array of numbers
    in short; None with the likely cause; anything else as Python writes it (at most 80 characters), so that no
    answer, however odd, makes the check itself fail."""
    if value is None:
        return "None (your function returned None: did you forget `return`?)"
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged lists
        array = np.asarray(None)
    if array.dtype.kind in "biuf":
        if array.ndim == 0:
            number = array.item()
            if isinstance(number, bool):
                return str(number)
            return f"{number:,}" if isinstance(number, int) else f"{number:.3f}"
        return np.array2string(array, precision=3, threshold=12, separator=", ")
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} (text: return numbers, not strings)" if array.dtype.kind in "SU" else text


def _items(values) -> list:
    return np.asarray(values).tolist()


def _list(values) -> str:
    return np.array2string(np.asarray(values), separator=", ", threshold=12, precision=2)


# Test cases: small, fixed, and chosen so that every typical mistake gives a different answer.
_rng = np.random.default_rng(7)
_IMAGE = _rng.integers(0, 10, size=(5, 6)).astype(float)
_KERNEL = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [-2.0, 0.0, 1.0]])
#: Grey values in 0..1, as in notebook 2's photo: whole numbers nowhere, so an answer that keeps only the whole
#: part (an output array of ints) fails here, where on _IMAGE and whole-number kernels it would pass.
_GREY = np.round(np.random.default_rng(21).uniform(0, 1, size=(4, 5)), 3)
_MAPS = _rng.normal(size=(2, 3, 4, 5))
_FEATURES = _rng.normal(size=(4, 3)) * np.array([[1.0], [5.0], [0.2], [2.0]])
_QUERIES, _GALLERY = _rng.normal(size=(2, 4)), _rng.normal(size=(5, 4)) * 3
_COSINE_GALLERY = np.array([[1.0, 0.1], [10.0, 6.0], [0.2, 1.0], [-1.0, 0.0], [3.0, 0.5]])
_HITS = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
#: Result lists longer than k = 3 (an answer that ignores k scores their tails too), R at least what each holds.
_HITS_BEYOND_K = np.array([[0, 1, 0, 1, 1, 1], [1, 1, 0, 0, 0, 1], [0, 0, 0, 1, 1, 0]])
_DISTANCES = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.8, 0.4, 0.7])
_ALLOWED = np.array([True, False, True, True, False, True, False, True])
#: 40 products (24 allowed), and 1,000 (about 650 allowed) with a top 300: numpy's argpartition happens to
#: return a short top k sorted (on some machines up to k = 128 or more), so only a long one shows an answer
#: that never sorts.
_MANY_DISTANCES = np.round(np.random.default_rng(11).uniform(0.1, 2.0, 40), 3)
_MANY_ALLOWED = np.random.default_rng(12).uniform(size=40) < 0.65
_LONG_DISTANCES = np.random.default_rng(14).uniform(0.1, 2.0, 1000)
_LONG_ALLOWED = np.random.default_rng(15).uniform(size=1000) < 0.65
#: 1,000 products, a strict filter: 30 pass (3 %), and they are the 30 farthest. An answer that takes a few times k
#: nearest products first and filters them afterwards ("over-fetch") finds none of them.
_SELECTIVE_DISTANCES = np.random.default_rng(18).uniform(0.1, 2.0, 1000)
_SELECTIVE_ALLOWED = _SELECTIVE_DISTANCES >= np.sort(_SELECTIVE_DISTANCES)[-30]
#: _DISTANCES a trillion times larger: an answer that gives the refused products a finite stand-in distance (10,
#: 1e9...) instead of leaving them out ranks them before allowed products farther away than the stand-in.
_FAR_DISTANCES = _DISTANCES * 1e12
_WIDE_GALLERY = np.round(np.random.default_rng(13).normal(size=(30, 3)) * np.array([1.0, 1.0, 0.3]), 3)
_LONG_GALLERY = np.random.default_rng(16).normal(size=(1000, 3))
#: 96 float32 unit vectors of a backbone's width; every other one is also a query. A query's squared distance to
#: itself, 1 - 2 q.q + 1, rounds to a tiny number of either sign (about a third of them come out negative), so an
#: answer that takes the square root without clamping at 0 gives NaN there.
_UNIT_ROWS32 = np.random.default_rng(17).normal(size=(96, 1280)).astype(np.float32)
_UNIT_ROWS32 /= np.linalg.norm(_UNIT_ROWS32, axis=1, keepdims=True)
_LABELS = np.array(["shoe", "shoe", "shoe", "bag", "", "", "watch", "bag", "shoe", "belt"], dtype=object)
#: Seven unlabelled products, more than any category has, and three single-product categories (a x5, b x3, c x2,
#: d, e, f): keeping the unlabelled or the single products as queries, averaging over categories, over every
#: product or taking the median give different chance levels (on _LABELS some coincide; with one single product,
#: keeping it and averaging over categories did too). N = 20 products, 13 labelled: dividing by N, by the labelled
#: products or by K = 10 are three different mistakes (on the other cases, N = 10 = K). It is the first case, so
#: its values choose the hint.
_MOSTLY_UNLABELLED = np.array(["a", "", "b", "a", "c", "", "a", "d", "b", "", "c", "a", "", "e", "b", "", "a", "",
                               "f", ""], dtype=object)
#: A photo whose features are all zero (a blank image through some networks): no direction, it stays zeros.
_WITH_A_ZERO_ROW = np.vstack([_FEATURES[:2], np.zeros((1, 3)), _FEATURES[2:]])
#: Rows whose values sum to 0 without being zeros: an answer that finds "a row of zeros" by its sum zeroes them.
_ZERO_SUM_ROWS = np.array([[1.0, -1.0, 0.0], [0.3, 0.4, 1.2], [2.0, 3.0, -5.0]])
#: Rows that are not zeros, though their largest value or their first value is 0: an answer that finds "a row of
#: zeros" by its maximum or by its first value zeroes them.
_ZERO_MAX_OR_FIRST_ROWS = np.array([[0.0, -0.6, -0.8], [-1.0, 0.0, -2.0], [0.0, 0.5, 1.2], [0.3, 0.4, 1.2]])
#: Rows 4e-11 to 1.5e-9 long, as short as an untrained network's features (EfficientNet-Lite0's avg_pool with
#: random weights: about 3e-10), yet not zeros: an epsilon added to every length, a floor on the lengths or a
#: threshold under which a row counts as zero leaves them short or zeroes them.
_SHORT_ROWS = _FEATURES * 2e-10
#: One such short row between two ordinary ones: a threshold relative to the longest row zeroes it.
_SHORT_BESIDE_LONG = np.vstack([_FEATURES[:1], _SHORT_ROWS[1:2], _FEATURES[2:3]])


_MAP_5X5 = np.round(np.random.default_rng(20).normal(size=(5, 5, 2)), 2)
#: An even map, as ResNet50's 56, 28 and 14: stride 2 keeps 0, 2, 4, which counting back from the last pixel
#: (1, 3, 5) or spreading the samples evenly (0, 2, 5) does not, where on an odd map all three agree.
_MAP_6X6 = np.round(np.random.default_rng(21).normal(size=(6, 6, 2)), 2)
_MIX = np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -2.0]])


def _corner_conv3x3(padded, kernel):
    """``(H, W)`` from an ``(H+2, W+2)`` array: each output is the 3x3 window whose top-left corner it is."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    return np.array([[(padded[i:i + 3, j:j + 3] * kernel).sum() for j in range(w)] for i in range(h)])


#: Notebook 2's output_size cases. (64, 2, 2, 0) is 2x2 pooling of 64 pixels: a formula that counts the positions
#: of the kernel's centre (right for odd kernels only) gives 31 there instead of 32. The other padded cases have
#: p = (k - 1) / 2, where "same" padding gives the same count: (10, 3, 1, 2), a 3-pixel kernel with 2 zeros on each
#: side, refuses an answer that uses ceil(n / s) for every padding (10 instead of 12). The next two have even kernels
#: where halving is wrong: 2x2 pooling of an odd 29 (the small CNN's pool2: 14; ceil(n / s) gives 15) and a 4-pixel
#: window at stride 2 with padding 1 ((n + 2p) // s gives 5 instead of 4). On these three even windows n // s is
#: right too: the last two refuse an answer that halves for even windows, a 4-pixel window at stride 2 (n // s gives 5
#: instead of 4) and 2x2 pooling at stride 1 (7 instead of 6). The last has a window narrower than its stride, a 1x1
#: convolution at stride 2 (ResNet's projection shortcut) on an odd 29: (n + 2p) // s gives 14 instead of 15.
_OUTPUT_SIZE_CASES = ((224, 3, 1, 0), (7, 7, 1, 3), (224, 3, 2, 1), (10, 3, 2, 0), (10, 5, 3, 2), (64, 2, 2, 0),
                      (10, 3, 1, 2), (29, 2, 2, 0), (8, 4, 2, 1), (10, 4, 2, 0), (7, 2, 1, 0), (29, 1, 2, 0))
_CONV3X3_CASES = ((_IMAGE, _KERNEL), (_IMAGE.T.copy(), np.ones((3, 3))), (_GREY, _KERNEL * 0.5))
_CONV_PARAMETERS_CASES = ((3, 4, 64), (3, 64, 128, False), (1, 256, 64), (5, 1, 1))


def _output_size_case(n, kernel, stride, padding) -> str:
    return f"output_size(n={n}, kernel={kernel}, stride={stride}, padding={padding})"


def _conv_parameters_case(k, c_in, c_out, bias=True) -> str:
    return f"a {k}x{k} Conv2D from {c_in} to {c_out} channels ({'with' if bias else 'no'} bias)"


def _a_whole_number(cases: tuple, describe: Callable[..., str], why: str) -> Callable[[Callable], str | None]:
    """The rule for a count (notebook 2's ``output_size`` and ``conv_parameters``, notebook 4's ``receptive_field`` and
    ``separable_parameters``): None when the answer is an int (Python's
    or numpy's) on every one of ``cases``; else what it returned, then ``why`` (why a count is an int, and how to get
    one). A float holds the right number but is no count: ``np.zeros((out, out))`` refuses it (TypeError)."""
    def rule(function: Callable) -> str | None:
        for args in cases:
            got = _quietly(function, args)
            if got is not None and (isinstance(got, bool) or not isinstance(got, (int, np.integer))):
                return f"{describe(*args)}: right value, but {_kind(got)} ({_shown(got)}): {why}. Hint"
        return None

    return rule


def _same_case(case: tuple, args: tuple) -> bool:
    return len(case) == len(args) and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(case, args))


def _only_where_it_fails_first(wrong: Callable, cases: tuple, solution: Callable) -> Callable:
    """A typical mistake of notebook 2, ``wrong``, that names itself only where an answer making it would fail first.

    The check picks a mistake's hint from the first case an answer fails, by that one value. An answer that passed
    the cases before agrees with the solution there, so a mistake that does not is another mistake: on such a case
    this gives None (no match), and an unrelated answer whose value happens to equal the mistake's gets the general
    hint, not this mistake's."""
    def mistake(*args):
        position = next((i for i, case in enumerate(cases) if _same_case(case, args)), 0)
        if any(not _same(_quietly(wrong, case), solution(*copy.deepcopy(case)), 1e-6) for case in cases[:position]):
            return None
        return wrong(*args)

    mistake.__doc__ = wrong.__doc__
    return mistake


def _named_mistakes(name: str, cases: tuple, mistakes: tuple) -> tuple:
    """``mistakes`` of notebook 2's exercise ``name``, each through :func:`_only_where_it_fails_first`."""
    solution = getattr(solutions, name)
    return tuple((hint, _only_where_it_fails_first(wrong, cases, solution)) for hint, wrong in mistakes)


#: Calls that run a Python function once per element: loops too, however they are spelled.
_LOOPING_CALLS = {"map", "vectorize", "frompyfunc", "apply_along_axis", "fromiter", "starmap", "filterfalse"}
#: Looping calls whose name is also a whole-array method (``np.add.reduce``, ``np.add.accumulate``, pandas'
#: ``.filter``, ``.nlargest``): counted when loaded by name (imported, or the builtin) or as an attribute of their
#: own module. ``sorted`` and ``zip`` work on Python objects one element at a time (``sorted(zip(-s, rows))`` builds
#: a tuple per row and compares them in Python); ``np.sort`` and an array's ``.sort()`` are numpy's, not counted.
_LOOPING_MODULE_CALLS = {"reduce": functools, "accumulate": itertools, "filter": builtins, "nlargest": heapq,
                         "nsmallest": heapq, "sorted": builtins, "zip": builtins, "sum": builtins, "list": builtins,
                         "tuple": builtins, "reversed": builtins, "enumerate": builtins, "set": builtins,
                         "all": builtins, "any": builtins}
#: What a looping call of :data:`_LOOPING_MODULE_CALLS` does once per element, where its name does not say it:
#: the builtins walk an array one element at a time, making a Python object of each (``np.sum``, ``.sum()``,
#: ``[::-1]``, ``.tolist()`` are numpy's own, not counted).
_PER_ELEMENT_WORK = {"sorted": "a Python sort, one comparison of Python objects at a time",
                     "zip": "one Python tuple per element", "sum": "Python's sum, one addition at a time",
                     **{call: "one Python object per element" for call in ("list", "tuple", "set", "enumerate")},
                     "reversed": "a Python iterator, one element at a time",
                     "all": "one Python truth test per element", "any": "one Python truth test per element"}
#: Star-unpacking of an array (``[*rows]``, ``f(*rows)``): one Python object per element.
_UNPACKING = {"LIST_EXTEND", "SET_UPDATE", "CALL_FUNCTION_EX"}


def _per_element(code: types.CodeType, globals_: dict, callers: tuple, name: str) -> str:
    """What in ``code`` (of the function called ``name``) runs Python once per element although its own bytecode
    does not loop, or '': a looping call (:data:`_LOOPING_CALLS`, :data:`_LOOPING_MODULE_CALLS`), a ``key=``
    function (``sorted``, ``min``, ``max``, ``list.sort`` call it for every element), or recursion (a call back
    to itself or to one of ``callers``, the functions that led here: one call per row)."""
    calls = _LOOPING_CALLS & set(code.co_names)
    if calls:
        return f"{sorted(calls)[0]}(...) in {name}"
    if code.co_name in code.co_freevars:  # a closure that refers to itself
        return f"recursion ({code.co_name} calls itself)"
    instructions = list(dis.get_instructions(code))
    previous, python_objects = None, ""  # sorted or zip: named only when nothing more precise (a key=) is found
    for this, after in zip(instructions, instructions[1:] + instructions[:1]):
        if this.opname in _UNPACKING:
            python_objects = python_objects or f"star-unpacking (*) in {name} (one Python object per element)"
        keywords = (code.co_consts[this.arg] if this.opname == "KW_NAMES" else this.argval
                    if this.opname == "LOAD_CONST" and after.opname in ("CALL_KW", "CALL_FUNCTION_KW") else ())
        if isinstance(keywords, tuple) and "key" in keywords:
            return f"a key= function (called once per element) in {name}"
        if this.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            module = _LOOPING_MODULE_CALLS.get(this.argval)
            if module is not None and previous is not None and (
                    previous == module.__name__ or globals_.get(previous) is module):
                return f"{module.__name__}.{this.argval}(...) in {name}" + _work(this.argval)
        elif this.opname.startswith("LOAD_") and this.opname not in ("LOAD_CONST", "LOAD_SUPER_ATTR"):
            loaded = [n for n in (this.argval if isinstance(this.argval, tuple) else (this.argval,))
                      if isinstance(n, str)]
            for n in loaded:
                module = _LOOPING_MODULE_CALLS.get(n)
                if module is not None and globals_.get(n, getattr(module, n)) is getattr(module, n) and not (
                        module is builtins and this.opname.startswith("LOAD_FAST")):  # a local is no builtin
                    if n not in _PER_ELEMENT_WORK:
                        return f"{n}(...) in {name}"
                    python_objects = python_objects or f"{n}(...) in {name}" + _work(n)
                if this.opname in ("LOAD_GLOBAL", "LOAD_NAME") and any(globals_.get(n) is f for f in callers):
                    return f"recursion ({name} calls {n})" if n != name else f"recursion ({name} calls itself)"
            previous = loaded[-1] if loaded else None
            continue
        previous = None
    return python_objects


def _work(call: str) -> str:
    """`` (what it does per element)`` for a looping call of :data:`_PER_ELEMENT_WORK`, else ''."""
    return f" ({_PER_ELEMENT_WORK[call]})" if call in _PER_ELEMENT_WORK else ""


def _looping(i: dis.Instruction) -> bool:
    """True for an instruction that iterates (``FOR_ITER``) or jumps backwards (a ``while`` loop)."""
    return i.opname == "FOR_ITER" or ("JUMP" in i.opname and isinstance(i.argval, int) and i.argval < i.offset)


def _loops(code: types.CodeType) -> bool:
    """True when ``code`` iterates (``FOR_ITER``) or jumps backwards (a ``while`` loop), in any Python version."""
    return any(_looping(i) for i in dis.get_instructions(code))


def _loop_line(code: types.CodeType) -> str:
    """Where the first loop of ``code`` starts, as ``" (line N: `source`)"``, or '' when that is unknown.

    N counts in the function's file (in a notebook: in its cell); a backward jump is placed at the first line of
    the code it repeats (a ``while`` loop's condition, which Python also tests at the end of the body)."""
    instructions = list(dis.get_instructions(code))
    lines, line = {}, None
    for i in instructions:  # 3.13+: line_number; 3.11, 3.12: positions; 3.10: starts_line on a line's first
        number = getattr(i, "line_number", None) or getattr(getattr(i, "positions", None), "lineno", None)
        line = number or (i.starts_line if type(i.starts_line) is int else None) or line
        lines[i.offset] = line
    loop = next((i for i in instructions if _looping(i)), None)
    if loop is None:
        return ""
    repeated = [n for offset, n in lines.items() if n and (offset == loop.offset if loop.opname == "FOR_ITER"
                                                           else loop.argval <= offset <= loop.offset)]
    number = min(repeated, default=None)
    if not number:
        return ""
    source = linecache.getline(code.co_filename, number).strip()
    return f" (line {number}: `{source}`)" if source else f" (line {number})"


def _python_loop(function: Callable, depth: int = 3) -> str:
    """What in ``function`` (or the learner's own helpers it calls, ``depth`` levels down) loops in Python: a
    ``for``/``while`` loop, a comprehension, a call such as ``map`` / ``np.vectorize`` / ``itertools.starmap`` /
    ``functools.reduce``, a ``key=`` function, or recursion (:func:`_per_element`); '' when nothing does.

    Read from the bytecode, so it works on any function, with or without its source."""
    seen: set = set()
    todo = [(function, 0, (function,))]
    while todo:
        current, level, callers = todo.pop()
        code = getattr(current, "__code__", None)
        if code is None or id(current) in seen:
            continue
        seen.add(id(current))
        globals_ = getattr(current, "__globals__", {})
        name = getattr(current, "__name__", "your function")
        codes = [code]
        while codes:
            c = codes.pop()
            if _loops(c):
                return f"a loop or a comprehension in {name}{_loop_line(c)}"
            found = _per_element(c, globals_, callers, name)
            if found:
                return found
            codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        if level < depth:
            for called in code.co_names:
                value = globals_.get(called)
                if isinstance(value, types.FunctionType) and value.__module__ == getattr(function, "__module__", None):
                    todo.append((value, level + 1, callers + (value,)))
    return ""


def _all_pairs_at_once(function: Callable) -> str | None:
    """None when ``function(queries, gallery)`` neither loops in Python nor builds the (M, N, D) array of
    differences; else what it does and why that fails at a catalogue's size."""
    loop = _python_loop(function)
    if loop:
        return (f"right values, but through {loop}: the exercise asks for every pair at once, without a Python "
                "loop or comprehension, even a short one: numpy's whole-array operations do every step (a loop "
                "over the pairs of 200 queries and 20,000 products would make 4 million turns of the interpreter, "
                "one over the queries 200 passes, where one matrix product does the whole work)")
    return _without_differences_array(function)


def _every_row_at_once(function: Callable) -> str | None:
    """None when ``function(gallery, query, k)`` scores the gallery without a Python loop and leaves its arrays
    unchanged; else what loops, or which argument it wrote into."""
    loop = _python_loop(function)
    if loop:
        return (f"right values, but through {loop}: the exercise asks for every row of the gallery at once, "
                "without a Python loop or comprehension, even a short one over the k results: numpy's whole-array "
                "operations do every step (one matrix-vector product scores all the rows, where a loop over "
                "20,000 products would make 20,000 turns of the interpreter)")
    # heapq's nlargest is refused above, as a loop; `sort_values` is pandas' only (numpy's sorts are np.sort, .sort)
    pandas = sorted({"nlargest", "nsmallest", "sort_values"} & _names_read(function))
    if pandas:
        return (f"right values, but through pandas' {pandas[0]}(...): the exercise asks numpy's own functions to "
                "pick and order the top k (np.argsort, or np.argpartition and then a sort of those k)")
    got = _quietly(function, EXERCISES["cosine_top_k"].cases[0])
    if got is not None and not np.issubdtype(np.asarray(got).dtype, np.integer):
        return (f"right rows, but {_kind(got)}: rows index the catalogue, and float row numbers cannot (IndexError); "
                "return integers, as np.argsort gives them")
    written = _written_arguments(function, EXERCISES["cosine_top_k"].cases, ("gallery", "query"))
    if written:
        return (f"right rows, but your function wrote into `{written[0]}`, the array it was given (`/=` divides in "
                "place): the caller's vectors change under it, so don't modify the input: compute new arrays. Hint")
    return None


def _peak_bytes(function: Callable, args: tuple) -> int:
    """The most memory ``function(*args)`` held at once above what was held before, in bytes (tracemalloc, which
    sees numpy's arrays); a failure of the function counts what it held until then."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        _quietly(function, args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not tracing:
            tracemalloc.stop()
    return peak - start


def _without_differences_array(function: Callable) -> str | None:
    """None when ``function(queries, gallery)`` stays well below the memory of an (M, N, D) array of differences
    and of an (N, N) matrix such as ``gallery @ gallery.T`` (peak of the allocations it makes, traced by
    tracemalloc, which sees numpy's arrays). The gallery is much longer than the batch of queries, as a
    catalogue is: there an (N, N) matrix is the larger of the two mistakes' arrays."""
    rng = np.random.default_rng(3)
    queries, gallery = rng.normal(size=(20, 128)), rng.normal(size=(1000, 128))
    differences = queries.shape[0] * gallery.shape[0] * queries.shape[1] * 8  # bytes, float64: 20 MB
    square = gallery.shape[0] ** 2 * 8  # bytes of an (N, N) float64 matrix: 8 MB
    used = _peak_bytes(function, (queries, gallery))
    if used < square / 2:
        return None
    needed = (f"right values, but for 20 queries and 1,000 gallery vectors of width 128 your function needed "
              f"{used / 1e6:.0f} MB at once, where the (20, 1000) answer takes 0.16 MB")
    if used < differences / 2:
        return (f"{needed} and an (N, N) matrix such as gallery @ gallery.T {square / 1e6:.0f} MB: its diagonal "
                "holds the squared lengths, but it compares every product with every other (1.6 GB in float32 for "
                "20,000 products, and 100 times the work of the distances of 200 queries): compute each row's "
                "squared length on its own")
    return (f"{needed} and the (M, N, D) array of differences {differences / 1e6:.0f} MB (33 GB in float32 for 200 "
            "queries and 20,000 products of ResNet50's width, 2,048): compute |q - x|^2 without such an array")


def _a_feature_array(function: Callable) -> str | None:
    """None when ``function(maps)`` (global average pooling) returns a numpy array, which notebook 3 reads the
    ``.shape`` of next; else what it returns instead (a list from ``.tolist()``, a tuple...)."""
    got = _quietly(function, (_MAPS,))
    if isinstance(got, np.ndarray):
        return None
    return (f"right values, but {_kind(got)} instead of a numpy array: the next cell reads the feature vector's "
            ".shape, which only an array has, so return numpy's result as it is")


def _written_arguments(function: Callable, cases, names: tuple[str, ...]) -> list[str]:
    """The names of the array arguments ``function`` wrote into, on the first of ``cases`` (tuples of arguments,
    arrays first as in ``names``) where it wrote into any; [] when it never did. The checks pass copies, so such an
    answer gives the right values and would pass unseen."""
    for case in cases:
        given = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in case)
        try:
            with np.errstate(all="ignore"):
                function(*given)
        except Exception:  # the values were checked already; a crash here is not this rule's business
            continue
        changed = [name for name, before, after in zip(names, case, given) if not np.array_equal(before, after)]
        if changed:
            return changed
    return []


def _zero_row_from_freed_memory(function: Callable) -> bool:
    """Whether ``function`` returns the zero row of :data:`_WITH_A_ZERO_ROW` as whatever memory held: it is called
    right after buffers of that array's size were filled with NaN and freed, which numpy hands out again for small
    arrays. ``np.divide(..., where=...)`` without ``out=`` leaves the rows it skips so (numpy documents it)."""
    for _ in range(3):
        features = _WITH_A_ZERO_ROW.copy()
        freed = [np.full(features.shape, np.nan) for _ in range(8)]
        del freed
        got = _quietly(function, (features,))
        if got is not None and not np.isfinite(np.asarray(got, dtype=float)).all():
            return True
    return False


def _source_tree(function: Callable) -> ast.Module | None:
    """``function``'s source, parsed; None where it cannot be read (a builtin, a function typed at a prompt)."""
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None


def _ufunc_where_without_out(function: Callable) -> bool:
    """Whether ``function``'s source calls one of numpy's ufuncs (``np.divide``...) with ``where=`` and no ``out=``:
    the entries it skips are left as whatever memory held (numpy documents it; newer versions warn)."""
    tree = _source_tree(function)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if "where" in keywords and "out" not in keywords and isinstance(getattr(np, name, None), np.ufunc):
                return True
    return False


def _where_without_out_note(right: str, skipped: str, out: str) -> str:
    """The note for an answer that is right (``right``: "values", "rows") only by luck: ``np.divide(..., where=...)``
    without ``out=`` left the entries it skips (``skipped``, e.g. " (the queries with R = 0)") as memory held;
    ``out``: the argument that fixes it."""
    return (f"right {right} this time, but `np.divide(..., where=...)` without `out=` leaves the entries it skips"
            f"{skipped} uninitialised: whatever memory held, which the next run can change; give it `out={out}` so "
            "that they start at 0. Hint")


def _skipped_queries_start_at_zero(function: Callable) -> str | None:
    """ap_at_k's and map_at_k's rule: None unless ``function`` calls a numpy ufunc with ``where=`` and no ``out=``
    (:func:`_ufunc_where_without_out`): the queries it skips (R = 0) would hold whatever memory held."""
    if not _ufunc_where_without_out(function):
        return None
    return _where_without_out_note("values", " (the queries with R = 0)", "np.zeros(...)")


def _features_left_unchanged(function: Callable) -> str | None:
    """None when ``function(features)`` (L2 normalisation) returns a numpy array, the (N, D) array its docstring
    asks for, leaves the array it is given as it was, and fills every row itself; else a note."""
    got = _quietly(function, (_FEATURES,))
    if not isinstance(got, np.ndarray):
        return (f"right values, but {_kind(got)} instead of a numpy array: the exercise asks for an (N, D) array, "
                "which the search's matrix products and `.shape` need, so return numpy's result as it is")
    if _ufunc_where_without_out(function) or _zero_row_from_freed_memory(function):
        return _where_without_out_note("rows", "", "np.zeros_like(features)")
    if not _written_arguments(function, [(_FEATURES,)], ("features",)):
        return None
    return ("right rows, but your function wrote into `features`, the array it was given (`/=` divides in place): "
            "the caller may still need the original vectors, so don't modify the input: return a new array. Hint")


_NAN_HINT = ("NaN where a query meets itself: rounding (float32 keeps about 7 digits) made that squared distance "
             "slightly negative, and the square root of a negative number is NaN; clamp at 0 before the square root")


_SHORT_ROWS_HINT = ("these rows are very short, as an untrained network's features can be, but they are not zeros: "
                    "each has a direction and must come out of length 1. An epsilon added to every length shortens "
                    "such rows, and a floor or a threshold as large as their lengths (or one relative to the longest "
                    "row) shrinks or zeroes them: only a row of length 0 needs treating apart (a floor far below any "
                    "real length does that)")


class _UnitRowsExercise(Exercise):
    """Notebook 3's L2 normalisation: an answer right on every case but the very short rows of :data:`_SHORT_ROWS`
    (or the one of :data:`_SHORT_BESIDE_LONG`), where its rows come out shorter than 1 or zero (an epsilon, a floor
    or a threshold as large as those rows' lengths, or one relative to the longest row; one far below them is
    right), gets :data:`_SHORT_ROWS_HINT` and the lengths it gave."""

    def problem(self, function: Callable) -> str | None:
        found = super().problem(function)
        if found is None or self.refusal(function):
            return found
        rows = next((rows for rows in (_SHORT_ROWS, _SHORT_BESIDE_LONG) if found.startswith(self.describe(rows))),
                    None)
        if rows is None:
            return found
        got = _quietly(function, (rows.copy(),))
        if _shape(got) != rows.shape:
            return found
        got = np.asarray(got, dtype=float)
        lengths = np.linalg.norm(got, axis=1)
        expected = self.solution_function(rows.copy())
        cosines = np.sum(got * expected, axis=1) / np.maximum(lengths, 1e-300)
        if np.isfinite(got).all() and ((lengths < 1e-12) | (cosines > 1 - 1e-6)).all():
            given = np.linalg.norm(rows, axis=1)
            shown = np.array2string(lengths, separator=", ", precision=4)
            return (f"for rows {given.min():.1e} to {given.max():.1e} long, yours gives rows of length {shown}: "
                    f"{_SHORT_ROWS_HINT}")
        return found


class _DistanceExercise(Exercise):
    """Notebook 5's distances: an answer right everywhere but for NaN gets :data:`_NAN_HINT` (the clamp, which the
    general hint leaves out), whatever order its sums ran in and so wherever rounding put its NaN."""

    def problem(self, function: Callable) -> str | None:
        found = super().problem(function)
        if found is None or self.refusal(function):
            return found
        for args in self.cases:
            got, expected = _quietly(function, args), self.solution_function(*copy.deepcopy(args))
            if _same(got, expected, self.atol):
                continue
            got = np.asarray(got, dtype=float) if _shape(got) == expected.shape else None
            nan = np.isnan(got) if got is not None else None
            if nan is not None and nan.any() and np.allclose(got[~nan], expected[~nan], atol=self.atol, rtol=1e-5):
                return f"{self.describe(*args)}: yours gives {_shown(got)}: {_NAN_HINT}"
            return found
        return found


def _every_other_mixed(x):
    """F(x) = x[::2, ::2] @ [[1, -1, 0.5], [0.5, 1, -2]] - 0.25"""
    return x[::2, ::2] @ _MIX - 0.25


def _mixed(x):
    """F(x) = x @ [[1, -1, 0.5], [0.5, 1, -2]]"""
    return x @ _MIX


def _jump_doubled_at_any_stride(layers):
    """The receptive field if every layer of stride above 1 doubled the spacing of its outputs, whatever its stride:
    right for strides 1 and 2 only."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= 2 if stride > 1 else 1
    return field


#: Notebook 4's receptive_field cases. The fourth, AlexNet's first layers, has a stride of 4: a rule right for strides
#: 1 and 2 only fails there. The last two end with a strided layer (a VGG block and its 2x2 pooling) and start with a
#: kernel smaller than its stride (ResNet's 1x1 shortcut of stride 2): a rule that lets a layer's stride widen its own
#: field fails there.
_RECEPTIVE_FIELD_CASES = (([(3, 1)] * 3,), ([(3, 2), (3, 1)],), ([(7, 2), (3, 2), (3, 1), (3, 1)],),
                          ([(11, 4), (3, 2), (5, 1)],), ([(1, 1)],), ([(3, 1), (3, 1), (2, 2)],), ([(1, 2), (3, 1)],))
_SEPARABLE_PARAMETERS_CASES = ((3, 64, 128), (3, 728, 728), (5, 3, 16))


def _receptive_field_case(layers):
    return f"the receptive field of (kernel, stride) layers {layers}"


def _separable_parameters_case(k, c_in, c_out):
    return f"a {k}x{k} separable convolution from {c_in} to {c_out} channels (no bias)"


def _ap_of_row(row, n_relevant, k):
    """AP@K of a 0/1 result list, through the ranks of its relevant results."""
    return solutions.ap_at_k(np.flatnonzero(row) + 1, n_relevant, k)


def _found(ranks, k):
    return np.asarray([r for r in ranks if r <= k], dtype=float)


def _category_sizes(labels):
    values, inverse, counts = np.unique(np.asarray(labels, dtype=object), return_inverse=True, return_counts=True)
    return counts[inverse]


def _sorted_indices(distances, k, allowed):
    order = np.argsort(distances, kind="stable")[:k]
    return order[allowed[order]]


def _filter_left_unchanged(function: Callable) -> str | None:
    """None when ``function(distances, allowed, k)`` leaves the two arrays it is given as they were; else which
    one it wrote into."""
    changed = _written_arguments(function, ((_DISTANCES, _ALLOWED, 3), (_MANY_DISTANCES, ~_MANY_ALLOWED, 8)),
                                 ("distances", "allowed"))
    if not changed:
        return None
    return (f"right rows, but your function wrote into its argument {' and '.join(f'`{c}`' for c in changed)}: "
            "the caller may still need it (the same distances under another filter, the same mask to count "
            "the relevant products that pass), so leave the arrays you are given as they were and write "
            "into a new array or a copy")


def _rows_as_integers(function: Callable) -> str | None:
    """None when ``function(distances, allowed, k)`` returns its rows as an integer numpy array, an empty answer
    included; else what it returned instead (a float array holds the right numbers but cannot index the catalogue)."""
    for distances, allowed, k in ((_DISTANCES, _ALLOWED, 3), (_DISTANCES, np.zeros(len(_DISTANCES), dtype=bool), 3)):
        got = _quietly(function, (distances, allowed, k))
        if got is not None and not (isinstance(got, np.ndarray) and np.issubdtype(got.dtype, np.integer)):
            when = " when no product passes the filter" if not allowed.any() else ""
            empty = "np.array of an empty list is a float array: give it an integer dtype"
            if not isinstance(got, np.ndarray):
                return f"right rows, but {_kind(got)}{when}: return them as a numpy array of integers ({empty})"
            return (f"right rows, but {_kind(got)}{when}: rows index the catalogue, and a float array cannot "
                    f"(IndexError); return an array of integers ({empty})")
    return None


#: Ties at the k-th place (k = 3): rows 0, 2 and 5 share the 3rd smallest allowed distance, row 3 is refused.
_TIED_DISTANCES = np.array([0.4, 0.1, 0.4, 0.05, 0.2, 0.4, 0.9])
_TIED_ALLOWED = np.array([True, True, True, False, True, True, True])
#: Ties inside the top k (k = 3): rows 1 and 3 share the nearest allowed distance (duplicate photos do), and both
#: belong in the answer; an answer keyed by distance (a dict, np.unique) keeps one of them.
_TIED_FIRST_DISTANCES = np.array([0.3, 0.2, 0.6, 0.2, 0.05, 0.9])
_TIED_FIRST_ALLOWED = np.array([True, True, True, True, False, True])


def _k_rows_despite_ties(function: Callable) -> str | None:
    """None when ``function`` returns exactly k distinct allowed rows, nearest first, when several products tie at
    the k-th distance (any of the tied ones may come back) and when two tie inside the top k (both come back);
    else what is wrong."""
    for distances, allowed, why in (
            (_TIED_DISTANCES, _TIED_ALLOWED, "three products tie at the 3rd distance, and the answer holds k rows, "
             "never more (any of the tied ones will do); a threshold at the k-th distance keeps them all"),
            (_TIED_FIRST_DISTANCES, _TIED_FIRST_ALLOWED, "two products tie at the nearest distance (duplicate "
             "photos do) and both belong in the answer, which holds k distinct rows here; keying the products by "
             "their distance (a dict, np.unique) keeps only one of them")):
        got = _quietly(function, (distances, allowed, 3))
        if got is None:
            return None  # the cases of the exercise already report an answer that raises
        rows = np.asarray(got).ravel()
        expected = np.sort(distances[allowed])[:3]
        if (len(rows) == 3 and np.issubdtype(rows.dtype, np.integer) and ((rows >= 0) & (rows < len(allowed))).all()
                and allowed[rows].all() and len(set(rows.tolist())) == 3 and np.allclose(distances[rows], expected)):
            continue
        return (f"with distances {distances.tolist()}, allowed {allowed.astype(int).tolist()} and k = 3, "
                f"yours gives {rows.tolist()}: {why}")
    return None


def _integer_rows_and_inputs_unchanged(function: Callable) -> str | None:
    """filtered_top_k's rule: rows as an integer array (:func:`_rows_as_integers`), arguments left as they were
    (:func:`_filter_left_unchanged`), exactly k rows when products tie at the k-th distance
    (:func:`_k_rows_despite_ties`)."""
    return _rows_as_integers(function) or _filter_left_unchanged(function) or _k_rows_despite_ties(function)


def _curve_array_and_relevant_unchanged(function: Callable) -> str | None:
    """precision_curve's rule: a numpy array (the docstring asks for one; a list or a tuple holds the right
    numbers but does no arithmetic), and the 0/1 list it is given left as it was."""
    got = _quietly(function, (_HITS[0],))
    if got is not None and not isinstance(got, np.ndarray):
        return (f"right numbers, but {_kind(got)} instead of a numpy array: the curve is numbers to compute "
                "with (curve - 0.5 on a list raises TypeError), so return an array (np.array(...) turns a list "
                "into one, or build the curve with numpy from the start)")
    if not _written_arguments(function, [(_HITS[0],), (np.array([0, 1, 1, 0, 1, 0, 0, 1]),)], ("relevant",)):
        return None
    return ("right curve, but your function wrote into `relevant`, the list it was given: the caller may "
            "still need it (to compute AP@K from the same hits), so leave it as it was and compute into a "
            "new array")


class _TooManyComparisons(Exception):
    """Raised by a :class:`_CountedLabel` once a function has compared labels more than its limit allows."""


class _CountedLabel(str):
    """A category label that counts the == and != comparisons made with it, across all labels of a case, and
    raises :class:`_TooManyComparisons` past ``_CountedLabel.limit`` (see :func:`_counts_each_category_once`)."""

    made = 0
    limit = 0

    def _tick(self) -> None:
        _CountedLabel.made += 1
        if _CountedLabel.made > _CountedLabel.limit:
            raise _TooManyComparisons

    def __eq__(self, other):
        self._tick()
        return str.__eq__(self, other)

    def __ne__(self, other):
        self._tick()
        return str.__ne__(self, other)

    __hash__ = str.__hash__


#: 2,000 products in 8 categories and unlabelled ones: per product, a category count that compares its label with
#: every other product's makes N² = 4,000,000 comparisons; counting once per category (np.unique, a Counter, a loop
#: over the categories) makes a few per product.
_MANY_LABELS_SIZE = 2000
_MANY_LABELS = np.random.default_rng(18).choice(["", "bag", "belt", "cap", "dress", "shoe", "shirt", "tie", "watch"],
                                                _MANY_LABELS_SIZE)


def _counts_each_category_once(function: Callable) -> str | None:
    """query_mask's and chance_precision's rule: the notebook runs the answer on the whole catalogue (Farfetch's is
    large), so it must not compare every product's label with every other product's. Run on
    :data:`_MANY_LABELS` made of :class:`_CountedLabel` objects (each one distinct), it may make at most 50
    comparisons per product."""
    labels = np.empty(_MANY_LABELS_SIZE, dtype=object)
    labels[:] = [_CountedLabel(label) for label in _MANY_LABELS]
    _CountedLabel.made, _CountedLabel.limit = 0, 50 * _MANY_LABELS_SIZE
    try:
        with np.errstate(all="ignore"):
            function(labels)
    except _TooManyComparisons:
        return (f"right values, but on {_MANY_LABELS_SIZE:,} products your function compared labels more than "
                f"{_CountedLabel.limit:,} times before it finished: it compares each product's label with every "
                "other product's (N² comparisons). The notebook runs it on the whole catalogue, and on Farfetch "
                "that takes minutes: count each category's products once, then look each product's count up")
    except Exception:
        return None  # it passed the cases; a failure on this input is not what this rule checks
    return _grows_with_pairs(function)


#: Plain labels for :func:`_grows_with_pairs`: an answer that first turns the labels into ``str`` or integer codes
#: compares them where no :class:`_CountedLabel` sees it.
_TIMED_SIZES = (3000, 12000)
#: Memory an answer may hold at once on 12,000 labels: counting per category needs a few arrays of N values
#: (about 0.1 MB each); a matrix of every pair of products, N² values, needs 144 MB (as bools).
_PAIRS_MEMORY = 16_000_000


def _plain_labels(size: int) -> np.ndarray:
    labels = np.empty(size, dtype=object)
    labels[:] = [str(label) for label in np.resize(_MANY_LABELS, size)]
    return labels


def _grows_with_pairs(function: Callable) -> str | None:
    """The second half of :func:`_counts_each_category_once`, on plain labels: ``function`` timed on 3,000 then
    12,000 of them, and its memory traced on 12,000. A count per category grows about 4 times (a sort: a little
    more) and holds a few arrays of N values; one that compares every pair of products grows 16 times, or holds
    an N x N array. Refused past 8 times and 0.05 s (the fastest of several runs, so that a busy machine neither
    refuses a right answer nor lets a wrong one pass), or past 16 MB at once."""
    import time

    def seconds(size: int, runs: int = 1) -> float:
        labels, best = _plain_labels(size), float("inf")
        for _ in range(runs):
            began = time.perf_counter()
            with np.errstate(all="ignore"):
                function(labels)
            best = min(best, time.perf_counter() - began)
        return best

    try:  # the fastest of three runs on the small size, and of two on the large before refusing: a moment of
        # another job's load neither hides a quadratic answer nor makes a right one look like one
        small, large = seconds(_TIMED_SIZES[0], 3), seconds(_TIMED_SIZES[1])
        if large > 0.05 and large > 8 * small:
            large = min(large, seconds(_TIMED_SIZES[1]))
    except Exception:
        return None
    what = ("it compares each product's label with every other product's (N² comparisons), even as plain "
            "strings or codes. The notebook runs it on the whole catalogue, and on Farfetch that takes minutes")
    if large > 0.05 and large > 8 * small:
        return (f"right values, but your function took {large:.2f} s on {_TIMED_SIZES[1]:,} products, "
                f"{large / small:.0f} times as long as on {_TIMED_SIZES[0]:,} (4 times the products: a count per "
                f"category takes about 4 times as long): {what}: count each category's products once, then look "
                "each product's count up")
    held = _peak_bytes(function, (_plain_labels(_TIMED_SIZES[1]),))
    if held > _PAIRS_MEMORY:
        return (f"right values, but on {_TIMED_SIZES[1]:,} products your function held {held / 1e6:.0f} MB at "
                "once, where counting each category once needs about 1 MB: it builds an array of every pair of "
                "products (N x N), 36 GB for Farfetch's 188,817 listings: count each category's products once, "
                "then look each product's count up")
    return None


EXERCISES: dict[str, Exercise] = {e.name: e for e in [
    Exercise(
        "query_mask", ((_LABELS,), (_LABELS[:4],),
                       # no "": the first label np.unique sorts is a category to keep, and one category has 10+
                       (np.array(["bag"] * 2 + ["shoe"] * 11 + ["hat"], dtype=object),),
                       # the last product is a query: a loop over range(len(labels) - 1) misses it
                       (np.array(["bag", "", "shoe", "bag", "shoe"], dtype=object),)),
        lambda labels: f"the query mask of labels {_items(labels)}",
        (("did you keep the unlabelled products (category \"\")? They have no category to be relevant to",
          lambda labels: _category_sizes(labels) >= 2),
         ("did you keep categories with a single product? Such a query can never find a relevant result",
          lambda labels: np.asarray(labels, dtype=object) != ""),
         ("did you drop the first value np.unique returns, taking it for \"\"? np.unique sorts the labels, and \"\" "
          "comes first only when some product is unlabelled: compare the labels with \"\" instead",
          lambda labels: (_category_sizes(labels) >= 2)
          & (np.unique(np.asarray(labels, dtype=object), return_inverse=True)[1].ravel() != 0)),
         ("did you keep only categories of more than two products? Two are enough: each has one other product "
          "of its category to find",
          lambda labels: (np.asarray(labels, dtype=object) != "") & (_category_sizes(labels) > 2))),
        rule=_counts_each_category_once),
    Exercise(
        "chance_precision",
        ((_MOSTLY_UNLABELLED,), (_LABELS,), (np.array(["a"] * 6 + ["b"] * 2 + ["c"], dtype=object),),
         # the last product is a query (of the larger category): a loop over range(len(labels) - 1) misses it
         (np.array(["a", "a", "b", "", "b", "b"], dtype=object),)),
        lambda labels: f"the chance precision of labels {_items(labels)}",
        (("did you keep the unlabelled products (\"\") as queries? They have no category: only the products of "
          "exercise 1's mask are queries",
          lambda labels: float(np.mean((_category_sizes(labels)[_category_sizes(labels) >= 2] - 1)
                                       / (len(labels) - 1)))),
         ("did you divide by N instead of N - 1? The query is never among its own results",
          lambda labels: float(np.mean((_category_sizes(labels)[solutions.query_mask(labels)] - 1) / len(labels)))),
         ("did you count only the labelled products in N? N counts every product, unlabelled ones too: they are in "
          "the random result list",
          lambda labels: float(np.mean((_category_sizes(labels)[solutions.query_mask(labels)] - 1)
                                       / (np.sum(np.asarray(labels, dtype=object) != "") - 1)))),
         ("did you count the query itself as relevant (n_c instead of n_c - 1)?",
          lambda labels: float(np.mean(_category_sizes(labels)[solutions.query_mask(labels)] / (len(labels) - 1)))),
         ("did you keep categories with a single product as queries? Such a query has nothing relevant to find: "
          "only the products of exercise 1's mask are queries",
          lambda labels: float(np.mean((_category_sizes(labels)[np.asarray(labels, dtype=object) != ""] - 1)
                                       / (len(labels) - 1)))),
         ("did you take the median over the queries? The chance level is their mean",
          lambda labels: float(np.median((_category_sizes(labels)[solutions.query_mask(labels)] - 1)
                                         / (len(labels) - 1)))),
         ("did you average over categories instead of over queries? A large category has more queries",
          lambda labels: float(np.mean([(np.sum(labels == c) - 1) / (len(labels) - 1)
                                        for c in np.unique(labels[solutions.query_mask(labels)])]))),
         ("did you average over every product? Only those of the query mask are queries",
          lambda labels: float(np.mean((_category_sizes(labels) - 1) / (len(labels) - 1))))),
        rule=_counts_each_category_once),
    Exercise(
        "conv3x3", _CONV3X3_CASES,
        lambda image, kernel: (f"the 'same' convolution of a {image.shape[0]}x{image.shape[1]} image by kernel "
                               f"{_list(kernel)}"),
        _named_mistakes("conv3x3", _CONV3X3_CASES, (
         ("you flipped the kernel: that is the convolution of mathematics; Conv2D (and `convolve`) slide the "
          "kernel as it is, a cross-correlation", lambda image, kernel: solutions.conv3x3(image, kernel[::-1, ::-1])),
         ("that is the 'valid' output, (H-2, W-2): 'same' keeps the image's size, so add zeros around the image "
          "first (how many does a 3x3 kernel centred on a border pixel need?)",
          lambda image, kernel: solutions.conv3x3(image, kernel)[1:-1, 1:-1]),
         ("you padded with copies of the border pixels: Conv2D(padding=\"same\") pads with zeros",
          lambda image, kernel: _corner_conv3x3(np.pad(image, 1, mode="edge"), kernel)),
         ("your windows are one pixel off: out[i, j] is the window CENTRED on pixel (i, j), image[i-1:i+2, "
          "j-1:j+2] (the padding makes it exist at the border)",
          lambda image, kernel: _corner_conv3x3(np.pad(image, ((0, 2), (0, 2))), kernel)),
         ("your outputs lost their fractions: did you store them in an array of integers (dtype=int, astype(int), "
          "np.zeros_like of an int array)? Pixels and kernels are floats, and so is each sum",
          lambda image, kernel: np.trunc(solutions.conv3x3(image, kernel)))))),
    Exercise(
        "output_size", _OUTPUT_SIZE_CASES, _output_size_case,
        _named_mistakes("output_size", _OUTPUT_SIZE_CASES, (
         ("(n + 2p - k) / s counts the steps between the first and the last position: add 1 for the first one",
          lambda n, k, s, p: (n + 2 * p - k) // s),
         ("padding p adds p zeros on EACH side: n + 2p pixels in all", lambda n, k, s, p: (n + p - k) // s + 1),
         ("a position where the kernel does not fit entirely is not computed: round down, not up",
          lambda n, k, s, p: -(-(n + 2 * p - k) // s) + 1),
         ("did you ignore the padding?", lambda n, k, s, p: (n - k) // s + 1),
         ("a number of positions is a whole number: a last step that would leave the padded row is not taken, so "
          "round the division down", lambda n, k, s, p: (n + 2 * p - k) / s + 1),
         ("right for odd kernels only, as if you counted the positions of the kernel's centre pixel: an even "
          "kernel, such as a 2x2 pooling window, has none. Count the positions where the whole window fits",
          lambda n, k, s, p: (n + 2 * p - 2 * (k // 2) - 1) // s + 1),
         ("pooling does not always halve: n // s is the count for a window as wide as its stride without padding, "
          "not in general. Count the positions where the whole window fits, as for a convolution",
          lambda n, k, s, p: n // s if k % 2 == 0 else (n + 2 * p - k) // s + 1),
         ("dividing by the stride counts the windows only when a window is exactly as wide as the stride: a "
          "narrower one (a 1x1 convolution at stride 2) also fits at the last pixel of an odd row. Count the "
          "positions where the whole window fits",
          lambda n, k, s, p: (n + 2 * p) // s if k <= s else (n + 2 * p - k) // s + 1))),
        rule=_a_whole_number(
            _OUTPUT_SIZE_CASES, _output_size_case,
            "a number of positions is a whole number, and a float one cannot size an array (np.zeros((out, out)) "
            "raises TypeError): return an int (divide with //, or wrap the result in int())")),
    Exercise(
        "conv_parameters", _CONV_PARAMETERS_CASES, _conv_parameters_case,
        _named_mistakes("conv_parameters", _CONV_PARAMETERS_CASES, (
         ("did you forget the bias (one per output channel)?",
          lambda k, c_in, c_out, bias=True: k * k * c_in * c_out),
         ("bias=False means no bias: add the one per output channel only when bias is True",
          lambda k, c_in, c_out, bias=True: k * k * c_in * c_out + c_out),
         ("each kernel is as deep as the input: it has weights for every input channel",
          lambda k, c_in, c_out, bias=True: k * k * c_out + (c_out if bias else 0)),
         ("a k x k kernel covers k times k positions of each input channel, not k",
          lambda k, c_in, c_out, bias=True: k * c_in * c_out + (c_out if bias else 0)),
         ("the bias is one number per OUTPUT channel, not per input channel",
          lambda k, c_in, c_out, bias=True: k * k * c_in * c_out + (c_in if bias else 0)))),
        rule=_a_whole_number(
            _CONV_PARAMETERS_CASES, _conv_parameters_case,
            "a number of parameters is a whole number: return an int (k * k or k ** 2 rather than math.pow, which "
            "gives a float, or wrap the result in int())")),
    Exercise(
        "global_average_pool", ((_MAPS,), (_MAPS[:, :1],), (_MAPS[:1],), (_MAPS[..., :1],)),
        lambda maps: f"global average pooling of maps of shape {maps.shape} (batch, height, width, channels)",
        (("you averaged over the channels: average each channel over its positions instead, one number per channel",
          lambda maps: maps.mean(axis=3)),
         ("did you squeeze the result? With one photo (or one channel), np.squeeze drops that axis too: the answer "
          "keeps its shape (batch, channels) for every batch and channel count",
          lambda maps: np.squeeze(maps.mean(axis=(1, 2)))),
         ("that is global MAX pooling: average instead", lambda maps: maps.max(axis=(1, 2))),
         ("you summed the positions: divide by their number (height x width)", lambda maps: maps.sum(axis=(1, 2)))),
        rule=_a_feature_array),
    _UnitRowsExercise(
        "l2_normalise", ((_FEATURES,), (_FEATURES[:, :2],), (_WITH_A_ZERO_ROW,), (_ZERO_SUM_ROWS,),
                         (_ZERO_MAX_OR_FIRST_ROWS,), (_SHORT_ROWS,), (_SHORT_BESIDE_LONG,)),
        lambda features: f"for the input {_list(features)}, the L2-normalised rows",
        (("you scaled the columns to length 1: scale each row, one photo's vector",
          lambda f: f / np.linalg.norm(f, axis=0, keepdims=True)),
         ("you divided by the norm of the whole matrix: each row needs its own length",
          lambda f: f / np.linalg.norm(f)),
         ("a row of zeros has length 0, and 0 / 0 is NaN: such a vector has no direction, so it should stay zeros "
          "(what could you divide it by instead, without changing any other row?)",
          lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)),
         ("you divided by the sum of the values: the length is the square root of the sum of squares",
          lambda f: f / f.sum(axis=1, keepdims=True)),
         ("a row whose values sum to 0, such as [1, -1, 0], is not a row of zeros: it has a length and a direction. "
          "Tell a row of zeros by its length instead",
          lambda f: np.where(f.sum(axis=1, keepdims=True) == 0, 0.0, f / np.linalg.norm(f, axis=1, keepdims=True))),
         ("a row whose largest value is 0, such as [-1, 0, -2], is not a row of zeros: features can be negative. Tell "
          "a row of zeros by its length instead",
          lambda f: np.where(f.max(axis=1, keepdims=True) == 0, 0.0,
                             f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300))),
         ("a row whose first value is 0, such as [0, 0.5, 1.2], is not a row of zeros: the other values count too. "
          "Tell a row of zeros by its length instead",
          lambda f: np.where(f[:, :1] == 0, 0.0, f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300)))),
        rule=_features_left_unchanged),
    Exercise(
        "receptive_field", _RECEPTIVE_FIELD_CASES, _receptive_field_case,
        (("did you add up the kernel sizes? Each k x k layer widens the field by k - 1 input steps",
          lambda layers: sum(k for k, s in layers)),
         ("did you ignore the strides? After a stride-2 layer, one step of the next layer covers 2 input pixels (or "
          "did you count only the pixels read? The field is the width from the first to the last, gaps included)",
          lambda layers: 1 + sum(k - 1 for k, s in layers)),
         ("a layer's own stride does not widen its own field: multiply by the strides of the layers BEFORE it",
          lambda layers: 1 + sum((k - 1) * int(np.prod([s for _, s in layers[:i + 1]]))
                                 for i, (k, _) in enumerate(layers))),
         ("after a layer of stride 4, its neighbouring outputs sit 4 input pixels apart, not 2: does your rule use "
          "the stride's value, or only whether it is above 1?", _jump_doubled_at_any_stride),
         ("a layer sees only its kernel's k pixels (in steps of the layers before it), however large its stride: a 1x1 "
          "convolution of stride 2 sees 1 pixel. Its stride spaces out its outputs, for the layers after it",
          lambda layers: 1 + sum((max(k, s) - 1) * int(np.prod([s for _, s in layers[:i]]))
                                 for i, (k, s) in enumerate(layers)))),
        rule=_a_whole_number(
            _RECEPTIVE_FIELD_CASES, _receptive_field_case,
            "a number of pixels is a whole number: return an int (start the field and the spacing at 1, not 1.0, "
            "and multiply or add whole numbers only)")),
    Exercise(
        "projection_residual", ((_MAP_5X5, _every_other_mixed, np.array([[0.5, 2.0, -1.0], [1.0, 0.0, 1.0]]), 2),
                                (_MAP_5X5[:3, :4], _mixed, np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 2.0]]), 1),
                                # outputs up to 20: a ReLU capped at 6 (ReLU6) fails here
                                (_MAP_5X5, _every_other_mixed, np.array([[4.0, -3.0, 2.0], [3.0, 1.0, -4.0]]), 2),
                                (_MAP_6X6, _every_other_mixed, np.array([[0.5, 2.0, -1.0], [1.0, 0.0, 1.0]]), 2)),
        lambda x, branch, w, stride: (f"the block for x of shape {x.shape} with {branch.__doc__}, "
                                      f"w = {_list(w)} and stride {stride}"),
        (("apply the ReLU AFTER adding the shortcut: relu(F(x) + shortcut), not relu(F(x)) + shortcut",
          lambda x, f, w, s: np.maximum(f(x), 0) + x[::s, ::s] @ w),
         ("you forgot the shortcut: add the 1x1 convolution of x to F(x) before the ReLU",
          lambda x, f, w, s: np.maximum(f(x), 0)),
         ("the block ends with a ReLU, after the addition", lambda x, f, w, s: f(x) + x[::s, ::s] @ w),
         ("ResNet's ReLU has no upper bound: max(0, v), not capped at 6 as ReLU6 is",
          lambda x, f, w, s: np.clip(f(x) + x[::s, ::s] @ w, 0, 6)),
         ("a strided 1x1 convolution keeps the positions 0, s, 2s... counted from the first pixel, not from the "
          "last one: on a map of even size the two differ",
          lambda x, f, w, s: np.maximum(f(x) + x[::-s, ::-s][::-1, ::-1] @ w, 0)))),
    Exercise(
        "separable_parameters", _SEPARABLE_PARAMETERS_CASES, _separable_parameters_case,
        (("that is a regular convolution's count: k*k*c_in*c_out", lambda k, c_in, c_out: k * k * c_in * c_out),
         ("the depthwise step has ONE k x k filter per input channel: k*k*c_in, not k*k*c_in*c_out",
          lambda k, c_in, c_out: k * k * c_in * c_out + c_in * c_out),
         ("you forgot the pointwise 1x1 convolution that mixes the channels: c_in*c_out weights",
          lambda k, c_in, c_out: k * k * c_in)),
        rule=_a_whole_number(
            _SEPARABLE_PARAMETERS_CASES, _separable_parameters_case,
            "a number of weights is a whole number: return an int (k * k or k ** 2 rather than math.pow, which "
            "gives a float, or wrap the result in int())")),
    _DistanceExercise(
        "euclidean_distances", ((_QUERIES, _GALLERY), (_GALLERY[:1], _GALLERY), (_UNIT_ROWS32[::2], _UNIT_ROWS32)),
        lambda q, g: (f"the distances between {q.shape[0]} queries and {g.shape[0]} gallery vectors of width "
                      f"{q.shape[1]}" + (", float32 unit vectors, the queries being rows of the gallery"
                                         if q.dtype == np.float32 else "")),
        (("those are squared distances: take the square root", lambda q, g: solutions.euclidean_distances(q, g) ** 2),
         ("the result has one ROW per query: shape (M, N)", lambda q, g: solutions.euclidean_distances(q, g).T),
         ("that is the dot product (a similarity), not a distance", lambda q, g: q @ g.T),
         (_NAN_HINT, lambda q, g: np.sqrt((q ** 2).sum(axis=1)[:, None] - 2 * q @ g.T + (g ** 2).sum(axis=1)[None]))),
        atol=2e-3,  # float32: a query's distance to itself comes out up to about 1e-3 instead of 0
        rule=_all_pairs_at_once),
    Exercise(
        # k = 5 of 5 rows last: there any ranking holds "the right rows", and the order hint would blame the sort
        "cosine_top_k", ((_COSINE_GALLERY, np.array([1.0, 0.0]), 2), (_WIDE_GALLERY, np.array([0.5, -1.0, 0.2]), 10),
                         (_LONG_GALLERY, np.array([1.0, 2.0, -0.5]), 300),
                         (_COSINE_GALLERY, np.array([0.0, 2.0]), 5)),
        lambda g, q, k: (f"the top {k} of gallery {_list(g)}" if len(g) <= 12 else
                         f"the top {k} of a gallery of {len(g):,} vectors of width {g.shape[1]}")
                        + f" for query {_list(q)}",
        (("you returned the least similar first: cosine is a similarity, sort it in decreasing order",
          lambda g, q, k: np.argsort((g @ q) / (np.linalg.norm(g, axis=1) * np.linalg.norm(q)), kind="stable")[:k]),
         ("you ranked by the dot product: divide by the vectors' lengths (cosine ignores length)",
          lambda g, q, k: np.argsort(-(g @ q), kind="stable")[:k]),
         ("Euclidean distance ranks like cosine only between unit vectors: normalise first",
          lambda g, q, k: np.argsort(np.linalg.norm(g - q, axis=1), kind="stable")[:k])),
        order_hint="the right rows, in the wrong order: the most similar must come first (argpartition only "
                   "splits off the k largest, in no particular order: sort those k afterwards)",
        rule=_every_row_at_once),
    Exercise(
        "precision_at_k", ((_HITS[0], 5), (_HITS[0], 3), (np.array([1, 0, 0, 1, 1, 1]), 4),
                           (np.array([1, 0, 0, 1, 1, 1]), 2)),
        lambda relevant, k: f"P@{k} of {_items(relevant)}",
        (("only the first k results count: cut the list at k", lambda r, k: float(np.sum(r) / k)),
         ("those are the last k results: precision@K looks at the first k", lambda r, k: float(np.sum(r[-k:]) / k)),
         ("divide by k, not by the length of the list", lambda r, k: float(np.sum(r[:k]) / len(r))),
         ("that is the number of relevant results: divide it by k", lambda r, k: float(np.sum(r[:k]))))),
    Exercise(
        # numpy arrays of ranks, as notebook 6's later cells and my_map_at_k (np.flatnonzero(row) + 1) pass them
        "ap_at_k", tuple((np.array(ranks, dtype=int), n, k) for ranks, n, k in (
            ([1, 3, 4], 3, 5), ([5], 4, 5), ([1, 2, 3, 4, 5], 8, 5), ([1, 6, 7], 3, 5), ([2, 3, 9], 3, 10),
            ([], 0, 5), ([1], 1, 5), ([3], 1, 5), ([6, 8], 2, 5), ([1, 3], 8, 5))),
        lambda ranks, n_relevant, k: f"AP@{k} with relevant results at ranks {_items(ranks)} and R = {n_relevant}",
        (("did you divide by K instead of min(K, R)? When R < K, a perfect list could not score 1",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / k),
         ("you divided by R: that is a legitimate convention too (truncated AP, as in TF Similarity), but it "
          "caps a perfect list at K/R when R > K; this tutorial divides by min(K, R), so that 1 means perfect",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / n if n else 0.0),
         ("did you divide by the relevant results FOUND? Then missing ones cost nothing: divide by min(K, R)",
          lambda r, n, k: solutions.ap_at_k(r, n, k) * min(k, n) / max(len(_found(r, k)), 1)),
         ("precision@r at the i-th relevant result is i / r (i relevant results among the first r), not r / i",
          lambda r, n, k: float(np.sum(_found(r, k) / np.arange(1, len(_found(r, k)) + 1)) / min(k, n)) if n else 0.0),
         ("rank k itself counts: keep the ranks <= k",
          lambda r, n, k: solutions.ap_at_k([rank for rank in r if rank < k], n, k)),
         ("count the relevant results from 1: at the first one, rank r, the precision is 1 / r",
          lambda r, n, k: float(np.sum(np.arange(len(_found(r, k))) / _found(r, k)) / min(k, n)) if n else 0.0),
         ("only the first k results count: leave out the ranks above k",
          lambda r, n, k: float(np.sum(np.arange(1, len(r) + 1) / np.asarray(r, dtype=float)) / min(k, n))
          if n else 0.0),
         ("a query with R = 0 gives 0 / 0 = nan: its AP@K is 0, returned without dividing",
          lambda r, n, k: float("nan") if n == 0 else solutions.ap_at_k(r, n, k))),
        rule=_skipped_queries_start_at_zero),
    Exercise(
        "map_at_k", tuple((hits, np.array(n_relevant), k) for hits, n_relevant, k in (
            (_HITS, [3, 4, 8, 2], 5), (_HITS[:3], [3, 4, 8], 5), (_HITS[:, :3], [2, 1, 3, 2], 3),
            (_HITS_BEYOND_K, [4, 3, 6], 3), (_HITS, [3, 4, 8, 0], 5))),
        lambda hits, n_relevant, k: (f"MAP@{k} of the result lists {np.asarray(hits).tolist()} "
                                     f"with R = {_items(n_relevant)}"),
        (("every query counts, also one with nothing relevant in the catalogue (R = 0): its AP is 0, and it stays "
          "in the mean",
          lambda h, n, k: float(np.mean([_ap_of_row(r, m, k) for r, m in zip(h, n) if m > 0]))),
         ("a query with R = 0 gives 0 / 0 = nan: its AP is 0, without dividing",
          lambda h, n, k: float("nan") if 0 in list(n) else solutions.map_at_k(h, n, k)),
         ("every query counts, also one that found nothing (its AP is 0)",
          lambda h, n, k: float(np.mean([_ap_of_row(r, m, k) for r, m in zip(h, n) if np.sum(r[:k])]))),
         ("that is the mean precision@K: MAP averages AP@K, which rewards relevant results that come early",
          lambda h, n, k: float(np.mean([solutions.precision_at_k(r, k) for r in h]))),
         ("did you divide each AP@K by K instead of min(K, R)? When R < K, a perfect list could not score 1",
          lambda h, n, k: float(np.mean([_ap_of_row(r, m, k) * min(k, m) / k for r, m in zip(h, n)]))),
         ("only the first k results of each list count, and a list can be longer than k",
          lambda h, n, k: float(np.mean([_ap_of_row(r, m, len(r)) for r, m in zip(h, n)])))),
        rule=_skipped_queries_start_at_zero),
    Exercise(
        "filtered_top_k", ((_DISTANCES, _ALLOWED, 3), (_DISTANCES, _ALLOWED, 5), (_DISTANCES, ~_ALLOWED, 2),
                           (_MANY_DISTANCES, _MANY_ALLOWED, 12), (_MANY_DISTANCES, ~_MANY_ALLOWED, 8),
                           (_LONG_DISTANCES, _LONG_ALLOWED, 300), (_DISTANCES, _ALLOWED, 7),
                           (_DISTANCES, np.zeros(len(_DISTANCES), dtype=bool), 3),
                           (_SELECTIVE_DISTANCES, _SELECTIVE_ALLOWED, 10), (_FAR_DISTANCES, _ALLOWED, 3)),
        lambda d, allowed, k: (f"the {k} nearest allowed rows for {len(d):,} distances {_list(d)} and allowed "
                               f"{_list(allowed.astype(int))}"),
        (("you took the nearest products first and filtered them afterwards, so fewer than k come back (taking a "
          "few times k first does not help: a strict filter may keep none of them): filter first",
          lambda d, allowed, k: _sorted_indices(d, k, allowed)),
         ("those are positions among the allowed products, not catalogue rows: which catalogue row is the i-th "
          "allowed product?", lambda d, allowed, k: np.argsort(d[allowed], kind="stable")[:k]),
         ("products the filter refuses came back at the end of your list: when fewer than k pass, return only "
          "those (none when none passes)",
          lambda d, allowed, k: np.argsort(np.where(allowed, d, np.inf), kind="stable")[:k]),
         ("a finite stand-in distance for the refused products puts them before allowed products that lie farther "
          "away than it: distances have no upper limit, so leave the refused products out (or give them infinity)",
          lambda d, allowed, k: np.argsort(np.where(allowed, d, 10.0), kind="stable")[:min(k, int(allowed.sum()))]),
         ("nearest first: sort the distances in increasing order",
          lambda d, allowed, k: np.flatnonzero(allowed)[np.argsort(-d[allowed], kind="stable")[:k]])),
        order_hint="the right products, in the wrong order: the k nearest must come nearest first (argpartition "
                   "only splits off the k smallest, in no particular order: sort those k afterwards)",
        rule=_integer_rows_and_inputs_unchanged),
    Exercise(
        "precision_curve", ((_HITS[0],), (np.array([0, 1, 1, 0, 1, 0, 0, 1]),)),
        lambda relevant: f"the precision curve of {_items(relevant)}",
        (("precision@j divides the relevant results so far by j, not by the length of the list",
          lambda r: np.cumsum(r) / len(r)),
         ("divide the running count of relevant results by the rank j", lambda r: np.cumsum(r).astype(float)),
         ("precision@j counts every relevant result among the first j, not only the one at rank j",
          lambda r: np.asarray(r, dtype=float) / np.arange(1, len(r) + 1))),
        rule=_curve_array_and_relevant_unchanged),
]}


_MAPS_POSITIVE = np.abs(_MAPS) + 0.1
#: Maps after a ReLU, as a network's are (most of EfficientNet-Lite0's values are 0), one channel zero everywhere:
#: the zeros count in the mean (an answer over the non-zero values only is refused) and an empty channel pools to 0.
_MAPS_RELU = np.maximum(_MAPS, 0)
_MAPS_RELU[..., 0] = 0.0
_UNIT = _FEATURES / np.linalg.norm(_FEATURES, axis=1, keepdims=True)
_NEIGHBOURS = np.array([[0.8, 0.6, 0.0], [0.0, 0.6, 0.8], [-0.6, 0.0, 0.8]])
#: Neighbours of the query _NEIGHBOURS[0], nearest first, that all point its way (similarities 0.96, 0.48,
#: 0.36): an answer that keeps only the first one or two of them is told apart.
_NEIGHBOURS_ALIKE = np.array([[0.6, 0.8, 0.0], [0.0, 0.8, 0.6], [0.0, 0.6, 0.8]])
_FOUND = np.array([[3, 1, 7, 9], [2, 4, 6, 8], [5, 5, 0, 1]])
_REFERENCE = np.array([[1, 3, 9, 0], [2, 4, 6, 8], [5, 0, 2, 3]])
#: No value of it lands on a rounding tie (a code x.5): round half to even, round half up and a scale with a
#: tiny epsilon all give the same codes.
_SPREAD = np.array([[0.1, -2.0, 5.0], [0.4, 1.0, 4.0], [-0.3, 0.2, 4.6], [0.25, -0.7, 6.0]])
#: A column whose values are all equal (range 0): a scale of 0 would divide by zero.
_FLAT = np.array([[0.1, 0.7, 5.0], [0.4, 0.7, 4.0], [-0.3, 0.7, 4.5]])
#: Four queries whose recalls (1, 1, 0.25, 0.5) have a mean (0.6875) other than their median (0.75).
_FOUND_SKEWED = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [1, 9, 8, 7], [9, 8, 1, 2]])
_REFERENCE_SKEWED = np.array([[1, 2, 3, 4]] * 4)
#: FAISS pads a query's answer with -1 when the lists it probed hold fewer than k rows.
_FOUND_PADDED = np.array([[3, 1, -1, -1]])
#: Two queries, the second served by none of its exact neighbours (recall 0), which the mean must keep.
_FOUND_MISSED = np.array([[1, 3, 9, 0], [7, 7, 6, 5]])
_REFERENCE_MISSED = np.array([[1, 3, 9, 0], [2, 4, 8, 1]])


def _no_power_mean_library(function: Callable) -> str | None:
    """What is wrong when ``function`` lets scipy.stats compute GeM (``pmean``, the power mean, since scipy 1.9,
    preinstalled on Colab and Kaggle), or None: :func:`uses_a_library` with scipy.stats, which is refused for
    gem_pool only (it is not in :data:`OTHER_LIBRARIES`: no other exercise's step is one of its functions); and
    when it writes into the maps it is given (notebook 8 pools the same map with the package next)."""
    used = uses_a_library(function, libraries=("scipy.stats",))
    if used:
        return (f"your function uses {used}, which computes the power mean for you: the exercise is to write this "
                "step yourself, with numpy. Hint")
    if _written_arguments(function, [(_MAPS_POSITIVE, 3.0)], ("maps",)):
        return ("right values, but your function wrote into `maps`, the array it was given (`**=` or `out=` change "
                "it in place): the notebook passes it a real map that the package's pooling reads next, so compute "
                "into a new array. Hint")
    return None


def _int8_unguarded(f):
    """The round trip with the offset and scale that map min..max to -127..127, and no care for a range of 0."""
    low, high = f.min(axis=0), f.max(axis=0)
    offset, scale = (high + low) / 2, (high - low) / 254
    with np.errstate(divide="ignore", invalid="ignore"):
        return offset + scale * np.clip(np.rint((f - offset) / scale), -127, 127)


class _Traced(np.ndarray):
    """An array whose ufunc calls (``np.rint``, ``-``, ``*``...) note every array they read or write in ``seen``,
    and whose slices, views and results are traced too (a column, the transpose, a flattened copy): how
    :func:`_codes_outside_int8` sees the codes that a round trip never returns. Python numbers (a loop over the
    elements) escape it."""

    seen: list

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [np.asarray(x) if isinstance(x, _Traced) else x for x in inputs]
        result = super().__array_ufunc__(ufunc, method, *plain, **kwargs)
        _Traced.seen.extend(np.asarray(x) for x in (*plain, result) if isinstance(x, np.ndarray))
        return result.view(_Traced) if isinstance(result, np.ndarray) else result


def _codes_outside_int8(function: Callable) -> tuple[float, float] | None:
    """The range of the codes ``function`` computes on :data:`_SPREAD` (its arrays of whole numbers, of any shape)
    when none of them fits in -127..127 (an offset at a column's minimum gives codes 0..254, which decode to the
    right values but do not fit in a signed byte); None when one fits (codes shifted into range afterwards), or
    none is seen."""
    _Traced.seen = []
    _quietly(function, (_SPREAD.copy().view(_Traced),))
    whole = [a for a in _Traced.seen if a.size > 1 and (a.dtype.kind in "iu" or (
             a.dtype.kind == "f" and np.isfinite(a).all() and np.array_equal(a, np.rint(a)))) and a.min() < a.max()]
    if not whole or any(a.min() >= -127 and a.max() <= 127 for a in whole):
        return None
    return float(whole[0].min()), float(whole[0].max())


def _int8_input_unchanged(function: Callable) -> str | None:
    """None when ``function(features)`` (the int8 round trip) leaves the array it is given as it was and its codes
    fit in -127..127 (:func:`_codes_outside_int8`); else a note. Notebook 9 passes it its real features, which every
    later cell uses."""
    outside = _codes_outside_int8(function)
    if outside:
        return (f"right values, but your codes run from {outside[0]:g} to {outside[1]:g}: a signed byte holds "
                "-127..127 (stored as int8, yours would wrap around), so put the offset where the column's smallest "
                "value encodes to -127 and its largest to +127. Hint")
    if not _written_arguments(function, [(_SPREAD,)], ("features",)):
        return None
    return ("right values, but your function wrote into `features`, the array it was given (`-=`, `/=` or "
            "`out=` change it in place): the notebook passes it the real features, which the gallery is built "
            "from next, so return a new array. Hint")

EXERCISES.update({e.name: e for e in [
    Exercise(
        "gem_pool", ((_MAPS_POSITIVE, 3.0), (_MAPS_POSITIVE[:, :2], 1.0), (_MAPS_POSITIVE, 8.0),
                     (_MAPS_POSITIVE, 2.5),  # a p that is not whole: int(p) is refused
                     (_MAPS_POSITIVE, 2.2),  # nor a multiple of 0.5: p rounded to the nearest 0.5 is refused
                     (_MAPS_RELU, 3.0)),
        lambda maps, p: f"GeM pooling with p = {p:g} of maps of shape {maps.shape} (batch, height, width, channels)",
        (("the generalised mean ends with the p-th root: (mean of x^p) ** (1 / p)",
          lambda maps, p: np.mean(maps ** p, axis=(1, 2))),
         ("raise the values to the power p BEFORE averaging them: the mean of x^p, not (mean of x)^p",
          lambda maps, p: np.mean(maps, axis=(1, 2)) ** p),
         ("you summed the positions: the generalised MEAN divides by their number (height x width)",
          lambda maps, p: np.sum(maps ** p, axis=(1, 2)) ** (1.0 / p)),
         ("average over the positions (axes 1 and 2), one number per channel, not over the channels",
          lambda maps, p: np.mean(maps ** p, axis=3) ** (1.0 / p)),
         ("every position counts in the mean, the zeros too (after a ReLU most values are 0): divide by height x "
          "width, not by the number of non-zero values",
          lambda maps, p: (np.sum(maps ** p, axis=(1, 2)) / np.count_nonzero(maps, axis=(1, 2))) ** (1.0 / p))),
        # an answer that lifts the zeros to 1e-6 first, as the package's pooling does, is right: 1e-6 off at most
        atol=2e-6, rule=_no_power_mean_library),
    Exercise(
        "alpha_query_expansion", ((_UNIT[0], _NEIGHBOURS, 3.0), (_NEIGHBOURS[0], _NEIGHBOURS[1:], 1.0),
                                  (_UNIT[1], _UNIT[2:][::-1], 3.0),  # nearest first, as the prompt says
                                  # several neighbours of positive similarity: the weighted sum over them all
                                  (_NEIGHBOURS[0], _NEIGHBOURS_ALIKE, 3.0),
                                  # an even alpha, a neighbour of negative similarity: clipping after the power refused
                                  (_UNIT[0], _NEIGHBOURS, 2.0),
                                  # an alpha that is not whole: int(alpha) or round(alpha) is refused
                                  (_NEIGHBOURS[0], _NEIGHBOURS_ALIKE, 2.5),
                                  # and with a neighbour of negative similarity: its power is NaN, masking it after
                                  # the power (`(s > 0) * s ** alpha`) leaves the NaN in
                                  (_UNIT[0], _NEIGHBOURS, 2.5)),
        lambda q, nb, alpha: f"alpha-QE of query {_list(q)} with neighbours {_list(nb)} and alpha = {alpha:g}",
        (("scale the expanded query back to length 1: the index compares unit vectors",
          lambda q, nb, a: q + (np.maximum(nb @ q, 0) ** a) @ nb),
         ("the query itself stays in the sum, with weight 1: q + sum of w_i n_i",
          lambda q, nb, a: solutions.l2_normalise(((np.maximum(nb @ q, 0) ** a) @ nb)[None])[0]),
         ("a negative similarity to a power that is not whole is NaN (not a number), and multiplying it by 0 "
          "leaves a NaN: clip the similarities at 0 before the power",
          lambda q, nb, a: solutions.l2_normalise((q + ((nb @ q > 0) * (nb @ q) ** a) @ nb)[None])[0]),
         ("clip the similarities at 0 before the power, not after: with an even alpha a negative similarity "
          "becomes a positive weight",
          lambda q, nb, a: solutions.l2_normalise((q + np.maximum((nb @ q) ** a, 0) @ nb)[None])[0]),
         ("a neighbour less similar than orthogonal must not pull the query away: clip negative similarities at 0",
          lambda q, nb, a: solutions.l2_normalise((q + ((nb @ q) ** a) @ nb)[None])[0]),
         ("raise each similarity to the power alpha: close neighbours count, far ones hardly",
          lambda q, nb, a: solutions.l2_normalise((q + np.maximum(nb @ q, 0) @ nb)[None])[0]))),
    Exercise(
        "ann_recall", ((_FOUND, _REFERENCE), (_FOUND[:1], _REFERENCE[:1]), (_REFERENCE[::-1, ::-1], _REFERENCE[::-1]),
                       (_FOUND_SKEWED, _REFERENCE_SKEWED), (_FOUND_PADDED, _REFERENCE[:1]),
                       (_FOUND_MISSED, _REFERENCE_MISSED)),
        lambda found, reference: f"the recall of results {_items(found)} against the exact top k {_items(reference)}",
        (("the order does not matter: an exact neighbour found at another rank still counts (use sets)",
          lambda f, r: float(np.mean(np.asarray(f) == np.asarray(r)))),
         ("a row found twice is one neighbour: count the rows the two lists share, each once",
          lambda f, r: float(np.mean([sum(x in set(b) for x in a) / len(b) for a, b in zip(f, r)]))),
         ("divide each query's count by k, then average over the queries (or the total by Q x k), not by Q",
          lambda f, r: float(np.mean([len(set(a) & set(b)) for a, b in zip(f, r)]))),
         ("that is the median of the queries' recalls: the recall of an index is their MEAN (a few badly served "
          "queries must pull it down)",
          lambda f, r: float(np.median([len(set(a) & set(b)) / len(b) for a, b in zip(f, r)]))),
         ("an index may return fewer than k rows (FAISS fills the rest with -1): the share is of the k exact "
          "neighbours, so divide by k, not by the rows it found",
          lambda f, r: float(np.mean([len(set(a) & set(b)) / max(int((np.asarray(a) >= 0).sum()), 1)
                                      for a, b in zip(f, r)])))),
        atol=1e-9),
    Exercise(
        "int8_roundtrip", ((_SPREAD,), (_SPREAD[:, ::-1].copy(),), (_FLAT,)),
        lambda features: f"the int8 round trip of {_list(features)}",
        (("a column whose values are all equal has a range of 0: a scale of 0 divides by zero (NaN). Any positive "
          "scale works there: which code does every value of that column get, and what does it decode to?",
          _int8_unguarded),
         ("a column whose values are all equal came back as 0: with any positive scale, every value of that column "
          "gets code 0 and decodes to the offset, the column's own value",
          lambda f: np.nan_to_num(_int8_unguarded(f))),
         ("with the offset at the column's minimum, the smallest value encodes to 0 and the codes from 128 up do not "
          "fit in -127..127: which value of the column should encode to 0?",
          lambda f: f.min(axis=0) + (f.max(axis=0) - f.min(axis=0)) / 254
          * np.clip(np.rint((f - f.min(axis=0)) / ((f.max(axis=0) - f.min(axis=0)) / 254)), -127, 127)),
         ("one scale and offset PER COLUMN (axis=0): each dimension has its own range",
          lambda f: (f.max() + f.min()) / 2 + (f.max() - f.min()) / 254
          * np.rint((f - (f.max() + f.min()) / 2) / ((f.max() - f.min()) / 254))),
         ("you returned the codes: decode them, offset + scale * code",
          lambda f: np.clip(np.rint((f - (f.max(0) + f.min(0)) / 2) / ((f.max(0) - f.min(0)) / 254)), -127, 127)),
         ("round the codes to whole numbers (np.rint): an int8 holds integers only",
          lambda f: f + 0.0)),
        atol=1e-6, rule=_int8_input_unchanged),
]})

def _batch(seed: int) -> np.ndarray:
    """7 embeddings in 3-D around three class directions (two of them scaled: lengths differ)."""
    centres = np.array([[1.0, 0, 0]] * 3 + [[0, 1.0, 0]] * 2 + [[0, 0, 1.0]] * 2)
    batch = np.random.default_rng(seed).normal(size=(7, 3)) + centres
    return batch * np.array([[3.0], [1], [1], [1], [0.5], [1], [1]])


#: Labels of :func:`_batch`: two classes with positives and two singletons (no positive: each adds 0 but counts in
#: the mean).
_BATCH_LABELS = np.array([0, 0, 0, 1, 1, 2, 3])
#: The seed of a :func:`_batch` where pairs lie within epsilon of the hardest pair of the other kind: mining with
#: epsilon 0, 0.05 or 0.15 instead of 0.1 keeps other pairs there and gives another loss.
_EPSILON_SEED = 32
#: One anchor (row 0, length 2) whose cosines are 0.9 and 0.7 with its positives and 0.61 and 0.59 with its
#: negatives: mining drops the positive 0.9 and the negative 0.59 (0.59 + 0.1 < 0.7). In the random batches a
#: dropped negative adds less than 1e-6, so a loss that mines the positives only passed; here it adds 0.0012.
_MINED_NEGATIVE = np.array([[2.0, 0, 0, 0, 0], [0.9, np.sqrt(1 - 0.9**2), 0, 0, 0],
                            [0.35, 0, 0.5 * np.sqrt(1 - 0.7**2), 0, 0], [0.61, 0, 0, np.sqrt(1 - 0.61**2), 0],
                            [0.59, 0, 0, 0, np.sqrt(1 - 0.59**2)]])
_MINED_NEGATIVE_LABELS = np.array([0, 0, 0, 1, 1])
#: One anchor (row 0, length 2) whose negatives are all below 0 (cosines -0.2 and -0.5) and whose positives are at
#: 0.3, 0.05 and -0.15: mining keeps the positive -0.15 only (0.05 - 0.1 > -0.2). A hardest negative taken as a max
#: over the row with the other entries masked by 0 (``(S * mask).max``) is 0 and keeps 0.05 too; no mining keeps 0.3.
_NEGATIVE_COSINES = np.eye(6) * np.sqrt(1 - np.array([0.0, 0.3, 0.05, -0.15, -0.2, -0.5]) ** 2)
_NEGATIVE_COSINES[:, 0] = [2.0, 0.3, 0.05, -0.15, -0.2, -0.5]
_NEGATIVE_COSINES_LABELS = np.array([0, 0, 0, 0, 1, 1])
_FOUND_ITEMS = np.array([["c", "a", "a", "d", "e"], ["b", "f", "g", "h", "b"], ["x", "y", "z", "w", "c"],
                         ["d", "e", "d", "q", "d"], ["m", "e", "e", "e", "o"]])
_QUERY_ITEMS = np.array(["a", "b", "c", "d", "e"])
#: Recall@3 of 8 queries (items a to h) on which every typical mistake gives its own value: a, c, d, e and f are
#: found only after rank 3 (a list not cut at k counts them), every item shows up in some query's top 3 (one np.isin
#: over every list counts them all), b and g have two hits in their top 3, no query has its own item first, a, c, d
#: and f come after a repeated wrong item (a list de-duplicated before the cut at k counts them), d is at rank 5,
#: past a cut at k + 1, and h is not among its results at all (a first hit found with argmax, 0 for a row without
#: one, counts it).
_FIRST_K_ITEMS = np.array([["x", "e", "e", "a", "a"], ["x", "b", "b", "y", "a"], ["x", "x", "y", "c", "c"],
                           ["x", "x", "x", "y", "d"], ["a", "h", "y", "z", "e"], ["x", "x", "y", "f", "w"],
                           ["x", "g", "g", "y", "z"], ["c", "d", "f", "x", "y"]])
_FIRST_K_QUERIES = np.array(["a", "b", "c", "d", "e", "f", "g", "h"])


def _multi_similarity(embeddings, labels, *, normalise=True, mine=True, mine_negatives=True, self_positive=False,
                      all_anchors=True, scaled=True, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1, zero_masked=False,
                      pull_without_negatives=False):
    """The multi-similarity loss with one step switchable off: the typical mistakes of the exercise."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True) if normalise else embeddings
    similarity = x @ x.T
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    positive = same if self_positive else same & ~np.eye(len(labels), dtype=bool)
    losses = []
    for i in range(len(labels)):
        pos, neg = similarity[i, positive[i]], similarity[i, ~same[i]]
        if len(pos) and len(neg) and mine:
            hardest = max(neg.max(), 0.0) if zero_masked else neg.max()  # (S * mask).max: the masked 0s count
            pos, neg = pos[pos - epsilon < hardest], neg[neg + epsilon > pos.min()] if mine_negatives else neg
        if len(pos) and (len(neg) or pull_without_negatives):
            losses.append(np.log1p(np.exp(-alpha * (pos - base)).sum()) / (alpha if scaled else 1)
                          + np.log1p(np.exp(beta * (neg - base)).sum()) / (beta if scaled else 1))
    return float(np.sum(losses) / (len(labels) if all_anchors else max(len(losses), 1)))


EXERCISES.update({e.name: e for e in [
    Exercise(
        "multi_similarity_loss", ((_batch(9), _BATCH_LABELS), (_batch(10), _BATCH_LABELS),
                                  (_batch(_EPSILON_SEED), _BATCH_LABELS), (_MINED_NEGATIVE, _MINED_NEGATIVE_LABELS),
                                  (_NEGATIVE_COSINES, _NEGATIVE_COSINES_LABELS), (_batch(9)[:4], np.zeros(4, int))),
        lambda embeddings, labels: f"the multi-similarity loss of the {len(labels)} embeddings {_list(embeddings)} "
                                   f"with labels {_items(labels)}",
        (("keep only the informative pairs (mining): a positive with S_ij - epsilon < the anchor's hardest "
          "negative (the highest cosine), a negative with S_ik + epsilon > the anchor's hardest positive (the "
          "lowest cosine)",
          lambda e, l: _multi_similarity(e, l, mine=False)),
         ("mine the negatives too: keep only those with S_ik + epsilon > the anchor's hardest positive (the lowest "
          "cosine among its positives alone: masking the other entries with 0 (S * mask) before the min makes 0 the "
          "hardest positive); a negative less similar than that adds a small term of its own",
          lambda e, l: _multi_similarity(e, l, mine_negatives=False)),
         ("S is the COSINE similarity: L2-normalise the rows first (the embeddings have different lengths)",
          lambda e, l: _multi_similarity(e, l, normalise=False)),
         ("an image is not its own positive: leave the diagonal (j = i) out of the positives",
          lambda e, l: _multi_similarity(e, l, self_positive=True)),
         ("the mean is over all B anchors: an anchor with no kept positive or no kept negative adds 0 but counts",
          lambda e, l: _multi_similarity(e, l, all_anchors=False)),
         ("each log term has its own scale in front: 1/alpha for the positives, 1/beta for the negatives",
          lambda e, l: _multi_similarity(e, l, scaled=False)),
         ("the mining has a margin: keep a positive with S_ij - epsilon < the hardest negative and a negative with "
          "S_ik + epsilon > the hardest positive, epsilon = 0.1 (a pair just past the hardest one still counts)",
          lambda e, l: _multi_similarity(e, l, epsilon=0.0)),
         ("the hardest negative is the highest cosine among the negatives alone, and a cosine can be below 0: "
          "masking the other entries with 0 (S * mask) before the max makes 0 the hardest negative when every "
          "negative is below 0; leave them out (np.where with -inf, or boolean indexing)",
          lambda e, l: _multi_similarity(e, l, zero_masked=True)),
         ("an anchor without a negative in the batch (a batch of one class) adds 0, as one without a positive does: "
          "with no hardest negative, mining keeps none of its positives",
          lambda e, l: _multi_similarity(e, l, pull_without_negatives=True)))),
    Exercise(
        "instance_recall_at_k", ((_FIRST_K_ITEMS, _FIRST_K_QUERIES, 3), (_FOUND_ITEMS, _QUERY_ITEMS, 3),
                                 (_FOUND_ITEMS, _QUERY_ITEMS, 5), (_FOUND_ITEMS[:3], _QUERY_ITEMS[:3], 1)),
        lambda found, queries, k: f"Recall@{k} of queries {_items(queries)} with results {_items(found)}",
        (("only the first k results count: cut each list at k",
          lambda f, q, k: float(np.mean((f == q[:, None]).any(axis=1)))),
         ("count exactly k results: a query's first k are its columns 0 to k - 1 (a slice :k stops before k)",
          lambda f, q, k: float(np.mean((f[:, :k + 1] == q[:, None]).any(axis=1)))),
         ("a query counts once, as soon as its item shows up in its top k, however many photos of it do",
          lambda f, q, k: float(np.mean((f[:, :k] == q[:, None]).sum(axis=1)))),
         ("cut each list at k as it stands: a repeated item (several photos of it) takes a rank each time",
          lambda f, q, k: float(np.mean([item in list(dict.fromkeys(row))[:k] for row, item in zip(f, q)]))),
         ("that is precision@k (hits over k): Recall@K asks whether each query's item is found at all",
          lambda f, q, k: float(np.mean(f[:, :k] == q[:, None]))),
         ("you looked at the first result only, or asked for the item at every rank (all): Recall@K asks whether "
          "it is anywhere among the first k (any)",
          lambda f, q, k: float(np.mean(f[:, 0] == q))),
         ("look for each query's item in its OWN results only: an item in another query's top k does not count",
          lambda f, q, k: float(np.mean(np.isin(q, f[:, :k])))),
         ("one yes or no per QUERY (a row of results), then the share of queries that said yes; yours asks once "
          "per rank (a column)",
          lambda f, q, k: float(np.mean((f[:, :k] == q[:, None]).any(axis=0)))),
         ("a query whose item is not among its results at all is not found: a first-hit position that is 0 for a "
          "row without any hit (np.argmax of an all-False row is 0) counts it as found at rank 1",
          lambda f, q, k: float(np.mean(np.argmax(f == q[:, None], axis=1) < k))))),
]})

#: The general hint of each exercise and the package's own implementation(s) of the step.
_HINTS = {
    "query_mask": ("every product needs the size of its own category. np.unique can return more than the distinct "
                   "labels: its documentation lists what else.", ()),
    "chance_precision": ("the probability depends only on the query's category: compute it for every product from "
                         "its category's size (as in exercise 1), then average it over the products that can be "
                         "queries.", ()),
    "conv3x3": ("how many zeros does a 3x3 kernel centred on a border pixel need, and on which sides? Once they are "
                "there, which window of the padded image belongs to output (i, j)? Try it by hand on the pixel "
                "(0, 0) first.",
                ("cbir_tutorial.lessons.convolution.convolve",)),
    "output_size": ("count the positions where the kernel fits: from the first (pixel 0 of the padded row) "
                    "to the last, one stride apart. The padded row has n + 2p pixels.",
                    ("cbir_tutorial.lessons.convolution.output_size",)),
    "conv_parameters": ("start with one output channel: how many numbers does its kernel hold, given that it reads "
                        "every input channel? How many such kernels are there, and what else does each output "
                        "channel add when bias=True?", ("cbir_tutorial.lessons.architectures.conv_cost",)),
    "global_average_pool": ("one number per photo and channel: the mean of that channel's map over all its "
                            "positions. Which axes of (batch, height, width, channels) index a position? numpy "
                            "can average over more than one at once.",
                            ("cbir_tutorial.models.pooling.pool",)),
    "l2_normalise": ("a vector's length is the square root of the sum of its squares. Each row needs its own "
                     "length, and numpy divides every value of a row by it when the lengths keep a column shape "
                     "that broadcasts.",
                     ("cbir_tutorial.search.whitening.l2_normalise",)),
    "receptive_field": ("walk the layers from the first. Besides the field so far, keep track of how many input "
                        "pixels lie between two neighbouring outputs of the layer you reached: how does the next "
                        "layer's kernel widen the field, in those steps, and how does its stride change them? "
                        "Check your rule on the small cases of the prompt before writing it.",
                        ("cbir_tutorial.lessons.architectures.receptive_field",)),
    "projection_residual": ("a 1x1 convolution of stride s looks at one position at a time: which positions of x "
                            "does it read, and what does it compute from the C_in channels of one position with the "
                            "(C_in, C_out) weights? Then follow relu(F(x) + shortcut) in that order.",
                            ("cbir_tutorial.lessons.architectures.residual_block",)),
    "separable_parameters": ("count each step on its own: how many weights does one channel's k x k filter hold, "
                             "and how many channels are filtered? The pointwise step is a Conv2D with a 1 x 1 "
                             "kernel: count it as in notebook 2.",
                             ("cbir_tutorial.lessons.architectures.separable_conv_cost",)),
    "euclidean_distances": ("expand (q - x).(q - x) as you would (a - b)^2; then ask of each of its three terms "
                            "whether it needs both q and x, or only one of them.",
                            ("cbir_tutorial.search.exact.EuclideanIndex",)),
    "cosine_top_k": ("the cosine of two vectors is their dot product divided by both lengths; every row of the "
                     "gallery at once is one matrix-vector product. Then rank: the most similar first.",
                     ("cbir_tutorial.search.exact.EuclideanIndex",)),
    "precision_at_k": ("reread the definition at the top of the notebook: precision@K is a share. Which slice of "
                       "the list does it look at, and a share out of how many results?",
                       ("cbir_tutorial.evaluation.metrics.precision_at_k",)),
    "ap_at_k": ("at the i-th relevant result, rank r, how many of the first r results are relevant? That gives "
                "precision@r; the formula above says which ranks count, what divides their sum, and what a query "
                "with R = 0 scores.",
                ("cbir_tutorial.evaluation.metrics.average_precision_at_k",)),
    "map_at_k": ("compute AP@k of every row with its own R (a row's ranks: where it holds a 1, counted from 1), "
                 "then average over all the rows.",
                 ("cbir_tutorial.evaluation.metrics.map_at_k",)),
    "filtered_top_k": ("filter first, then rank: the k nearest among the allowed products only, nearest first, "
                       "and the answer is in catalogue rows, not positions among the allowed ones.",
                       ("cbir_tutorial.search.ranking",)),
    "precision_curve": ("precision@j is the number of relevant results among the first j, divided by j, for each "
                        "j from 1 to K. A loop over j is fine; numpy can also count them for every j in one call.",
                        ("cbir_tutorial.evaluation.metrics.precision_at_k",)),
    "gem_pool": ("a power mean undoes, after averaging, what it did to the values before. Try yours on a map "
                 "whose values are all 2 (the answer is 2 for every p), with p = 1 (the plain average) and with "
                 "p = 2.5: one number per photo and channel.", ("cbir_tutorial.models.pooling.pool",)),
    "alpha_query_expansion": ("how similar are two unit vectors, in one operation? A similarity can be "
                              "negative: should a neighbour that points away from the query move it at all? "
                              "Work out what your weight gives a neighbour of similarity -0.5 with alpha = 2 "
                              "and with alpha = 3. And what length must the query have for the index?",
                              ("cbir_tutorial.search.expansion.alpha_query_expansion",)),
    "ann_recall": ("recall is a share of the exact top k: of the k rows in a query's reference, how many did "
                   "the index find? An index may return a row twice, or fewer real rows than k (FAISS pads with "
                   "-1): what should each of those count?",
                   ("cbir_tutorial.search.sizing.ann_recall_at_k",)),
    "int8_roundtrip": ("a code is a whole number from -127 to 127. Per column, choose the offset and the scale so "
                       "that the column's smallest value encodes to -127 and its largest to +127 (two equations, "
                       "two unknowns); encode, round to whole codes, decode.",
                       ("cbir_tutorial.search.exact.int8_range", "cbir_tutorial.search.exact.EuclideanIndex")),
    "multi_similarity_loss": ("S = X X^T of the L2-normalised rows. For each anchor i: its positives (same label, "
                              "j != i) and its negatives (another label). The formula above the exercise says "
                              "which of them it keeps and how the terms add up.",
                              ("cbir_tutorial.training.losses.multi_similarity_loss",)),
    "instance_recall_at_k": ("for one query the question is yes or no: is its own item anywhere among its first "
                             "k results? Recall@K is the share of queries answered yes.",
                             ("cbir_tutorial.training.protocols.instance_recall_at_k",
                              "cbir_tutorial.training.protocols.instance_retrieval")),
}
EXERCISES = {name: replace(item, hint_text=_HINTS[name][0], package=_HINTS[name][1])
             for name, item in EXERCISES.items()}


class Lesson(types.SimpleNamespace):
    """A notebook's exercises in order: ``nb06.q1``, ``nb06.q2``..."""

    def __repr__(self) -> str:
        return ", ".join(f"{q}: {e.name}" for q, e in vars(self).items())


#: Each notebook's exercises, in the order they appear.
LESSONS: dict[str, list[str]] = {
    "nb01": ["query_mask", "chance_precision"],
    "nb02": ["conv3x3", "output_size", "conv_parameters"],
    "nb03": ["global_average_pool", "l2_normalise"],
    "nb04": ["receptive_field", "projection_residual", "separable_parameters"],
    "nb05": ["cosine_top_k", "euclidean_distances"],
    "nb06": ["precision_at_k", "ap_at_k", "map_at_k"],
    "nb07": ["filtered_top_k", "precision_curve"],
    "nb08": ["gem_pool", "alpha_query_expansion"],
    "nb09": ["int8_roundtrip", "ann_recall"],
    "nb10": ["multi_similarity_loss", "instance_recall_at_k"],
}
for _lesson, _names in LESSONS.items():
    globals()[_lesson] = Lesson(**{f"q{i}": EXERCISES[n] for i, n in enumerate(_names, start=1)})


def exercise_for(name: str) -> Exercise:
    """The exercise called ``name`` (``q = exercise_for("ap_at_k")``; then ``q.check(fn)``, ``q.hint()``...)."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def _not_done(name: str, function_name: str) -> Callable:
    lesson = next((f"{key}.q{names.index(name) + 1}" for key, names in LESSONS.items() if name in names), "")
    solution = f"`{lesson}.solution()`" if lesson else "the exercise's `.solution()`"

    def stand_in(*args, **kwargs):
        raise NotDone(f"{function_name} is not written yet: replace the `...` line of the exercise cell with your "
                      f"code and run that cell again (stuck? {solution} prints an answer to copy there).")

    stand_in.__name__ = function_name
    stand_in.not_done = True
    stand_in.exercise = name
    return stand_in


def is_stub(function: Callable) -> bool:
    """True when ``function``'s body holds nothing but a docstring, ``...`` or ``pass``."""
    try:
        body = _source_tree(function).body[0].body
    except (IndexError, AttributeError):  # no source to read, or not a def
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
            return EXERCISES[name].solution_function
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
