"""The explorer's browser-free logic: prices, backbone choices, queries, one search with filters, its views
(the filters themselves: tests/search/test_filters.py)."""

import base64
import io
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cbir_tutorial import ImageError
from cbir_tutorial.data.catalogue import Catalogue
from cbir_tutorial.models.backbones import BackboneChoice
from cbir_tutorial.data.prices import parse_price, price_values
from cbir_tutorial.search.filters import Filters
from cbir_tutorial.ui.answer import answer_for
from cbir_tutorial.ui.query import Query
from cbir_tutorial.ui.shelf import EngineShelf, offered_choices
from cbir_tutorial.ui.views import (answer_figure, comparison_html, query_html, results_html, results_view,
                                    thumbnail_uri)
from cbir_tutorial.evaluation.metrics import average_precision_at_k

LITE = BackboneChoice("efficientnet_lite0", "imagenet")


@pytest.fixture(scope="module")
def shelf(sample_engine):
    """The 770-photo sample indexed with EfficientNet-Lite0 (the session's engine, not rebuilt)."""
    shelf = EngineShelf(sample_engine.catalogue, [LITE])
    shelf.add(LITE, sample_engine)
    return shelf


def row_of(catalogue, category, nth=0):
    return int(np.flatnonzero(catalogue.labels == category)[nth])


# --------------------------------------------------------------------------------------------------
# Prices


@pytest.mark.parametrize("text, value", [
    ("€1,250", 1250.0), ("$1,250", 1250.0), ("£995", 995.0), ("€12,345,678", 12345678.0),
    ("$1,250.50", 1250.5), ("1.250,00 €", 1250.0), ("12,50 €", 12.5), ("1\u00a0250 €", 1250.0),
    ("CHF 1'250.00", 1250.0), ("1.250 €", 1250.0), ("99.9", 99.9), ("480", 480.0), (350, 350.0),
])
def test_display_prices_parse_to_numbers(text, value):
    assert parse_price(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "price on request", None, float("nan"), "1,2,3"])
def test_prices_without_a_number_are_nan(text):
    assert math.isnan(parse_price(text))


def test_price_values_parse_a_column_in_order():
    values = price_values(pd.Series(["€1,250", "", "€90", "€1,250", "sold out"]))
    assert values.dtype == np.float64 and values.shape == (5,)
    np.testing.assert_array_equal(values[[0, 2, 3]], [1250.0, 90.0, 1250.0])
    assert np.isnan(values[[1, 4]]).all()


# --------------------------------------------------------------------------------------------------
# Backbone options


def test_offered_choices_default_to_every_backbone_offline_one_first():
    defaults = offered_choices()
    assert defaults[0] == LITE and {o.backbone for o in defaults} == {"efficientnet_lite0", "efficientnet_lite2",
                                                                    "resnet50", "vgg16", "xception"}
    assert offered_choices({"efficientnet_lite0": "imagenet", "ResNet": None})[1].label == \
        "ResNet50, RANDOM weights (untrained)"


# --------------------------------------------------------------------------------------------------
# Queries


def test_uploads_are_checked_when_they_arrive(sample_catalogue):
    photo = open(sample_catalogue.paths[0], "rb").read()
    query = Query.from_upload(photo, "shoe.jpg")
    assert query.is_upload and query.source == photo and query.category == ""
    with pytest.raises(ImageError, match="'notes.txt': not an image"):
        Query.from_upload(b"hello, not a photo", "notes.txt")
    with pytest.raises(ImageError, match="'half.jpg': corrupt or truncated"):
        Query.from_upload(photo[: len(photo) // 2], "half.jpg")


def test_a_photo_url_is_fetched_and_checked_like_an_upload(photo_server):
    from cbir_tutorial.data.remote import RemoteImageError

    base, photo = photo_server
    query = Query.from_url(f" {base}/photo.jpg ")
    assert query.is_upload and query.source == photo.read_bytes() and query.category == ""
    assert query.url == query.name == f"{base}/photo.jpg"
    with pytest.raises(RemoteImageError, match=rf"^{base}/fake\.jpg: not an image file Pillow can read$"):
        Query.from_url(f"{base}/fake.jpg")  # said to be a JPEG, holds HTML
    with pytest.raises(RemoteImageError, match=r"page\.html: the server sent text/html, not an image"):
        Query.from_url(f"{base}/page.html")
    with pytest.raises(RemoteImageError, match="larger than the"):
        Query.from_url(f"{base}/photo.jpg", max_bytes=1000)
    with pytest.raises(RemoteImageError, match="no answer within 0.2 s"):
        Query.from_url(f"{base}/slow.jpg", timeout_s=0.2)


def test_catalogue_queries_carry_their_category(sample_catalogue):
    query = Query.from_row(sample_catalogue, 5)
    assert not query.is_upload and query.source == sample_catalogue.paths[5]
    assert query.category == sample_catalogue.labels[5] != ""
    with pytest.raises(IndexError, match="row 770 is outside the catalogue"):
        Query.from_row(sample_catalogue, 770)


# --------------------------------------------------------------------------------------------------
# Searching


def test_search_returns_k_nearest_without_the_query_and_scores_them(shelf, sample_engine):
    catalogue = shelf.catalogue
    row = row_of(catalogue, "Watches")
    answer = answer_for(shelf, LITE.key, Query.from_row(catalogue, row), k=10)
    results = answer.results
    assert len(results) == 10 and results["rank"].tolist() == list(range(1, 11))
    assert row not in results["row"].tolist() and results["distance"].is_monotonic_increasing
    assert results["id"].tolist() == catalogue.table["id"].iloc[results["row"]].tolist()
    expected = sample_engine.search(row, 10)
    assert results["row"].tolist() == expected["row"].tolist()
    hits = (results["category"] == "Watches").to_numpy()
    n_watches = int((catalogue.labels == "Watches").sum())
    assert answer.n_relevant == n_watches - 1 and answer.n_allowed == len(catalogue)
    assert answer.relevant.tolist() == hits.tolist()
    assert answer.precision == pytest.approx(hits.mean())
    assert answer.average_precision == pytest.approx(average_precision_at_k(hits[None], [n_watches - 1])[0])
    assert answer.precision >= 0.8  # ImageNet features find watches on the real photos
    assert answer.scores_text().startswith(f"P@10 = {answer.precision:.2f}, AP@10 = ")


def test_another_query_gives_other_results(shelf):
    catalogue = shelf.catalogue
    watch = answer_for(shelf, LITE.key, Query.from_row(catalogue, row_of(catalogue, "Watches")), k=5)
    shirt = answer_for(shelf, LITE.key, Query.from_row(catalogue, row_of(catalogue, "Tshirts")), k=5)
    assert set(watch.results["row"]).isdisjoint(shirt.results["row"])


def test_filters_restrict_results_and_the_relevant_count(shelf):
    catalogue = shelf.catalogue
    row = row_of(catalogue, "Tshirts")
    in_category = answer_for(shelf, LITE.key, Query.from_row(catalogue, row), 10, Filters(category="Watches"))
    assert (in_category.results["category"] == "Watches").all() and len(in_category.results) == 10
    assert in_category.precision == 0.0 and in_category.n_relevant == 0  # no Tshirts among the watches
    women = answer_for(shelf, LITE.key, Query.from_row(catalogue, row), 10, Filters(gender="Women"))
    genders = catalogue.table["gender"].iloc[women.results["row"]]
    assert (genders == "Women").all()
    n_women_tshirts = int(((catalogue.labels == "Tshirts") & (catalogue.table["gender"] == "Women")).sum())
    own = int(catalogue.table["gender"].iloc[row] == "Women")
    assert women.n_relevant == n_women_tshirts - own and women.n_allowed == int((catalogue.table["gender"] == "Women").sum())
    few = answer_for(shelf, LITE.key, Query.from_row(catalogue, row), 10, Filters(gender="Girls"))
    assert len(few.results) == 4  # only 4 products for girls: fewer than K
    assert few.results["rank"].tolist() == [1, 2, 3, 4]


def test_an_uploaded_catalogue_photo_finds_itself_first(shelf):
    catalogue = shelf.catalogue
    row = row_of(catalogue, "Handbags")
    answer = answer_for(shelf, LITE.key, Query.from_upload(open(catalogue.paths[row], "rb").read()), k=5)
    assert answer.results["row"].iloc[0] == row and answer.results["distance"].iloc[0] < 1e-2
    assert answer.relevant is None and answer.precision is None
    assert answer.scores_text() == "no scores: the query has no category"
    assert "(uploaded photo)" in query_html(answer)


def test_a_photo_from_a_url_finds_the_same_products_as_its_file(shelf, photo_server):
    base, photo = photo_server
    by_url = answer_for(shelf, LITE.key, Query.from_url(f"{base}/photo.jpg"), k=5)
    by_file = shelf.engine(LITE.key).search(str(photo), 5)
    assert by_url.results["id"].tolist() == by_file["id"].tolist()
    assert np.allclose(by_url.results["distance"], by_file["distance"], atol=1e-5)
    assert "(photo from a URL)" in query_html(by_url) and f"{base}/photo.jpg" in query_html(by_url)


def test_unreadable_products_keep_catalogue_rows_straight(tmp_path, sample_catalogue):
    """Rows after an unreadable image shift in the engine; results and queries still name catalogue rows."""
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    paths = [shutil.copy(p, tmp_path / f"{i:02d}.jpg") for i, p in enumerate(sample_catalogue.paths[:12])]
    paths.insert(3, str(tmp_path / "broken.jpg"))
    table = pd.DataFrame({"id": [f"p{i}" for i in range(13)], "path": paths, "description": "",
                          "brand": "", "price": "", "category": ""})
    catalogue = Catalogue(table, "with-a-broken-photo")
    shelf = EngineShelf(catalogue, [LITE], cache=False)
    assert shelf.built == []
    engine = shelf.engine(LITE.key)
    assert shelf.built == [LITE.key] and shelf.engine(LITE.key) is engine and len(engine) == 12
    assert shelf.engine_row(LITE.key, 3) is None and shelf.engine_row(LITE.key, 4) == 3
    answer = answer_for(shelf, LITE.key, Query.from_upload(open(paths[7], "rb").read()), k=12)
    assert answer.results["row"].iloc[0] == 7 and answer.results["id"].iloc[0] == "p7"
    assert 3 not in answer.results["row"].tolist() and len(answer.results) == 12
    with pytest.raises(ImageError, match="could not be read"):
        answer_for(shelf, LITE.key, Query.from_row(catalogue, 3), k=5)


# --------------------------------------------------------------------------------------------------
# Views


def decoded(uri):
    assert uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_thumbnails_are_square_jpegs_even_for_broken_images(sample_catalogue):
    assert decoded(thumbnail_uri(sample_catalogue.paths[0], 64)).size == (64, 64)
    assert decoded(thumbnail_uri(open(sample_catalogue.paths[0], "rb").read())).size == (120, 120)
    grey = np.asarray(decoded(thumbnail_uri(b"broken", 32)))
    assert abs(float(grey.mean()) - 200) < 3


def test_a_results_view_numbers_by_rank_and_shows_what_the_catalogue_has(sample_engine):
    results = sample_engine.search(0, 5)
    view = results_view(results)
    assert view.index.name == "rank" and view.index.tolist() == [1, 2, 3, 4, 5]
    assert view.columns.tolist() == ["description", "category", "distance"]  # the sample: no brand, no price
    np.testing.assert_allclose(view["distance"], results["distance"].round(3), atol=1e-9)
    assert view["description"].tolist() == results["description"].tolist()
    priced = results.assign(price=["€10", "", "", "", ""])
    assert "price" in results_view(priced).columns and results_view(priced, columns=("category",)).shape == (5, 1)
    assert "path" in results.columns and results.index.tolist() == [0, 1, 2, 3, 4]  # the table itself unchanged


def test_results_html_has_one_card_per_result_framed_by_relevance(shelf):
    catalogue = shelf.catalogue
    answer = answer_for(shelf, LITE.key, Query.from_row(catalogue, row_of(catalogue, "Casual Shoes")), k=7)
    page = results_html(answer)
    assert page.count('class="cbir-result') == 7
    assert [f'data-rank="{r}"' in page for r in range(1, 9)] == [True] * 7 + [False]
    assert page.count("cbir-relevant") == int(answer.relevant.sum())
    assert page.count("cbir-irrelevant") == int((~answer.relevant).sum())
    for _, result in answer.results.iterrows():
        assert f'data-id="{result["id"]}"' in page
    card = query_html(answer)
    assert "Casual Shoes" in card and f"P@7 = {answer.precision:.2f}" in card and "catalogue row" in card
    empty = answer_for(shelf, LITE.key, answer.query, 7, Filters(gender="Girls", category="Watches"))
    assert empty.results.empty and "No product passes the filters" in results_html(empty)
    assert "no scores" in empty.scores_text()


def test_comparison_html_puts_backbones_side_by_side(shelf):
    answer = answer_for(shelf, LITE.key, Query.from_row(shelf.catalogue, 0), k=3)
    page = comparison_html({"lite": answer, "vgg16": "unavailable: no weights offline"})
    assert page.count('class="cbir-column"') == 2 and page.count('class="cbir-result') == 3
    assert 'data-backbone="vgg16"' in page and "unavailable: no weights offline" in page


def test_answer_figure_shows_query_and_results(shelf):
    answer = answer_for(shelf, LITE.key, Query.from_row(shelf.catalogue, 10), k=4)
    figure = answer_figure(answer, columns=5)
    assert isinstance(figure, Figure)
    assert sum(len(ax.images) for ax in figure.axes) == 5
    assert answer.choice.label in figure.get_suptitle()
