"""Category labels derived from short product descriptions."""

import math

import pytest

from cbir_tutorial.data.categories import (LABELS, VOCABULARY, categories_from_descriptions,
                                      category_from_description, tokens)


@pytest.mark.parametrize("text, label", [
    ("logo print strap sandals", "sandals"),
    ("sandal", "sandals"),
    ("Blake herringbone midi dress", "dress"),
    ("dresses", "dress"),
    ("Triple S sneakers", "sneakers"),
    ("slim-fit jeans", "jeans"),
    ("shirt dress", "dress"),
    ("leather belt bag", "bag"),
    ("logo T-shirt", "t-shirt"),
    ("LOGO T-SHIRTS", "t-shirt"),
    ("tie-dye T\u2011shirt", "t-shirt"),       # non-breaking hyphen
    ("cap-sleeve dress", "dress"),           # "cap-sleeve" is one token, not a cap
    ("classic polo shirt", "polo shirt"),
    ("ribbed tank top", "tank top"),
    ("cropped top", "top"),
    ("Arizona two-strap sandals.", "sandals"),
    ("Speed trainers", "sneakers"),
    ("cable knit jumper", "sweater"),
    ("logo tee", "t-shirt"),
    ("GG Marmont shoulder bag", "bag"),
    ("mini tote bag", "tote"),
    ("leather backpack", "backpack"),
    ("Chelsea boots", "boots"),
    ("lace-up derby shoes", "derby shoes"),
    ("double-breasted blazer", "blazer"),
    ("gold-tone hoop earrings", "earrings"),
    ("aviator sunglasses", "sunglasses"),
    ("silk scarves", "scarf"),
    ("pleated midi", ""),
    ("", ""),
])
def test_category_from_description(text, label):
    assert category_from_description(text) == label


def test_missing_descriptions_are_unknown():
    assert category_from_description(None) == ""
    assert category_from_description(math.nan) == ""


def test_tokens_keep_hyphenated_words():
    assert tokens("Slim-fit T-shirt, (logo)") == ["slim-fit", "t-shirt", "logo"]


def test_last_product_word_wins():
    assert category_from_description("dress with belt") == "belt"
    assert category_from_description("shirt jacket") == "jacket"


def test_vocabulary_folds_plurals_and_synonyms_only():
    assert VOCABULARY["sandal"] == VOCABULARY["sandals"] == "sandals"
    assert VOCABULARY["trainers"] == "sneakers"
    assert VOCABULARY["jumper"] == "sweater"
    assert VOCABULARY["tee"] == "t-shirt"
    # kept separate on purpose
    assert len({VOCABULARY[w] for w in ("shirt", "blouse", "top", "tank top", "polo shirt")}) == 5
    assert len({VOCABULARY[w] for w in ("bag", "tote", "clutch", "backpack")}) == 4
    assert all(label in LABELS for label in VOCABULARY.values())
    assert all(form == form.lower() and form.strip() == form for form in VOCABULARY)


def test_farfetch_range_is_covered():
    wanted = ("dress skirt trousers jeans shorts shirt t-shirt blouse top sweater cardigan hoodie "
              "sweatshirt jacket coat blazer gilet jumpsuit playsuit bodysuit bra briefs swimsuit bikini "
              "sneakers boots sandals pumps loafers mules ballerinas espadrilles slippers bag tote clutch "
              "backpack wallet belt hat cap beanie scarf gloves sunglasses earrings necklace ring bracelet "
              "watch socks tie").split()
    assert set(wanted) <= set(LABELS)
    assert {"polo shirt", "tank top", "derby shoes", "oxford shoes"} <= set(LABELS)


def test_categories_from_descriptions_keeps_order():
    texts = ["logo T-shirt", None, "sandal", "logo T-shirt", "pleated midi"]
    assert categories_from_descriptions(texts) == ["t-shirt", "", "sandals", "t-shirt", ""]
