"""The explorer's widgets, driven without a browser: set a control's value, assert the results that follow."""

import numpy as np
import pytest

from cbir_tutorial.search.filters import ALL
from cbir_tutorial.ui.widget_compat import VIEW_MIME, send_upload, uploaded_files
from cbir_tutorial.ui.widgets import SearchExplorer

LITE, RANDOM = "efficientnet_lite0:imagenet", "efficientnet_lite2:random"
K = 6


@pytest.fixture(scope="module")
def catalogue(sample_catalogue):
    """125 products of the sample (100 asked: every category keeps at least 2 of its products)."""
    return sample_catalogue.stratified_sample(100, seed=0)


@pytest.fixture(scope="module")
def session(catalogue):
    """One explorer for the module: EfficientNet-Lite0 built at start, random EfficientNet-Lite2 (260 px) on first
    use."""
    return SearchExplorer(catalogue, backbones={"efficientnet_lite0": "imagenet", "efficientnet_lite2": None}, k=K,
                          row=0, progress=False)


@pytest.fixture
def explorer(session):
    """The module's explorer, put back to its starting controls before each test."""
    c = session.controls
    c["compare"].value = False
    c["url"].value = ""
    c["backbone"].value = LITE
    c["recipe"].value = "baseline"
    c["gender"].value = c["category"].value = ALL
    c["k"].value = K
    c["query"].value = 1
    c["query"].value = 0
    return session


def upload(explorer, content: bytes, name: str) -> None:
    """``content`` picked in the explorer's upload button (the value shape of the installed ipywidgets)."""
    send_upload(explorer.controls["upload"], [(name, content, "image/jpeg")])


def rows(explorer) -> list[int]:
    return explorer.results["row"].tolist()


def test_starts_on_the_first_backbone_with_k_results(explorer, catalogue):
    assert explorer.backbone == LITE and explorer.shelf.built[0] == LITE
    assert set(explorer.controls) >= {"backbone", "compare", "query", "random", "upload", "k", "gender",
                                      "category", "status", "progress", "query_view", "results_view", "log"}
    assert "price" not in explorer.controls  # the sample has no prices
    assert len(explorer.results) == K and 0 not in rows(explorer)
    assert explorer.results["distance"].is_monotonic_increasing
    assert explorer.controls["results_view"].value.count('class="cbir-result') == K
    assert explorer.controls["k"].continuous_update is False and explorer.controls["query"].continuous_update is False
    labels = dict((key, label) for label, key in explorer.controls["backbone"].options)
    assert labels == {LITE: "EfficientNet-Lite0, ImageNet weights",
                      RANDOM: "EfficientNet-Lite2, RANDOM weights (untrained)"}
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(explorer)  # what a cell ending in `explorer` shows
    assert data[VIEW_MIME]["model_id"] == explorer.widget.model_id


def test_a_new_query_changes_the_results(explorer, catalogue):
    before = rows(explorer)
    explorer.controls["query"].value = 40
    assert explorer.query.row == 40 and explorer.query.category == catalogue.labels[40]
    assert rows(explorer) != before and 40 not in rows(explorer) and len(rows(explorer)) == K
    assert catalogue.table["description"].iloc[40][:20] in explorer.controls["query_view"].value


def test_the_random_button_picks_another_product(explorer):
    seen = {explorer.query.row}
    for _ in range(3):
        before = (explorer.query.row, rows(explorer))
        explorer.controls["random"].click()
        assert explorer.query.row != before[0] and explorer.controls["query"].value == explorer.query.row
        assert rows(explorer) != before[1]
        seen.add(explorer.query.row)
    assert len(seen) == 4


@pytest.mark.parametrize("k", [1, 17, 50])
def test_the_k_slider_sets_the_number_of_results(explorer, k):
    explorer.controls["k"].value = k
    assert len(explorer.results) == k and explorer.results["rank"].tolist() == list(range(1, k + 1))
    assert explorer.controls["results_view"].value.count('class="cbir-result') == k
    assert f"top {k} of" in explorer.message


def test_without_a_kernel_the_explorer_shows_a_still_picture_of_itself(explorer):
    explorer.controls["k"].value = 7
    explorer.controls["category"].value = "Watches"
    bundle = explorer._repr_mimebundle_(include=None, exclude=None)
    assert "application/vnd.jupyter.widget-view+json" in bundle  # Jupyter shows the live widgets
    still = bundle["text/html"]  # a page without a kernel (the course site) shows this
    assert "its controls need a running kernel" in still
    assert "<th" in still and ">K</th><td>7</td>" in still and ">category</th><td>Watches</td>" in still
    assert still.count('class="cbir-result') == len(explorer.results) > 0
    assert explorer.controls["query_view"].value in still and explorer.message in still
    explorer.controls["category"].value = ALL


def test_a_category_filter_keeps_only_that_category(explorer, catalogue):
    unfiltered = rows(explorer)
    explorer.controls["category"].value = "Watches"
    assert (explorer.results["category"] == "Watches").all()
    assert len(explorer.results) == min(K, int((catalogue.labels == "Watches").sum()))
    query_is_watch = explorer.query.category == "Watches"
    assert (explorer.answer.precision == 1.0) is query_is_watch
    explorer.controls["gender"].value = "Women"
    genders = catalogue.table["gender"].iloc[rows(explorer)]
    assert (genders == "Women").all() and (explorer.results["category"] == "Watches").all()
    assert "gender Women, category Watches" in explorer.message
    explorer.controls["gender"].value = explorer.controls["category"].value = ALL
    assert rows(explorer) == unfiltered and "no filter" in explorer.message


def test_a_price_range_keeps_only_products_in_that_range(session):
    """Farfetch-style display prices ("€1,250") give a price slider; the results obey it."""
    from cbir_tutorial import Catalogue, SearchEngine
    from cbir_tutorial.data.prices import price_values
    from cbir_tutorial.search.backends import make_index

    engine = session.shelf.engine(LITE)
    table = engine.catalogue.table.copy()
    table["price"] = [f"€{p:,}" for p in np.random.default_rng(0).integers(5, 300, len(table)) * 10]
    index = make_index("exact", engine.features, engine.keys, table)  # the index keeps the prices it filters on
    priced = SearchExplorer.from_engines([SearchEngine(Catalogue(table), engine.pipeline, index)],
                                         k=K, row=0, progress=False)
    slider = priced.controls["price"]
    prices = price_values(table["price"])
    assert (slider.min, slider.max) == (prices.min(), prices.max()) and priced.filters.price is None
    slider.value = (200.0, 800.0)
    shown = price_values(priced.results["price"])
    assert len(shown) == K and ((shown >= 200) & (shown <= 800)).all()
    assert "price 200 to 800" in priced.message
    slider.value = (slider.min, slider.max)
    assert priced.filters.price is None and "no filter" in priced.message


def test_a_saved_engine_opens_in_the_explorer(session, tmp_path):
    """An engine built once and saved (as ``engine build`` does) is explored without extracting its catalogue."""
    engine = session.shelf.engine(LITE)
    folder = engine.save(tmp_path / "engine")
    saved = SearchExplorer.from_saved(folder, k=K, row=3, progress=False)
    assert rows(saved) == engine.search(3, K)["row"].tolist() and len(saved.results) == K
    saved.controls["category"].value = "Watches"
    assert (saved.results["category"] == "Watches").all()


def test_a_bad_upload_shows_a_message_and_the_explorer_keeps_answering(explorer, catalogue):
    before = rows(explorer)
    upload(explorer, b"%PDF-1.4 this is not a photo", "invoice.pdf")
    assert "That upload cannot be used" in explorer.message and "invoice.pdf" in explorer.message
    assert "not an image" in explorer.message
    assert rows(explorer) == before and explorer.query.row == 0
    assert uploaded_files(explorer.controls["upload"].value) == []
    photo = open(catalogue.paths[3], "rb").read()
    upload(explorer, photo[: len(photo) // 2], "cut.jpg")
    assert "cut.jpg" in explorer.message and "corrupt or truncated" in explorer.message
    explorer.controls["query"].value = 25
    assert explorer.query.row == 25 and rows(explorer) != before and len(rows(explorer)) == K
    assert "cannot be used" not in explorer.message


def test_an_uploaded_photo_becomes_the_query(explorer, catalogue):
    row = int(np.flatnonzero(catalogue.labels == "Handbags")[0])
    upload(explorer, open(catalogue.paths[row], "rb").read(), "my bag.jpg")
    assert explorer.query.is_upload and explorer.query.name == "my bag.jpg"
    assert rows(explorer)[0] == row and explorer.results["distance"].iloc[0] < 1e-2
    assert "uploaded photo" in explorer.controls["query_view"].value
    explorer.controls["k"].value = 3  # other controls keep the uploaded query
    assert explorer.query.is_upload and len(explorer.results) == 3
    upload(explorer, open(catalogue.paths[row], "rb").read(), "my bag.jpg")  # the same file again
    explorer.controls["k"].value = K
    upload(explorer, open(catalogue.paths[row], "rb").read(), "my bag.jpg")
    assert explorer.query.is_upload and len(explorer.results) == K and rows(explorer)[0] == row


def test_a_photo_url_becomes_the_query(explorer, photo_server, catalogue):
    base, photo = photo_server
    explorer.controls["url"].value = f"{base}/photo.jpg"
    assert explorer.query.is_upload and explorer.query.url == f"{base}/photo.jpg"
    assert explorer.query.image == photo.read_bytes() and len(rows(explorer)) == K
    assert "photo from a URL" in explorer.controls["query_view"].value and f"top {K} of" in explorer.message
    expected = explorer.shelf.engine(LITE).search(str(photo), K)
    assert rows(explorer) == explorer.shelf.catalogue_rows(LITE, expected["row"].to_numpy()).tolist()
    explorer.controls["k"].value = 4  # other controls keep the URL's photo
    assert explorer.query.url == f"{base}/photo.jpg" and len(rows(explorer)) == 4


@pytest.mark.parametrize("path, said", [
    ("/page.html", "the server sent text/html, not an image"),
    ("/fake.jpg", "not an image file Pillow can read"),
    ("/missing.jpg", "the server answered 404 Not Found"),
    ("/slow.jpg", "no answer within 0.3 s"),
    ("/stream.jpg", "larger than the 1.0 MiB limit"),
])
def test_a_bad_url_is_said_and_the_explorer_keeps_answering(explorer, photo_server, path, said):
    base, _ = photo_server
    explorer.url_timeout_s, explorer.url_max_bytes = 0.3, 1024 * 1024
    try:
        before = rows(explorer)
        explorer.controls["url"].value = f"{base}{path}"
        assert "That URL cannot be used" in explorer.message and f"{base}{path}" in explorer.message
        assert said in explorer.message
        assert rows(explorer) == before and explorer.query.row == 0  # the previous query stays
        explorer.controls["query"].value = 12
        assert explorer.query.row == 12 and len(rows(explorer)) == K and "cannot be used" not in explorer.message
    finally:
        del explorer.url_timeout_s, explorer.url_max_bytes


def test_the_url_button_fetches_again_but_not_twice_for_one_entry(explorer, photo_server, monkeypatch):
    from cbir_tutorial.ui.query import Query

    fetched, from_url = [], Query.from_url
    monkeypatch.setattr(Query, "from_url", staticmethod(lambda url, **kw: fetched.append(url) or from_url(url, **kw)))
    base, _ = photo_server
    explorer.controls["fetch"].click()
    assert "Paste the address of a photo" in explorer.message and fetched == []
    explorer.controls["url"].value = f"{base}/page.html"  # typed, then the click takes the focus away
    explorer.controls["fetch"].click()
    assert fetched == [f"{base}/page.html"] and "text/html, not an image" in explorer.message
    explorer.controls["query"].value = 3
    assert explorer.query.row == 3 and "cannot be used" not in explorer.message
    explorer.url_repeat_s = 0.0
    try:
        explorer.controls["fetch"].click()  # a retry of the same address fetches it again
        assert len(fetched) == 2 and "text/html, not an image" in explorer.message and explorer.query.row == 3
    finally:
        del explorer.url_repeat_s


@pytest.mark.slow
def test_switching_backbones_builds_once_and_compare_shows_both(explorer):
    lite_rows = rows(explorer)
    explorer.controls["backbone"].value = RANDOM
    assert explorer.backbone == RANDOM and explorer.answer.choice.key == RANDOM
    assert rows(explorer) != lite_rows and len(rows(explorer)) == K
    assert "RANDOM weights" in explorer.message and "features computed in" in explorer.message
    engines = {key: explorer.shelf.engine(key) for key in (LITE, RANDOM)}
    explorer.controls["backbone"].value = LITE
    assert rows(explorer) == lite_rows and "features computed" not in explorer.message
    explorer.controls["compare"].value = True
    assert set(explorer.comparison) == {LITE, RANDOM}
    assert all(len(table) == K for table in explorer.comparison.values())
    assert explorer.comparison[LITE]["row"].tolist() == lite_rows
    view = explorer.controls["results_view"].value
    assert view.count('class="cbir-column"') == 2 and view.count('class="cbir-result') == 2 * K
    assert {key: explorer.shelf.engine(key) for key in (LITE, RANDOM)} == engines  # kept, not rebuilt
    explorer.controls["query"].value = 9
    assert all(9 not in table["row"].tolist() for table in explorer.comparison.values())


def test_the_recipe_dropdown_builds_that_recipes_engine_and_keeps_the_baseline(explorer, catalogue):
    from cbir_tutorial.search.recipes import RECIPES

    assert [value for _, value in explorer.controls["recipe"].options][:len(RECIPES)] == list(RECIPES)
    baseline_rows, baseline = rows(explorer), explorer.shelf.engine(LITE)
    explorer.controls["recipe"].value = "single"
    engine = explorer.shelf.engine(LITE)
    assert engine is not baseline and engine.recipe is RECIPES["single"]
    assert "recipe single" in explorer.message and len(rows(explorer)) == K and 0 not in rows(explorer)
    with open(catalogue.paths[0], "rb") as photo:
        upload(explorer, photo.read(), "product 0 again")
    assert explorer.results["row"].iloc[0] == 0  # the photo goes through the recipe's steps too
    explorer.controls["recipe"].value = "baseline"
    explorer.controls["query"].value = 1
    explorer.controls["query"].value = 0
    assert explorer.shelf.engine(LITE) is baseline and rows(explorer) == baseline_rows


def test_a_backbone_without_weights_is_marked_and_never_crashes(catalogue, monkeypatch):
    """Offline, Keras cannot download ImageNet weights: the choice is marked, the explorer stays usable."""
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] offline")

    monkeypatch.setattr(file_utils, "get_file", offline)
    small = catalogue.subset(np.arange(20))
    explorer = SearchExplorer(small, backbones=[("resnet50", "imagenet"), ("efficientnet_lite0", "imagenet")],
                              k=4, row=2, progress=False)
    assert explorer.backbone == LITE and len(explorer.results) == 4  # started on the one that works
    assert "resnet50:imagenet" in explorer.shelf.unavailable
    labels = [label for label, _ in explorer.controls["backbone"].options]
    assert labels[0] == "ResNet50, ImageNet weights  [unavailable]"
    before = rows(explorer)
    explorer.controls["backbone"].value = "resnet50:imagenet"
    assert explorer.backbone == LITE and rows(explorer) == before
    assert "is unavailable" in explorer.message and "efficientnet_lite0" in explorer.message
    explorer.controls["compare"].value = True
    assert set(explorer.comparison) == {LITE}
    assert "unavailable: ImageNet weights for ResNet50" in explorer.controls["results_view"].value
    explorer.controls["query"].value = 7
    assert 7 not in rows(explorer) and len(rows(explorer)) == 4
    nothing = SearchExplorer(small, backbones={"resnet50": "imagenet"}, k=4, row=2, progress=False)
    assert nothing.results.empty and nothing.answer is None
    assert "No backbone could be loaded" in nothing.message and "could not be downloaded" in nothing.message
    nothing.controls["k"].value = 5  # still answers, in words
    assert nothing.results.empty and "could not be downloaded" in nothing.message
