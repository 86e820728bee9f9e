r"""Metric-learning losses: pure functions of a batch of embeddings and its labels (``keras.ops``).

Two families, as the literature sorts them:

* **proxy-based** - :func:`proxy_anchor_loss` (Kim et al. 2020): one learnable vector per class (a proxy);
  every image is pulled to its class's proxy and pushed from the others. It sees all classes at each step
  through the proxies, so it converges in few epochs.
* **pair-based** - :func:`multi_similarity_loss` (Wang et al. 2019): image-to-image pairs of the batch,
  mined for the informative ones. It needs positives in the batch: sample P classes × K images
  (:mod:`cbir_tutorial.training.sampler`).

Both take ``embeddings`` ``(B, D)`` (L2-normalised here, whatever comes in; computed in float32 even under
mixed precision) and ``labels`` ``(B,)`` int class codes, and return a scalar float32 tensor.
Similarities are cosines, ``s(a, b) = a·b / (‖a‖ ‖b‖)``.
"""

from __future__ import annotations

from ..models.runtime import keras_module

LOSSES = ("proxy-anchor", "multi-similarity")
#: Stands in for "-inf" in masked log-sum-exps: exp of it is 0 and its gradient is not NaN.
_MASKED = -1e9


def _normalised(x):
    ops = keras_module().ops
    x = ops.cast(x, "float32")
    return x / ops.maximum(ops.sqrt(ops.sum(x * x, axis=-1, keepdims=True)), 1e-12)


def _log1p_sum_exp(logits, mask, axis):
    r"""``log(1 + Σ_{mask} exp(logits))`` along ``axis``, computed stably (0 where nothing is masked in)."""
    ops = keras_module().ops
    masked = ops.where(mask, logits, _MASKED)
    zeros = ops.zeros_like(ops.sum(masked, axis=axis, keepdims=True))
    return ops.logsumexp(ops.concatenate([zeros, masked], axis=axis), axis=axis)


def proxy_anchor_loss(embeddings, labels, proxies, *, margin: float = 0.1, alpha: float = 32.0):
    r"""Proxy-Anchor loss (Kim et al., CVPR 2020).

    ``embeddings`` ``(B, D)``, ``labels`` ``(B,)`` int in ``0..C-1``, ``proxies`` ``(C, D)`` (one learnable
    vector per class). With ``s(x, p)`` the cosine of image ``x`` and proxy ``p``, ``X_p^+`` the batch's images
    of class ``p``, ``X_p^-`` the others, ``P^+`` the proxies with at least one image in the batch and ``P``
    all ``C`` proxies:

    .. math:: \ell = \frac{1}{|P^+|} \sum_{p \in P^+} \log\Big(1 + \sum_{x \in X_p^+} e^{-\alpha (s(x,p) - \delta)}\Big)
                   + \frac{1}{|P|} \sum_{p \in P} \log\Big(1 + \sum_{x \in X_p^-} e^{\alpha (s(x,p) + \delta)}\Big)

    ``margin`` is δ, ``alpha`` the scale α. Returns a float32 scalar.
    """
    ops = keras_module().ops
    similarity = ops.matmul(_normalised(embeddings), ops.transpose(_normalised(proxies)))  # (B, C)
    n_classes = ops.shape(similarity)[1]
    positive = ops.cast(ops.one_hot(ops.cast(labels, "int32"), n_classes), "bool")
    pulls = _log1p_sum_exp(-alpha * (similarity - margin), positive, axis=0)  # (C,)
    pushes = _log1p_sum_exp(alpha * (similarity + margin), ops.logical_not(positive), axis=0)
    present = ops.cast(ops.any(positive, axis=0), "float32")
    return ops.sum(pulls * present) / ops.maximum(ops.sum(present), 1.0) + ops.mean(pushes)


def multi_similarity_loss(embeddings, labels, *, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                          epsilon: float = 0.1):
    r"""Multi-similarity loss with its pair mining (Wang et al., CVPR 2019).

    ``embeddings`` ``(B, D)``, ``labels`` ``(B,)`` int. With ``S_ij`` the cosine of images ``i`` and ``j``,
    anchor ``i`` keeps the positives ``j`` (same label, ``j ≠ i``) with ``S_ij - ε < max_{k neg} S_ik`` and the
    negatives ``k`` with ``S_ik + ε > min_{j pos} S_ij``: each pair compared with the hardest pair of the other
    kind, give or take ε (the hardest negative has the highest cosine, the hardest positive the lowest), and

    .. math:: \ell_i = \frac{1}{\alpha} \log\Big(1 + \sum_{j \in \tilde P_i} e^{-\alpha (S_{ij} - \lambda)}\Big)
                     + \frac{1}{\beta} \log\Big(1 + \sum_{k \in \tilde N_i} e^{\beta (S_{ik} - \lambda)}\Big),
              \qquad \ell = \frac{1}{B} \sum_i \ell_i

    ``base`` is λ, ``epsilon`` ε. As in the authors' code, an anchor whose kept positives or kept negatives
    are empty adds 0 (so a batch of one class, or of singletons, gives 0) and the mean is over all B anchors.
    Returns a float32 scalar.
    """
    ops = keras_module().ops
    x = _normalised(embeddings)
    similarity = ops.matmul(x, ops.transpose(x))  # (B, B)
    labels = ops.cast(labels, "int32")
    same = ops.equal(labels[:, None], labels[None, :])
    not_self = ops.logical_not(ops.cast(ops.eye(ops.shape(x)[0]), "bool"))
    positive = ops.logical_and(same, not_self)
    negative = ops.logical_not(same)
    hardest_negative = ops.max(ops.where(negative, similarity, -2.0), axis=1, keepdims=True)
    hardest_positive = ops.min(ops.where(positive, similarity, 2.0), axis=1, keepdims=True)
    kept_positive = ops.logical_and(positive, similarity - epsilon < hardest_negative)
    kept_negative = ops.logical_and(negative, similarity + epsilon > hardest_positive)
    pulls = _log1p_sum_exp(-alpha * (similarity - base), kept_positive, axis=1) / alpha
    pushes = _log1p_sum_exp(beta * (similarity - base), kept_negative, axis=1) / beta
    counted = ops.logical_and(ops.any(kept_positive, axis=1), ops.any(kept_negative, axis=1))
    return ops.mean(ops.where(counted, pulls + pushes, 0.0))


def proxy_variable(n_classes: int, dim: int, seed: int = 0):
    """A ``(n_classes, dim)`` float32 ``keras.Variable`` of learnable proxies, He-normal initialised with std
    ``sqrt(2 / n_classes)`` (the authors' ``kaiming_normal_(mode="fan_out")``), for :func:`proxy_anchor_loss`."""
    keras = keras_module()
    values = keras.initializers.HeNormal(seed=seed)((n_classes, dim))
    return keras.Variable(values, dtype="float32", name="proxies")


def loss_from_word(word: str) -> str:
    """The canonical loss name for ``word`` (``"proxy-anchor"``, ``"proxy_anchor"``, ``"ms"``...)."""
    key = str(word).strip().lower().replace("_", "-")
    key = {"ms": "multi-similarity", "multisimilarity": "multi-similarity", "pa": "proxy-anchor",
           "proxyanchor": "proxy-anchor"}.get(key, key)
    if key not in LOSSES:
        raise ValueError(f"loss {word!r} is not supported; use one of: {', '.join(LOSSES)}")
    return key
