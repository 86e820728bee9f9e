"""An answer without scores says why: a query with no category, or a filter that lets no other product through."""

import pandas as pd

from cbir_tutorial.models.backbones import BackboneChoice
from cbir_tutorial.search.engine import RESULT_COLUMNS
from cbir_tutorial.search.filters import Filters
from cbir_tutorial.ui.answer import Answer
from cbir_tutorial.ui.query import Query


def _empty_answer(category: str) -> Answer:
    return Answer(BackboneChoice.of("efficientnet_lite0"), Query(row=0, category=category), 10,
                  Filters(category="Belts"), pd.DataFrame(columns=RESULT_COLUMNS), n_allowed=0)


def test_no_scores_names_the_filter_when_the_query_has_a_category():
    text = _empty_answer("Tshirts").scores_text()
    assert text == "no scores: no other product passes the filters" and "category" not in text


def test_no_scores_names_the_missing_category():
    assert _empty_answer("").scores_text() == "no scores: the query has no category"
