"""Every benchmark script runs end to end at its ``--smoke`` size and prints its table.

Speed targets are not asserted here (they live in ``benchmarks/RESULTS.md``); what is asserted is what a
maintainer relies on when reading a full run: the script exits 0, prints its Markdown table, and the
figures in it are sane (pipelines agree, top-k lists match, memory is measured, the trained backbone
beats chance).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HAS_FAISS = importlib.util.find_spec("faiss") is not None


def run_smoke(script: str, *extra: str) -> str:
    """stdout of ``python benchmarks/<script> --smoke``; fails with its stderr if it exits non-zero."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *extra],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def table(stdout: str, title: str) -> list[dict]:
    """The rows of the Markdown table printed under ``## <title>...`` as dicts of strings."""
    match = re.search(r"^## " + re.escape(title) + r".*\n\n((?:\|.*\|\n)+)", stdout, re.MULTILINE)
    assert match, f"no table titled {title!r} in:\n{stdout[-3000:]}"
    lines = match.group(1).strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}, "second line of a Markdown table must be the separator"
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_extraction_smoke():
    out = run_smoke("bench_extraction.py")
    assert "GPU:" in out and "FLOPs/cycle" in out
    rows = table(out, "Extraction throughput")
    backbones = {"resnet50", "efficientnet_lite0"}
    assert {r["backbone"] for r in rows} == backbones
    for row in rows:
        assert number(row["img/s"]) > 0
        assert 0 < number(row["GFLOP/img"]) < 20
    originals = [r for r in rows if r["pipeline"].startswith("original")]
    for row in originals:
        assert number(row["x original"]) == 1
        # the model part of both pipelines agrees exactly when fed the same pixels
        same_pixels = float(row["note"].rsplit(":", 1)[1])
        assert same_pixels > 0.999, row["note"]
    resnet = next(r for r in originals if r["backbone"] == "resnet50")
    assert 7.0 < number(resnet["GFLOP/img"]) < 8.5  # ResNet-50 without top: about 3.9 G multiply-adds


def test_extraction_smoke_with_and_without_mixed_precision():
    out = run_smoke("bench_extraction.py", "--backbones", "efficientnet_lite0", "--mixed-precision", "both")
    rows = table(out, "Extraction throughput")
    assert sorted({r["precision"] for r in rows}) == ["float32", "mixed_bfloat16"]  # bfloat16 on a CPU
    for row in rows:
        if row["pipeline"].startswith("model only"):
            assert number(row["% model only"]) == 100
        assert number(row["% model only"]) > 0
    assert out.count("of the model-only rate") == 2


def test_cache_smoke():
    out = run_smoke("bench_cache.py")
    rows = table(out, "Incremental cache")
    assert [(number(r["images"]), number(r["extracted"]), number(r["reused"])) for r in rows] == [
        (60, 60, 0), (63, 3, 60), (63, 0, 63)]
    assert number(rows[0]["x full extraction"]) == 1 and number(rows[1]["seconds"]) > 0
    assert float(rows[1]["note"].rsplit(" ", 1)[1]) < 1e-5  # the added rows equal an uncached extraction
    assert "faster" in out


def test_ranking_smoke():
    out = run_smoke("bench_ranking.py", "--profile")
    rows = table(out, "Search time")
    methods = {(r["method"], r["storage"]) for r in rows}
    assert ("package EuclideanIndex", "float32") in methods and ("original dict loop", "float32") in methods
    assert (("FAISS IndexFlatL2", "float32") in methods) == HAS_FAISS
    for row in rows:
        assert number(row["1 query ms"]) > 0
        if row["storage"] == "float32":  # exact search in float32: the same top-k as the reference
            assert row[next(c for c in row if c.startswith("top-k vs"))].startswith("100% same order"), row
    assert table(out, "Memory floor")
    assert table(out, "Profile:")
    assert table(out, "Package float32 by chunk_rows")


def test_scale_smoke():
    out = run_smoke("bench_scale.py")
    search = table(out, "Search over the simulated gallery")
    assert [r["search"] for r in search] == ["1 query", "batch of 8"]
    for row in search:
        assert number(row["median s"]) > 0
        assert number(row["extra MiB (tracemalloc)"]) > 0
    extraction = table(out, "Extraction memory")
    assert [number(r["images"]) for r in extraction] == [8, 24]
    for row in extraction:
        assert number(row["kept"]) == number(row["images"])
        assert number(row["peak RSS MiB"]) >= number(row["RSS before MiB"]) > 0


def test_quality_smoke():
    out = run_smoke("bench_quality.py")
    rows = table(out, "Retrieval quality")
    scores = {r["configuration"]: r for r in rows}
    chance = number(scores["chance (random ranking, expected)"]["MAP@10"])
    for row in rows:
        for column in ("MAP@5", "MAP@10", "MAP@20", "P@10"):
            assert 0 <= number(row[column]) <= 1
    trained = number(scores["efficientnet_lite0, ImageNet, squash"]["MAP@10"])
    assert trained > 2 * chance, (trained, chance)
    assert "efficientnet_lite0, ImageNet, pad" in scores
    assert re.search(r"^Chart: .*quality\.png \([\d,]+ bytes\)", out, re.MULTILINE)
    recipes = {r["recipe"]: r for r in table(out, "Recipes")}
    assert list(recipes) == ["baseline", "best"] and number(recipes["baseline"]["extra index s"]) == 0
    assert all(0 < number(r["MAP@10"]) <= 1 and number(r["query ms"]) > 0 for r in recipes.values())


def test_explorer_smoke():
    out = run_smoke("bench_explorer.py")
    rows = table(out, "Interactions on")
    assert rows
    for row in rows:
        assert 0 < number(row["median ms"]) < 60_000, row
