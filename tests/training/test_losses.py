import numpy as np
import pytest

from cbir_tutorial.training.losses import (loss_from_word, multi_similarity_loss, proxy_anchor_loss,
                                           proxy_variable)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def proxy_anchor_reference(x, y, proxies, margin=0.1, alpha=32.0):
    """Proxy-Anchor written loop by loop from the paper's formula."""
    s = unit(x) @ unit(proxies).T
    pulls, pushes = [], []
    for p in range(len(proxies)):
        pos = [np.exp(-alpha * (s[i, p] - margin)) for i in range(len(x)) if y[i] == p]
        neg = [np.exp(alpha * (s[i, p] + margin)) for i in range(len(x)) if y[i] != p]
        if pos:
            pulls.append(np.log(1 + sum(pos)))
        pushes.append(np.log(1 + sum(neg)))
    return np.mean(pulls) + np.mean(pushes)


def multi_similarity_reference(x, y, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    """The authors' per-anchor loop (mining, then the two soft terms; anchors without pairs add 0)."""
    s = unit(x) @ unit(x).T
    total = 0.0
    for i in range(len(x)):
        pos = [s[i, j] for j in range(len(x)) if y[j] == y[i] and j != i]
        neg = [s[i, k] for k in range(len(x)) if y[k] != y[i]]
        if not pos or not neg:
            continue
        kept_neg = [v for v in neg if v + epsilon > min(pos)]
        kept_pos = [v for v in pos if v - epsilon < max(neg)]
        if not kept_neg or not kept_pos:
            continue
        total += np.log(1 + sum(np.exp(-alpha * (v - base)) for v in kept_pos)) / alpha
        total += np.log(1 + sum(np.exp(beta * (v - base)) for v in kept_neg)) / beta
    return total / len(x)


def batch(seed, labels, dim=8):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(labels), dim)).astype(np.float32), np.asarray(labels, dtype=np.int32)


LABELS = {
    "P x K": [0, 0, 1, 1, 2, 2, 3, 3],
    "uneven, one singleton": [0, 0, 0, 1, 1, 2, 4, 4, 4, 4],
    "all one class": [3, 3, 3, 3, 3],
    "all singletons": [0, 1, 2, 3],
}


@pytest.mark.parametrize("name", sorted(LABELS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proxy_anchor_matches_the_reference(name, seed):
    x, y = batch(seed, LABELS[name])
    proxies = np.random.default_rng(seed + 10).normal(size=(5, x.shape[1])).astype(np.float32)
    for margin, alpha in ((0.1, 32.0), (0.3, 8.0)):
        got = float(proxy_anchor_loss(x, y, proxies, margin=margin, alpha=alpha))
        assert got == pytest.approx(proxy_anchor_reference(x, y, proxies, margin, alpha), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("name", sorted(LABELS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_similarity_matches_the_reference(name, seed):
    x, y = batch(seed, LABELS[name])
    for options in ({}, {"alpha": 1.0, "beta": 10.0, "base": 0.0, "epsilon": 0.5}):
        got = float(multi_similarity_loss(x, y, **options))
        assert got == pytest.approx(multi_similarity_reference(x, y, **options), rel=1e-5, abs=1e-6)


def test_multi_similarity_is_zero_without_positives_or_negatives():
    for name in ("all one class", "all singletons"):
        x, y = batch(0, LABELS[name])
        assert float(multi_similarity_loss(x, y)) == 0.0


def test_losses_ignore_the_scale_of_embeddings():
    x, y = batch(4, LABELS["P x K"])
    proxies = np.random.default_rng(5).normal(size=(4, 8)).astype(np.float32)
    assert float(proxy_anchor_loss(3 * x, y, proxies)) == pytest.approx(float(proxy_anchor_loss(x, y, proxies)), rel=1e-5)
    assert float(multi_similarity_loss(3 * x, y)) == pytest.approx(float(multi_similarity_loss(x, y)), rel=1e-5)


def test_losses_are_lower_when_classes_are_separated():
    y = np.array([0, 0, 1, 1, 2, 2], dtype=np.int32)
    centres = np.eye(3, 8, dtype=np.float32)
    noise = np.random.default_rng(0).normal(scale=0.05, size=(6, 8)).astype(np.float32)
    clustered, shuffled = centres[y] + noise, centres[[0, 1, 2, 0, 1, 2]] + noise
    assert float(multi_similarity_loss(clustered, y)) < float(multi_similarity_loss(shuffled, y))
    assert float(proxy_anchor_loss(clustered, y, centres)) < float(proxy_anchor_loss(shuffled, y, centres))


def test_gradients_are_finite_with_masked_entries():
    import tensorflow as tf

    x, y = batch(1, LABELS["uneven, one singleton"])
    proxies = proxy_variable(5, 8, seed=3)
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = proxy_anchor_loss(x, y, proxies) + multi_similarity_loss(x, y)
    for g in tape.gradient(loss, [x, proxies.value]):
        assert g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0


def test_proxy_variable_shape_and_seed():
    a, b, c = proxy_variable(7, 16, seed=1), proxy_variable(7, 16, seed=1), proxy_variable(7, 16, seed=2)
    assert tuple(a.shape) == (7, 16) and str(a.dtype) == "float32"
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_loss_words():
    assert loss_from_word("Proxy_Anchor") == "proxy-anchor" and loss_from_word("ms") == "multi-similarity"
    with pytest.raises(ValueError, match="triplet"):
        loss_from_word("triplet")
