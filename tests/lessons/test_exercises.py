"""Every check accepts its solution, rejects each typical mistake with that mistake's hint, refuses a
function that wraps the package's own implementation (with the exercise's hint), never shows the expected
value, and never crashes a notebook on an unwritten exercise."""

import importlib
import inspect
import warnings

import numpy as np
import pytest

from cbir_tutorial.lessons import exercises, solutions
from cbir_tutorial.lessons.exercises import (EXERCISES, LESSONS, NotDone, check, exercise, exercise_for, is_stub,
                                             solutions_mode, uses_the_package)

MISTAKES = [(name, hint, wrong) for name, item in EXERCISES.items() for hint, wrong in item.mistakes]


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    monkeypatch.delenv("CBIR_TUTORIAL_SOLUTIONS", raising=False)


@pytest.fixture
def solutions_on(monkeypatch):
    """The notebooks' test run: unwritten exercises are the package's solutions, which the checks then accept."""
    monkeypatch.setenv("CBIR_TUTORIAL_SOLUTIONS", "1")


@pytest.mark.parametrize("name", list(EXERCISES))
def test_the_solution_passes_its_check(name, solutions_on, capsys):
    assert check(name, getattr(solutions, name)) is True
    assert capsys.readouterr().out.startswith(f"✓ {name}: right on all")


@pytest.mark.parametrize("name", list(EXERCISES))
def test_a_learner_who_passes_the_packages_own_function_is_refused(name, capsys):
    item = EXERCISES[name]
    for own in [item.solution_function, *(_package_twin(path) for path in item.package)]:
        if not callable(own) or isinstance(own, type):
            continue
        assert check(name, own) is False
        out = capsys.readouterr().out
        assert "that is the package's own `cbir_tutorial." in out and out.rstrip().endswith(item.hint_text), out


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
        "AP@5 with relevant results at ranks [1, 3, 4] and R = 3: yours gives 0.483: did you divide by K instead of "
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
    verdict = q.check(lambda ranks, n_relevant, k: float(sum((i + 1) / r for i, r in enumerate(
        [r for r in ranks if r <= k])) / min(k, n_relevant)) if n_relevant else 0.0)
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

    def written(image, kernel):
        padded = np.pad(image, 1)
        return np.array([[(padded[i:i + 3, j:j + 3] * kernel).sum() for j in range(image.shape[1])]
                         for i in range(image.shape[0])])

    @q.write
    def unwritten(image, kernel):
        ...

    def calls_an_unwritten_one(image, kernel):
        return unwritten(image, kernel)

    assert q.passes(written) and not q.passes(solutions.conv3x3)  # the package's solution is not the learner's
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


def test_an_exercise_that_calls_an_unwritten_one_points_to_its_solution_and_the_copied_answer_passes(capsys):
    """Notebook 1: exercise 2 may call exercise 1's function; while that one is unwritten, the message points to
    nb01.q1.solution() (not to solutions mode, whose checks refuse the package's function), and once the
    printed answer is copied in, exercise 2 passes."""
    @exercise("query_mask")
    def my_query_mask(labels):
        ...

    def my_chance_precision(labels):
        labels = np.asarray(labels, dtype=object)
        size = {label: (labels == label).sum() for label in set(labels)}  # each category counted once
        rows = np.flatnonzero(my_query_mask(labels))
        return float(np.mean([(size[labels[i]] - 1) / (len(labels) - 1) for i in rows]))

    assert check("chance_precision", my_chance_precision) is False
    out = capsys.readouterr().out
    assert "`nb01.q1.solution()` prints an answer" in out and "CBIR_TUTORIAL_SOLUTIONS" not in out

    def my_query_mask(labels):  # noqa: F811  the answer nb01.q1.solution() prints, copied in
        labels = np.asarray(labels, dtype=object)
        values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return (labels != "") & (counts[inverse] >= 2)

    assert check("chance_precision", my_chance_precision) is True


def test_the_chance_precision_solution_copied_alone_into_a_notebook_passes(capsys):
    """Notebook 1: the body nb01.q2.solution() prints, pasted into my_chance_precision of a notebook that has only
    numpy (no query_mask), runs and passes."""
    import linecache

    body = inspect.getsource(solutions.chance_precision).split('"""')[2]  # the code after the docstring
    source = "def my_chance_precision(labels):" + body
    linecache.cache["<copied cell>"] = (len(source), None, source.splitlines(True), "<copied cell>")
    namespace = {"np": np, "__name__": "__main__"}
    exec(compile(source, "<copied cell>", "exec"), namespace)
    assert check("chance_precision", namespace["my_chance_precision"]) is True, capsys.readouterr().out


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

    def pixels_read(layers):  # the input pixels one output reads, not the width of its window
        positions = {0}
        for kernel, stride in reversed(layers):
            positions = {p * stride + i for p in positions for i in range(kernel)}
        return len(positions)

    assert pixels_read([(3, 2), (3, 1)]) == solutions.receptive_field([(3, 2), (3, 1)]) == 7
    with pytest.raises(AssertionError, match="did you count only the pixels read\\? The field is the width from the "
                                             "first to the last, gaps included"):
        check("receptive_field", pixels_read)


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
    assert "right values, but for 20 queries" in out and "without such an array" in out, out
    assert out.endswith(item.hint_text) and not tracemalloc.is_tracing()

    def matrix_product(queries, gallery):
        squared = (queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None]
        return np.sqrt(np.maximum(squared, 0))

    tracemalloc.start()  # a learner's own tracing stays on
    try:
        assert item.problem(matrix_product) is None
        assert "without such an array" in item.problem(with_differences)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_euclidean_distances_refuses_squared_lengths_from_a_gram_matrix(capsys):
    """np.diag(gallery @ gallery.T) holds the right squared lengths through an (N, N) matrix: 1.6 GB and 100 times
    the work of the distances themselves for 200 queries and 20,000 products."""
    def through_a_gram_matrix(queries, gallery):
        squared = np.diag(queries @ queries.T)[:, None] - 2 * queries @ gallery.T + np.diag(gallery @ gallery.T)[None]
        return np.sqrt(np.maximum(squared, 0))

    assert check("euclidean_distances", through_a_gram_matrix) is False
    out = capsys.readouterr().out
    assert "an (N, N) matrix such as gallery @ gallery.T" in out and "squared length on its own" in out, out


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


def test_cosine_top_k_a_wrong_score_does_not_get_the_order_hint(capsys):
    def squared_lengths(gallery, query, k):  # right rows on the k = N case, wrong order elsewhere
        similarity = (gallery @ query) / ((gallery ** 2).sum(axis=1) * (query ** 2).sum())
        return np.argsort(-similarity, kind="stable")[:k]
    assert check("cosine_top_k", squared_lengths) is False
    assert "in the wrong order" not in capsys.readouterr().out


def test_the_filter_cases_allow_twenty_rows_and_more():
    allowed = [int(np.sum(allowed)) for _, allowed, _ in EXERCISES["filtered_top_k"].cases]
    assert max(allowed) >= 300 and sum(n >= 20 for n in allowed) >= 2, allowed


@pytest.mark.parametrize("name, revealing", [
    ("query_mask", ["counts[inverse]", "return_counts=True", "!= \"\"", ">= 2"]),
    ("chance_precision", ["(n_c - 1) / (N - 1)"]), ("conv3x3", ["np.pad", "[i:i+3, j:j+3]", "one ring of zeros"]),
    ("conv_parameters", ["k * k * c_in", "c_in * c_out"]), ("global_average_pool", ["axis"]),
    ("projection_residual", ["x[::", "matrix product", "slice x"]),
    ("separable_parameters", ["k*k*c_in", "one k x k filter per input channel", "c_in to c_out"]),
    ("l2_normalise", ["np.linalg.norm(", "keepdims"]), ("int8_roundtrip", ["rint(", "/ 254", "(high + low) / 2"]),
    ("ann_recall", ["set(", "intersection", "divide by k", "average over the queries"]),
    ("instance_recall_at_k", [".any(axis=1)", "[:, :k]"]), ("receptive_field", ["(k - 1) * jump", "multiplies"]),
    ("filtered_top_k", ["flatnonzero"]), ("cosine_top_k", ["argsort"])])
def test_a_hint_is_a_nudge_not_the_solution(name, revealing):
    hint = EXERCISES[name].hint_text
    assert not [text for text in revealing if text in hint], hint


def test_int8_has_a_constant_column_the_solution_survives_and_an_unguarded_answer_is_told_why(capsys):
    flat = [args[0] for args in EXERCISES["int8_roundtrip"].cases if (np.ptp(args[0], axis=0) == 0).any()]
    assert flat, "a case with a column of equal values"
    decoded = solutions.int8_roundtrip(flat[0])
    assert np.isfinite(decoded).all() and np.allclose(decoded, flat[0], atol=np.ptp(flat[0], axis=0).max() / 254)

    def unguarded(features):
        low, high = features.min(axis=0), features.max(axis=0)
        offset, scale = (high + low) / 2, (high - low) / 254
        return offset + scale * np.clip(np.rint((features - offset) / scale), -127, 127)

    with np.errstate(all="ignore"):
        assert not exercise_for("int8_roundtrip").check(unguarded)
    assert "range of 0" in capsys.readouterr().out


def test_ann_recall_refuses_the_median_of_the_queries(capsys):
    def median_recall(found, reference):
        return float(np.median([len(set(f) & set(r)) / len(r) for f, r in zip(found, reference)]))

    assert not exercise_for("ann_recall").check(median_recall)
    assert "MEAN" in capsys.readouterr().out


def test_ann_recall_refuses_dividing_by_the_rows_found_when_faiss_pads_with_minus_one(capsys):
    assert solutions.ann_recall(np.array([[3, 1, -1, -1]]), np.array([[1, 3, 9, 0]])) == 0.5

    def by_rows_found(found, reference):
        return float(np.mean([len(set(f) & set(r)) / max(int((np.asarray(f) >= 0).sum()), 1)
                              for f, r in zip(found, reference)]))

    assert not exercise_for("ann_recall").check(by_rows_found)
    assert "-1" in capsys.readouterr().out

    def with_isin(found, reference):
        return float(np.mean([np.isin(r, f).sum() / len(r) for f, r in zip(found, reference)]))

    assert exercise_for("ann_recall").check(with_isin)


def _fake_library(monkeypatch, dotted: str, name: str, implementation):
    """A stand-in for a library this environment may lack (scipy, sklearn, torch): modules ``dotted`` and its parents
    in ``sys.modules``, ``name`` in the last one, defined there as the real function would be."""
    import sys
    import types

    parts = dotted.split(".")
    for n in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:n]), types.ModuleType(".".join(parts[:n])))
    for n in range(1, len(parts)):
        setattr(sys.modules[".".join(parts[:n])], parts[n], sys.modules[".".join(parts[:n + 1])])
    implementation.__module__ = f"{dotted}._private"
    setattr(sys.modules[dotted], name, implementation)
    return sys.modules[parts[0]], getattr(sys.modules[dotted], name)


def test_an_answer_that_lets_another_library_do_the_step_is_refused(monkeypatch, capsys):
    """Right values through Keras, TensorFlow, scipy.signal / scipy.ndimage, sklearn or torch: the exercises ask for
    numpy. Each library is found as a module, through an attribute chain, as a function imported by name, as an
    object built outside the function, or imported inside it."""
    from cbir_tutorial.models.runtime import keras_module

    keras = keras_module()
    import tensorflow as tf

    scipy, correlate2d = _fake_library(monkeypatch, "scipy.signal", "correlate2d",
                                       lambda image, kernel, mode="same": solutions.conv3x3(image, kernel))
    _fake_library(monkeypatch, "scipy.ndimage", "correlate",
                  lambda image, kernel, mode="constant": solutions.conv3x3(image, kernel))
    scipy.signal = __import__("sys").modules["scipy.signal"]
    _, normalize = _fake_library(monkeypatch, "sklearn.preprocessing", "normalize", lambda x: solutions.l2_normalise(x))
    torch, _ = _fake_library(monkeypatch, "torch", "mean", lambda x, dim: np.mean(x, axis=dim))
    pooling = keras.layers.GlobalAveragePooling2D()

    def by_name(image, kernel):
        return correlate2d(image, kernel, mode="same")

    def through_scipy(image, kernel):
        return scipy.ndimage.correlate(image, kernel, mode="constant")

    def from_scipy_import_inside(image, kernel):
        from scipy import signal
        return signal.correlate2d(image, kernel, mode="same")

    def keras_conv2d(image, kernel):
        layer = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
        layer.build((None, *image.shape, 1))
        layer.set_weights([kernel[:, :, None, None]])
        return np.asarray(layer(image[None, :, :, None]))[0, :, :, 0]

    def keras_layer_built_outside(maps):
        return np.asarray(pooling(maps))

    def tf_mean(maps):
        return np.asarray(tf.reduce_mean(maps, axis=(1, 2)))

    def torch_mean(maps):
        return torch.mean(maps, dim=(1, 2))

    def sklearn_rows(features):
        return normalize(features)

    def keras_rows(features):
        return np.asarray(keras.utils.normalize(features, axis=1))

    def imported_inside(features):
        import tensorflow
        return np.asarray(tensorflow.math.l2_normalize(features, axis=1))

    def helper(features):
        return tf.math.l2_normalize(features, axis=1)

    def through_a_helper(features):
        return np.asarray(helper(features))

    def keras_separable(kernel, c_in, c_out):
        layer = keras.layers.SeparableConv2D(c_out, kernel, use_bias=False)
        layer.build((None, 9, 9, c_in))
        return layer.count_params()

    def keras_strided_1x1(x, branch, w, stride):
        shortcut = keras.layers.Conv2D(w.shape[1], 1, strides=stride, use_bias=False)
        shortcut.build((None, *x.shape))
        shortcut.set_weights([w[None, None]])
        return np.maximum(branch(x) + np.asarray(shortcut(x[None]))[0], 0)

    cases = [("conv3x3", by_name, "`correlate2d` (from scipy.signal)"), ("conv3x3", through_scipy, "`scipy.ndimage`"),
             ("conv3x3", from_scipy_import_inside, "`scipy.signal`"),
             ("conv3x3", keras_conv2d, "`keras`"),
             ("global_average_pool", keras_layer_built_outside, "`pooling` (from keras)"),
             ("global_average_pool", tf_mean, "`tensorflow`"), ("global_average_pool", torch_mean, "`torch`"),
             ("l2_normalise", sklearn_rows, "`normalize` (from sklearn)"), ("l2_normalise", keras_rows, "`keras`"),
             ("l2_normalise", imported_inside, "`tensorflow`"), ("l2_normalise", through_a_helper, "`tensorflow`"),
             ("separable_parameters", keras_separable, "`keras`"),
             ("projection_residual", keras_strided_1x1, "`keras`")]
    for name, answer, library in cases:
        assert check(name, answer) is False, (name, answer.__name__)
        out = capsys.readouterr().out.rstrip()
        assert f"uses {library}" in out and "yourself, with numpy" in out, out
        assert out.endswith(EXERCISES[name].hint_text), out
    assert exercises.uses_a_library(solutions.conv3x3) == "" and exercises.uses_a_library(np.mean) == ""


def test_l2_normalise_keeps_a_zero_row_at_zero_and_names_the_nan(capsys):
    zero_rows = [args[0] for args in EXERCISES["l2_normalise"].cases if (~args[0].any(axis=1)).any()]
    assert zero_rows, "a case with a row of zeros"
    with np.errstate(all="raise"):
        normalised = solutions.l2_normalise(zero_rows[0])
    assert np.isfinite(normalised).all() and not normalised[~zero_rows[0].any(axis=1)].any()

    def divides_by_zero(features):
        return features / np.sqrt((features ** 2).sum(axis=1, keepdims=True))

    with np.errstate(all="ignore"):
        assert check("l2_normalise", divides_by_zero) is False
    assert "0 / 0 is NaN" in capsys.readouterr().out


def test_l2_normalise_refuses_a_divide_that_leaves_the_zero_row_to_chance(capsys):
    """``np.divide(..., where=...)`` without ``out=`` leaves the rows it skips as whatever memory held: right by
    luck when the freed buffer numpy hands out held zeros, as after ``np.linalg.norm``'s squares."""
    def norm_where(features):
        lengths = np.linalg.norm(features, axis=1, keepdims=True)
        return np.divide(features, lengths, where=lengths > 0)

    def einsum_where(features):
        lengths = np.sqrt(np.einsum("ij,ij->i", features, features))[:, None]
        return np.divide(features, lengths, where=lengths != 0)

    def with_out(features):
        lengths = np.linalg.norm(features, axis=1, keepdims=True)
        return np.divide(features, lengths, out=np.zeros_like(features), where=lengths > 0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer numpy warns about where= without out=
        for answer in (norm_where, einsum_where):
            assert check("l2_normalise", answer) is False
            assert "without `out=` leaves the entries it skips uninitialised" in capsys.readouterr().out, answer
        assert check("l2_normalise", with_out) is True


def test_ann_recall_keeps_a_query_that_found_none_of_its_neighbours_in_the_mean():
    """Review round 41 (notebook 9): no case had a query of recall 0, so averaging over the queries that found
    something passed every case."""
    def recalls(found, reference):
        return [len(set(f) & set(r)) / len(r) for f, r in zip(found, reference)]

    assert check("ann_recall", lambda f, r: float(np.mean([x for x in recalls(f, r) if x > 0]))) is False
    assert check("ann_recall", lambda f, r: float(np.mean(recalls(f, r)))) is True


def test_int8_roundtrip_refuses_codes_that_do_not_fit_in_a_signed_byte(capsys):
    """Review round 38 (notebook 9): an offset at a column's minimum (codes 0..254) or maximum (-254..0) decodes to
    the right values, so only the codes tell it apart; codes shifted into -127..127 afterwards are right."""
    def round_trip(features, offset_at="middle", shift=False):
        low, high = features.min(axis=0), features.max(axis=0)
        scale = np.where(high > low, (high - low) / 254, 1.0)
        offset = {"middle": (high + low) / 2, "min": low, "max": high}[offset_at]
        codes = np.rint((features - offset) / scale)
        if shift:  # from 0..254 into -127..127, and back when decoding
            return offset + scale * ((codes - 127).astype(np.int8).astype(float) + 127)
        return offset + scale * codes

    def column_by_column(features):  # review round 39: the codes of one column at a time
        return np.stack([round_trip(features[:, [j]], "min")[:, 0] for j in range(features.shape[1])], axis=1)

    def guarded(features):  # review round 39: a right answer whose mask of equal columns crashed the check
        low, high = features.min(axis=0), features.max(axis=0)
        flat = np.isclose(high, low)
        scale = np.where(flat, 1.0, (high - low) / 254)
        return (high + low) / 2 + scale * np.rint((features - (high + low) / 2) / scale)

    for wrong, shown in ((lambda f: round_trip(f, "min"), "from 0 to 254"), (lambda f: round_trip(f, "max"),
                         "from -254 to 0"), (column_by_column, "from 0 to 254"),
                         (lambda f: round_trip(f.T.copy().T, "min"), "from 0 to 254")):
        assert check("int8_roundtrip", wrong) is False
        assert f"right values, but your codes run {shown}: a signed byte holds -127..127" in capsys.readouterr().out
    for right in (round_trip, lambda f: round_trip(f, "min", shift=True), guarded):
        assert check("int8_roundtrip", right) is True


def test_ap_at_k_refuses_dividing_by_the_results_found_when_r_exceeds_k():
    """Review round 38: the only case with R > K was a perfect list, so dividing by the relevant results found
    (instead of min(K, R)) whenever R > K passed every case."""
    def ap(ranks, n_relevant, k, r_above_k_divides_by_found=False):
        found = np.sort(np.asarray(ranks))[np.sort(np.asarray(ranks)) <= k]
        if n_relevant == 0 or len(found) == 0:
            return 0.0
        precisions = np.arange(1, len(found) + 1) / found
        return float(precisions.sum() / (len(found) if r_above_k_divides_by_found and n_relevant > k
                                         else min(k, n_relevant)))

    assert check("ap_at_k", lambda r, n, k: ap(r, n, k, r_above_k_divides_by_found=True)) is False
    assert check("ap_at_k", ap) is True


def test_map_at_k_refuses_a_divide_that_leaves_the_queries_without_relevant_products_to_chance(capsys):
    """Review round 37: a vectorised MAP@K whose ``np.divide(..., where=R > 0)`` has no ``out=`` passed every case (the
    freed buffer held zeros), then gave 2.214 or NaN for a query with R = 0 after some ordinary numpy work."""
    def vectorised(hits, n_relevant, k, out=False):
        hits = np.asarray(hits)[:, :k].astype(float)
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        total, denominator = (precision * hits).sum(axis=1), np.minimum(k, np.asarray(n_relevant)).astype(float)
        if out:
            return float(np.divide(total, denominator, out=np.zeros_like(total), where=denominator > 0).mean())
        return float(np.divide(total, denominator, where=denominator > 0).mean())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer numpy warns about where= without out=
        assert check("map_at_k", vectorised) is False
        assert "without `out=` leaves the entries it skips (the queries with R = 0)" in capsys.readouterr().out
        assert check("map_at_k", lambda h, n, k: vectorised(h, n, k, out=True)) is True


def test_the_l2_normalise_solution_gives_length_1_to_any_nonzero_row_however_short():
    """Notebook 3's prompt: a row of zeros stays zeros, any other row, however short, gets length 1."""
    rows = np.array([[3e-14, 4e-14, 0.0], [0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    assert np.allclose(np.linalg.norm(solutions.l2_normalise(rows), axis=1), [1.0, 0.0, 1.0])


def _mask(labels):
    labels = np.asarray(labels, dtype=object)
    size = {label: np.sum(labels == label) for label in set(labels)}  # each category counted once
    sizes = np.array([size[label] for label in labels])
    return (labels != "") & (sizes >= 2)


def test_notebook_1_answers_that_skip_the_last_product_are_rejected():
    """A loop over range(len(labels) - 1) never looks at the last product: a case ends with a query."""
    def mask_but_last(labels):
        out = _mask(labels)
        out[-1] = False
        return out

    def chance_but_last(labels):
        labels = np.asarray(labels, dtype=object)
        sizes = np.array([np.sum(labels == label) for label in labels])
        queries = _mask(labels)[:-1]
        return float(np.mean((sizes[:-1][queries] - 1) / (len(labels) - 1)))

    assert check("query_mask", mask_but_last) is False
    assert check("chance_precision", chance_but_last) is False


def test_notebook_1_refuses_a_category_count_per_product_and_accepts_one_per_category(capsys):
    """Notebook 1 runs both answers on the whole catalogue (Farfetch's is large): an answer that compares each
    product's label with every other product's (N² comparisons) is refused once its values are right; counting
    each category once (np.unique, a dict, a loop over the categories) passes."""
    def mask_per_product(labels):
        labels = np.asarray(labels, dtype=object)
        return np.array([label != "" and (labels == label).sum() >= 2 for label in labels])

    def chance_per_product(labels):
        sizes = [sum(1 for other in labels if other == label) for label in labels]
        queries = [size - 1 for label, size in zip(labels, sizes) if label != "" and size >= 2]
        return sum(queries) / len(queries) / (len(labels) - 1)

    def mask_per_category(labels):
        labels = np.asarray(labels, dtype=object)
        sizes = np.zeros(len(labels), dtype=int)
        for category in set(labels):
            sizes[labels == category] = (labels == category).sum()
        return (labels != "") & (sizes >= 2)

    def chance_with_a_dict(labels):
        counts = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        queries = [counts[label] - 1 for label in labels if label != "" and counts[label] >= 2]
        return sum(queries) / len(queries) / (len(labels) - 1)

    for name, answer in (("query_mask", mask_per_product), ("chance_precision", chance_per_product)):
        assert check(name, answer) is False
        out = capsys.readouterr().out
        assert "right values, but on 2,000 products" in out and "N² comparisons" in out, out
    for name, answer in (("query_mask", mask_per_category), ("query_mask", _mask),
                         ("chance_precision", chance_with_a_dict), ("chance_precision", solutions.chance_precision)):
        assert EXERCISES[name].rule(answer) is None, (name, answer.__name__)
    assert check("query_mask", mask_per_category) is True
    assert check("chance_precision", chance_with_a_dict) is True


def test_notebook_1_refuses_a_count_per_product_made_on_plain_strings(capsys):
    """Review 21: turned into plain strings first, the labels compare where no counted label sees it; the answer
    is then timed on 3,000 and 12,000 labels, and grows 16 times where a count per category grows about 4."""
    def mask_by_list_count(labels):
        listed = [str(label) for label in labels]
        return np.array([label != "" and listed.count(label) >= 2 for label in listed])

    def chance_by_all_pairs(labels):
        text = np.asarray(labels).astype(str)
        sizes = (text[:, None] == text[None, :]).sum(axis=1)
        queries = (text != "") & (sizes >= 2)
        return float(np.mean(sizes[queries] - 1) / (len(text) - 1))

    for name, answer in (("query_mask", mask_by_list_count), ("chance_precision", chance_by_all_pairs)):
        assert check(name, answer) is False
        out = capsys.readouterr().out
        assert "right values, but your function took" in out and "on 12,000 products" in out, out
        assert "N² comparisons), even as plain strings or codes" in out, out


def test_notebook_1_refuses_every_pair_of_integer_codes():
    """Review 22: integer codes compared pair by pair, an N x N array (33 GiB for Farfetch), is refused by its
    time or, where a machine runs it fast, by its memory."""
    def mask_by_code_pairs(labels):
        labels = np.asarray(labels, dtype=object)
        codes = np.unique(labels, return_inverse=True)[1].ravel()
        return (labels != "") & ((codes[:, None] == codes[None, :]).sum(axis=1) >= 2)

    assert check("query_mask", mask_by_code_pairs) is False
    held = exercises._peak_bytes(mask_by_code_pairs, (exercises._plain_labels(12_000),))
    assert held > exercises._PAIRS_MEMORY > 30 * exercises._peak_bytes(_mask, (exercises._plain_labels(12_000),))


def test_a_wrapped_package_function_is_refused_as_the_package(capsys):
    """Review 22: functools.partial and a callable object hid the package's function from the refusal."""
    import functools

    class Calling:
        def __call__(self, labels):
            return solutions.query_mask(labels)

    for answer in (functools.partial(solutions.query_mask), Calling(), functools.partial(Calling())):
        assert check("query_mask", answer) is False
        assert "the package's own" in capsys.readouterr().out
    assert check("query_mask", functools.partial(_mask)) is True


def test_a_query_mask_must_be_a_bool_array(capsys):
    def as_ints(labels):
        return _mask(labels).astype(int)

    def as_list(labels):
        return _mask(labels).tolist()

    for answer, kind in ((as_ints, "an int64 array"), (as_list, "a list")):
        assert check("query_mask", answer) is False
        out = capsys.readouterr().out
        assert f"right values, but {kind} instead of a bool array" in out, out


def test_a_query_mask_that_drops_the_first_sorted_label_or_caps_the_category_size_is_rejected():
    def drops_index_0(labels):  # assumes "" is always there, sorted first
        values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        return (inverse != 0) & (counts[inverse] >= 2)

    def caps_the_size(labels):
        return _mask(labels) & (np.array([np.sum(np.asarray(labels) == label) for label in labels]) < 10)

    assert check("query_mask", _mask) is True
    for wrong in (drops_index_0, caps_the_size):
        assert check("query_mask", wrong) is False, wrong.__name__


def test_chance_precision_tells_unlabelled_queries_from_an_average_over_categories(capsys):
    def keeps_the_unlabelled(labels):
        labels = np.asarray(labels, dtype=object)
        sizes = np.array([np.sum(labels == label) for label in labels])
        return float(np.mean((sizes[sizes >= 2] - 1) / (len(labels) - 1)))

    def over_categories(labels):
        labels = np.asarray(labels, dtype=object)
        queries = labels[_mask(labels)]
        return float(np.mean([(np.sum(labels == c) - 1) / (len(labels) - 1) for c in np.unique(queries)]))

    assert not check("chance_precision", keeps_the_unlabelled)
    assert "unlabelled products (\"\") as queries" in capsys.readouterr().out
    assert not check("chance_precision", over_categories)
    assert "instead of over queries" in capsys.readouterr().out


def test_conv_parameters_starts_with_a_case_whose_kernel_size_is_not_its_input_depth(capsys):
    k, c_in, c_out = EXERCISES["conv_parameters"].cases[0][:3]
    assert k != c_in and k * k != c_in

    def one_k_too_few(kernel, c_in, c_out, bias=True):
        return kernel * c_in * c_out + (c_out if bias else 0)

    assert not check("conv_parameters", one_k_too_few)
    assert "k times k positions" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["conv3x3", "output_size", "conv_parameters", "global_average_pool", "l2_normalise",
                                  "receptive_field", "projection_residual", "separable_parameters"])
def test_the_mistake_hints_of_notebooks_2_to_4_name_no_axis_or_formula(name):
    for hint, _ in EXERCISES[name].mistakes:
        assert not [text for text in ("axis=", "axes 1 and 2", "keepdims", "x[::") if text in hint], hint


# Notebooks 6 and 7: the cases a review found too lenient or inconsistent.
def test_the_map_and_ap_cases_never_hold_more_relevant_results_than_r():
    for hits, n_relevant, k in EXERCISES["map_at_k"].cases:
        held = np.asarray(hits)[:, :k].sum(axis=1)
        assert (held <= np.asarray(n_relevant)).all(), (hits, n_relevant, k)
    for ranks, n_relevant, k in EXERCISES["ap_at_k"].cases:
        assert len(ranks) <= n_relevant, (ranks, n_relevant)


def test_map_at_k_accepts_an_answer_that_clips_or_checks_r_and_refuses_one_that_ignores_k(capsys):
    def checks_r(hits, n_relevant, k):
        aps = []
        for row, r in zip(hits, n_relevant):
            row = np.asarray(row[:k], dtype=float)
            assert row.sum() <= r, "more relevant results than R"
            precision = np.cumsum(row) / np.arange(1, len(row) + 1)
            aps.append(min(1.0, float(np.sum(precision * row) / min(k, r))) if r else 0.0)
        return float(np.mean(aps))

    def ignores_k(hits, n_relevant, k):
        return checks_r(hits, n_relevant, len(hits[0]))

    assert check("map_at_k", checks_r) is True
    assert check("map_at_k", ignores_k) is False
    assert "a list can be longer than k" in capsys.readouterr().out
    assert any(np.shape(hits)[1] > k for hits, _, k in EXERCISES["map_at_k"].cases)


def test_filtered_top_k_refuses_refused_products_when_fewer_than_k_pass(capsys):
    def infinite_distance(distances, allowed, k):
        return np.argsort(np.where(allowed, distances, np.inf), kind="stable")[:k]

    def takes_only_the_allowed(distances, allowed, k):
        rows = np.flatnonzero(allowed)
        return rows[np.argsort(distances[rows], kind="stable")[:k]]

    assert check("filtered_top_k", takes_only_the_allowed) is True
    capsys.readouterr()
    assert check("filtered_top_k", infinite_distance) is False
    assert "when fewer than k pass, return only those" in capsys.readouterr().out
    cases = EXERCISES["filtered_top_k"].cases
    assert any(k > allowed.sum() > 0 for _, allowed, k in cases) and any(not allowed.any() for _, allowed, _ in cases)


@pytest.mark.parametrize("name, revealing", [("ap_at_k", ["i / r", "min(k, R)", "0 when R = 0"]),
                                             ("precision_curve", ["cumsum", "running sum"]),
                                             ("filtered_top_k", ["flatnonzero", "argsort"])])
def test_the_hints_of_notebooks_6_and_7_leave_the_code_to_the_learner(name, revealing):
    item = EXERCISES[name]
    assert not [text for text in revealing if text in item.hint_text], item.hint_text
    for hint, _ in item.mistakes:
        assert not [text for text in ("flatnonzero", "cumsum") if text in hint], hint


def test_euclidean_distances_refuses_a_square_root_without_clamping_at_zero(capsys):
    """float32 unit vectors, queries taken from the gallery: a query's squared distance to itself rounds to a
    tiny negative number often enough that a square root without np.maximum(..., 0) gives NaN."""
    def unclamped(queries, gallery):
        return np.sqrt((queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None])

    def clamped(queries, gallery):
        squared = (queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None]
        return np.sqrt(np.maximum(squared, 0))

    def clamped_in_float64(queries, gallery):
        queries, gallery = queries.astype(np.float64), gallery.astype(np.float64)
        return clamped(queries, gallery)

    cases = EXERCISES["euclidean_distances"].cases
    assert any(q.dtype == np.float32 and q.shape[1] >= 1000 and (q[:, None] == g[None]).all(axis=2).any(axis=1).all()
               for q, g in cases), "a float32 case whose queries are rows of the gallery"
    assert check("euclidean_distances", unclamped) is False
    out = capsys.readouterr().out
    assert "NaN where a query meets itself" in out and "clamp at 0" in out, out
    assert check("euclidean_distances", clamped) is True and check("euclidean_distances", clamped_in_float64) is True


def test_euclidean_distances_refuses_keras_ops(capsys):
    """keras.ops builds the (M, N, D) array where tracemalloc cannot see it: refused as another library."""
    from cbir_tutorial.models.runtime import keras_module

    keras = keras_module()

    def keras_ops_norm(queries, gallery):
        differences = keras.ops.expand_dims(queries, 1) - keras.ops.expand_dims(gallery, 0)
        return np.asarray(keras.ops.norm(differences, axis=-1))

    assert check("euclidean_distances", keras_ops_norm) is False
    out = capsys.readouterr().out
    assert "uses `keras`" in out and "yourself, with numpy" in out, out


def test_cosine_top_k_refuses_a_python_loop_over_the_gallery(capsys):
    def one_row_at_a_time(gallery, query, k):
        similarity = [row @ query / (np.linalg.norm(row) * np.linalg.norm(query)) for row in gallery]
        return np.argsort(-np.array(similarity), kind="stable")[:k]

    def one_product(gallery, query, k):
        similarity = (gallery @ query) / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(query))
        return np.argsort(-similarity, kind="stable")[:k]

    item = EXERCISES["cosine_top_k"]
    assert check("cosine_top_k", one_row_at_a_time) is False
    out = capsys.readouterr().out.rstrip()
    assert "right values, but through" in out and "without a Python loop" in out and out.endswith(item.hint_text), out
    assert check("cosine_top_k", one_product) is True


def test_cosine_top_k_refuses_float_rows(capsys):
    def float_rows(gallery, query, k):
        similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
        return np.argsort(-similarity, kind="stable")[:k].astype(float)

    assert check("cosine_top_k", float_rows) is False
    out = capsys.readouterr().out
    assert "right rows, but a float64 array" in out and "IndexError" in out, out


def test_cosine_top_k_least_similar_first_gets_the_order_hint(capsys):
    """The right k rows in increasing similarity: the first case must not mistake them for the dot product's top k."""
    def increasing(gallery, query, k):
        similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
        return np.argsort(similarity, kind="stable")[-k:]

    assert check("cosine_top_k", increasing) is False
    out = capsys.readouterr().out.rstrip()
    assert out.endswith(EXERCISES["cosine_top_k"].order_hint) and "dot product" not in out, out


def test_cosine_top_k_refuses_an_answer_that_normalises_the_gallery_in_place(capsys):
    def in_place(gallery, query, k):
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        return np.argsort(-(gallery @ query), kind="stable")[:k]

    assert check("cosine_top_k", in_place) is False
    out = capsys.readouterr().out
    assert "right rows, but your function wrote into `gallery`" in out and "don't modify the input" in out, out


def _top_k_as_ints(gallery, query, k):  # vectorised, then a comprehension over the k results only
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    return [int(row) for row in np.argsort(-similarity, kind="stable")[:k]]


def _norms_of_both(queries, gallery):  # vectorised, with a comprehension over the two arrays
    q2, g2 = [(a ** 2).sum(axis=1) for a in (queries, gallery)]
    return np.sqrt(np.maximum(q2[:, None] - 2 * queries @ gallery.T + g2[None], 0))


def _top_k_by_argmax(gallery, query, k):  # a while loop over the k results
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    top = []
    while len(top) < k:
        top.append(int(np.argmax(similarity)))
        similarity[top[-1]] = -np.inf
    return np.array(top)


@pytest.mark.parametrize("name, short_loop, line", [
    ("cosine_top_k", _top_k_as_ints, "return [int(row) for row in np.argsort(-similarity, kind=\"stable\")[:k]]"),
    ("euclidean_distances", _norms_of_both, "q2, g2 = [(a ** 2).sum(axis=1) for a in (queries, gallery)]"),
    ("cosine_top_k", _top_k_by_argmax, "while len(top) < k:")])
def test_a_short_loop_is_refused_by_a_message_that_names_its_line(name, short_loop, line, capsys):
    """Any loop is refused, even one over the k results or two arrays; the message shows the loop's line and
    says that even a short loop is refused, instead of claiming a loop over the gallery."""
    number = next(n for n, text in enumerate(inspect.getsourcelines(short_loop)[0], short_loop.__code__.co_firstlineno)
                  if text.strip() == line)
    assert check(name, short_loop) is False
    out = capsys.readouterr().out
    assert f"in {short_loop.__name__} (line {number}: `{line}`)" in out, out
    assert "even a short one" in out and "would make" in out, out


def test_gem_pool_refuses_a_whole_number_exponent_and_accepts_the_power_mean(capsys):
    item = EXERCISES["gem_pool"]
    assert any(p != int(p) for _, p in item.cases)

    def rounded_p(maps, p):
        p = int(p)
        return np.mean(maps ** p, axis=(1, 2)) ** (1.0 / p)

    def mine(maps, p):
        return np.power(np.mean(np.power(maps, p), axis=(1, 2)), 1.0 / p)

    assert check("gem_pool", rounded_p) is False
    assert "p = 2.5" in capsys.readouterr().out
    assert check("gem_pool", mine) is True


def test_alpha_query_expansion_refuses_clipping_after_the_power_and_accepts_clipping_before(capsys):
    item = EXERCISES["alpha_query_expansion"]
    assert any(alpha % 2 == 0 and (nb @ q < 0).any() for q, nb, alpha in item.cases)

    def clipped_after(query, neighbours, alpha):
        expanded = query + np.maximum((neighbours @ query) ** alpha, 0) @ neighbours
        return expanded / np.linalg.norm(expanded)

    def mine(query, neighbours, alpha):
        expanded = query + (np.clip(neighbours @ query, 0, None) ** alpha) @ neighbours
        return expanded / np.sqrt(expanded @ expanded)

    assert check("alpha_query_expansion", clipped_after) is False
    assert "before the power, not after" in capsys.readouterr().out
    assert check("alpha_query_expansion", mine) is True


def test_alpha_query_expansion_refuses_an_answer_that_keeps_only_the_nearest_neighbour():
    item = EXERCISES["alpha_query_expansion"]
    assert any((nb @ q > 0).sum() >= 3 for q, nb, _ in item.cases)

    def nearest_only(query, neighbours, alpha):
        similarities = neighbours @ query
        best = np.argmax(similarities)
        expanded = query + max(similarities[best], 0) ** alpha * neighbours[best]
        return expanded / np.linalg.norm(expanded)

    def total_weight_on_the_nearest(query, neighbours, alpha):
        weights = np.maximum(neighbours @ query, 0) ** alpha
        expanded = query + weights.sum() * neighbours[np.argmax(weights)]
        return expanded / np.linalg.norm(expanded)

    def first_two(query, neighbours, alpha):  # the recipes' αQE n = 2, hard-coded
        neighbours = neighbours[:2]
        expanded = query + (np.maximum(neighbours @ query, 0) ** alpha) @ neighbours
        return expanded / np.linalg.norm(expanded)

    assert not item.passes(nearest_only)
    assert not item.passes(total_weight_on_the_nearest)
    assert not item.passes(first_two)


@pytest.mark.parametrize("name, revealing", [
    ("gem_pool", ["axis", "axes 1 and 2", "p-th root", "1 / p", "raise every value"]),
    ("alpha_query_expansion", ["neighbours @ query", "max(similarity, 0) ** alpha", "normalise", "dot product"])])
def test_the_hints_of_notebook_8_are_nudges_not_the_solution(name, revealing):
    hint = EXERCISES[name].hint_text
    assert not [text for text in revealing if text in hint], hint


def test_filtered_top_k_refuses_an_answer_that_writes_into_its_inputs(capsys):
    """The check passes copies, so the right rows computed by overwriting the distances passed it (review 2 of
    notebook 7); an answer that leaves its arguments alone still passes."""
    def overwrites_the_distances(distances, allowed, k):
        distances[~allowed] = np.inf
        order = np.argsort(distances, kind="stable")[:k]
        return order[allowed[order]]

    def overwrites_the_mask(distances, allowed, k):
        rows = np.flatnonzero(allowed)
        allowed[:] = False
        return rows[np.argsort(distances[rows], kind="stable")[:k]]

    def on_a_copy(distances, allowed, k):
        far = distances.copy()
        far[~allowed] = np.inf
        order = np.argsort(far, kind="stable")[:k]
        return order[allowed[order]]

    assert check("filtered_top_k", overwrites_the_distances) is False
    out = capsys.readouterr().out
    assert "right rows, but your function wrote into its argument `distances`" in out, out
    assert check("filtered_top_k", overwrites_the_mask) is False
    assert "`allowed`" in capsys.readouterr().out
    assert check("filtered_top_k", on_a_copy) is True


def test_filtered_top_k_refuses_more_than_k_rows_on_ties_and_accepts_any_tied_row(capsys):
    """A threshold at the k-th distance passed every case, none of which tied there (review 11 of notebook 7)."""
    def threshold(distances, allowed, k):
        rows = np.flatnonzero(allowed)
        order = rows[np.argsort(distances[rows], kind="stable")]
        if len(order) <= k:
            return order
        return order[distances[order] <= distances[order[k - 1]]]

    def last_row_first_among_ties(distances, allowed, k):
        rows = np.flatnonzero(allowed)[::-1]
        return rows[np.argsort(distances[rows], kind="stable")[:k]]

    assert check("filtered_top_k", threshold) is False
    assert "never more" in capsys.readouterr().out
    assert check("filtered_top_k", last_row_first_among_ties) is True


def test_filtered_top_k_refuses_an_answer_keyed_by_distance(capsys):
    """Products keyed by their distance passed every case: none tied inside the top k, where such an answer keeps
    one of two duplicate photos (review 18 of notebook 7)."""
    def keyed_by_distance(distances, allowed, k):
        by_distance = {float(d): row for row, d in enumerate(distances) if allowed[row]}
        return np.array([by_distance[d] for d in sorted(by_distance)][:k], dtype=int)

    def unique_distances(distances, allowed, k):
        rows = np.flatnonzero(allowed)
        _, first = np.unique(distances[rows], return_index=True)
        return rows[first][:k]

    for answer in (keyed_by_distance, unique_distances):
        assert check("filtered_top_k", answer) is False
        assert "keeps only one of them" in capsys.readouterr().out


@pytest.mark.parametrize("stand_in", [2.0, 10.0, 1e9])
def test_filtered_top_k_refuses_a_finite_stand_in_distance_and_accepts_infinity(stand_in, capsys):
    """Every case's distances lay below 2, so a finite stand-in for the refused products passed (review 15 of
    notebook 7)."""
    def with_stand_in(value):
        def filtered(distances, allowed, k):
            order = np.argsort(np.where(allowed, distances, value), kind="stable")
            return order[:min(k, int(allowed.sum()))]
        return filtered

    assert check("filtered_top_k", with_stand_in(stand_in)) is False
    assert "finite stand-in distance" in capsys.readouterr().out
    assert check("filtered_top_k", with_stand_in(np.inf)) is True


def test_conv3x3_refuses_an_output_array_of_integers_and_accepts_one_of_floats(capsys):
    item = EXERCISES["conv3x3"]
    assert any((np.asarray(image) % 1 != 0).any() for image, _ in item.cases)  # a case with fractions

    def into(out, image, kernel):
        padded = np.pad(image, 1)
        for i in range(image.shape[0]):
            for j in range(image.shape[1]):
                out[i, j] = (padded[i:i + 3, j:j + 3] * kernel).sum()
        return out

    def int_output(image, kernel):  # exact on whole-number images and kernels, truncated on a photo's 0..1 values
        return into(np.zeros(image.shape, dtype=int), image, kernel)

    def mine(image, kernel):
        return into(np.zeros(image.shape), image, kernel)

    assert check("conv3x3", int_output) is False
    out = capsys.readouterr().out
    assert "of a 4x5 image" in out and "lost their fractions" in out, out
    assert not exercises.nb02.q1.passes(int_output)
    assert check("conv3x3", mine) is True


# Notebook 3: the cases and messages a second review found too lenient or unclear.
def test_global_average_pool_has_a_batch_of_one_and_a_single_channel_so_squeeze_is_refused(capsys):
    shapes = [args[0].shape for args in EXERCISES["global_average_pool"].cases]
    assert any(shape[0] == 1 for shape in shapes) and any(shape[3] == 1 for shape in shapes), shapes

    def squeezed(maps):  # right for a batch of photos, (C,) instead of (1, C) for one photo
        return np.squeeze(maps.mean(axis=(1, 2)))

    def kept_only_the_batch(maps):  # the squeeze written another way: [0] for a batch of one
        means = maps.mean(axis=(1, 2))
        return means[0] if len(means) == 1 else means

    for answer in (squeezed, kept_only_the_batch):
        assert check("global_average_pool", answer) is False
        out = capsys.readouterr().out
        assert "should have shape (1, 5), yours has shape (5,)" in out, out


def test_global_average_pool_hint_asks_for_the_axes_without_naming_them():
    hint = EXERCISES["global_average_pool"].hint_text
    assert "(batch, height, width, channels)" in hint
    assert not [text for text in ("(1, 2)", "height and width axes", "axis") if text in hint], hint


def test_a_wrong_value_is_reported_as_what_yours_gives_for_the_input(capsys):
    assert check("l2_normalise", lambda features: features * 2) is False
    out = capsys.readouterr().out
    assert out.startswith("✗ l2_normalise: for the input [[") and ", the L2-normalised rows: yours gives [[" in out
    assert " is not [" not in out, out


def test_l2_normalise_refuses_an_answer_that_divides_its_input_in_place(capsys):
    def in_place(features):
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        return features

    assert check("l2_normalise", in_place) is False
    out = capsys.readouterr().out
    assert "right rows, but your function wrote into `features`" in out and "don't modify the input" in out, out
    assert check("l2_normalise", lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)) is True


def test_l2_normalise_refuses_a_list_with_the_right_values_and_says_why(capsys):
    def as_a_list(features):  # right values, but the prompt asks for an (N, D) array
        return (features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)).tolist()

    assert check("l2_normalise", as_a_list) is False
    out = capsys.readouterr().out
    assert "right values, but a list instead of a numpy array" in out and "(N, D) array" in out, out


def test_notebook_3_says_a_row_of_zeros_stays_zeros_where_the_learner_writes_l2_normalise():
    import json
    from pathlib import Path

    path, = (Path(__file__).resolve().parents[2] / "notebooks").glob("03_*.ipynb")
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
    prompt, = [c for c in cells if "@nb03.q2.write" in c]
    assert "row of zeros" in prompt and "stays zeros" in prompt, prompt
    assert "even a very short one" in prompt, prompt


def test_l2_normalise_refuses_an_epsilon_or_a_threshold_that_shortens_very_short_rows(capsys):
    """Review round 11: an untrained EfficientNet-Lite0 gives features about 3e-10 long, which an epsilon or a floor of
    1e-8 turned into vectors of length 0.03; every case's rows were longer than 0.19, so the check accepted it."""
    def norm(f):
        return np.linalg.norm(f, axis=1, keepdims=True)

    for wrong in (lambda f: f / (norm(f) + 1e-8), lambda f: f / np.maximum(norm(f), 1e-8),
                  lambda f: np.where(norm(f) < 1e-6, 0.0, f / np.maximum(norm(f), 1e-300))):
        assert check("l2_normalise", wrong) is False
        out = capsys.readouterr().out
        assert "these rows are very short" in out and "yours gives rows of length [" in out, out
    assert check("l2_normalise", lambda f: f / np.where(norm(f) == 0, 1, norm(f))) is True
    assert check("l2_normalise", lambda f: f * 2) is False  # any other wrong answer keeps its own message
    assert "these rows are very short" not in capsys.readouterr().out


def test_l2_normalise_refuses_a_threshold_relative_to_the_longest_row(capsys):
    """Review round 34: a row shorter than a millionth of the longest counted as zeros passed, since the one case of
    very short rows scaled every row alike."""
    def relative(f):
        lengths = np.linalg.norm(f, axis=1, keepdims=True)
        return np.where(lengths > 1e-6 * lengths.max(), f / np.maximum(lengths, 1e-300), 0.0)

    assert check("l2_normalise", relative) is False
    out = capsys.readouterr().out
    assert "these rows are very short" in out and "relative to the longest row" in out, out
    assert check("l2_normalise", lambda f: np.where(np.linalg.norm(f, axis=1, keepdims=True) > 1e-20 * np.linalg.norm(
        f, axis=1, keepdims=True).max(), f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300), 0.0))


def test_l2_normalise_refuses_a_row_of_zeros_told_by_its_largest_or_its_first_value(capsys):
    """Review round 12: zeroing the rows whose maximum (or first value) is 0 passed every case, though [-1, 0, -2] and
    [0, 0.5, 1.2] are not zeros."""
    def unit(f):
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    for wrong, said in ((lambda f: np.where(f.max(axis=1, keepdims=True) == 0, 0.0, unit(f)), "largest value is 0"),
                        (lambda f: np.where(f[:, :1] == 0, 0.0, unit(f)), "first value is 0")):
        assert check("l2_normalise", wrong) is False
        out = capsys.readouterr().out
        assert said in out and "by its length" in out, out
    assert check("l2_normalise", lambda f: np.where(~f.any(axis=1, keepdims=True), 0.0, unit(f))) is True


# Notebook 6, review round 2: a MAP that drops the queries with R = 0, and AP@K cut before rank k.
def test_map_at_k_refuses_an_answer_that_leaves_out_the_queries_with_r_0(capsys):
    def ap(row, r, k):
        row = np.asarray(row[:k], dtype=float)
        precision = np.cumsum(row) / np.arange(1, len(row) + 1)
        return float(np.sum(precision * row) / min(k, r))

    def drops_r_0(hits, n_relevant, k):
        return float(np.mean([ap(row, r, k) for row, r in zip(hits, n_relevant) if r > 0]))

    def keeps_r_0(hits, n_relevant, k):
        return float(np.mean([ap(row, r, k) if r > 0 else 0.0 for row, r in zip(hits, n_relevant)]))

    assert check("map_at_k", keeps_r_0) is True
    capsys.readouterr()
    assert check("map_at_k", drops_r_0) is False
    out = capsys.readouterr().out
    assert "with R = [3, 4, 8, 0]" in out and "also one with nothing relevant in the catalogue (R = 0)" in out, out
    assert any(0 in list(n_relevant) for _, n_relevant, _ in EXERCISES["map_at_k"].cases)


# Notebook 6, review round 9: AP@K with R = 0 divided anyway (nan from numpy, ZeroDivisionError from Python).
def test_ap_at_k_points_an_answer_that_divides_by_r_0_at_r_0(capsys):
    def divides_anyway(ranks, n_relevant, k):
        found = np.array([r for r in ranks if r <= k], dtype=float)
        with np.errstate(invalid="ignore"):
            return float(np.sum(np.arange(1, len(found) + 1) / found) / np.float64(min(k, n_relevant)))

    def divides_in_python(ranks, n_relevant, k):
        found = [r for r in ranks if r <= k]
        return sum((i + 1) / r for i, r in enumerate(found)) / min(k, n_relevant)

    assert check("ap_at_k", divides_anyway) is False
    out = capsys.readouterr().out
    assert "R = 0: yours gives nan: a query with R = 0 gives 0 / 0 = nan" in out, out
    assert check("ap_at_k", divides_in_python) is False
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out and "with R = 0 scores" in out, out


def test_ap_at_k_tells_an_answer_that_drops_rank_k_that_rank_k_counts(capsys):
    def stops_before_k(ranks, n_relevant, k):
        if n_relevant == 0:
            return 0.0
        found = [r for r in ranks if r < k]
        return sum((i + 1) / r for i, r in enumerate(found)) / min(k, n_relevant)

    assert check("ap_at_k", stops_before_k) is False
    out = capsys.readouterr().out
    assert out.rstrip().endswith("rank k itself counts: keep the ranks <= k"), out
    hints = [hint for hint, _ in EXERCISES["ap_at_k"].mistakes]
    assert hints.index("rank k itself counts: keep the ranks <= k") < [
        i for i, hint in enumerate(hints) if hint.startswith("count the relevant results from 1")][0]


# Notebook 5: a library one-liner that does the whole step (review round 2).
def _refused_for_a_library(name, answer, library, capsys):
    assert check(name, answer) is False, answer.__name__
    out = capsys.readouterr().out.rstrip()
    assert f"uses {library}" in out and "yourself, with numpy" in out, out


def test_scipy_cdist_is_refused_in_both_notebook_5_exercises(capsys):
    pytest.importorskip("scipy.spatial")  # preinstalled on Colab and Kaggle
    from scipy.spatial.distance import cdist

    def cdist_distances(queries, gallery):
        return cdist(queries, gallery)

    def cdist_cosine_top_k(gallery, query, k):
        return np.argsort(cdist(gallery, query[None], "cosine")[:, 0], kind="stable")[:k]

    assert np.allclose(cdist_distances(*EXERCISES["euclidean_distances"].cases[0]),
                       solutions.euclidean_distances(*EXERCISES["euclidean_distances"].cases[0]))
    _refused_for_a_library("euclidean_distances", cdist_distances, "`cdist` (from scipy.spatial)", capsys)
    _refused_for_a_library("cosine_top_k", cdist_cosine_top_k, "`cdist` (from scipy.spatial)", capsys)


def test_faiss_is_refused_in_both_notebook_5_exercises(capsys):
    faiss = pytest.importorskip("faiss")  # notebook 9 installs it

    def faiss_distances(queries, gallery):
        squared = faiss.pairwise_distances(np.ascontiguousarray(queries, dtype=np.float32),
                                           np.ascontiguousarray(gallery, dtype=np.float32))
        return np.sqrt(np.maximum(squared, 0))

    def faiss_cosine_top_k(gallery, query, k):
        unit = np.ascontiguousarray(gallery / np.linalg.norm(gallery, axis=1, keepdims=True), dtype=np.float32)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        return index.search(np.float32(query[None] / np.linalg.norm(query)), k)[1][0]

    _refused_for_a_library("euclidean_distances", faiss_distances, "`faiss`", capsys)
    _refused_for_a_library("cosine_top_k", faiss_cosine_top_k, "`faiss`", capsys)


def test_chance_precision_names_the_labelled_only_n_and_no_longer_mistakes_k_for_n(capsys):
    labels = EXERCISES["chance_precision"].cases[0][0]  # the first case: its values choose the hint
    assert len(labels) not in (10, 11) and np.sum(labels != "") - 1 != 10, "N - 1 and K = 10 must differ there"

    def labelled_products_only(labels):  # the likeliest wrong N: the products that have a category
        labels = np.asarray(labels, dtype=object)
        sizes = np.array([np.sum(labels == label) for label in labels])
        return float(np.mean((sizes[_mask(labels)] - 1) / (np.sum(labels != "") - 1)))

    def share_of_ten(labels):  # a random top 10: min(n_c - 1, 10) relevant results out of K = 10, not N
        labels = np.asarray(labels, dtype=object)
        sizes = np.array([np.sum(labels == label) for label in labels])
        return float(np.mean(np.minimum(sizes[_mask(labels)] - 1, 10) / 10))

    assert not check("chance_precision", labelled_products_only)
    assert "N counts every product, unlabelled ones too" in capsys.readouterr().out
    assert not check("chance_precision", share_of_ten)
    out = capsys.readouterr().out
    assert "divide by N instead of N - 1" not in out and out.rstrip().endswith(EXERCISES["chance_precision"].hint_text)


def test_notebook_1_leaves_the_np_unique_recipe_to_the_hint():
    import json
    from pathlib import Path

    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "01_setup_and_data.ipynb"
    prose = "".join("".join(cell["source"]) for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
                    if cell["cell_type"] == "markdown")
    assert "np.unique" not in prose and "return_counts" not in prose
    assert "np.unique" in EXERCISES["query_mask"].hint_text


def test_chance_precision_tells_single_product_queries_from_an_average_over_categories(capsys):
    labels = EXERCISES["chance_precision"].cases[0][0]  # the first case: its values choose the hint

    def keeps_single_products(labels):  # every labelled product a query, alone in its category or not
        labels = np.asarray(labels, dtype=object)
        return float(np.mean([(np.sum(labels == label) - 1) / (len(labels) - 1) for label in labels if label != ""]))

    def over_categories(labels):
        labels = np.asarray(labels, dtype=object)
        return float(np.mean([(np.sum(labels == c) - 1) / (len(labels) - 1) for c in np.unique(labels[_mask(labels)])]))

    def median_over_queries(labels):
        labels = np.asarray(labels, dtype=object)
        sizes = np.array([np.sum(labels == label) for label in labels])
        return float(np.median((sizes[_mask(labels)] - 1) / (len(labels) - 1)))

    answers = (keeps_single_products, over_categories, median_over_queries)
    values = [answer(labels) for answer in answers] + [solutions.chance_precision(labels)]
    assert len({round(value, 3) for value in values}) == 4, values  # four different values, even as printed
    for answer, hint in zip(answers, ("keep categories with a single product as queries",
                                      "average over categories instead of over queries", "take the median")):
        assert not check("chance_precision", answer)
        assert hint in capsys.readouterr().out


def test_a_query_mask_given_as_a_pandas_series_is_told_to_return_a_numpy_array(capsys):
    pd = pytest.importorskip("pandas")

    def as_a_series(labels):  # right values: the reviewer's pandas answer
        s = pd.Series(labels)
        return (s != "") & s.map(s.value_counts()).ge(2)

    assert check("query_mask", as_a_series) is False
    out = capsys.readouterr().out
    assert "right values, but a pandas Series" in out and "`.to_numpy()`" in out and "0/1 int array" not in out, out
    assert check("query_mask", lambda labels: as_a_series(labels).to_numpy()) is True

    def series_without_the_label_test(labels):  # wrong values: the mistake's hint, not the Series message
        s = pd.Series(labels)
        return s.map(s.value_counts()).ge(2)

    assert check("query_mask", series_without_the_label_test) is False
    out = capsys.readouterr().out
    assert "did you keep the unlabelled products" in out and "pandas" not in out, out


def test_the_query_mask_hint_is_a_nudge_that_names_neither_the_conditions_nor_np_unique_options():
    hint = EXERCISES["query_mask"].hint_text
    assert "size of its own category" in hint
    assert not [text for text in ("return_counts", "return_inverse", "two conditions", "has a label", "another member")
                if text in hint], hint


# Notebooks 3 and 6, review round 3: a pooled list that notebook 3 cannot read, and a hint that was the answer.
def test_global_average_pool_refuses_a_list_with_the_right_values_and_says_why(capsys):
    def as_a_list(maps):  # right values, but notebook 3's next cell reads vector.shape
        return maps.mean(axis=(1, 2)).tolist()

    def as_a_tuple(maps):
        return tuple(map(tuple, maps.mean(axis=(1, 2))))

    for answer, kind in ((as_a_list, "a list"), (as_a_tuple, "a tuple")):
        assert check("global_average_pool", answer) is False
        out = capsys.readouterr().out
        assert f"right values, but {kind} instead of a numpy array" in out and ".shape" in out, out
    assert check("global_average_pool", lambda maps: maps.mean(axis=(1, 2)).astype(np.float32)) is True


def test_the_precision_at_k_hint_points_to_the_definition_without_giving_the_answer():
    hint = EXERCISES["precision_at_k"].hint_text
    assert "definition" in hint
    assert not [text for text in ("divide by k", "among the first k", "[:k]", "sum(") if text in hint.lower()], hint


def test_precision_at_k_of_the_last_k_results_is_named_as_such(capsys):
    # notebook 6, review 17: the last k passed two cases and then read "divide it by k" by coincidence
    assert check("precision_at_k", lambda relevant, k: float(np.sum(relevant[-k:]) / k)) is False
    assert "those are the last k results" in capsys.readouterr().out


# Notebooks 2 and 7, review round 3: an even kernel, hints that named the wrong mistake, over-fetching, float rows.
def test_output_size_has_an_even_kernel_so_the_centre_pixel_formula_is_refused(capsys):
    assert (64, 2, 2, 0) in EXERCISES["output_size"].cases and solutions.output_size(64, 2, 2, 0) == 32

    def centre_positions(n, kernel, stride, padding):  # right for every odd kernel: 31 for 2x2 pooling of 64
        return (n + 2 * padding - 2 * (kernel // 2) - 1) // stride + 1

    assert check("output_size", centre_positions) is False
    out = capsys.readouterr().out
    assert "yours gives 31" in out and "right for odd kernels only" in out, out


def test_output_size_refuses_an_answer_that_halves_for_even_windows(capsys):
    """Review round 11: n // s equals the count on 2x2 pooling at stride 2 and on (8, 4, 2, 1), not in general."""
    def halves_for_pooling(n, kernel, stride, padding):
        return n // stride if kernel % 2 == 0 else (n + 2 * padding - kernel) // stride + 1

    assert solutions.output_size(10, 4, 2, 0) == 4 and solutions.output_size(7, 2, 1, 0) == 6
    assert check("output_size", halves_for_pooling) is False
    out = capsys.readouterr().out
    assert "yours gives 5" in out and "pooling does not always halve" in out, out


def test_output_size_names_a_mistake_only_for_an_answer_that_could_have_made_it(capsys):
    """The hint comes from the first case an answer fails. These two answers already add 1, and pass the cases
    where "forgot to add 1" fails; their value on a later case equals that mistake's by chance."""
    def divides_n_alone(n, kernel, stride, padding):
        return n // stride + 2 * padding - kernel + 1

    def divides_the_padding_apart(n, kernel, stride, padding):
        return (n - kernel) // stride + 1 + 2 * padding // stride

    for answer in (divides_n_alone, divides_the_padding_apart):
        assert check("output_size", answer) is False
        out = capsys.readouterr().out.rstrip()
        assert "add 1 for the first one" not in out and out.endswith(EXERCISES["output_size"].hint_text), out

    def forgets_the_first_position(n, kernel, stride, padding):  # the mistake itself still gets its hint
        return (n + 2 * padding - kernel) // stride

    assert check("output_size", forgets_the_first_position) is False
    assert capsys.readouterr().out.rstrip().endswith("add 1 for the first one")


def test_output_size_refuses_the_same_padding_count_for_every_padding(capsys):
    """Notebook 2, review round 7: "same" gives ceil(n / s) only where p = (k - 1) / 2; a case with more padding."""
    def same_whenever_padded(n, kernel, stride, padding):
        return -(-n // stride) if padding else (n - kernel) // stride + 1

    assert check("output_size", same_whenever_padded) is False
    assert "yours gives 10" in capsys.readouterr().out


def test_output_size_refuses_halving_for_even_kernels(capsys):
    """Notebook 2, review round 9: with one even case (64 pixels, stride = kernel = 2), "same" for the usual padding
    and "pooling halves" passed. The small CNN's pool2 (29 -> 14) and a 4-pixel window at stride 2 refuse them."""
    import math

    def same_for_the_usual_padding(n, kernel, stride, padding):
        return math.ceil(n / stride) if padding == (kernel - 1) // 2 else (n + 2 * padding - kernel) // stride + 1

    def pooling_halves(n, kernel, stride, padding):
        return (n + 2 * padding - kernel) // stride + 1 if kernel % 2 else (n + 2 * padding) // stride

    for answer, shown in ((same_for_the_usual_padding, "yours gives 15"), (pooling_halves, "yours gives 5")):
        assert check("output_size", answer) is False
        assert shown in capsys.readouterr().out


def test_output_size_refuses_dividing_by_the_stride_for_a_window_narrower_than_it(capsys):
    """Notebook 2, review round 13: no case had a window narrower than its stride, so (n + 2p) // s for k <= s
    passed. A 1x1 convolution at stride 2 on 29 pixels fits 15 times, not 14."""
    def divides_for_narrow_windows(n, kernel, stride, padding):
        return (n + 2 * padding) // stride if kernel <= stride else (n + 2 * padding - kernel) // stride + 1

    assert solutions.output_size(29, 1, 2, 0) == 15
    assert check("output_size", divides_for_narrow_windows) is False
    out = capsys.readouterr().out
    assert "yours gives 14" in out and "exactly as wide as the stride" in out, out


def test_the_counts_of_notebook_2_are_ints_python_or_numpy(capsys):
    """Notebook 2, review round 8: np.floor(...) + 1 and math.pow give the right count as a float, which cannot
    size an array (np.zeros((out, out)) raises TypeError)."""
    import math

    def floored(n, kernel, stride, padding):
        return np.floor((n + 2 * padding - kernel) / stride) + 1

    def with_pow(kernel, c_in, c_out, bias=True):
        return math.pow(kernel, 2) * c_in * c_out + (c_out if bias else 0)

    for name, answer, said in (("output_size", floored, "a float64 (222.000)"),
                               ("conv_parameters", with_pow, "a float (2368.000)")):
        assert check(name, answer) is False
        out = capsys.readouterr().out
        assert f"right value, but {said}" in out and "return an int" in out, out

    def in_numpy(n, kernel, stride, padding):
        return np.int64((n + 2 * padding - kernel) // stride + 1)

    assert check("output_size", in_numpy) is True
    assert check("conv_parameters", lambda kernel, c_in, c_out, bias=True: int(with_pow(kernel, c_in, c_out, bias)))


def test_filtered_top_k_refuses_over_fetching_then_filtering_with_a_strict_filter(capsys):
    cases = EXERCISES["filtered_top_k"].cases
    strict = [(d, allowed, k) for d, allowed, k in cases if len(d) >= 1000 and allowed.mean() <= 0.03]
    assert strict, "a case where few products pass the filter"
    d, allowed, k = strict[0]
    assert d[allowed].min() > d[~allowed].max() and allowed.sum() >= k  # the allowed ones are all far away

    for factor in (3, 4):
        def over_fetches(distances, allowed, k, factor=factor):
            order = np.argsort(distances, kind="stable")[:factor * k]
            return order[allowed[order]][:k]

        assert check("filtered_top_k", over_fetches) is False
        out = capsys.readouterr().out
        assert "taking a few times k first does not help" in out and "filter first" in out, out


def test_filtered_top_k_wants_the_rows_as_an_integer_array(capsys):
    def rows(distances, allowed, k):
        kept = np.flatnonzero(allowed)
        return kept[np.argsort(distances[kept], kind="stable")[:k]]

    def as_floats(distances, allowed, k):
        return rows(distances, allowed, k).astype(float)

    def from_a_list(distances, allowed, k):  # float64 where the list is empty
        return np.array([int(i) for i in np.argsort(distances, kind="stable") if allowed[i]][:k])

    def as_a_list(distances, allowed, k):
        return rows(distances, allowed, k).tolist()

    assert check("filtered_top_k", rows) is True
    assert check("filtered_top_k", lambda d, a, k: rows(d, a, k).astype(np.int32)) is True
    capsys.readouterr()
    for answer, said in ((as_floats, "a float64 array: rows index the catalogue"),
                         (from_a_list, "a float64 array when no product passes the filter"),
                         (as_a_list, "a list: return them as a numpy array of integers")):
        assert check("filtered_top_k", answer) is False
        out = capsys.readouterr().out
        assert f"right rows, but {said}" in out, out


def test_precision_curve_accepts_a_loop_and_its_hint_does_not_ask_for_one_call():
    def one_j_at_a_time(relevant):
        return np.array([sum(relevant[:j]) / j for j in range(1, len(relevant) + 1)])

    assert exercise_for("precision_curve").passes(one_j_at_a_time)
    hint = EXERCISES["precision_curve"].hint_text
    assert "at once" not in hint and "loop over j is fine" in hint, hint


@pytest.mark.parametrize("container", [list, tuple])
def test_precision_curve_wants_a_numpy_array(capsys, container):
    """The docstring asks for the array of precisions; a list passed the check (review of notebook 7)."""
    def as_a_container(relevant):
        return container(np.cumsum(relevant) / np.arange(1, len(relevant) + 1))

    assert check("precision_curve", as_a_container) is False
    out = capsys.readouterr().out
    assert f"right numbers, but a {container.__name__} instead of a numpy array" in out, out
    assert check("precision_curve", lambda r: np.array(as_a_container(r))) is True


def test_precision_curve_refuses_an_answer_that_writes_into_relevant(capsys):
    """The check passes copies, so a running count written into ``relevant`` passed it (review of notebook 7)."""
    def counts_in_place(relevant):
        relevant[:] = np.cumsum(relevant)
        return relevant / np.arange(1, len(relevant) + 1)

    def on_a_copy(relevant):
        return np.cumsum(relevant) / np.arange(1, len(relevant) + 1)

    assert check("precision_curve", counts_in_place) is False
    assert "right curve, but your function wrote into `relevant`" in capsys.readouterr().out
    assert check("precision_curve", on_a_copy) is True


# Review round 3: per-element Python hidden in key=, starmap, reduce or recursion; the package imported by a
# string; an answer that raises gets the general hint; notebook 5's q2 hint is a nudge, the clamp its NaN message's.
def _cosine_sorted_by_key(gallery, query, k):  # the reviewer's: one Python call of the key per row
    return np.array(sorted(range(len(gallery)), key=lambda i: -np.dot(gallery[i], query)
                           / np.linalg.norm(gallery[i]))[:k])


def _cosine_list_sort_key(gallery, query, k):
    rows = list(range(len(gallery)))
    rows.sort(key=lambda i: -(gallery[i] @ query) / np.linalg.norm(gallery[i]))
    return np.array(rows[:k])


def _cosine_starmap(gallery, query, k):
    import itertools

    norms = np.linalg.norm(gallery, axis=1)
    similarity = np.array(list(itertools.starmap(lambda row, norm: row @ query / norm, zip(gallery, norms))))
    return np.argsort(-similarity, kind="stable")[:k]


def _cosine_reduce(gallery, query, k):
    import functools

    similarity = functools.reduce(lambda scores, row: scores + [row @ query / np.linalg.norm(row)], gallery, [])
    return np.argsort(-np.array(similarity), kind="stable")[:k]


def _cosine_heapq(gallery, query, k):
    import heapq

    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    return np.array(heapq.nlargest(k, range(len(gallery)), similarity.__getitem__))


def _cosine_sorted_tuples(gallery, query, k):  # review 8: one (similarity, row) tuple per row, sorted in Python
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    return np.array(sorted(zip(-similarity, range(len(similarity)))))[:k, 1].astype(int)


def _cosine_list_sort_tuples(gallery, query, k):
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    pairs = list(zip(-similarity, range(len(similarity))))
    pairs.sort()
    return np.array(pairs[:k])[:, 1].astype(int)


def _cosine_reversed_list(gallery, query, k):  # review 21: the builtins walk the rows one at a time
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    return np.array(list(reversed(np.argsort(similarity, kind="stable"))))[:k]


def _cosine_unpacked(gallery, query, k):
    similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
    return np.array([*np.argsort(-similarity, kind="stable")])[:k]


def _cosine_builtin_sum(gallery, query, k):  # one Python addition per dimension
    return np.argsort(-(gallery @ query) / np.sqrt(sum(gallery.T ** 2)), kind="stable")[:k]


def _distances_builtin_sum(queries, gallery):
    return np.sqrt(np.maximum(sum(queries.T ** 2)[:, None] - 2 * queries @ gallery.T + sum(gallery.T ** 2)[None], 0))


def _distances_rows_listed(queries, gallery):
    squared = (queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None]
    return np.array(list(np.sqrt(np.maximum(squared, 0))))


def _distances_starmap(queries, gallery):  # the reviewer's: one pass over the gallery per query
    import itertools

    return np.array(list(itertools.starmap(lambda q: np.sqrt(((q - gallery) ** 2).sum(1)), zip(queries))))


def _distances_recursive(queries, gallery):
    row = np.sqrt(((gallery - queries[0]) ** 2).sum(axis=1))[None]
    return row if len(queries) == 1 else np.vstack([row, _distances_recursive(queries[1:], gallery)])


def _distances_first_row(queries, gallery):  # mutual recursion through a helper
    row = np.sqrt(((gallery - queries[0]) ** 2).sum(axis=1))[None]
    return row if len(queries) == 1 else np.vstack([row, _distances_through_a_helper(queries[1:], gallery)])


def _distances_through_a_helper(queries, gallery):
    return _distances_first_row(queries, gallery)


_distances_lambda = lambda queries, gallery: (  # noqa: E731 (a recursive lambda, bound to a global name)
    np.sqrt(((gallery - queries[0]) ** 2).sum(axis=1))[None] if len(queries) == 1 else
    np.vstack([np.sqrt(((gallery - queries[0]) ** 2).sum(axis=1))[None], _distances_lambda(queries[1:], gallery)]))


@pytest.mark.parametrize("name, looping, what", [
    ("cosine_top_k", _cosine_sorted_by_key, "key= function"), ("cosine_top_k", _cosine_list_sort_key, "key= function"),
    ("cosine_top_k", _cosine_starmap, "starmap(...)"),
    ("cosine_top_k", _cosine_reduce, "functools.reduce(...)"), ("cosine_top_k", _cosine_heapq, "nlargest(...)"),
    ("cosine_top_k", _cosine_sorted_tuples, "sorted(...)"), ("cosine_top_k", _cosine_list_sort_tuples, "list(...)"),
    ("cosine_top_k", _cosine_reversed_list, "list(...)"), ("cosine_top_k", _cosine_unpacked, "star-unpacking"),
    ("cosine_top_k", _cosine_builtin_sum, "sum(...) in _cosine_builtin_sum (Python's sum"),
    ("euclidean_distances", _distances_builtin_sum, "sum(...)"),
    ("euclidean_distances", _distances_rows_listed, "list(...)"),
    ("euclidean_distances", _distances_starmap, "starmap(...)"),
    ("euclidean_distances", _distances_recursive, "recursion (_distances_recursive calls itself)"),
    ("euclidean_distances", _distances_first_row, "recursion"),
    ("euclidean_distances", _distances_lambda, "recursion")])
def test_per_element_python_in_key_starmap_reduce_or_recursion_is_a_loop(name, looping, what, capsys):
    item = EXERCISES[name]
    assert item.passes(looping) is False
    assert check(name, looping) is False
    out = capsys.readouterr().out.rstrip()
    assert "right values, but through" in out and what in out and "without a Python loop" in out, out
    assert out.endswith(item.hint_text), out


def test_pandas_nlargest_is_refused_for_numpy_not_called_a_loop_and_numpy_sorts_pass(capsys):
    pd = pytest.importorskip("pandas")

    def by_pandas(gallery, query, k):
        return pd.Series((gallery @ query) / np.linalg.norm(gallery, axis=1)).nlargest(k).index.to_numpy()

    def by_numpy_sorts(gallery, query, k):  # np.sort, an array's .sort() and a local named `sorted`: numpy's
        similarity = (gallery @ query) / np.linalg.norm(gallery, axis=1)
        sorted = np.argsort(-similarity, kind="stable")
        values = np.sort(similarity)
        values.sort()
        return sorted[:k]

    assert check("cosine_top_k", by_pandas) is False
    out = capsys.readouterr().out
    assert "pandas' nlargest(...)" in out and "numpy's own functions" in out and "Python loop" not in out, out

    def by_pandas_sort(gallery, query, k):  # review 10: a pandas sort picks and orders the top k as nlargest does
        similarity = pd.Series((gallery @ query) / np.linalg.norm(gallery, axis=1))
        return similarity.sort_values(ascending=False).index.to_numpy()[:k]

    assert check("cosine_top_k", by_pandas_sort) is False
    out = capsys.readouterr().out
    assert "pandas' sort_values(...)" in out and "numpy's own functions" in out and "Python loop" not in out, out
    assert exercises._python_loop(by_numpy_sorts) == ""
    assert check("cosine_top_k", by_numpy_sorts) is True, capsys.readouterr().out


def test_a_max_with_key_alone_and_a_recursive_closure_are_loops():
    def best_row(gallery, query):
        return max(range(len(gallery)), key=lambda i: gallery[i] @ query)

    def recursive_closure(queries, gallery):
        row = np.sqrt(((gallery - queries[0]) ** 2).sum(axis=1))[None]
        return row if len(queries) == 1 else np.vstack([row, recursive_closure(queries[1:], gallery)])

    assert "key= function" in exercises._python_loop(best_row)
    assert exercises._python_loop(recursive_closure) == "recursion (recursive_closure calls itself)"


def _distances_by_ufunc_reduce(queries, gallery):  # np.add.reduce is numpy's sum: whole arrays, no Python loop
    squared = (np.add.reduce(queries * queries, axis=1)[:, None] - 2 * queries @ gallery.T
               + np.add.reduce(gallery * gallery, axis=1)[None])
    return np.sqrt(np.maximum(squared, 0))


def _cosine_partition_then_sort(gallery, query, k):  # argpartition, then sort the k: the keyword is kind=, not key=
    similarity = (gallery @ query) / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(query))
    top = np.argpartition(-similarity, k - 1)[:k]
    return top[np.argsort(-similarity[top], kind="stable")]


def _cosine_with_a_helper(gallery, query, k):
    return np.argsort(-_cosine_scores(gallery, query), kind="stable")[:k]


def _cosine_scores(gallery, query):
    return np.multiply.reduce([gallery @ query, 1 / np.linalg.norm(gallery, axis=1)])


@pytest.mark.parametrize("name, vectorised", [("euclidean_distances", _distances_by_ufunc_reduce),
                                              ("cosine_top_k", _cosine_partition_then_sort),
                                              ("cosine_top_k", _cosine_with_a_helper)])
def test_vectorised_answers_with_ufunc_reduce_kind_or_a_helper_still_pass(name, vectorised, capsys):
    assert exercises._python_loop(vectorised) == ""
    assert check(name, vectorised) is True, capsys.readouterr().out


def _through_import_module(gallery, query, k):
    import importlib

    return importlib.import_module("cbir_tutorial.lessons." + "solutions").cosine_top_k(gallery, query, k)


def _through_dunder_import(queries, gallery):
    return __import__("cbir_tutorial.lessons.solutions", fromlist=["x"]).euclidean_distances(queries, gallery)


def _through_importlib_util(relevant, k):
    import importlib.util

    spec = importlib.util.find_spec(".".join(["cbir_tutorial", "evaluation", "metrics"]))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.precision_at_k(relevant, k)


def _through_sys_modules(relevant, k):
    import sys

    return sys.modules["cbir_tutorial.evaluation.metrics"].precision_at_k(relevant, k)


def _through_a_sys_modules_search(relevant, k):
    import sys

    return [v for n, v in sys.modules.items() if n.endswith("metrics") and "cbir" in n][0].precision_at_k(relevant, k)


_load = importlib.import_module  # an importer bound to another name outside the function


def _through_an_alias(relevant, k):
    return _load("cbir" + "_tutorial.evaluation.metrics").precision_at_k(relevant, k)


@pytest.mark.parametrize("name, dynamic, module", [
    ("cosine_top_k", _through_import_module, "cbir_tutorial.lessons.solutions"),
    ("euclidean_distances", _through_dunder_import, "cbir_tutorial.lessons.solutions"),
    ("precision_at_k", _through_importlib_util, "cbir_tutorial"),
    ("precision_at_k", _through_sys_modules, "cbir_tutorial.evaluation.metrics"),
    ("precision_at_k", _through_a_sys_modules_search, "cbir_tutorial"),
    ("precision_at_k", _through_an_alias, "cbir_tutorial.evaluation.metrics")])
def test_the_package_imported_by_a_string_is_refused(name, dynamic, module, capsys):
    item = EXERCISES[name]
    assert uses_the_package(dynamic).startswith(f"`{module}"), uses_the_package(dynamic)
    assert check(name, dynamic) is False
    out = capsys.readouterr().out.rstrip()
    assert "uses the package's own `cbir_tutorial" in out and out.endswith(item.hint_text), out


def test_ap_at_k_refuses_an_answer_that_gives_up_on_a_single_relevant_product(capsys):
    def zero_for_one(ranks, n_relevant, k):  # several categories of the sample give every query R = 1
        return solutions.ap_at_k(ranks, n_relevant, k) if n_relevant > 1 else 0.0

    assert check("ap_at_k", zero_for_one) is False
    assert any(n_relevant == 1 and ranks for ranks, n_relevant, _ in EXERCISES["ap_at_k"].cases)


def test_importlib_for_another_module_or_the_word_in_a_docstring_is_not_the_package(capsys):
    def numpy_by_name(relevant, k):
        import importlib

        return float(importlib.import_module("numpy").sum(relevant[:k]) / k)

    def mentions_the_package(relevant, k):
        """Unlike cbir_tutorial.evaluation.metrics.precision_at_k, mine is two lines."""
        return float(np.sum(relevant[:k]) / k)

    assert uses_the_package(numpy_by_name) == "" and uses_the_package(mentions_the_package) == ""
    assert check("precision_at_k", numpy_by_name) is True and check("precision_at_k", mentions_the_package) is True


def test_an_answer_that_raises_gets_the_general_hint_after_the_error(capsys):
    def without_keepdims(features):  # the broadcasting mistake of notebook 3
        return features / np.linalg.norm(features, axis=1)

    item = EXERCISES["l2_normalise"]
    assert check("l2_normalise", without_keepdims) is False
    out = capsys.readouterr().out.rstrip()
    assert "your function raised ValueError: operands could not be broadcast" in out, out
    assert out.endswith(f". Hint: {item.hint_text}") and " . Hint" not in out, out
    assert check("l2_normalise", lambda f: f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)) is True


def test_notebook_5_distance_hint_is_a_nudge_and_any_nan_answer_is_told_to_clamp(capsys):
    hint = EXERCISES["euclidean_distances"].hint_text
    assert "(q - x).(q - x)" in hint
    assert not [text for text in ("matrix product", "clamp", "broadcast", "@", "sqrt", "row", "column")
                if text in hint], hint

    def by_einsum(queries, gallery):  # its sums run in another order: NaN elsewhere than the typical mistake's
        return np.sqrt(np.einsum("ij,ij->i", queries, queries)[:, None] - 2 * np.dot(queries, gallery.T)
                       + np.einsum("ij,ij->i", gallery, gallery)[None])

    def by_norms(queries, gallery):
        return np.sqrt(np.linalg.norm(queries, axis=1)[:, None] ** 2 - 2 * queries @ gallery.T
                       + np.linalg.norm(gallery, axis=1) ** 2)

    for unclamped in (by_einsum, by_norms):
        with np.errstate(invalid="ignore"):
            assert check("euclidean_distances", unclamped) is False
        out = capsys.readouterr().out
        assert "NaN where a query meets itself" in out and "clamp at 0" in out, out


# Notebook 4, review round 2: odd answers are reported, never crash the check, and a text answer is never right.
def test_nb04_a_function_that_prints_instead_of_returning_is_told_to_return(capsys):
    from cbir_tutorial.lessons.exercises import nb04

    def prints_the_field(layers):
        field, jump = 1, 1
        for kernel, stride in layers:
            field, jump = field + (kernel - 1) * jump, jump * stride
        print(field)

    def prints_the_count(kernel, c_in, c_out):
        print(kernel * kernel * c_in + c_in * c_out)

    for question, printing in ((nb04.q1, prints_the_field), (nb04.q3, prints_the_count)):
        assert question.check(printing).right is False
        out = capsys.readouterr().out
        assert f"✗ {question.name}: " in out and "returned None: did you forget `return`?" in out, out
        assert "your function returned None: did you forget `return`?" in out, out


def test_nb04_a_number_returned_as_text_is_refused_right_or_wrong(capsys):
    from cbir_tutorial.lessons.exercises import nb04

    def field_as_text(layers):  # the right value, as a str
        field, jump = 1, 1
        for kernel, stride in layers:
            field, jump = field + (kernel - 1) * jump, jump * stride
        return str(field)

    answers = [(nb04.q1, field_as_text, lambda layers: str(sum(kernel for kernel, _ in layers))),
               (nb04.q3, lambda kernel, c_in, c_out: str(kernel * kernel * c_in + c_in * c_out),
                lambda kernel, c_in, c_out: f"{kernel * kernel * c_in * c_out}".encode())]
    for question, right_as_text, wrong_as_text in answers:
        for answer in (right_as_text, wrong_as_text):
            assert question.check(answer).right is False
            out = capsys.readouterr().out
            assert out.startswith(f"✗ {question.name}: ") and "(text: return numbers, not strings)" in out, out
    assert not exercises._same("7", 7, 1e-6) and not exercises._same(["1", "2"], [1, 2], 1e-6)
    assert exercises._same(np.int64(7), 7, 1e-6) and exercises._same([1.0, 2.0], np.array([1, 2]), 1e-6)


# Notebook 4, review round 9: a count returned as a float (math.pow, a 1.0 start) is refused as in notebook 2.
def test_nb04_a_count_returned_as_a_float_is_refused(capsys):
    import math

    from cbir_tutorial.lessons.exercises import nb04

    def float_field(layers):
        field, jump = 1.0, 1.0
        for kernel, stride in layers:
            field, jump = field + (kernel - 1) * jump, jump * stride
        return field

    def int_field(layers):  # numpy's integers are whole numbers too
        jumps = np.cumprod([1] + [stride for _, stride in layers[:-1]])
        return 1 + np.sum([(kernel - 1) * jump for (kernel, _), jump in zip(layers, jumps)])

    for question, as_float, whole in ((nb04.q1, float_field, int_field),
                                      (nb04.q3, lambda k, c_in, c_out: math.pow(k, 2) * c_in + c_in * c_out,
                                       lambda k, c_in, c_out: (k * k + c_out) * c_in)):
        assert question.check(as_float).right is False
        out = capsys.readouterr().out
        assert "right value, but a float" in out and "whole number" in out, out
        assert question.check(whole).right is True
        capsys.readouterr()


def test_shown_never_fails_on_an_odd_value():
    shown = exercises._shown
    assert (shown(1234), shown(0.5), shown(np.float32(0.25)), shown(True)) == ("1,234", "0.500", "0.250", "True")
    assert shown([1, 2]) == "[1, 2]" and shown(None).startswith("None (your function returned None")
    assert shown({"a": 1}) == "{'a': 1}" and shown([[1], [1, 2]]) == "[[1], [1, 2]]" and shown(1 + 2j) == "(1+2j)"
    assert len(shown("x" * 500)) < 130


def test_receptive_field_has_a_stride_4_case_so_doubling_at_any_stride_is_refused(capsys):
    from cbir_tutorial.lessons.exercises import nb04

    def doubles_the_jump(layers):  # right for strides 1 and 2, the only ones of VGG and ResNet
        field, jump = 1, 1
        for kernel, stride in layers:
            field += (kernel - 1) * jump
            jump *= 2 if stride > 1 else 1
        return field

    assert any(stride > 2 for (layers,) in nb04.q1.cases for _, stride in layers)
    assert nb04.q1.check(doubles_the_jump).right is False
    out = capsys.readouterr().out
    assert "[(11, 4), (3, 2), (5, 1)]: yours gives 31" in out and "stride's value" in out, out


def test_receptive_field_refuses_a_stride_that_widens_its_own_layer_when_the_layer_is_last_or_1x1(capsys):
    """Review round 10: every case ended with a stride-1 layer whose kernel was at least its stride, so rules wrong
    only for a strided last layer or a kernel smaller than its stride passed."""
    from cbir_tutorial.lessons.exercises import nb04

    def at_least_its_stride(layers):  # a 1x1 convolution of stride 2 would see 2 pixels
        field, jump = 1, 1
        for kernel, stride in layers:
            field += (max(kernel, stride) - 1) * jump
            jump *= stride
        return field

    def adds_the_last_stride(layers):
        field, jump = 1, 1
        for kernel, stride in layers:
            field += (kernel - 1) * jump
            jump *= stride
        return field + layers[-1][1] - 1

    assert nb04.q1.check(at_least_its_stride).right is False
    assert "[(1, 2), (3, 1)]: yours gives 6" in capsys.readouterr().out
    assert nb04.q1.check(adds_the_last_stride).right is False
    assert "[(3, 1), (3, 1), (2, 2)]: yours gives 7" in capsys.readouterr().out


def test_an_array_answer_that_returns_none_is_told_to_return(capsys):
    from cbir_tutorial.lessons.exercises import nb09

    def forgot(features):
        features.round()  # computed, never returned

    assert not nb09.q1.check(forgot)
    assert "returned None: did you forget `return`?" in capsys.readouterr().out


def test_nb10_recall_mistakes_that_cut_at_k_are_not_told_to_cut_at_k(capsys):
    """A global np.isin and an any over the ranks both cut at k: the first case tells them apart from "no cut"."""
    from cbir_tutorial.lessons.exercises import nb10

    def isin_everywhere(found_items, query_items, k):
        return float(np.mean(np.isin(query_items, found_items[:, :k])))

    def any_per_rank(found_items, query_items, k):
        return float(np.mean((found_items[:, :k] == query_items[:, None]).any(axis=0)))

    for wrong, told in ((isin_everywhere, "OWN results"), (any_per_rank, "per QUERY")):
        assert not nb10.q2.check(wrong)
        out = capsys.readouterr().out
        assert told in out and "cut each list at k" not in out, out
    found, queries, k = nb10.q2.cases[0]
    values = [solutions.instance_recall_at_k(found, queries, k)] + [wrong(found, queries, k)
                                                                   for _, wrong in nb10.q2.mistakes]
    assert len(set(np.round(values, 9))) == len(values), values  # each mistake its own value on the first case


def test_nb10_multi_similarity_refuses_a_hardest_negative_masked_with_zero(capsys):
    """``(S * mask).max`` takes 0 for the hardest negative when every negative cosine is below 0: a case has one."""
    from cbir_tutorial.lessons.exercises import nb10

    def vectorised(embeddings, labels, zero_masked):
        x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        s, labels = x @ x.T, np.asarray(labels)
        same = labels[:, None] == labels[None, :]
        positive, negative = same & ~np.eye(len(labels), dtype=bool), ~same
        hardest_negative = (s * negative if zero_masked else np.where(negative, s, -np.inf)).max(axis=1)[:, None]
        hardest_positive = np.where(positive, s, np.inf).min(axis=1)[:, None]
        kept_p, kept_n = positive & (s - 0.1 < hardest_negative), negative & (s + 0.1 > hardest_positive)
        pull = np.log1p((np.exp(-2 * (s - 0.5)) * kept_p).sum(axis=1)) / 2
        push = np.log1p((np.exp(50 * (s - 0.5)) * kept_n).sum(axis=1)) / 50
        return float(np.where(kept_p.any(axis=1) & kept_n.any(axis=1), pull + push, 0.0).mean())

    assert nb10.q1.check(lambda e, l: vectorised(e, l, zero_masked=False))
    capsys.readouterr()
    assert not nb10.q1.check(lambda e, l: vectorised(e, l, zero_masked=True))
    assert "masking the other entries with 0" in capsys.readouterr().out


def test_nb10_recall_off_by_one_is_told_so():
    from cbir_tutorial.lessons.exercises import nb10

    problem = nb10.q2.problem(lambda f, q, k: float(np.mean((f[:, :k + 1] == q[:, None]).any(axis=1))))
    assert problem and problem.endswith("(a slice :k stops before k)"), problem


def test_nb10_recall_refuses_a_first_hit_that_defaults_to_rank_1():
    """Review round 11: a first hit found with argmax (or ``list.index`` with 0 for a miss) counts a query whose item
    is in none of its results; the first case has such a query."""
    from cbir_tutorial.lessons.exercises import nb10

    def by_index(found_items, query_items, k):
        return float(np.mean([(list(row).index(item) if item in row else 0) < k
                              for row, item in zip(found_items, query_items)]))

    problem = nb10.q2.problem(by_index)
    assert problem and problem.endswith("counts it as found at rank 1"), problem


def test_nb10_multi_similarity_hint_is_a_nudge_and_nothing_calls_the_lowest_positive_the_easiest():
    from cbir_tutorial.training import losses

    hint = EXERCISES["multi_similarity_loss"].hint_text
    assert not [text for text in ("epsilon", "log(1", "average", "hardest", "easiest") if text in hint], hint
    mining = EXERCISES["multi_similarity_loss"].mistakes[0][0]
    assert "hardest positive (the lowest cosine)" in mining and "easiest" not in mining
    assert "easiest" not in losses.multi_similarity_loss.__doc__


def test_int8_accepts_round_half_up_and_a_tiny_epsilon_in_the_scale_and_still_refuses_truncation(capsys):
    """No case lands on a rounding tie, so the two ordinary ways to round and a guard by epsilon all pass."""
    def codes_and_back(features, rounding, epsilon=0.0):
        low, high = features.min(axis=0), features.max(axis=0)
        offset, scale = (high + low) / 2, (high - low) / 254
        scale = scale + epsilon if epsilon else np.where(scale > 0, scale, 1.0)
        return offset + scale * np.clip(rounding((features - offset) / scale), -127, 127)

    def half_up(features):
        return codes_and_back(features, lambda x: np.floor(x + 0.5))

    def epsilon_in_the_scale(features):
        return codes_and_back(features, np.rint, epsilon=1e-12)

    def truncated(features):
        return codes_and_back(features, lambda x: x.astype(np.int8).astype(float))

    for codes in [(args[0] - (args[0].max(0) + args[0].min(0)) / 2)
                  / np.where(np.ptp(args[0], axis=0) > 0, np.ptp(args[0], axis=0) / 254, 1.0)
                  for args in EXERCISES["int8_roundtrip"].cases]:
        assert not np.isclose(np.abs(codes) % 1, 0.5).any(), codes  # no tie: x.5 rounds differently by rule
    assert exercise_for("int8_roundtrip").check(half_up)
    assert exercise_for("int8_roundtrip").check(epsilon_in_the_scale)
    capsys.readouterr()
    assert not exercise_for("int8_roundtrip").check(truncated)
    assert "whole number" in capsys.readouterr().out  # truncation is not rounding


def test_int8_refuses_a_round_trip_that_writes_into_its_input(capsys):
    """The check passes copies, so an in-place round trip gave the right values (review 11 of notebook 9); the
    notebook then calls it on its real features, which the gallery is built from."""
    def in_place(features):
        low, high = features.min(axis=0), features.max(axis=0)
        offset, scale = (high + low) / 2, np.where(high > low, (high - low) / 254, 1.0)
        features -= offset
        features /= scale
        np.rint(features, out=features)
        features *= scale
        features += offset
        return features

    assert not exercise_for("int8_roundtrip").check(in_place)
    out = capsys.readouterr().out
    assert "right values, but your function wrote into `features`" in out and "return a new array" in out, out
    assert exercise_for("int8_roundtrip").check(lambda f: in_place(f.copy()))


def test_nb08_gem_pool_refuses_p_rounded_to_the_nearest_half(capsys):
    """Every p of the check was a multiple of 0.5, so a GeM that rounds p to the nearest 0.5 passed (review 3 of
    notebook 8): a case with p = 2.2 refuses it."""
    def rounded_to_a_half(maps, p):
        p = round(p * 2) / 2
        return np.mean(maps ** p, axis=(1, 2)) ** (1.0 / p)

    assert any(p * 2 != round(p * 2) for _, p in EXERCISES["gem_pool"].cases)
    assert check("gem_pool", rounded_to_a_half) is False
    assert "p = 2.2" in capsys.readouterr().out


def test_nb08_alpha_query_expansion_refuses_a_whole_number_alpha(capsys):
    """Every alpha of the check was whole, so an αQE that truncates alpha to a whole number passed (review 19 of
    notebook 8): a case with alpha = 2.5 refuses it."""
    def whole_alpha(query, neighbours, alpha):
        expanded = query + (np.maximum(neighbours @ query, 0) ** int(alpha)) @ neighbours
        return expanded / np.linalg.norm(expanded)

    assert any(alpha != int(alpha) for _, _, alpha in EXERCISES["alpha_query_expansion"].cases)
    assert check("alpha_query_expansion", whole_alpha) is False
    assert "alpha = 2.5" in capsys.readouterr().out


def test_nb08_gem_pool_refuses_scipy_stats_power_mean(monkeypatch, capsys):
    """scipy.stats.pmean (scipy 1.9+, on Colab and Kaggle) is GeM in one call; the check accepted it (review 9 of
    notebook 8). Refused as a module attribute, by name, and imported inside the function."""
    def power_mean(a, p, axis=0):
        return np.mean(np.asarray(a, dtype=float) ** p, axis=axis) ** (1.0 / p)

    scipy, pmean = _fake_library(monkeypatch, "scipy.stats", "pmean", power_mean)

    def through_scipy(maps, p):
        return scipy.stats.pmean(maps.reshape(maps.shape[0], -1, maps.shape[-1]), p, axis=1)

    def by_name(maps, p):
        return pmean(maps.reshape(maps.shape[0], -1, maps.shape[-1]), p, axis=1)

    def imported_inside(maps, p):
        from scipy.stats import pmean
        return pmean(maps.reshape(maps.shape[0], -1, maps.shape[-1]), p, axis=1)

    def from_scipy_import_stats(maps, p):
        from scipy import stats
        return stats.pmean(maps.reshape(maps.shape[0], -1, maps.shape[-1]), p, axis=1)

    for function in (through_scipy, by_name, imported_inside, from_scipy_import_stats):
        assert check("gem_pool", function) is False, function.__name__
        assert "scipy.stats" in capsys.readouterr().out, function.__name__

    def with_numpy(maps, p):
        return np.mean(maps ** p, axis=(1, 2)) ** (1.0 / p)

    assert check("gem_pool", with_numpy) is True  # numpy alone still passes


def _multi_similarity_by_hand(epsilon=0.1, negatives=True, pull_alone=False):
    """A learner's multi-similarity loss written with a loop over the anchors: mining with margin ``epsilon``,
    of the negatives too unless ``negatives`` is False; ``pull_alone``: an anchor without negatives still adds
    its pull term (a mistake)."""
    def loss(embeddings, labels):
        x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
        s, total = x @ x.T, 0.0
        for i in range(len(labels)):
            same = labels == labels[i]
            pos, neg = s[i, same & (np.arange(len(labels)) != i)], s[i, ~same]
            if len(pos) and len(neg):
                pos, neg = pos[pos - epsilon < neg.max()], neg[neg + epsilon > pos.min()] if negatives else neg
            if len(pos) and (len(neg) or (pull_alone and not (~same).any())):
                total += np.log1p(np.exp(-2 * (pos - 0.5)).sum()) / 2 + np.log1p(np.exp(50 * (neg - 0.5)).sum()) / 50
        return float(total / len(labels))
    return loss


def test_nb10_multi_similarity_refuses_mining_without_its_margin_epsilon(capsys):
    """A case has pairs within epsilon of the hardest pair of the other kind: epsilon 0 or 0.05 is refused."""
    from cbir_tutorial.lessons.exercises import nb10

    mined_with = _multi_similarity_by_hand

    assert nb10.q1.check(mined_with(0.1))
    for epsilon in (0.0, 0.05, 0.15):
        capsys.readouterr()
        assert not nb10.q1.check(mined_with(epsilon)), epsilon
    nb10.q1.check(mined_with(0.0))
    assert "the mining has a margin" in capsys.readouterr().out


def test_nb10_recall_refuses_a_list_de_duplicated_before_the_cut_at_k(capsys):
    from cbir_tutorial.lessons.exercises import nb10

    def de_duplicated(found_items, query_items, k):
        return float(np.mean([q in list(dict.fromkeys(row))[:k] for row, q in zip(found_items, query_items)]))

    assert not nb10.q2.check(de_duplicated)
    assert "takes a rank each time" in capsys.readouterr().out
    assert "as a column" not in EXERCISES["instance_recall_at_k"].hint_text  # a nudge, not the code


def test_nb10_multi_similarity_refuses_a_loss_that_mines_the_positives_only(capsys):
    """Review 8 of notebook 10: in the random batches the negatives that mining drops add less than 1e-6, so a loss
    that kept every negative passed; a case where one adds 0.0012 refuses it and says to mine the negatives."""
    from cbir_tutorial.lessons.exercises import nb10

    assert nb10.q1.check(_multi_similarity_by_hand())
    capsys.readouterr()
    assert not nb10.q1.check(_multi_similarity_by_hand(negatives=False))
    assert "mine the negatives too" in capsys.readouterr().out


def test_nb10_multi_similarity_refuses_a_pull_term_for_an_anchor_without_negatives(capsys):
    """Review 16 of notebook 10: every case had two labels or more, so a loss that mined only when an anchor had
    negatives, and otherwise added its pull term, passed; a batch of one class gives 0 (the authors' code)."""
    from cbir_tutorial.lessons.exercises import nb10

    capsys.readouterr()
    assert not nb10.q1.check(_multi_similarity_by_hand(pull_alone=True))
    assert "a batch of one class" in capsys.readouterr().out


# Notebook 3: the package hidden in a container, a partial, an object or a lookup by name is still the package.
def _package_pool():
    from cbir_tutorial.models.pooling import pool
    return pool


_HIDDEN = {"dict": {"gap": _package_pool()}, "list": [[_package_pool()]]}


def _via_globals(maps):
    return np.asarray(globals()["_HIDDEN"]["dict"]["gap"](maps))


def test_the_package_is_found_inside_containers_partials_objects_and_lookups_by_name(capsys):
    import functools
    import types

    pool = _package_pool()
    partial = functools.partial(pool, pooling="avg")
    namespace = types.SimpleNamespace(gap=pool)

    class CallsThePackage:
        def __call__(self, maps):
            return pool(maps)

    class HoldsIt:
        gap = staticmethod(pool)

    calls = CallsThePackage()

    def from_a_dict(maps):
        return np.asarray(_HIDDEN["dict"]["gap"](maps))

    def from_a_nested_list(maps):
        return np.asarray(_HIDDEN["list"][0][0](maps))

    def from_a_partial(maps):
        return np.asarray(partial(maps))

    def from_a_namespace(maps):
        return np.asarray(namespace.gap(maps))

    def from_a_callable_object(maps):
        return np.asarray(calls(maps))

    def from_a_class_attribute(maps):
        return np.asarray(HoldsIt.gap(maps))

    def from_a_default(maps, tools={"gap": pool}):
        return np.asarray(tools["gap"](maps))

    def from_eval(maps):
        return np.asarray(eval("_package_pool")()(maps))

    hidden = [from_a_dict, from_a_nested_list, from_a_partial, from_a_namespace, from_a_callable_object,
              from_a_class_attribute, from_a_default, from_eval, _via_globals]
    for function in hidden:
        assert uses_the_package(function), function.__name__
        assert not exercises.nb03.q1.check(function), function.__name__
        assert "uses the package's own `cbir_tutorial." in capsys.readouterr().out, function.__name__

    axes = {"positions": (1, 2)}

    class Own:
        def __call__(self, maps):
            return maps.mean(axis=axes["positions"])

    own = Own()

    def own_answer(maps):  # containers and objects of the learner's that hold no package code are fine
        return own(maps)

    assert uses_the_package(own_answer) == ""
    assert exercises.nb03.q1.check(own_answer)


def test_l2_normalise_refuses_an_answer_that_finds_the_zero_rows_by_their_sum(capsys):
    def zero_sum_is_zero(features):
        lengths = np.linalg.norm(features, axis=1, keepdims=True)
        with np.errstate(all="ignore"):
            return np.where(features.sum(axis=1, keepdims=True) == 0, 0.0, features / lengths)

    assert not exercises.nb03.q2.check(zero_sum_is_zero)
    assert "is not a row of zeros" in capsys.readouterr().out


def test_a_type_in_a_message_takes_an_before_a_capital_vowel():
    class EagerTensor:
        pass

    assert exercises._kind(EagerTensor()) == "an EagerTensor" and exercises._kind([1]) == "a list"


def test_ap_at_k_refuses_nan_for_a_query_with_nothing_relevant_in_its_top_k(capsys):
    """Notebook 6, review round 20: no case had R > 0 with every relevant result beyond k, so a mean over the
    (empty) precisions found, giving nan there, passed."""
    import warnings

    def mean_of_nothing(ranks, n_relevant, k):
        if n_relevant == 0:
            return 0.0
        found = np.array([r for r in ranks if r <= k], dtype=float)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            precision = np.mean(np.arange(1, len(found) + 1) / found)
        return float(precision * len(found) / min(k, n_relevant))

    assert check("ap_at_k", mean_of_nothing) is False
    assert "ranks [6, 8] and R = 2: yours gives nan" in capsys.readouterr().out


def test_builtins_on_a_few_numbers_are_not_loops(capsys):
    def top_k(gallery, query, k):  # min and len on two numbers, np.sum and .sum(): no per-element Python
        similarity = (gallery @ query) / np.sqrt(np.sum(gallery ** 2, axis=1))
        return np.argsort(-similarity, kind="stable")[:min(k, len(gallery))]

    def distances(queries, gallery):
        squared = (queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None]
        return np.sqrt(np.maximum(squared, 0))

    assert check("cosine_top_k", top_k) and check("euclidean_distances", distances)


def test_a_strided_shortcut_keeps_the_positions_counted_from_the_first_pixel(capsys):
    """Review 22: on an odd map, counting back from the last pixel or spreading the samples evenly keeps the
    same positions as stride 2 from the first; the even map (as ResNet50's 56, 28, 14) tells them apart."""
    def from_the_end(x, branch, w, stride):
        return np.maximum(branch(x) + x[::-stride, ::-stride][::-1, ::-1] @ w, 0)

    def spread_evenly(x, branch, w, stride):
        rows = np.linspace(0, len(x) - 1, -(-len(x) // stride)).round().astype(int)
        cols = np.linspace(0, x.shape[1] - 1, -(-x.shape[1] // stride)).round().astype(int)
        return np.maximum(branch(x) + x[rows][:, cols] @ w, 0)

    for answer in (from_the_end, spread_evenly):
        assert check("projection_residual", answer) is False
        assert "x of shape (6, 6, 2)" in capsys.readouterr().out
    assert check("projection_residual", from_the_end) is False
    assert "counted from the first pixel, not from the last one" in capsys.readouterr().out


def test_opencv_and_scikit_image_filters_are_libraries_that_do_the_step(monkeypatch, capsys):
    """Review 22: cv2.filter2D and skimage's correlation gave notebook 2's convolution in one call."""
    cv2, _ = _fake_library(monkeypatch, "cv2", "filter2D",
                           lambda image, depth, kernel, borderType=0: solutions.conv3x3(image, kernel))
    cv2.BORDER_CONSTANT = 0
    skimage, _ = _fake_library(monkeypatch, "skimage.filters", "correlate_sparse",
                               lambda image, kernel, mode="constant": solutions.conv3x3(image, kernel))

    def by_opencv(image, kernel):
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_CONSTANT)

    def by_scikit_image(image, kernel):
        return skimage.filters.correlate_sparse(image, kernel, mode="constant")

    for answer, library in ((by_opencv, "cv2"), (by_scikit_image, "skimage")):
        assert check("conv3x3", answer) is False
        out = capsys.readouterr().out
        assert f"your function uses `{library}" in out and "which does the step for you" in out, out


def test_gem_counts_the_zeros_of_a_relu_map(capsys):
    """Review 23: every test map was positive, so a GeM over the non-zero values only passed; a real map is
    mostly zeros."""
    def over_non_zero_values(maps, p):
        return (np.sum(maps ** p, axis=(1, 2)) / np.count_nonzero(maps, axis=(1, 2))) ** (1.0 / p)

    assert check("gem_pool", over_non_zero_values) is False
    assert "the zeros too" in capsys.readouterr().out


def test_a_library_imported_from_a_string_is_refused(monkeypatch, capsys):
    """Review 23: importlib.import_module("scipy.stats") or __import__("tensorflow") hid the library that does the
    step, where `from scipy.stats import pmean` was refused."""
    import importlib

    _fake_library(monkeypatch, "scipy.stats", "pmean",
                  lambda values, p, axis: np.mean(values ** p, axis=axis) ** (1 / p))

    def gem_by_importlib(maps, p):
        stats = importlib.import_module("scipy.stats")
        return stats.pmean(maps.reshape(len(maps), -1, maps.shape[-1]), p, axis=1)

    def expansion_by_dunder_import(query, neighbours, alpha):
        tf = __import__("tensorflow")
        weights = np.maximum(neighbours @ query, 0) ** alpha
        return np.asarray(tf.math.l2_normalize(query + weights @ neighbours))

    for name, answer, library in (("gem_pool", gem_by_importlib, "scipy.stats"),
                                  ("alpha_query_expansion", expansion_by_dunder_import, "tensorflow")):
        assert check(name, answer) is False
        out = capsys.readouterr().out
        assert f"your function uses `{library}`" in out, out


def test_gem_lifting_the_zeros_as_the_package_does_is_right_and_writing_into_the_maps_is_not(capsys):
    """Review 24: np.maximum(maps, 1e-6) first (the package's pooling) was 1e-6 off on an empty channel, just
    past the tolerance; `maps **= p` passed and then cubed the notebook's real map."""
    def lifted(maps, p):
        return np.mean(np.maximum(maps, 1e-6) ** p, axis=(1, 2)) ** (1 / p)

    def in_place(maps, p):
        maps **= p
        return maps.mean(axis=(1, 2)) ** (1 / p)

    assert check("gem_pool", lifted) is True
    capsys.readouterr()
    assert check("gem_pool", in_place) is False
    assert "wrote into `maps`" in capsys.readouterr().out


def test_every_alpha_query_expansion_case_lists_its_neighbours_nearest_first():
    """Review 25: the prompt promises neighbours nearest first; an answer that stops at the first neighbour of
    similarity <= 0 relies on it, rightly."""
    for query, neighbours, _ in EXERCISES["alpha_query_expansion"].cases:
        similarities = neighbours @ query
        assert np.all(np.diff(similarities) <= 1e-12), similarities

    def stops_at_the_first_unlike(query, neighbours, alpha):
        similarities = neighbours @ query
        kept = np.cumprod(similarities > 0).astype(bool)
        expanded = query + (similarities[kept] ** alpha) @ neighbours[kept]
        return expanded / np.linalg.norm(expanded)

    assert check("alpha_query_expansion", stops_at_the_first_unlike) is True


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_every_printed_solution_runs_pasted_alone_into_a_cell_and_passes(name, capsys):
    """Review 26: nb06.q3.solution() printed a MAP@K that calls ap_at_k, which no notebook defines, and annotations
    naming Sequence, which no notebook imports."""
    import linecache

    EXERCISES[name].solution()
    source = capsys.readouterr().out.split(":\n\n", 1)[1]
    linecache.cache[f"<pasted {name}>"] = (len(source), None, source.splitlines(True), f"<pasted {name}>")
    namespace = {"__name__": "__main__"}
    exec(compile(source, f"<pasted {name}>", "exec"), namespace)
    assert check(name, namespace[name]) is True, capsys.readouterr().out
