import pandas as pd
from matplotlib.figure import Figure

from cbir_tutorial.ui.plotting import catalogue_figure, map_comparison_figure, results_figure, thumbnail


def test_results_grid_has_the_query_and_captioned_results(sample_catalogue):
    rows = sample_catalogue.table.head(4)
    results = rows.assign(rank=range(1, 5), distance=[0.0, 0.1, 0.2, 0.3], row=range(4))
    fig = results_figure(rows["path"].iloc[0], results, columns=5, query_relevant=[True, False, True, True])
    assert isinstance(fig, Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 5 and shown[0].get_title() == "query"
    captions = [t.get_text() for ax in shown[1:] for t in ax.texts]
    assert any("d = 0.100" in c for c in captions)
    assert rows["description"].iloc[1][:15] in captions[1]


def test_catalogue_grid_and_map_chart(sample_catalogue):
    fig = catalogue_figure(sample_catalogue, n=8, columns=4)
    assert sum(1 for ax in fig.axes if ax.images) == 8
    scores = pd.DataFrame({"backbone": ["lite", "random"], "map_at_k": [0.7, 0.3], "k": [10, 10]})
    chart = map_comparison_figure(scores)
    bars = chart.axes[0].patches
    assert [round(b.get_height(), 2) for b in bars] == [0.7, 0.3] and chart.axes[0].get_title() == "MAP@K (K = 10)"


def test_unreadable_thumbnail_is_a_grey_square(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert thumbnail(bad, 20).shape == (20, 20, 3) and (thumbnail(bad, 20) == 200).all()


def test_confusion_projection_and_query_rows_figures(sample_catalogue):
    import numpy as np
    import pandas as pd

    from cbir_tutorial.ui.plotting import confusion_figure, projection_2d, projection_figure, query_rows_figure

    table = pd.DataFrame([[0.8, 0.2], [0.1, 0.9]], index=["a", "b"], columns=["a", "b"])
    assert len(confusion_figure(table).axes) == 2  # the map and its colour bar
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8)) * np.array([5, 2, 1, 1, 1, 1, 1, 1])
    points, share = projection_2d(features)
    assert points.shape == (60, 2) and share[0] > share[1] > 0 and np.allclose(points.mean(axis=0), 0)
    labels = np.array(["x", "y", "z", ""] * 15, dtype=object)
    assert projection_figure(features, labels, top=2).axes[0].get_legend() is not None
    paths = sample_catalogue.paths[:4]
    fig = query_rows_figure(paths[:2], [paths[2:4], paths[1:3]], [[True, False], [False, False]], captions=["x", "y"])
    assert len(fig.axes) == 6


def test_query_rows_captions_stay_readable_on_a_page_and_within_the_figure(sample_catalogue):
    """A row of 8 results is 13.5 inches wide and a page shows it about 8 inches wide: its text is scaled up."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from cbir_tutorial.ui.plotting import query_rows_figure

    paths = sample_catalogue.paths[:9]
    reason = "Shirts (AP@10 = 0.00): 0 of 10 results are Shirts; 6 are Tops: the engine confuses Shirts with Tops."
    fig = query_rows_figure(paths[:2], [paths[1:9]] * 2, [[False] * 8] * 2, captions=[reason, reason * 3])
    short, long = (ax.texts[0] for ax in fig.axes if ax.texts)
    assert short.get_text() == reason and long.get_text().endswith("…")  # shortened, never cut at the edge
    assert short.get_fontsize() * 8 / fig.get_figwidth() >= 7.5  # points, at 8 inches wide
    renderer = FigureCanvasAgg(fig).get_renderer()
    assert long.get_window_extent(renderer).x1 <= fig.bbox.x1


def test_no_named_category_of_the_projection_is_drawn_grey():
    """Site review 13: the 8th category got matplotlib's grey C7, the colour of "other categories"."""
    import numpy as np
    from matplotlib.colors import to_rgb

    from cbir_tutorial.ui.plotting import projection_figure

    rng = np.random.default_rng(1)
    labels = np.array([f"c{i}" for i in range(10) for _ in range(10 - i)] + [""] * 5, dtype=object)
    ax = projection_figure(rng.normal(size=(len(labels), 4)), labels, top=9).axes[0]
    colours = [tuple(np.round(collection.get_facecolor()[0][:3], 3)) for collection in ax.collections]
    named = colours[1:]  # the first scatter is the other categories, grey
    assert len(named) == 9 and len(set(named)) == 9
    assert all(len({round(c, 2) for c in colour}) > 1 for colour in named)  # none grey (r = g = b)
    assert colours[0] == tuple(np.round(to_rgb("0.8"), 3))
