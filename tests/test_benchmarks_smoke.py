"""Every benchmark script runs end to end at its ``--smoke`` size and reports sane figures in its ``--json``.

Speed targets are not asserted here (they live in ``benchmarks/RESULTS.md``); what is asserted is what a
maintainer relies on when reading a full run: the script exits 0, reports its tables, and the figures in
them are sane (pipelines agree, top-k lists match, memory is measured, the trained backbone beats chance,
every control of the explorer is timed and answers with K results). Each test runs its script in a
subprocess; pytest-xdist (``-n``) runs them side by side, longest first (as written here) so that its
workers finish together.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.smoke

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HAS_FAISS = importlib.util.find_spec("faiss") is not None
TIMEOUT_S = 600


def tail(output: str | bytes | None, chars: int = 3000) -> str:
    """The last ``chars`` characters of a captured output (bytes when a timeout cut it short)."""
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return (output or "")[-chars:]


def smoke_report(tmp_path: Path, script: str, *options: str) -> dict:
    """The ``--json`` document of ``python benchmarks/<script> --smoke <options>``; a run that exits non-zero
    or takes over 10 minutes (then killed) fails the test with the end of its output."""
    out = tmp_path / "out.json"
    command = [sys.executable, str(BENCHMARKS / script), "--smoke", "--json", str(out), *options]
    shown = " ".join([script, "--smoke", *options])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{shown} ran over {TIMEOUT_S} s:\n{tail(error.stdout)}\n{tail(error.stderr)}")
    assert done.returncode == 0, f"{shown} exited {done.returncode}:\n{tail(done.stdout)}\n{tail(done.stderr)}"
    return json.loads(out.read_text())


def tables(report: dict, title: str) -> list[list[dict]]:
    """The rows of every table in ``report`` whose title starts with ``title``."""
    return [t["rows"] for t in report["tables"] if t["title"].startswith(title)]


def table(report: dict, title: str) -> list[dict]:
    """The rows of the one table whose title starts with ``title``."""
    found = tables(report, title)
    assert len(found) == 1, f"{len(found)} tables titled {title!r}...; tables: {[t['title'] for t in report['tables']]}"
    return found[0]


def notes_with(report: dict, text: str) -> list[str]:
    """The notes of ``report`` that contain ``text``."""
    return [line for line in report["notes"] if text in line]


def test_training_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_training.py")
    throughput = table(report, "Training throughput")
    assert {r["what"].split(" (")[0] for r in throughput} == {"warm-up step", "fine-tune step", "embedding"}
    assert all(r["img/s"] > 0 and r["image px"] == 64 for r in throughput)
    run, = table(report, "Training runs")
    assert run["protocol"] == "unseen-products" and run["epochs run"] == 1 and run["CPU s"] > 0
    models = {r["model"]: r for r in table(report, "Protocols")}
    robust = {m for m in models if m.startswith("robust (fused with frozen, w = ")}  # when the chosen weight is < 1
    trained = {"fine-tuned (multi-similarity)"} if run["best epoch"] else {"probe kept (refitted)"}
    assert set(models) - robust == {"frozen efficientnet_lite0", "projection head", *trained}
    assert all(0 < r["MAP@10"] <= 1 and 0 <= r["crop R@1"] <= 1 for r in models.values())
    assert all(r["protocol"] == "unseen-products" and "test products" in r for r in models.values())  # the split
    # the sentence comparing the three models
    assert any(line.startswith(f"unseen-products: {next(iter(trained))} MAP@10") and "projection head" in line
               for line in report["notes"])



def test_quality_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_quality.py")
    rows = table(report, "Retrieval quality")
    scores = {r["configuration"]: r for r in rows}
    chance = scores["chance (random ranking, expected)"]["MAP@10"]
    for row in rows:
        for column in ("MAP@5", "MAP@10", "MAP@20", "P@10"):
            assert 0 <= row[column] <= 1
    trained = scores["efficientnet_lite0, ImageNet, squash"]["MAP@10"]
    assert trained > 2 * chance, (trained, chance)
    assert "efficientnet_lite0, ImageNet, pad" in scores
    assert any(re.match(r"Chart: .*quality\.png \([\d,]+ bytes\)", line) for line in report["notes"])
    recipes = {r["recipe"]: r for r in table(report, "Recipes")}
    assert list(recipes) == ["baseline", "single"] and recipes["baseline"]["extra index s"] == 0
    assert all(0 < r["MAP@10"] <= 1 and r["query ms"] > 0 for r in recipes.values())


def test_scale_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_scale.py")
    search = table(report, "Search over the simulated gallery by storage")
    assert [r["storage"] for r in search] == ["float32", "bfloat16", "int8"]
    gib = {r["storage"]: r["index GiB"] for r in search}
    assert gib["bfloat16"] < 0.51 * gib["float32"] and gib["int8"] < 0.26 * gib["float32"]
    for row in search:
        assert row["1 query s"] > 0 and row["batch of 8 s"] > 0
        assert row["recall@10 near a row"] >= 0.9, row
        if row["storage"] == "float32":
            assert row["recall@10 random"] == 1
    assert any(re.match(r"int8: time [\d.]+x float32 .*; memory .*; recall@10 >= ", line) for line in report["notes"])
    ann = {r["index"]: r for r in table(report, "Approximate indexes and Milvus Lite")}
    if HAS_FAISS:
        assert ann["faiss-flat"]["recall@10"] == 1  # exact
        assert ann["faiss-hnsw, ef_search=256"]["recall@10"] >= 0.9
    if HAS_FAISS and importlib.util.find_spec("milvus_lite"):
        assert ann["milvus"]["recall@10"] == 1 and ann["milvus"]["rows/s added"] > 0
    extraction = table(report, "Extraction memory")
    assert [r["images"] for r in extraction] == [8, 24]
    for row in extraction:
        assert row["kept"] == row["images"]
        assert row["peak RSS MiB"] >= row["RSS before MiB"] > 0


def test_changes_smoke(tmp_path):
    backends = ["exact", "faiss-hnsw"] if HAS_FAISS else ["exact"]
    report = smoke_report(tmp_path, "bench_changes.py", "--backends", *backends)
    rows = table(report, "Changes against a rebuild")
    assert sorted({r["backend"] for r in rows}) == sorted(backends), rows
    recall = {r["backend"]: r for r in table(report, "Recall@10 against exact search on the final set")}
    assert recall["exact"]["recall@10 after changes"] == 1 and recall["exact"]["ids = final set"] == "yes"
    if HAS_FAISS:
        assert recall["faiss-hnsw"]["recall@10 after changes"] >= 0.9
        assert recall["faiss-hnsw"]["ids = final set"] == "yes"


def test_choose_recipe_smoke(tmp_path):
    report = smoke_report(tmp_path, "choose_recipe.py")
    ranked = table(report, "Tuning half")
    scores = [r["map_tuning"] for r in ranked]
    assert len(ranked) == 4 and scores == sorted(scores, reverse=True)
    final = {r["recipe"]: r for r in table(report, "The chosen recipe against the baseline")}
    assert set(final) == {"baseline", ranked[0]["recipe"]}
    assert final[ranked[0]["recipe"]]["map_tuning"] == pytest.approx(ranked[0]["map_tuning"])
    assert notes_with(report, f"chosen: {ranked[0]['recipe']}") and notes_with(report, "report half (the honest one)")


def row_named(rows: list[dict], start: str) -> dict:
    """The one row of ``rows`` whose first column starts with ``start``."""
    found = [r for r in rows if next(iter(r.values())).startswith(start)]
    assert len(found) == 1, f"{len(found)} rows named {start!r}...: {[next(iter(r.values())) for r in rows]}"
    return found[0]


def test_explorer_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_explorer.py")
    interactions = table(report, "Interactions on")
    ready, = notes_with(report, "Explorer ready")
    offered = ready.split("controls: ")[1].split("; ")[0].split(", ")
    # every control a user can touch is timed, but the recipe: its first choice extracts the catalogue again
    assert set(offered) - {r["control"] for r in interactions} == {"recipe"}, (offered, interactions)
    for row in interactions:
        assert 0 < row["min ms"] <= row["median ms"] <= row["max ms"], row
        assert row["HTML KiB"] > 0, row
        if row["products allowed"] > row["K"]:  # the top K, or every product the filters allow when fewer
            assert row["results"] == row["K"], row
        else:
            assert 0 < row["results"] <= row["products allowed"], row
    assert row_named(interactions, "new K")["K"] != 10  # the slider moved, and K results came back
    assert row_named(interactions, "new query, compare mode")["backbones shown"] == 2

    parts = table(report, "Where the time goes")
    for part in parts:
        assert 0 < part["min ms"] <= part["median ms"] <= part["max ms"], part
    plain, filtered = row_named(parts, "search + P@K/AP@K"), row_named(parts, "search with category + price")
    assert plain["results"] == filtered["results"] == 10
    assert filtered["products allowed"] < plain["products allowed"]


def test_extraction_smoke_with_and_without_mixed_precision(tmp_path):
    report = smoke_report(tmp_path, "bench_extraction.py", "--mixed-precision", "both")
    assert report["header"]["gpu"] and notes_with(report, "FLOPs/cycle")
    rows = table(report, "Extraction throughput")
    assert {r["backbone"] for r in rows} == {"resnet50", "efficientnet_lite0"}
    assert sorted({r["precision"] for r in rows}) == ["float32", "mixed_bfloat16"]  # bfloat16 on a CPU
    for row in rows:
        assert row["img/s"] > 0 and row["% model only"] > 0
        assert 0 < row["GFLOP/img"] < 20
        if row["pipeline"].startswith("model only"):
            assert row["% model only"] == pytest.approx(100)
    originals = [r for r in rows if r["pipeline"].startswith("original")]
    for row in originals:
        assert row["x original"] == pytest.approx(1)
        if row["precision"] == "float32":  # the model part of both pipelines agrees when fed the same pixels
            assert row["cos, same load_img pixels"] > 0.999, row
    resnet = next(r for r in originals if r["backbone"] == "resnet50")
    assert 7.0 < resnet["GFLOP/img"] < 8.5  # ResNet-50 without top: about 3.9 G multiply-adds
    assert len(notes_with(report, "of the model-only rate")) == 4  # two backbones, two precisions


def test_cache_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_cache.py")
    rows = table(report, "Incremental cache")
    assert [(r["images"], r["extracted"], r["reused"]) for r in rows] == [(60, 60, 0), (63, 3, 60), (63, 0, 63)]
    assert rows[0]["time / full extraction"] == pytest.approx(1) and rows[1]["seconds"] > 0
    assert rows[1]["largest diff vs uncached"] < 1e-5  # the added rows equal an uncached extraction
    assert notes_with(report, "faster")


def test_import_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_import.py")
    rows = {r["command"]: r for r in table(report, "Wall time and peak RSS")}
    assert rows["python -m cbir_tutorial --help"]["now loads TF"] == "no"
    assert rows["import cbir_tutorial"]["now loads TF"] == "no" and rows["import cbir_tutorial"]["now MiB"] > 0
    assert "--help imports TensorFlow: no (target met)" in report["notes"]


def test_ranking_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_ranking.py", "--profile")
    rows = table(report, "Search time")
    methods = {(r["method"], r["storage"]) for r in rows}
    assert ("package EuclideanIndex", "float32") in methods and ("original dict loop", "float32") in methods
    assert (("FAISS IndexFlatL2", "float32") in methods) == HAS_FAISS
    assert {s for m, s in methods if m == "package EuclideanIndex"} == {"float32", "bfloat16", "int8", "float16"}
    for row in rows:
        assert row["1 query ms"] > 0
        if row["method"] == "package EuclideanIndex" and row["storage"] == "float32":
            assert row["same order % vs exact float64"] == 100, row  # ties broken like the float64 reference
        # FAISS computes in float32 too: near-ties may swap, but the same rows come back
        least = 90.0 if row["storage"] in ("bfloat16", "int8") else 99.0
        assert row["overlap % vs exact float64"] >= least, row
        if HAS_FAISS:
            assert row["overlap vs FAISS %"] >= least, row
    assert table(report, "Memory floor")
    profiles = tables(report, "Profile:")
    assert profiles and all(profiles)
    assert table(report, "Package float32 by chunk_rows")


def test_json_document_keeps_raw_values_as_strict_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_common", BENCHMARKS / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    common.print_table("Sizes", [{"n": np.int64(3), "s": np.float32(0.125), "gap": float("nan"), "text": "-",
                                  "note": ""}])  # a column empty in every row is left out
    common.note("verdict: met\n")
    common.write_json(tmp_path / "out.json")
    assert "| 3 | 0.125 | nan | - |" in capsys.readouterr().out  # the Markdown as before
    # parse_constant: NaN or Infinity in the file fails the test (strict JSON has neither)
    assert json.loads((tmp_path / "out.json").read_text(), parse_constant=pytest.fail) == {
        "header": {}, "notes": ["verdict: met"],
        "tables": [{"title": "Sizes", "columns": ["n", "s", "gap", "text"],
                    "rows": [{"n": 3, "s": 0.125, "gap": None, "text": "-"}]}]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_notebooks_smoke(tmp_path):
    report = smoke_report(tmp_path, "bench_notebooks.py")
    row, = table(report, "Each notebook run top to bottom")
    assert row["notebook"] == "01_setup_and_data.ipynb"
    for column in ("first run: wall s", "first run: CPU s", "cached: wall s", "cached: CPU s"):
        assert 0 < row[column] < 600, (column, row)
    assert notes_with(report, "CBIR_NB_CATALOGUE=sample") and notes_with(report, "CBIR_NB_WEIGHTS=random")
