r"""Proxy-Anchor on a 2-D toy: a few categories' embeddings and their proxies, before and after some steps.

The points stand for a batch's embeddings and are free variables here (in training a network produces
them and the gradient moves its weights); the proxies start as the package's
:func:`~cbir_tutorial.training.losses.proxy_variable` draws them. Each step is the trainer's optimiser,
:class:`~cbir_tutorial.training.learner.GroupAdamW`, with the proxies learning ``proxy_lr_scale`` times faster
(:class:`~cbir_tutorial.training.settings.TrainingSettings`' default), on the gradient of the package's
:func:`~cbir_tutorial.training.losses.proxy_anchor_loss` (its default margin and scale), so the picture shows
what that loss asks for: every point pulled towards its category's proxy, pushed from the others. Importing
this module imports no TensorFlow; :func:`proxy_toy` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

#: Number of steps of :func:`proxy_toy` and the points' learning rate (the proxies': ``proxy_lr_scale`` times it).
STEPS, LEARNING_RATE = 30, 0.01
#: The toy's default seed: of seeds 0..7, the draw whose points start furthest from their own proxies (mean
#: cosine about 0), for a clear picture; other seeds work too, some ending with a point nearer another proxy.
TOY_SEED = 4


def toy_embeddings(seed: int = TOY_SEED, n_classes: int = 3, per_class: int = 4,
                   spread: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """``(points, labels)``: ``(n_classes * per_class, 2)`` float32 unit vectors, category ``c``'s at angles
    drawn uniformly within ``±spread`` degrees of a centre (the centres ``360 / n_classes`` degrees apart, turned
    by a random angle), and their ``(N,)`` int32 categories ``0..n_classes-1``; the same ``seed``, the same toy."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 360) + np.arange(n_classes) * 360 / n_classes
    angles = np.deg2rad(np.repeat(centres, per_class) + rng.uniform(-spread, spread, n_classes * per_class))
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    return points, np.repeat(np.arange(n_classes), per_class).astype(np.int32)


def unit(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` ``(n, D)`` scaled to length 1 (the directions the loss's cosines see)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class ProxyToy:
    """A Proxy-Anchor run on 2-D points: ``points_before``/``points_after`` ``(N, 2)`` and
    ``proxies_before``/``proxies_after`` ``(C, 2)`` float32 (raw, not normalised), ``labels`` ``(N,)`` int,
    ``losses`` ``(steps + 1,)``: the loss before each step, then after the last; ``learning_rate``/
    ``proxy_learning_rate``: the points' and the proxies' rates."""

    points_before: np.ndarray
    points_after: np.ndarray
    proxies_before: np.ndarray
    proxies_after: np.ndarray
    labels: np.ndarray
    losses: np.ndarray
    learning_rate: float
    proxy_learning_rate: float

    @property
    def steps(self) -> int:
        return len(self.losses) - 1

    def own_cosines(self, after: bool = True) -> np.ndarray:
        """``(N,)`` cosine of each point with its own category's proxy, after the steps (or before)."""
        points, proxies = (self.points_after, self.proxies_after) if after else (self.points_before,
                                                                                 self.proxies_before)
        return np.sum(unit(points) * unit(proxies)[self.labels], axis=1)

    def other_cosines(self, after: bool = True) -> np.ndarray:
        """``(N,)`` highest cosine of each point with another category's proxy, after the steps (or before)."""
        points, proxies = (self.points_after, self.proxies_after) if after else (self.points_before,
                                                                                 self.proxies_before)
        cosines = unit(points) @ unit(proxies).T
        cosines[np.arange(len(cosines)), self.labels] = -np.inf
        return cosines.max(axis=1)


def proxy_toy(points: np.ndarray | None = None, labels=None, proxies: np.ndarray | None = None, *,
              steps: int = STEPS, learning_rate: float = LEARNING_RATE, seed: int = TOY_SEED) -> ProxyToy:
    """``steps`` of the trainer's :class:`~cbir_tutorial.training.learner.GroupAdamW` moving ``points`` ``(N, D)``
    (at ``learning_rate``) and ``proxies`` ``(C, D)`` (at ``TrainingSettings().proxy_lr_scale`` times it, as in
    training) together down the package's :func:`~cbir_tutorial.training.losses.proxy_anchor_loss` of the points
    with their ``labels`` ``(N,)`` (ints ``0..C-1``). Defaults: :func:`toy_embeddings` of ``seed``, and proxies
    from :func:`~cbir_tutorial.training.losses.proxy_variable` with ``seed``. Returns a :class:`ProxyToy`."""
    from ..models.runtime import tensorflow_module
    from ..training.learner import GroupAdamW
    from ..training.losses import proxy_anchor_loss, proxy_variable
    from ..training.settings import TrainingSettings

    tf = tensorflow_module()
    if points is None:
        points, default_labels = toy_embeddings(seed)
        labels = default_labels if labels is None else labels
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    points = np.asarray(points, dtype=np.float32)
    if len(labels) != len(points):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    if proxies is None:
        proxies = proxy_variable(int(labels.max()) + 1, points.shape[1], seed=seed).numpy()
    proxies = np.asarray(proxies, dtype=np.float32)
    moving_points, moving_proxies = tf.Variable(points), tf.Variable(proxies)
    scale = TrainingSettings().proxy_lr_scale
    optimiser = GroupAdamW(learning_rate, factors=[(moving_proxies, scale)])
    losses = []
    for _ in range(int(steps)):
        with tf.GradientTape() as tape:
            loss = proxy_anchor_loss(moving_points, labels, moving_proxies)
        gradients = tape.gradient(loss, [moving_points, moving_proxies])
        optimiser.apply_gradients(zip(gradients, [moving_points, moving_proxies]))
        losses.append(float(loss))
    losses.append(float(proxy_anchor_loss(moving_points, labels, moving_proxies)))
    return ProxyToy(points, moving_points.numpy(), proxies, moving_proxies.numpy(), labels,
                    np.asarray(losses, dtype=np.float32), float(learning_rate), float(learning_rate * scale))


def _circle(ax, title: str) -> None:
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.8", lw=1, zorder=0)
    ax.set_xlim(-1.25, 1.25)
    ax.set_ylim(-1.25, 1.25)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9.5)


def proxies_figure(toy: ProxyToy | None = None) -> Figure:
    """The toy's directions on the unit circle before (left) and after (right) its steps: points as dots, each
    category's proxy as a star of its colour, a grey line from each point to its own proxy; below, the loss at
    each step. ``toy``: a :func:`proxy_toy` run (default: ``proxy_toy()``)."""
    toy = proxy_toy() if toy is None else toy
    colours = [f"C{c % 10}" for c in range(int(toy.labels.max()) + 1)]
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[2.6, 1.0])
    before, after = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    curve = fig.add_subplot(grid[1, :])
    for ax, points, proxies, title, when in (
            (before, toy.points_before, toy.proxies_before, "before", False),
            (after, toy.points_after, toy.proxies_after, f"after {toy.steps} steps", True)):
        _circle(ax, f"{title}\nmean cosine to own proxy {toy.own_cosines(when).mean():.2f}")
        points, proxies = unit(points), unit(proxies)
        for point, label in zip(points, toy.labels):
            ax.plot(*np.stack([point, proxies[label]]).T, color="0.75", lw=0.8, zorder=1)
        ax.scatter(*points.T, s=28, c=[colours[c] for c in toy.labels], zorder=3)
        ax.scatter(*proxies.T, marker="*", s=220, c=colours[:len(proxies)], edgecolors="black", linewidths=0.7,
                   zorder=4)
    for c, colour in enumerate(colours):
        before.scatter([], [], c=colour, s=28, label=f"category {c}")
    before.scatter([], [], marker="*", s=120, c="white", edgecolors="black", label="its proxy")
    fig.legend(*before.get_legend_handles_labels(), loc="outside upper center", ncol=len(colours) + 1, fontsize=8.5,
               frameon=False, handletextpad=0.1, columnspacing=0.9)
    curve.plot(np.arange(len(toy.losses)), toy.losses, color="black", lw=1.4)
    curve.set_xlabel("step", fontsize=9)
    curve.set_ylabel("Proxy-Anchor loss", fontsize=9)
    curve.tick_params(labelsize=8)
    curve.set_ylim(bottom=0)
    return fig
