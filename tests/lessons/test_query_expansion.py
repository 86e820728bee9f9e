"""The DBA / αQE picture of notebook 8 draws what the package's Expansion returns on the 2-D toy."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from cbir_tutorial.lessons.query_expansion import (QUERY_ANGLE, TOY_ANGLES, dba_alpha_qe_figure, degrees_of,
                                                   expansion_moves, toy_vectors)
from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.expansion import ALPHA, Expansion
from cbir_tutorial.search.recipes import RECIPES


def arrows(ax, gid):
    """``[(start, end)]`` of the arrows drawn with ``gid`` in ``ax``."""
    return [(np.asarray(a.xyann), np.asarray(a.xy)) for a in ax.texts if a.get_gid() == gid]


def package_expansion(toy, recipe="single"):
    """The stored vectors, the expanded query and the index, through Expansion's own calls."""
    post = RECIPES[recipe].post
    ids = np.arange(len(toy.gallery))
    expansion = Expansion(post.dba_n, post.qe_n, ALPHA).fit(toy.gallery, ids)
    stored = expansion.stored(toy.gallery, ids)
    index = make_index("exact", stored, ids)
    return expansion, stored, index, expansion.expanded_queries(index, toy.query)[0]


@pytest.fixture(scope="module")
def moves():
    return expansion_moves()


def test_the_toy_is_unit_vectors_in_2d_and_the_same_for_a_seed():
    toy = toy_vectors(3)
    n = sum(len(angles) for angles in TOY_ANGLES.values())
    assert toy.gallery.shape == (n, 2) and toy.gallery.dtype == np.float32 and toy.query.shape == (2,)
    np.testing.assert_allclose(np.linalg.norm(toy.gallery, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(toy.gallery, toy_vectors(3).gallery)
    assert not np.array_equal(toy.gallery, toy_vectors(4).gallery), "another seed, another jitter"
    exact = toy_vectors(jitter=0)
    np.testing.assert_allclose(degrees_of(exact.gallery), np.concatenate(list(TOY_ANGLES.values())), atol=1e-4)
    np.testing.assert_allclose(degrees_of(exact.query), QUERY_ANGLE, atol=1e-4)
    assert list(toy.names[:3]) == ["a1", "a2", "a3"] and set(toy.categories) == set(TOY_ANGLES)


def test_the_moves_are_what_expansion_returns_for_the_toy(moves):
    _, stored, index, expanded = package_expansion(moves.toy)
    assert (moves.dba_n, moves.qe_n) == (RECIPES["single"].post.dba_n, RECIPES["single"].post.qe_n) == (1, 2)
    np.testing.assert_allclose(moves.augmented, stored, atol=1e-7)
    np.testing.assert_allclose(moves.expanded_query, expanded, atol=1e-7)
    expansion, *_ = package_expansion(moves.toy)
    np.testing.assert_array_equal(moves.after, expansion.search(index, moves.toy.query, 5)[1])
    np.testing.assert_array_equal(moves.before, make_index("exact", moves.toy.gallery).search(moves.toy.query, 5)[1])
    np.testing.assert_array_equal(moves.query_neighbours, index.search(moves.toy.query[None], 2)[1][0])


def test_dba_moves_each_vector_towards_its_nearest_and_aqe_moves_the_query_towards_its_neighbours(moves):
    toy = moves.toy
    angles, after = degrees_of(toy.gallery), degrees_of(moves.augmented)
    similarities = toy.gallery @ toy.gallery.T
    np.fill_diagonal(similarities, -np.inf)
    nearest = angles[similarities.argmax(axis=1)]
    assert np.all((np.minimum(angles, nearest) <= after + 1e-4) & (after <= np.maximum(angles, nearest) + 1e-4))
    assert np.all(np.abs(after - angles) > 0.5), "every product moves a visible bit"
    neighbours = degrees_of(moves.augmented[moves.query_neighbours])
    query, expanded = degrees_of(toy.query)[0], degrees_of(moves.expanded_query)[0]
    assert min(query, *neighbours) <= expanded <= max(query, *neighbours)
    np.testing.assert_allclose(np.linalg.norm(moves.augmented, axis=1), 1, atol=1e-6)


def test_the_default_toy_tells_what_notebook_8_says(moves):
    """Before, the nearest product is of another category; after DBA + αQE the query's own category leads."""
    categories = moves.toy.categories
    assert categories[moves.before[0]] != moves.toy.query_category
    assert list(categories[moves.after[:3]]) == [moves.toy.query_category] * 3
    assert moves.ranking(moves.before) == "b1 a3 a2 b2 a1" and moves.ranking(moves.after) == "a3 a2 a1 b1 b2"


def test_the_figure_has_one_arrow_per_moved_vector_ending_where_expansion_puts_it(moves):
    fig = dba_alpha_qe_figure(moves)
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    _, stored, _, expanded = package_expansion(moves.toy)
    moved = np.abs(stored - moves.toy.gallery).max(axis=1) > 1e-6
    drawn = arrows(top, "dba")
    assert len(drawn) == moved.sum() == len(moves.toy.gallery)
    for (start, end), vector, after in zip(drawn, moves.toy.gallery[moved], stored[moved]):
        np.testing.assert_allclose(start, vector, atol=1e-6)
        np.testing.assert_allclose(end, after, atol=1e-6)
    (start, end), = arrows(bottom, "aqe")
    np.testing.assert_allclose(start, moves.toy.query, atol=1e-6)
    np.testing.assert_allclose(end, expanded, atol=1e-6)
    words = " ".join(t.get_text() for t in bottom.texts)
    assert moves.ranking(moves.before) in words and moves.ranking(moves.after) in words
    fig.savefig(io.BytesIO(), format="png")  # draws headless (Agg), no pyplot


def test_without_expansion_nothing_moves_and_nothing_is_drawn_moving():
    moves = expansion_moves(toy_vectors(1), recipe="baseline")
    np.testing.assert_allclose(moves.augmented, moves.toy.gallery)
    np.testing.assert_allclose(moves.expanded_query, moves.toy.query, atol=1e-7)
    np.testing.assert_array_equal(moves.before, moves.after)
    fig = dba_alpha_qe_figure(moves)
    assert not arrows(fig.axes[0], "dba") and not arrows(fig.axes[1], "aqe")


def test_the_title_names_the_ringed_neighbours_and_says_when_dba_put_them_on_one_point(moves):
    """DBA n=1 moves a2 and a3 (each other's nearest) onto one point: one ring, one label, and the title says so."""
    title = dba_alpha_qe_figure(moves).axes[1].get_title()
    first, second = (moves.toy.names[i] for i in moves.query_neighbours)
    assert f"{first} and {second}" in title and "one point" in title
    np.testing.assert_allclose(*moves.augmented[moves.query_neighbours], atol=1e-3)
    other = expansion_moves(toy_vectors(1), recipe="baseline")
    assert "no neighbour" in dba_alpha_qe_figure(other).axes[1].get_title()
