import numpy as np
import pytest

from cbir_tutorial.training.sampler import pk_batches

LABELS = np.array(["bag"] * 10 + ["shoe"] * 6 + ["watch"] * 3 + ["belt"] * 1 + ["cap"] * 8, dtype=object)


def test_each_batch_is_p_classes_of_k_images():
    batches = pk_batches(LABELS, 3, 4, seed=0)
    assert len(batches) == -(-27 // 12)  # the singleton "belt" is not counted
    for rows in batches:
        assert rows.shape == (12,) and rows.dtype == np.int64
        groups = LABELS[rows].reshape(3, 4)
        assert all(len(set(g)) == 1 for g in groups)  # K images of one class, class after class
        assert len({g[0] for g in groups}) == 3  # P distinct classes


def test_singletons_are_never_drawn_and_small_classes_repeat():
    rows = np.concatenate(pk_batches(LABELS, 4, 5, n_batches=30, seed=1))
    assert "belt" not in set(LABELS[rows])
    watch_batches = [b for b in pk_batches(LABELS, 4, 5, n_batches=30, seed=1) if "watch" in set(LABELS[b])]
    assert watch_batches
    for b in watch_batches:
        picked = b[LABELS[b] == "watch"]
        assert len(picked) == 5 and len(set(picked)) <= 3  # 3 watches for K = 5: drawn with replacement
    bag_rows = [b[LABELS[b] == "bag"] for b in pk_batches(LABELS, 4, 5, n_batches=30, seed=1)]
    assert all(len(set(r)) == len(r) for r in bag_rows if len(r))  # enough bags: no repeats


def test_batches_depend_only_on_seed_and_epoch():
    same = [pk_batches(LABELS, 2, 3, seed=5, epoch=2) for _ in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(*same))
    other_epoch = pk_batches(LABELS, 2, 3, seed=5, epoch=3)
    other_seed = pk_batches(LABELS, 2, 3, seed=6, epoch=2)
    assert not all(np.array_equal(a, b) for a, b in zip(same[0], other_epoch))
    assert not all(np.array_equal(a, b) for a, b in zip(same[0], other_seed))


def test_p_is_capped_and_bad_input_refused():
    batches = pk_batches(["a", "a", "b", "b"], 10, 2, n_batches=3)
    assert all(len(b) == 4 for b in batches)
    with pytest.raises(ValueError, match="positives"):
        pk_batches(["a", "b", "c"], 2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        pk_batches(LABELS, 0, 2)
