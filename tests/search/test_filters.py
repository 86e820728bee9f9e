"""Metadata filters: each index keeps its products' fields and turns one Filters into a mask over its rows (exact,
FAISS) or a Milvus expression; every result passes, and a filter nothing passes gives no results (Milvus's own
search: test_milvus_index.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbir_tutorial import SearchEngine
from cbir_tutorial.data.catalogue import Catalogue
from cbir_tutorial.data.prices import price_values
from cbir_tutorial.search.backends import make_index
from cbir_tutorial.search.engine import RESULT_COLUMNS
from cbir_tutorial.search.filters import ALL, Filters, filter_choices
from top_k import QUERIES, assert_same_top_k

#: Filters that some but not all of the priced sample's products pass.
SOME = [Filters(gender="Women"), Filters(category="Watches", price=(100.0, 700.0)),
        Filters(gender="Men", category="Tshirts", price=(0.0, 500.0))]
FAISS = [pytest.param(name, options, id=name) for name, options in
         [("faiss-flat", {}), ("faiss-ivf", {"nlist": 8, "nprobe": 8}), ("faiss-hnsw", {"ef_search": 770})]]


@pytest.fixture(scope="module")
def priced_engine(sample_engine, priced_table):
    """The sample engine's pipeline and features over the sample with prices (the sample has none)."""
    return SearchEngine(Catalogue(priced_table, name="priced sample"), sample_engine.pipeline,
                        make_index("exact", sample_engine.features, sample_engine.keys, priced_table))


def test_filters_on_gender_category_and_price_range():
    table = pd.DataFrame({"gender": ["women", "men", "Women", "women", ""],
                          "category": ["bags", "bags", "shoes", "bags", "bags"],
                          "price": ["€1,250", "€300", "€90", "", "€2,000"]})
    assert Filters().mask(table) is None and not Filters().active
    assert Filters(gender="Women").mask(table).tolist() == [True, False, True, True, False]
    assert Filters(category="bags").mask(table).tolist() == [True, True, False, True, True]
    assert Filters(price=(100, 1500)).mask(table).tolist() == [True, True, False, False, False]
    both = Filters(gender="women", category="bags", price=(100, 1500))
    assert both.mask(table).tolist() == [True, False, False, False, False]
    assert both.describe() == "gender women, category bags, price 100 to 1,500"
    with pytest.raises(ValueError, match="no 'gender' column"):
        Filters(gender="women").mask(table.drop(columns="gender"))


def test_filter_choices_of_the_sample(sample_catalogue):
    choices = filter_choices(sample_catalogue)
    assert choices.genders == ("Boys", "Girls", "Men", "Unisex", "Women")
    assert len(choices.categories) == 30 and "Watches" in choices.categories
    assert choices.price_range is None  # the sample has no prices


def test_filter_choices_find_the_price_range():
    table = pd.DataFrame({"id": list("abc"), "path": "", "description": "", "brand": "",
                          "price": ["€1,250", "€90", "n/a"], "category": ""})
    choices = filter_choices(Catalogue(table))
    assert choices.price_range == (90.0, 1250.0) and choices.genders == () and choices.categories == ()


@pytest.mark.parametrize("filters", SOME, ids=Filters.describe)
def test_every_result_of_a_filtered_search_passes_and_the_nearest_passing_come_first(priced_engine, features,
                                                                                     priced_table, filters):
    mask = filters.mask(priced_table)
    assert 10 < mask.sum() < len(mask)
    for row in (0, 77, 500):
        results = priced_engine.search(row, k=10, filters=filters)
        assert len(results) == 10 and mask[results["row"]].all() and row not in results["row"].tolist()
        distances = np.linalg.norm(features - features[row], axis=1)
        distances[~mask] = np.inf
        distances[row] = np.inf
        np.testing.assert_allclose(results["distance"], np.sort(distances)[:10], atol=1e-3)
    passing = priced_table.iloc[priced_engine.search(77, k=10, filters=filters)["row"]]
    if filters.price is not None:
        assert price_values(passing["price"]).min() >= filters.price[0]
        assert price_values(passing["price"]).max() <= filters.price[1]
    if filters.category != ALL:
        assert (passing["category"] == filters.category).all()


@pytest.mark.parametrize("name, options", FAISS)
def test_faiss_indexes_honour_the_filters(features, priced_table, name, options):
    """Flat, IVF probing every list and HNSW with a beam as wide as the gallery give exact search's filtered answer.
    (With its default beam of 64, HNSW under a filter 44 of 770 products pass finds about half of them, and may
    find fewer than k rows: the rest is padding, row -1 at an infinite distance.)"""
    pytest.importorskip("faiss", reason='faiss is not installed (pip install ".[scale]")')
    exact = make_index("exact", features, metadata=priced_table)
    index = make_index(name, features, metadata=priced_table, **options)
    queries = features[QUERIES]
    for filters in SOME + [Filters(ids=np.flatnonzero(SOME[0].mask(priced_table)))]:
        mask = filters.mask(priced_table, np.arange(len(priced_table)))
        distances, rows = index.search(queries, 10, exclude_ids=QUERIES, filters=filters)
        found = rows >= 0
        assert mask[rows[found]].all() and not (rows == QUERIES[:, None]).any()
        assert np.isinf(distances[~found]).all()
        assert_same_top_k((distances, rows), exact.search(queries, 10, exclude_ids=QUERIES, filters=filters))


def test_an_engine_on_hnsw_shows_only_products_that_pass_the_filter(sample_engine, priced_table):
    """HNSW under a narrow filter (its beam widened by the share the filter lets through) finds the filtered top
    k of the exact index; padding a backend may still give (id -1 at an infinite distance, when fewer pass)
    never reaches the results table."""
    pytest.importorskip("faiss", reason='faiss is not installed (pip install ".[scale]")')
    engine = SearchEngine(Catalogue(priced_table, name="priced sample"), sample_engine.pipeline,
                          make_index("faiss-hnsw", sample_engine.features, sample_engine.keys, priced_table))  # ef 64
    exact = SearchEngine(engine.catalogue, engine.pipeline,
                         make_index("exact", sample_engine.features, sample_engine.keys, priced_table))
    watches = Filters(category="Watches", price=(100.0, 700.0))
    for row in QUERIES:
        distances, keys = engine.index.search(engine.features[row], 10, exclude_ids=engine.keys[[row]],
                                              filters=watches)
        results = engine.search(int(row), k=10, filters=watches)
        assert (results["category"] == "Watches").all(), (row, results[["rank", "row", "category", "distance"]])
        assert results["id"].tolist() == exact.search(int(row), k=10, filters=watches)["id"].tolist()
        assert results["rank"].tolist() == list(range(1, len(results) + 1)) and row not in results["row"].tolist()
        assert results["row"].tolist() == [engine.row_of(i) for i in results["id"]]
        padded = engine.results_table(np.r_[distances, np.inf, np.inf], np.r_[keys, -1, -1])
        pd.testing.assert_frame_equal(padded, engine.results_table(distances, keys))
        assert np.isfinite(padded["distance"]).all() and (padded["row"] >= 0).all()


def test_a_filter_nothing_passes_gives_no_results(priced_engine, features, priced_table):
    nothing = Filters(gender="Girls", category="Watches")
    mask = nothing.mask(priced_table)
    assert mask is not None and not mask.any()
    results = priced_engine.search(3, k=10, filters=nothing)
    assert results.empty and list(results.columns) == RESULT_COLUMNS
    assert results["distance"].dtype == np.float32 and results["row"].dtype == np.int64
    for name, options in [("exact", {})] + [p.values for p in FAISS]:
        if name.startswith("faiss"):
            pytest.importorskip("faiss")
        index = make_index(name, features, metadata=priced_table, **options)
        distances, rows = index.search(features[:3], 10, filters=nothing)
        assert distances.shape == rows.shape == (3, 0), name


def test_a_filter_fewer_than_k_pass_gives_them_all(priced_engine, priced_table):
    girls = Filters(gender="Girls").mask(priced_table)
    query = int(np.flatnonzero(~girls)[0])
    results = priced_engine.search(query, k=10, filters=Filters(gender="Girls"))
    assert sorted(results["row"]) == np.flatnonzero(girls).tolist() and results["rank"].tolist() == [1, 2, 3, 4]


def test_no_filter_lets_every_product_through(priced_engine, priced_table):
    assert Filters().mask(priced_table) is None and Filters().milvus_expression() == ""
    assert Filters().describe() == "no filter"
    pd.testing.assert_frame_equal(priced_engine.search(9, k=5, filters=Filters()), priced_engine.search(9, k=5))


def test_an_engine_filters_on_product_ids(priced_engine, priced_table, features):
    """Filters(ids=...) on an engine takes the catalogue's product ids (the index's keys are derived from them),
    combined with the field filters; ids the engine does not hold pass nothing."""
    chosen = np.arange(len(priced_table)) % 5 == 2
    for filters, passing in ((Filters(ids=priced_table["id"][chosen]), chosen),
                             (Filters(gender="Women", ids=priced_table["id"][chosen]),
                              chosen & Filters(gender="Women").mask(priced_table))):
        results = priced_engine.search(77, k=10, filters=filters)
        assert len(results) == 10 and passing[results["row"]].all()
        distances = np.linalg.norm(features - features[77], axis=1)
        distances[~passing] = np.inf
        distances[77] = np.inf
        np.testing.assert_allclose(results["distance"], np.sort(distances)[:10], atol=1e-3)
    assert priced_engine.search(77, k=10, filters=Filters(ids=["not-a-product"])).empty


def test_the_milvus_expression_says_what_the_mask_does():
    assert Filters(gender="Women").milvus_expression() == 'gender == "women"'
    assert (Filters(gender="Men", category="Tshirts", price=(-5, 500)).milvus_expression()
            == 'gender == "men" and category == "Tshirts" and (price >= 0.0 and price <= 500.0)')  # -1: no price
    assert Filters(category='Kid\'s "Tees" \\ more').milvus_expression() == 'category == "Kid\'s \\"Tees\\" \\\\ more"'


@pytest.mark.parametrize("filters", SOME + [Filters(price=(0.0, 400.0)), Filters(gender="Girls", category="Watches")],
                         ids=Filters.describe)
def test_the_milvus_expression_selects_the_rows_the_mask_selects(priced_table, filters):
    """Each product as a Milvus collection holds it (gender in lower case, a price of -1 when unknown), the
    expression evaluated on it: Milvus's ``==``, ``and``, ``>=`` and double-quoted strings read as Python's."""
    prices = np.nan_to_num(price_values(priced_table["price"]), nan=-1.0)
    stored = [{"gender": gender.lower(), "category": category, "price": price}
              for gender, category, price in zip(priced_table["gender"], priced_table["category"], prices)]
    expression = compile(filters.milvus_expression(), "milvus expression", "eval")
    selected = np.array([eval(expression, {"__builtins__": {}}, row) for row in stored])
    np.testing.assert_array_equal(selected, filters.mask(priced_table))
