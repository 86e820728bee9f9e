"""Solutions of the notebooks' checked exercises (see :mod:`cbir_tutorial.lessons.exercises`).

Kept out of the notebooks on purpose: a learner who wants one reads it here, or runs the notebooks with
``CBIR_TUTORIAL_SOLUTIONS=1``. Each function is named after its exercise and written the way a learner
would, with numpy only, so it can be read as a worked answer.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


# notebook 1: the catalogue
def query_mask(labels: Sequence[str]) -> np.ndarray:
    """``(N,)`` bool: True for the products that can be queries (labelled, and not alone in their category)."""
    labels = np.asarray(labels, dtype=object)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (labels != "") & (counts[inverse] >= 2)


def chance_precision(labels: Sequence[str]) -> float:
    """Expected precision@1 of a random result list, averaged over the queries of :func:`query_mask`.

    The first result of a query of category ``c`` is relevant with probability ``(n_c - 1) / (N - 1)``.
    Self-contained (exercise 1's mask is computed again here), so the body can be copied into a notebook.
    """
    labels = np.asarray(labels, dtype=object)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sizes = counts[inverse]  # n_c of each product's category
    queries = (labels != "") & (sizes >= 2)  # exercise 1's mask
    return float(np.mean((sizes[queries] - 1) / (len(labels) - 1)))


# notebook 2: convolution
def conv3x3(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``(H, W)`` stride-1 "convolution" of a 2-D ``image`` by a 3x3 ``kernel`` with 'same' zero padding, as
    ``Conv2D(padding="same")`` computes it (cross-correlation: the kernel is not flipped)."""
    h, w = image.shape
    padded = np.pad(image, 1)  # one ring of zeros: the kernel centred on a border pixel reaches one pixel out
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            out[i, j] = (padded[i:i + 3, j:j + 3] * kernel).sum()
    return out


def output_size(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output length along one axis of ``n`` pixels, with ``padding`` zeros added on each side."""
    return (n + 2 * padding - kernel) // stride + 1


def conv_parameters(kernel: int, c_in: int, c_out: int, bias: bool = True) -> int:
    """Trainable parameters of a ``kernel`` x ``kernel`` Conv2D from ``c_in`` to ``c_out`` channels."""
    return kernel * kernel * c_in * c_out + (c_out if bias else 0)


# notebook 3: transfer learning
def global_average_pool(maps: np.ndarray) -> np.ndarray:
    """``(B, H, W, C)`` feature maps -> ``(B, C)``: each map averaged over its positions."""
    return maps.mean(axis=(1, 2))


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """``(N, D)`` -> ``(N, D)``, every row scaled to length 1; a row of zeros has no direction and stays zeros."""
    lengths = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(lengths > 0, lengths, 1.0)  # a zero row: 0 / 1 = 0, not 0 / 0 = NaN


# notebook 4: architectures
def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Width along one axis of the input window one output of stacked ``(kernel, stride)`` layers depends on
    (first pixel to last, gaps included)."""
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def projection_residual(x: np.ndarray, branch: Callable[[np.ndarray], np.ndarray], w: np.ndarray,
                        stride: int) -> np.ndarray:
    """A residual block whose shortcut is a 1x1 convolution of stride ``stride`` (weights ``w``,
    ``(C_in, C_out)``, no bias) on one ``(H, W, C_in)`` map: ``relu(branch(x) + x[::s, ::s] @ w)``.
    The 1x1 convolution keeps the positions 0, s, 2s... and mixes each one's channels."""
    shortcut = x[::stride, ::stride] @ w
    return np.maximum(branch(x) + shortcut, 0)


def separable_parameters(kernel: int, c_in: int, c_out: int) -> int:
    """Weights of a depthwise separable convolution without bias: depthwise ``k*k*c_in`` + pointwise ``c_in*c_out``."""
    return kernel * kernel * c_in + c_in * c_out


# notebook 5: retrieval
def euclidean_distances(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``(M, D)`` and ``(N, D)`` -> ``(M, N)`` Euclidean distances, through one matrix product."""
    squared = (queries ** 2).sum(axis=1)[:, None] - 2 * queries @ gallery.T + (gallery ** 2).sum(axis=1)[None]
    return np.sqrt(np.maximum(squared, 0))


def cosine_top_k(gallery: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """``(k,)`` rows of ``gallery`` (N, D) with the highest cosine similarity to ``query`` (D,), best first."""
    similarity = (gallery @ query) / (np.linalg.norm(gallery, axis=1) * np.linalg.norm(query))
    return np.argsort(-similarity, kind="stable")[:k]


# notebook 6: evaluation
def precision_at_k(relevant: Sequence[int], k: int) -> float:
    """Share of relevant results among the first ``k`` of one result list (0/1 per rank)."""
    return float(np.sum(relevant[:k]) / k)


def ap_at_k(ranks: Sequence[int], n_relevant: int, k: int) -> float:
    """AP@K of one result list given the ranks (1 = first, increasing) of its relevant results: the
    i-th relevant result, at rank r_i <= k, has precision@r_i = i / r_i; their sum over ``min(k, n_relevant)``."""
    ranks = np.asarray(ranks, dtype=float)
    ranks = ranks[ranks <= k]
    if n_relevant == 0:
        return 0.0
    return float(np.sum(np.arange(1, len(ranks) + 1) / ranks) / min(k, n_relevant))


def map_at_k(hits: np.ndarray, n_relevant: Sequence[int], k: int) -> float:
    """MAP@K: the mean of :func:`ap_at_k` over the queries (rows of ``hits``, 0/1 per rank)."""
    return float(np.mean([ap_at_k(np.flatnonzero(row) + 1, r, k) for row, r in zip(hits, n_relevant)]))


# notebook 7: the explorer
def filtered_top_k(distances: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Catalogue rows of the ``k`` nearest products among the ``allowed`` ones, nearest first (fewer than ``k``
    when fewer pass the filter, none when none does)."""
    rows = np.flatnonzero(allowed)
    return rows[np.argsort(distances[rows], kind="stable")[:k]]


def precision_curve(relevant: Sequence[int]) -> np.ndarray:
    """``(K,)`` precision@1 ... precision@K of one result list."""
    relevant = np.asarray(relevant, dtype=float)
    return np.cumsum(relevant) / np.arange(1, len(relevant) + 1)


# notebook 8: going further
def gem_pool(maps: np.ndarray, p: float) -> np.ndarray:
    """``(B, H, W, C)`` non-negative feature maps -> ``(B, C)`` generalised mean: ``(mean of x^p)^(1/p)``."""
    return np.mean(maps ** p, axis=(1, 2)) ** (1.0 / p)


def alpha_query_expansion(query: np.ndarray, neighbours: np.ndarray, alpha: float) -> np.ndarray:
    """``(D,)`` unit query and its ``(n, D)`` unit nearest neighbours -> ``(D,)`` unit expanded query:
    the query plus each neighbour weighted by ``max(similarity, 0) ** alpha``, scaled back to length 1."""
    weights = np.maximum(neighbours @ query, 0.0) ** alpha
    expanded = query + weights @ neighbours
    return expanded / np.linalg.norm(expanded)


# notebook 9: scaling up
def ann_recall(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean over queries of the share of the exact top-k rows (``reference``, ``(Q, k)``) that an approximate
    index's answer (``found``, ``(Q, k)``) also holds, in any order."""
    return float(np.mean([len(set(f) & set(r)) / len(r) for f, r in zip(found, reference)]))


def int8_roundtrip(features: np.ndarray) -> np.ndarray:
    """``(N, D)`` floats -> ``(N, D)`` floats after int8 scalar quantisation and back: per column, offset
    ``(max + min) / 2`` and scale ``(max - min) / 254`` (the two equations ``offset - 127 scale = min`` and
    ``offset + 127 scale = max``; a column of equal values, range 0, takes scale 1: its codes are all 0, decoded
    to the offset), codes ``rint((x - offset) / scale)`` in -127..127, decoded as ``offset + scale * code``."""
    low, high = features.min(axis=0), features.max(axis=0)
    offset, scale = (high + low) / 2, (high - low) / 254
    scale = np.where(scale > 0, scale, 1.0)  # a constant column: any positive scale; its codes are 0
    codes = np.clip(np.rint((features - offset) / scale), -127, 127)
    return offset + scale * codes


# notebook 10: teach it your catalogue
def multi_similarity_loss(embeddings: np.ndarray, labels: Sequence[int], alpha: float = 2.0, beta: float = 50.0,
                          base: float = 0.5, epsilon: float = 0.1) -> float:
    """Multi-similarity loss of a batch: ``embeddings`` ``(B, D)`` (any length), ``labels`` ``(B,)``.

    Cosines ``S``; anchor ``i`` keeps its positives with ``S_ij - epsilon < `` its hardest negative and its
    negatives with ``S_ik + epsilon > `` its hardest positive (the lowest cosine); its loss is
    ``log(1 + sum exp(-alpha (S_ij - base))) / alpha + log(1 + sum exp(beta (S_ik - base))) / beta``, or 0
    when either kept set is empty. The mean is over all ``B`` anchors."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = x @ x.T
    labels = np.asarray(labels)
    same = labels[:, None] == labels[None, :]
    positive = same & ~np.eye(len(labels), dtype=bool)
    losses = np.zeros(len(labels))
    for i in range(len(labels)):
        pos, neg = similarity[i, positive[i]], similarity[i, ~same[i]]
        if len(pos) == 0 or len(neg) == 0:
            continue
        pos_kept, neg_kept = pos[pos - epsilon < neg.max()], neg[neg + epsilon > pos.min()]
        if len(pos_kept) == 0 or len(neg_kept) == 0:
            continue
        losses[i] = (np.log1p(np.exp(-alpha * (pos_kept - base)).sum()) / alpha
                     + np.log1p(np.exp(beta * (neg_kept - base)).sum()) / beta)
    return float(losses.mean())


def instance_recall_at_k(found_items: np.ndarray, query_items: Sequence, k: int) -> float:
    """Share of the queries whose own item is among their first ``k`` results: ``found_items`` ``(Q, K >= k)``
    item ids of the results, nearest first; ``query_items`` ``(Q,)`` the item each query photo shows."""
    top = np.asarray(found_items)[:, :k]
    return float(np.mean((top == np.asarray(query_items)[:, None]).any(axis=1)))
