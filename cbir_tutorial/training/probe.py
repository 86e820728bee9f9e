"""The probe of LP-FT (linear probing, then fine-tuning): the embedding head fitted alone on the frozen
features before any fine-tuning, and whether a fine-tuned epoch beats it by more than validation's noise."""

from __future__ import annotations

import numpy as np


def fitted_probe(embedding_model, features: np.ndarray, labels, settings):
    """The :class:`~cbir_tutorial.models.projection_head.ProjectionHead` fitted on ``(N, F)`` frozen features and
    their ``(N,)`` labels (``settings.probe_steps`` steps at ``settings.learning_rate``), its two layers copied
    into ``embedding_model``'s head (``embedding_hidden``, ``embedding``). ``FloatingPointError`` naming the
    step when its loss is not finite: nothing is copied then."""
    from ..models.projection_head import ProjectionHead

    s = settings
    head = ProjectionHead(features.shape[1], s.embedding_dim, s.hidden_dim, seed=s.seed).fit(
        features, labels, steps=s.probe_steps, learning_rate=s.learning_rate)
    bad = np.flatnonzero(~np.isfinite(head.history))
    if len(bad):
        raise FloatingPointError(f"step {bad[0] + 1} of {s.probe_steps}: the loss is {head.history[bad[0]]}")
    for mine, its in (("embedding_hidden", "head_hidden"), ("embedding", "head_out")):
        embedding_model.get_layer(mine).set_weights(head.model.get_layer(its).get_weights())
    return head


def class_mean_proxies(embedded: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, D)`` float32 unit vectors: the mean of each class's ``(N, D)`` embeddings (``codes``: each
    row's class), Proxy-Anchor's proxies at the probe's start."""
    means = np.stack([embedded[codes == c].mean(axis=0) for c in range(n_classes)])
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def gain_over_probe(scores, probe_scores, level: float, seed: int = 0) -> dict:
    """How ``(Q,)`` validation scores beat the probe's on the same queries: the paired bootstrap interval
    (:func:`~cbir_tutorial.evaluation.comparison.paired_bootstrap`) of the mean difference at ``level`` and
    ``beats``, true when it lies above 0; with ``level`` 0, ``{"difference", "beats": difference > 0}``."""
    from ..evaluation.comparison import paired_bootstrap

    if not level:
        gain = float(np.mean(scores) - np.mean(probe_scores))
        return {"difference": gain, "beats": gain > 0}
    interval = paired_bootstrap(scores, probe_scores, level=level, seed=seed)
    return {**interval, "beats": interval["low"] > 0}
