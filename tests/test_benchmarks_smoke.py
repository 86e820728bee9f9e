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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HAS_FAISS = importlib.util.find_spec("faiss") is not None

#: Each test's benchmark run (script, options), longest first.
SMOKE_RUNS = {
    "test_training_smoke": ("bench_training.py",),
    "test_quality_smoke": ("bench_quality.py",),
    "test_scale_smoke": ("bench_scale.py",),
    "test_extraction_smoke": ("bench_extraction.py",),
    "test_explorer_smoke": ("bench_explorer.py",),
    "test_extraction_smoke_with_and_without_mixed_precision": (
        "bench_extraction.py", "--backbones", "efficientnet_lite0", "--mixed-precision", "both"),
    "test_choose_recipe_smoke": ("choose_recipe.py",),
    "test_cache_smoke": ("bench_cache.py",),
    "test_import_smoke": ("bench_import.py",),
    "test_ranking_smoke": ("bench_ranking.py", "--profile"),
}


def run_smoke(script: str, *extra: str, started: list[subprocess.Popen]) -> subprocess.CompletedProcess:
    """``python benchmarks/<script> --smoke <extra>``, finished, its output captured; killed after 10 minutes
    (exit code -9). The process is appended to ``started`` so that an interrupted session can kill it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, str(BENCHMARKS / script), "--smoke", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    started.append(process)
    try:
        stdout, stderr = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def smoke_runs(request):
    """``{test name: future of its finished benchmark run}`` for the selected tests, all started when the
    first of them runs, two at a time: one run's start-up (Python, TensorFlow, model building: one core)
    overlaps another's work. The tests wait for them, so they run at the tests' own priority."""
    selected = {item.originalname for item in request.session.items if item.module is request.module}
    started = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_smoke, *run, started=started)
                   for name, run in SMOKE_RUNS.items() if name in selected}
        try:
            yield futures
        finally:  # an interrupted session leaves no run behind
            for future in futures.values():
                future.cancel()
            for process in started:
                if process.poll() is None:
                    process.kill()


@pytest.fixture
def smoke_output(request, smoke_runs) -> str:
    """The stdout of this test's benchmark run; a run that exited non-zero fails the test with its output."""
    done = smoke_runs[request.node.originalname].result()
    script = " ".join(done.args[1:])
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


def test_extraction_smoke(smoke_output):
    out = smoke_output
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


def test_extraction_smoke_with_and_without_mixed_precision(smoke_output):
    out = smoke_output
    rows = table(out, "Extraction throughput")
    assert sorted({r["precision"] for r in rows}) == ["float32", "mixed_bfloat16"]  # bfloat16 on a CPU
    for row in rows:
        if row["pipeline"].startswith("model only"):
            assert number(row["% model only"]) == 100
        assert number(row["% model only"]) > 0
    assert out.count("of the model-only rate") == 2


def test_cache_smoke(smoke_output):
    out = smoke_output
    rows = table(out, "Incremental cache")
    assert [(number(r["images"]), number(r["extracted"]), number(r["reused"])) for r in rows] == [
        (60, 60, 0), (63, 3, 60), (63, 0, 63)]
    assert number(rows[0]["x full extraction"]) == 1 and number(rows[1]["seconds"]) > 0
    assert float(rows[1]["note"].rsplit(" ", 1)[1]) < 1e-5  # the added rows equal an uncached extraction
    assert "faster" in out


def test_ranking_smoke(smoke_output):
    out = smoke_output
    rows = table(out, "Search time")
    methods = {(r["method"], r["storage"]) for r in rows}
    assert ("package EuclideanIndex", "float32") in methods and ("original dict loop", "float32") in methods
    assert (("FAISS IndexFlatL2", "float32") in methods) == HAS_FAISS
    assert {s for m, s in methods if m == "package EuclideanIndex"} == {"float32", "bfloat16", "int8", "float16"}
    for row in rows:
        assert number(row["1 query ms"]) > 0
        exact = row["top-k vs exact float64"]
        overlap = float(exact.split(", ")[1].split("%")[0])
        if row["method"] == "package EuclideanIndex" and row["storage"] == "float32":
            assert exact.startswith("100% same order"), row  # ties broken like the float64 reference
        # FAISS computes in float32 too: near-ties may swap, but the same rows come back
        assert overlap >= (90.0 if row["storage"] in ("bfloat16", "int8") else 99.0), row
        if HAS_FAISS:
            assert number(row["overlap vs FAISS %"]) >= (90.0 if row["storage"] in ("bfloat16", "int8") else 99.0), row
    assert table(out, "Memory floor")
    assert table(out, "Profile:")
    assert table(out, "Package float32 by chunk_rows")


def test_scale_smoke(smoke_output):
    out = smoke_output
    search = table(out, "Search over the simulated gallery by storage")
    assert [r["storage"] for r in search] == ["float32", "bfloat16", "int8"]
    gib = {r["storage"]: number(r["index GiB"]) for r in search}
    assert gib["bfloat16"] < 0.51 * gib["float32"] and gib["int8"] < 0.26 * gib["float32"]
    for row in search:
        assert number(row["1 query s"]) > 0 and number(row["batch of 8 s"]) > 0
        assert number(row["recall@10 near a row"]) >= 0.9, row
        if row["storage"] == "float32":
            assert number(row["recall@10 random"]) == 1
    assert re.search(r"^int8: time [\d.]+x float32 .*; memory .*; recall@10 >= ", out, re.MULTILINE)
    ann = {r["index"]: r for r in table(out, "Approximate indexes and Milvus Lite")}
    if HAS_FAISS:
        assert number(ann["faiss-flat"]["recall@10"]) == 1  # exact
        assert number(ann["faiss-hnsw, ef_search=256"]["recall@10"]) >= 0.9
    if HAS_FAISS and importlib.util.find_spec("milvus_lite"):
        assert number(ann["milvus"]["recall@10"]) == 1 and number(ann["milvus"]["rows/s added"]) > 0
    extraction = table(out, "Extraction memory")
    assert [number(r["images"]) for r in extraction] == [8, 24]
    for row in extraction:
        assert number(row["kept"]) == number(row["images"])
        assert number(row["peak RSS MiB"]) >= number(row["RSS before MiB"]) > 0


def test_quality_smoke(smoke_output):
    out = smoke_output
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
    assert list(recipes) == ["baseline", "single"] and number(recipes["baseline"]["extra index s"]) == 0
    assert all(0 < number(r["MAP@10"]) <= 1 and number(r["query ms"]) > 0 for r in recipes.values())


def test_explorer_smoke(smoke_output):
    out = smoke_output
    rows = table(out, "Interactions on")
    assert rows
    for row in rows:
        assert 0 < number(row["median ms"]) < 60_000, row


def test_import_smoke(smoke_output):
    out = smoke_output
    rows = {r["command"]: r for r in table(out, "Wall time and peak RSS")}
    assert rows["python -m cbir_tutorial --help"]["now loads TF"] == "no"
    assert rows["import cbir_tutorial"]["now loads TF"] == "no" and number(rows["import cbir_tutorial"]["now MiB"]) > 0
    assert "--help imports TensorFlow: no (target met)" in out


def test_choose_recipe_smoke(smoke_output):
    out = smoke_output
    ranked = table(out, "Tuning half")
    scores = [number(r["map_tuning"]) for r in ranked]
    assert len(ranked) == 4 and scores == sorted(scores, reverse=True)
    final = {r["recipe"]: r for r in table(out, "The chosen recipe against the baseline")}
    assert set(final) == {"baseline", ranked[0]["recipe"]}
    assert number(final[ranked[0]["recipe"]]["map_tuning"]) == number(ranked[0]["map_tuning"])
    assert f"chosen: {ranked[0]['recipe']}" in out and "report half (the honest one)" in out


def test_training_smoke(smoke_output):
    throughput = table(smoke_output, "Training throughput")
    assert {r["what"].split(" (")[0] for r in throughput} == {"warm-up step", "fine-tune step", "embedding"}
    assert all(number(r["img/s"]) > 0 and r["image px"] == "64" for r in throughput)
    run, = table(smoke_output, "Training runs")
    assert run["protocol"] == "unseen-products" and run["epochs run"] == "1" and number(run["CPU s"]) > 0
    models = {r["model"]: r for r in table(smoke_output, "Protocols")}
    assert set(models) == {"frozen efficientnet_lite0", "projection head", "fine-tuned (multi-similarity)"}
    assert all(0 < number(r["map_at_10"]) <= 1 and 0 <= number(r["crop_recall@1"]) <= 1 for r in models.values())
    assert any(line.startswith("unseen-products: fine-tuned (multi-similarity) MAP@10") and "projection head" in line
               for line in smoke_output.splitlines())  # the sentence comparing the three models
