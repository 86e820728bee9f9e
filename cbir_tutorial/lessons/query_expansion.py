r"""Database-side augmentation (DBA) and α-query expansion (αQE) drawn on a 2-D toy.

The toy catalogue is a few unit vectors on an arc of the unit circle, in small clusters (a category
each), and one query. Every move drawn is what the package's own
:class:`~cbir_tutorial.search.expansion.Expansion` returns for those vectors (through
:func:`~cbir_tutorial.search.expansion.expanded_search`, with a named recipe's settings): DBA replaces each
gallery vector by its sum with its ``dba_n`` nearest, weighted by ``max(s, 0)^α`` and renormalised; αQE does the
same to the query over what the index stores, then searches again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..search.backends import make_index
from ..search.expansion import ALPHA, expanded_search
from ..search.recipes import RECIPES

#: The toy's categories and the angles (degrees) of their products: a tight cluster, a looser one whose
#: nearest product sits close to the query, and one further away.
TOY_ANGLES: dict[str, tuple[float, ...]] = {"a": (30.0, 38.0, 44.0), "b": (61.0, 73.0, 82.0),
                                             "c": (100.0, 106.0, 111.0)}
#: The query's angle (degrees) and category: nearer to b's first product than to a's last, yet an "a". The toy is
#: built to show the mechanism (expansion pulls the query back to its own category), not the typical gain, which
#: notebook 8 measures on the catalogue.
QUERY_ANGLE, QUERY_CATEGORY = 53.0, "a"
COLOURS = {"a": "C0", "b": "C1", "c": "C2"}


def unit_vectors(degrees) -> np.ndarray:
    """``(n, 2)`` float32 unit vectors at ``degrees`` (counter-clockwise from the x axis)."""
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64).reshape(-1))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def degrees_of(vectors: np.ndarray) -> np.ndarray:
    """``(n,)`` angles in degrees of ``(n, 2)`` vectors, in -180..180."""
    vectors = np.atleast_2d(vectors)
    return np.rad2deg(np.arctan2(vectors[:, 1], vectors[:, 0]))


@dataclass(frozen=True)
class ToyVectors:
    """A 2-D toy catalogue: ``gallery`` ``(N, 2)`` float32 unit vectors named ``names`` (``"a1"``...) with their
    ``categories`` ``(N,)``, and a ``(2,)`` unit ``query`` of ``query_category``."""

    gallery: np.ndarray
    names: tuple[str, ...]
    categories: np.ndarray
    query: np.ndarray
    query_category: str


def toy_vectors(seed: int = 0, jitter: float = 1.0) -> ToyVectors:
    """The toy of :data:`TOY_ANGLES` and :data:`QUERY_ANGLE`, each gallery angle moved by a uniform draw in
    ``±jitter`` degrees from ``seed`` (the same seed, the same vectors; ``jitter=0``: the angles as written)."""
    rng = np.random.default_rng(seed)
    names = tuple(f"{category}{i + 1}" for category, angles in TOY_ANGLES.items() for i in range(len(angles)))
    categories = np.array([name[0] for name in names])
    angles = np.concatenate([angles for angles in TOY_ANGLES.values()])
    angles = angles + rng.uniform(-jitter, jitter, size=len(angles))
    return ToyVectors(unit_vectors(angles), names, categories, unit_vectors(QUERY_ANGLE)[0], QUERY_CATEGORY)


@dataclass(frozen=True)
class ExpansionMoves:
    """What DBA and αQE do to a :class:`ToyVectors` (gallery ids are its rows ``0..N-1``).

    ``augmented``: ``(N, 2)`` the vectors the index stores after DBA (the gallery itself without DBA);
    ``expanded_query``: ``(2,)`` the query after αQE; ``query_neighbours``: ``(qe_n,)`` ids of the stored vectors
    αQE added to it; ``before``/``after``: ``(k,)`` ids nearest first, searching the raw gallery with the raw
    query / searching through the expansion (DBA's index, αQE's query).
    """

    toy: ToyVectors
    recipe: str
    dba_n: int
    qe_n: int
    alpha: float
    augmented: np.ndarray
    expanded_query: np.ndarray
    query_neighbours: np.ndarray
    before: np.ndarray
    after: np.ndarray

    def ranking(self, ids) -> str:
        """``ids`` as the toy's names, nearest first (``"b1 a3 a2"``)."""
        return " ".join(self.toy.names[i] for i in ids)


def expansion_moves(toy: ToyVectors | None = None, recipe: str = "single", *, k: int = 5) -> ExpansionMoves:
    """DBA and αQE on ``toy`` (default :func:`toy_vectors`) with the ``dba_n``/``qe_n`` of the named ``recipe``
    in :data:`~cbir_tutorial.search.recipes.RECIPES` and α = :data:`~cbir_tutorial.search.expansion.ALPHA`,
    all computed by the package's :func:`~cbir_tutorial.search.expansion.expanded_search`; rankings of ``k``."""
    toy = toy_vectors() if toy is None else toy
    post = RECIPES[recipe].post
    ids = np.arange(len(toy.gallery), dtype=np.int64)
    search = expanded_search(toy.gallery, ids, dba_n=post.dba_n, qe_n=post.qe_n, alpha=ALPHA)
    query = toy.query[None]
    k = min(k, len(ids))
    neighbours = search.index.search(query, post.qe_n)[1][0] if post.qe_n else np.zeros(0, dtype=np.int64)
    return ExpansionMoves(
        toy, recipe, post.dba_n, post.qe_n, ALPHA,
        augmented=search.expansion.stored(toy.gallery, ids),
        expanded_query=search.expansion.expanded_queries(search.index, query)[0],
        query_neighbours=neighbours[neighbours >= 0],
        before=make_index("exact", toy.gallery, ids).search(query, k)[1][0],
        after=search.search(query, k)[1][0])


def _arc(ax, angles: np.ndarray) -> None:
    """The unit circle's arc a little past ``angles`` (degrees), in light grey, and the axes around it."""
    t = np.deg2rad(np.linspace(angles.min() - 7, angles.max() + 7, 200))
    xs, ys = np.cos(t), np.sin(t)
    ax.plot(xs, ys, color="0.8", lw=1, zorder=0)
    ax.set_xlim(xs.min() - 0.1, xs.max() + 0.12)
    ax.set_ylim(ys.min() - 0.04, ys.max() + 0.12)
    ax.set_aspect("equal")
    ax.axis("off")


def _names(ax, vectors: np.ndarray, names, colours, radius: float = 1.1) -> None:
    """``names`` just outside the circle, on the rays through ``vectors``; vectors within 1 degree of each other
    share one label (``"a2 a3"``)."""
    angles = degrees_of(vectors)
    order = np.argsort(angles, kind="stable")
    groups = [[order[0]]]
    for i in order[1:]:
        (groups[-1].append(i) if angles[i] - angles[groups[-1][0]] < 1.0 else groups.append([i]))
    for group in groups:
        angle = np.deg2rad(angles[group].mean())
        ax.text(radius * np.cos(angle), radius * np.sin(angle), " ".join(sorted(str(names[i]) for i in group)),
                ha="center", va="center", fontsize=9, color=colours[group[0]])


def _arrow(ax, start: np.ndarray, end: np.ndarray, colour: str, gid: str) -> None:
    ax.annotate("", xy=tuple(end), xytext=tuple(start), gid=gid,
                arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.7, "shrinkA": 3, "shrinkB": 0,
                            "mutation_scale": 14})


def dba_alpha_qe_figure(moves: ExpansionMoves | None = None) -> Figure:
    """Two panels on the unit circle's arc, for :func:`expansion_moves` (default: the toy with ``"single"``).

    Top, DBA: each gallery vector (hollow) and an arrow (gid ``"dba"``) to what the index stores (filled); the
    query (hollow star) where it is.
    Bottom, αQE over those stored vectors: the query (hollow star), rings round the ``qe_n`` neighbours it adds,
    an arrow (gid ``"aqe"``) to the expanded query (filled star), and the first results before and after.
    """
    moves = expansion_moves() if moves is None else moves
    toy = moves.toy
    colours = [COLOURS.get(c, "C7") for c in toy.categories]
    query_colour = COLOURS.get(toy.query_category, "C7")
    angles = np.concatenate([degrees_of(toy.gallery), degrees_of(moves.augmented), degrees_of(toy.query)])
    fig = Figure(figsize=(5.6, 6.2), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for ax in (top, bottom):
        _arc(ax, angles)

    top.scatter(*toy.gallery.T, s=44, facecolors="white", edgecolors=colours, linewidths=1.4, zorder=2)
    top.scatter(*moves.augmented.T, s=30, c=colours, zorder=3)
    top.scatter(*toy.query, marker="*", s=200, facecolors="white", edgecolors=query_colour, linewidths=1.4, zorder=4)
    _names(top, np.vstack([toy.gallery, toy.query]), [*toy.names, "query"], [*colours, query_colour])
    for i in range(len(toy.gallery)):
        if np.abs(moves.augmented[i] - toy.gallery[i]).max() > 1e-6:
            _arrow(top, toy.gallery[i], moves.augmented[i], colours[i], "dba")
    nearest = "its nearest" if moves.dba_n == 1 else f"its {moves.dba_n} nearest"
    top.set_title(f"DBA (n={moves.dba_n}, α={moves.alpha:g}): each product moves towards {nearest}\n"
                  "hollow: its vector; filled: what the index stores", fontsize=9.5)
    for category, colour in COLOURS.items():
        if category in set(toy.categories):
            top.scatter([], [], c=colour, s=30, label=f"category {category}")
    top.legend(loc="lower center", ncol=3, fontsize=9, frameon=False, handletextpad=0.1, columnspacing=1.0)

    bottom.scatter(*moves.augmented.T, s=30, c=colours, zorder=3)
    _names(bottom, moves.augmented, toy.names, colours)
    bottom.scatter(*moves.augmented[moves.query_neighbours].T, s=150, facecolors="none", edgecolors="black",
                   linewidths=1.0, zorder=2)
    bottom.scatter(*toy.query, marker="*", s=200, facecolors="white", edgecolors=query_colour, linewidths=1.4,
                   zorder=4)
    bottom.scatter(*moves.expanded_query, marker="*", s=200, c=query_colour, edgecolors="black", linewidths=0.6,
                   zorder=5)
    if np.abs(moves.expanded_query - toy.query).max() > 1e-6:
        _arrow(bottom, toy.query, moves.expanded_query, "black", "aqe")
    _names(bottom, toy.query[None], ["query"], [query_colour])
    ringed = moves.augmented[moves.query_neighbours]
    names = " and ".join(toy.names[i] for i in moves.query_neighbours)
    one_point = len(ringed) > 1 and np.ptp(degrees_of(ringed)) < 1.0  # as _names puts them under one label
    nearest = ("no neighbour (no αQE)" if not len(ringed) else
               f"its nearest, {names} (ringed)" if len(ringed) == 1 else
               f"its {len(ringed)} nearest, {names} (ringed" + ("; DBA put them on one point)" if one_point else ")"))
    bottom.set_title(f"αQE (n={moves.qe_n}) over the stored vectors: the query moves towards\n"
                     f"{nearest};\nfilled star: what is searched again", fontsize=9.5)
    bottom.text(0.5, 0.02, f"nearest first, query of category {toy.query_category}\n"
                f"before (raw vectors): {moves.ranking(moves.before)}\n"
                f"after DBA + αQE:      {moves.ranking(moves.after)}",
                transform=bottom.transAxes, ha="center", va="bottom", fontsize=9, family="monospace")
    return fig
