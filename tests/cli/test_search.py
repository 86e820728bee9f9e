"""``python -m cbir_tutorial search``: the top K catalogue products for a photo, printed as a table (the engine's
own answer), and a result grid (``--query`` itself: test_query_option.py)."""

import numpy as np

from cbir_tutorial.cli import main


def test_search_prints_the_top_k_and_writes_a_grid(sample_dir, tmp_path, capsys):
    query = sorted((sample_dir / "images").glob("*.jpg"))[5]
    out_png = tmp_path / "grid.png"
    status = main(["search", "--catalogue", str(sample_dir), "--format", "fashion-products",
                   "--backbone", "efficientnet_lite0", "--query", str(query), "--k", "4", "--out", str(out_png)])
    out = capsys.readouterr().out
    assert status == 0
    assert "Top 4 of 770 products" in out and out_png.stat().st_size > 10_000
    table_lines = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(table_lines) == 4 and table_lines[0].split()[0] == "1"


def test_search_lists_what_the_engine_finds_for_the_photo(sample_dir, sample_engine, capsys):
    """The table's rows are :meth:`SearchEngine.search`'s for the same photo, rank by rank (EfficientNet-Lite0,
    squashed photos, the whole sample)."""
    query = sample_engine.catalogue.paths[200]
    assert main(["search", "--catalogue", str(sample_dir), "--format", "fashion-products", "--backbone",
                 "efficientnet_lite0", "--query", query, "--k", "5"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    expected = sample_engine.search(query, 5)
    assert [int(row[0]) for row in rows] == expected["rank"].tolist()
    np.testing.assert_allclose([float(row[-1]) for row in rows], expected["distance"], atol=1e-3)
    assert float(rows[0][-1]) < 1e-3  # the catalogue's own photo first
    for line, brand in zip(out.splitlines()[-5:], expected["brand"]):
        assert brand in line
