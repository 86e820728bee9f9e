"""Feature steps fitted on the gallery, without labels: L2 normalisation, fusion of several backbones, PCA whitening.

- :func:`fuse`: weighted concatenation of several backbones' normalised features, renormalised, so
  that the squared distance is the weighted mean of each backbone's squared distance (weights divided by
  their sum);
- :class:`PCAWhitening`: fitted on the gallery; subtracts the gallery's mean (what every photo shares),
  keeps the ``dim`` strongest principal directions and divides each by ``λ^(power/2)`` (``power=1`` full
  whitening, ``0`` plain PCA), then L2-normalises again: high-variance directions are shrunk and
  low-variance, more telling ones lifted (Jégou & Chum 2012).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def fuse(features: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """``[(N, D1), (N, D2), ...]`` → ``(N, D1 + D2 + ...)``: each part L2-normalised and scaled by
    ``sqrt(weight)``, the whole renormalised (equal weights by default)."""
    if not features:
        raise ValueError("fuse needs at least one feature array")
    weights = [1.0] * len(features) if weights is None else [float(w) for w in weights]
    if len(weights) != len(features) or min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"weights={weights}: give one non-negative weight per feature array, not all 0")
    if len({len(f) for f in features}) != 1:
        raise ValueError(f"feature arrays have different numbers of rows: {[len(f) for f in features]}")
    parts = [np.sqrt(w) * l2_normalise(f) for f, w in zip(features, weights)]
    return l2_normalise(np.concatenate(parts, axis=-1))


class PCAWhitening:
    """PCA whitening learned on a gallery: ``(N, D)`` → ``(N, dim)`` L2-normalised.

    ``dim``: components kept (``None``: all the gallery supports, at most ``N - 1``); ``power``: each
    component is divided by ``λ^(power/2)`` (1 = full whitening, 0.5 = "square-root" whitening,
    0 = PCA rotation only). ``eps`` (a fraction of the largest eigenvalue) keeps tiny components
    from exploding. Fit once on the gallery with :meth:`fit`; :meth:`transform` applies the same map
    to the gallery and to any later query. :meth:`state` / :meth:`from_state` save and restore it.
    """

    def __init__(self, dim: int | None = None, power: float = 1.0, eps: float = 1e-4):
        if dim is not None and int(dim) < 1:
            raise ValueError(f"dim={dim}: keep at least one component")
        if not 0 <= float(power) <= 2:
            raise ValueError(f"power={power}: use a value between 0 (no whitening) and 1 (full whitening)")
        self.dim = None if dim is None else int(dim)
        self.power = float(power)
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (D, dim), unit columns
        self.eigenvalues: np.ndarray | None = None  # (dim,), descending

    def __repr__(self) -> str:
        fitted = f"{self.components.shape[0]} -> {self.components.shape[1]}" if self.fitted else "not fitted"
        return f"PCAWhitening(dim={self.dim}, power={self.power:g}, {fitted})"

    @property
    def fitted(self) -> bool:
        return self.components is not None

    def fit(self, features: np.ndarray) -> "PCAWhitening":
        """Learn the mean and principal directions of ``(N, D)`` gallery ``features``; returns self."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"fit needs (N, D) features with N >= 2, got shape {x.shape}")
        rank = min(len(x) - 1, x.shape[1])
        dim = rank if self.dim is None else self.dim
        if dim > rank:
            raise ValueError(f"dim={dim} but {len(x)} gallery items of {x.shape[1]} dimensions give at most "
                             f"{rank} components: lower dim")
        self.mean = x.mean(axis=0)
        _, singular, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.eigenvalues = (singular[:dim] ** 2 / (len(x) - 1)).astype(np.float32)
        self.components = vt[:dim].T.astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``(Q, D)`` or ``(D,)`` features → whitened, L2-normalised ``(Q, dim)`` (or ``(dim,)``) float32."""
        if not self.fitted:
            raise RuntimeError("PCAWhitening is not fitted: call fit(gallery_features) first")
        x = np.asarray(features, dtype=np.float32)
        if x.shape[-1] != len(self.mean):
            raise ValueError(f"features have {x.shape[-1]} dimensions, the whitening was fitted on {len(self.mean)}")
        scale = (self.eigenvalues + self.eps * self.eigenvalues[0]) ** (-self.power / 2)
        return l2_normalise(((x - self.mean) @ self.components) * scale)

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        return self.fit(features).transform(features)

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to reapply the fitted map, as arrays (e.g. for ``np.savez``)."""
        if not self.fitted:
            raise RuntimeError("PCAWhitening is not fitted")
        return {"mean": self.mean, "components": self.components, "eigenvalues": self.eigenvalues,
                "power": np.float32(self.power), "eps": np.float32(self.eps)}

    @classmethod
    def from_state(cls, state) -> "PCAWhitening":
        whitening = cls(dim=len(state["eigenvalues"]), power=float(state["power"]), eps=float(state["eps"]))
        whitening.mean = np.asarray(state["mean"], dtype=np.float32)
        whitening.components = np.asarray(state["components"], dtype=np.float32)
        whitening.eigenvalues = np.asarray(state["eigenvalues"], dtype=np.float32)
        return whitening
