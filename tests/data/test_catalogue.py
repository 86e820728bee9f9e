import numpy as np
import pandas as pd
import pytest

from cbir_tutorial import Catalogue


def table(n=6):
    return pd.DataFrame({"id": [f"p{i}" for i in range(n)], "path": [f"/img/{i}.jpg" for i in range(n)],
                         "description": "logo tee", "brand": ["Acme", None] * (n // 2), "price": "€10",
                         "category": ["a", "a", "a", "b", "b", "c"][:n]})


def test_columns_are_checked_and_missing_values_become_empty_strings():
    with pytest.raises(ValueError, match=r"lacks columns \['price'\]"):
        Catalogue(table().drop(columns="price"))
    catalogue = Catalogue(table(), "shop")
    assert catalogue.table["brand"].tolist()[:2] == ["Acme", ""]
    assert len(catalogue) == 6 and catalogue.paths[2] == "/img/2.jpg"
    assert repr(catalogue) == ("Catalogue('shop': 6 products in 3 categories (all labelled); no listing dropped "
                               "for a missing photo)")
    table_ = table().assign(category=["a", "a", "", "b", "", ""])
    assert Catalogue(table_, n_dropped=1200).summary == ("6 products in 2 categories (3 of them labelled); 1,200 "
                                                         "listings dropped because their photo is missing")


def test_subset_by_rows_or_mask_keeps_order():
    catalogue = Catalogue(table())
    assert catalogue.subset([4, 1]).table["id"].tolist() == ["p4", "p1"]
    mask = np.array([True, False, True, False, False, True])
    assert catalogue.subset(mask).table["id"].tolist() == ["p0", "p2", "p5"]
    with pytest.raises(ValueError, match="3 entries for 6 products"):
        catalogue.subset(np.array([True, False, True]))


def test_samples_are_reproducible_and_stratified():
    catalogue = Catalogue(pd.concat([table()] * 10, ignore_index=True))
    assert catalogue.sample(5, seed=1).table["id"].tolist() == catalogue.sample(5, seed=1).table["id"].tolist()
    assert len(catalogue.sample(500)) == 60
    strata = catalogue.stratified_sample(12).table["category"].value_counts()
    assert strata["a"] == 6 and strata["b"] == 4 and strata["c"] == 2


def test_loader_notes_survive_subsets_and_the_table_does_not_repeat_them():
    catalogue = Catalogue(table(), "shop", notes=("load_x: kept 6 of 8 listings; dropped 2 <no image>",))
    page = catalogue.subset([0, 1])._repr_html_()
    assert catalogue.subset([0, 1]).notes == catalogue.notes and page.count("<tr") == 3
    assert "kept 6 of 8" not in page  # printed when the loader ran, not again under every table
    assert "/img/" not in page and ">path<" not in page and "min-width: 12em" in page  # no paths; readable descriptions
