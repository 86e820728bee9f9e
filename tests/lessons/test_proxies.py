"""The Proxy-Anchor picture of notebook 10: the package's loss and optimiser on 2-D points and proxies."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from cbir_tutorial.lessons.proxies import STEPS, TOY_SEED, proxies_figure, proxy_toy, toy_embeddings, unit
from cbir_tutorial.training.losses import proxy_anchor_loss, proxy_variable
from cbir_tutorial.training.settings import TrainingSettings


@pytest.fixture(scope="module")
def toy():
    return proxy_toy()


def test_the_toy_embeddings_are_unit_vectors_of_a_few_categories_the_same_for_a_seed():
    points, labels = toy_embeddings(1)
    assert points.shape == (12, 2) and points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1, atol=1e-6)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(points, toy_embeddings(1)[0])
    assert not np.array_equal(points, toy_embeddings(2)[0])


def test_the_run_starts_from_the_toy_and_the_package_proxies_and_is_the_same_for_a_seed(toy):
    points, labels = toy_embeddings(TOY_SEED)
    np.testing.assert_array_equal(toy.points_before, points)
    np.testing.assert_array_equal(toy.labels, labels)
    np.testing.assert_array_equal(toy.proxies_before, np.asarray(proxy_variable(3, 2, seed=TOY_SEED)))
    assert toy.steps == STEPS
    assert toy.proxy_learning_rate == pytest.approx(toy.learning_rate * TrainingSettings().proxy_lr_scale)
    again = proxy_toy()
    np.testing.assert_allclose(again.points_after, toy.points_after, atol=1e-6)
    np.testing.assert_allclose(again.proxies_after, toy.proxies_after, atol=1e-6)


def test_the_losses_are_the_package_loss_and_go_down(toy):
    first = float(proxy_anchor_loss(toy.points_before, toy.labels, toy.proxies_before))
    last = float(proxy_anchor_loss(toy.points_after, toy.labels, toy.proxies_after))
    assert toy.losses[0] == pytest.approx(first, rel=1e-5) and toy.losses[-1] == pytest.approx(last, rel=1e-4, abs=1e-4)
    assert toy.losses[-1] < toy.losses[0] / 5, toy.losses
    assert toy.losses[1:].max() < toy.losses[0] and toy.losses[-5:].mean() < toy.losses[:5].mean()


def test_points_end_closer_to_their_own_proxy_and_further_from_the_others(toy):
    assert toy.own_cosines(after=True).mean() > toy.own_cosines(after=False).mean() + 0.5
    assert toy.other_cosines(after=True).mean() < toy.other_cosines(after=False).mean()
    nearest = (unit(toy.points_after) @ unit(toy.proxies_after).T).argmax(axis=1)
    np.testing.assert_array_equal(nearest, toy.labels)


def test_given_points_labels_and_proxies_are_used_as_given():
    points = np.array([[1.0, 0.2], [0.8, 0.6], [0.1, 1.0], [0.7, 0.7]], dtype=np.float32)
    proxies = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    run = proxy_toy(points, [0, 0, 1, 1], proxies, steps=3)
    np.testing.assert_array_equal(run.proxies_before, proxies)
    assert run.steps == 3 and run.losses[-1] < run.losses[0]
    with pytest.raises(ValueError, match="4 points but 3 labels"):
        proxy_toy(points, [0, 0, 1], proxies, steps=1)


def test_the_figure_draws_the_directions_before_and_after_and_the_loss(toy):
    fig = proxies_figure(toy)
    assert isinstance(fig, Figure)
    before, after, curve = fig.axes
    for ax, points, proxies in ((before, toy.points_before, toy.proxies_before),
                                (after, toy.points_after, toy.proxies_after)):
        dots, stars = (c.get_offsets() for c in ax.collections[:2])
        np.testing.assert_allclose(dots, unit(points), atol=1e-6)
        np.testing.assert_allclose(stars, unit(proxies), atol=1e-6)
    assert f"{toy.own_cosines(after=False).mean():.2f}" in before.get_title()
    assert f"{toy.own_cosines(after=True).mean():.2f}" in after.get_title()
    np.testing.assert_allclose(curve.lines[0].get_ydata(), toy.losses)
    fig.savefig(io.BytesIO(), format="png")  # draws headless (Agg), no pyplot
