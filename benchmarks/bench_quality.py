"""Retrieval quality on the sample catalogue: MAP@5/10/20 and P@10 for every backbone this machine can load.

Leave-one-out over the 770-photo sample (30 ``articleType`` categories): every product queries all the
others; a result is relevant when it has the query's category (``SearchEngine.evaluate``, i.e.
``cbir_tutorial.evaluation.metrics.evaluate``, AP normalised by min(K, R)). Backbones: efficientnet_lite0 with its
(offline) ImageNet weights, with both resize policies (squash, pad on white); vgg16, resnet50 and
xception with ImageNet weights when they can be had, otherwise with random weights as the untrained
baseline, labelled as such. A "chance" row gives the exact expected scores of a random ranking.

Features are extracted into a fresh temporary folder per run (``cache=`` of ``SearchEngine.build``,
deleted at the end), so every run extracts and times its own features; ``--cache DIR`` keeps and reuses
a folder instead. Converted EfficientNet-Lite0 weights come from the usual ``CBIR_TUTORIAL_CACHE``.
Writes the MAP@10 bar chart to ``benchmarks/quality.png``.

Then one row per named recipe (``cbir_tutorial.search.recipes.RECIPES``, each adding one step to the one
before) with EfficientNet-Lite0: MAP@10 on the whole sample and on its tuning / report halves, the
indexing time (extraction time per photo measured without cache on 64 photos, times the catalogue
size, plus fitting whitening and expansion on the cached features) and the time of one query photo
(extraction + transforms + search, median over 20 photos), each also as the extra over the baseline.

    python benchmarks/bench_quality.py
    python benchmarks/bench_quality.py --recipes-only --cache DIR   # only the recipe rows
    python benchmarks/bench_quality.py --smoke      # 60 photos, one backbone, chart to a temp file (deleted)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd

from common import add_json_option, note, print_header, print_table, sample_catalogue, write_json

HERE = Path(__file__).resolve().parent
ALL_BACKBONES = ("efficientnet_lite0", "vgg16", "resnet50", "xception")


def chance_scores(labels: np.ndarray, k: int) -> tuple[float, float]:
    """Expected ``(P@k, MAP@k)`` of a uniformly random ranking, leave-one-out, same queries as ``evaluate``.

    With N - 1 candidates of which R are relevant, P(rel_j) = p = R / (N - 1) and, for i < j,
    P(rel_i and rel_j) = p (R - 1) / (N - 2); so E[P@j rel_j] = (p + (j - 1) p (R - 1) / (N - 2)) / j.
    """
    labels = np.asarray(labels, dtype=object)
    names, counts = np.unique(labels[labels != ""].astype(str), return_counts=True)
    n = len(labels)
    precisions, aps = [], []
    for count in counts:
        r = count - 1  # the query itself is left out
        if r < 1:
            continue
        p = r / (n - 1)
        j = np.arange(1, k + 1)
        expected = (p + (j - 1) * p * (r - 1) / (n - 2)) / j
        precisions += [p] * count
        aps += [expected.sum() / min(k, r)] * count
    return float(np.mean(precisions)), float(np.mean(aps))


def configurations(backbones: list[str], weights: str) -> list[tuple[str, str, str]]:
    """``(backbone, weights request, resize)`` to evaluate, in table order."""
    configs = []
    for name in backbones:
        if name == "efficientnet_lite0":
            configs += [(name, "imagenet", "squash"), (name, "imagenet", "pad")]
        else:
            configs.append((name, weights, "squash"))
    return configs


def extractor_for(name: str, request: str, resize: str):
    """``(FeatureExtractor, weights label)``; ``request`` 'auto' tries ImageNet, then random weights."""
    from cbir_tutorial import available_extractor

    weights = "random" if request == "random" else "imagenet"
    extractor = available_extractor(name, weights, fallback="random" if request == "auto" else None, resize=resize)
    return extractor, "ImageNet" if extractor.pretrained else "random (untrained baseline)"


def evaluate_configuration(catalogue, name: str, request: str, resize: str, ks: list[int],
                           cache) -> tuple[dict, pd.DataFrame]:
    """One row of scores (and the per-category table at K = 10) for one backbone configuration."""
    from cbir_tutorial import SearchEngine, evaluate

    extractor, label = extractor_for(name, request, resize)
    start = time.perf_counter()
    engine = SearchEngine.build(catalogue, extractor, cache=cache, progress=False)
    seconds = time.perf_counter() - start
    row = {"configuration": f"{name}, {label}, {resize}", "backbone": name, "weights": label, "resize": resize,
           "indexed": len(engine), "extraction s": seconds}
    per_category = None
    for k in ks:
        table = evaluate(engine, k=k)
        overall = table.iloc[0]
        row[f"MAP@{k}"] = float(overall["map_at_k"])
        row[f"P@{k}"] = float(overall["precision_at_k"])
        if k == 10:
            per_category = table.iloc[1:]
    return row, per_category


def recipe_rows(catalogue, recipes, cache, n_queries: int = 20, n_timed: int = 64) -> list[dict]:
    """One row per recipe: MAP@10 (all / tuning / report halves), indexing and per-query seconds, extras."""
    from cbir_tutorial import SearchEngine
    from cbir_tutorial.evaluation.reports import recipe_table
    from cbir_tutorial.search.pipeline import extractor_for
    from cbir_tutorial.search.recipes import recipe_from_word

    backbone = "efficientnet_lite0"
    per_photo_s: dict = {}

    def extraction_time(embedding, name):
        """Seconds to extract the whole catalogue: per-photo time measured without cache, times N."""
        key = (name, embedding.pooling, embedding.p, embedding.flip, embedding.scales)
        if key not in per_photo_s:
            extractor = extractor_for(embedding, name, "imagenet")
            timed = catalogue.paths[:n_timed]
            extractor.extract(timed[:8], cache=False, progress=False)  # warm-up: graph tracing
            start = time.perf_counter()
            extractor.extract(timed, cache=False, progress=False)
            per_photo_s[key] = (time.perf_counter() - start) / len(timed)
        return per_photo_s[key] * len(catalogue)

    scores = recipe_table(catalogue, recipes, backbone, cache=cache).set_index("recipe")
    queries = catalogue.paths[:: max(1, len(catalogue) // n_queries)][:n_queries]
    rows = []
    for name in recipes:
        recipe = recipe_from_word(name)
        embedding = recipe.embedding
        extract = extraction_time(embedding, backbone) + (extraction_time(embedding, embedding.fuse_with)
                                                          if embedding.fuse_with else 0.0)
        start = time.perf_counter()
        engine = SearchEngine.build(catalogue, backbone, "imagenet", recipe=recipe, cache=cache, progress=False)
        fit = time.perf_counter() - start  # features from the cache (extracted above): loading + whitening + DBA
        engine.search(queries[0], 10)  # warm-up (traces the query-size graph)
        times = []
        for query in queries:
            start = time.perf_counter()
            engine.search(query, 10)
            times.append(time.perf_counter() - start)
        rows.append({"recipe": recipe.name, "steps": ", ".join(recipe.steps()) or "-",
                     "MAP@10": scores.loc[recipe.name, "map_all"], "tuning half": scores.loc[recipe.name, "map_tuning"],
                     "report half": scores.loc[recipe.name, "map_report"], "extract s": extract, "fit s": fit,
                     "index s": extract + fit,
                     "query ms": 1000 * float(np.median(times))})
    for row in rows:
        row["extra index s"] = row["index s"] - rows[0]["index s"]
        row["extra query ms"] = row["query ms"] - rows[0]["query ms"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(ALL_BACKBONES), choices=ALL_BACKBONES)
    parser.add_argument("--weights", default="auto", choices=["auto", "imagenet", "random"],
                        help="for vgg16/resnet50/xception: 'auto' = ImageNet if it can be had, else random")
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--cache", default=None, help="feature cache folder to reuse (default: a fresh temp one)")
    parser.add_argument("--figure", default=None, help=f"bar chart PNG (default {HERE / 'quality.png'})")
    parser.add_argument("--images", type=int, default=None, help="evaluate a stratified sample of this size")
    parser.add_argument("--smoke", action="store_true", help="60 photos, one backbone, chart to a temp file")
    parser.add_argument("--recipes-only", action="store_true", help="skip the backbone table and chart")
    parser.add_argument("--recipes", nargs="*", default=None,
                        help="named recipes to time (default: all; --smoke: baseline and single; none: skip)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if 10 not in args.ks:
        args.ks.append(10)  # P@10 is always reported
    scratch = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    if args.smoke:
        args.backbones = ["efficientnet_lite0"]
        args.images = 60
        args.figure = args.figure or str(scratch / "quality.png")
    figure_path = Path(args.figure or HERE / "quality.png")
    features_cache = Path(args.cache).resolve() if args.cache else scratch / "features"

    try:
        print_header("Retrieval quality on the sample catalogue (leave-one-out)",
                     ("numpy", "tensorflow", "keras", "pandas"))
        catalogue = sample_catalogue()
        if args.images:
            catalogue = catalogue.stratified_sample(args.images, seed=0)
        labels = catalogue.labels
        note(f"Catalogue: {catalogue.name}, {len(catalogue)} photos, {len(set(labels) - {''})} categories; "
             f"features cached in {features_cache}"
             f"{'' if args.cache else ' (fresh for this run, deleted at the end)'}\n")

        rows, first_per_category = [], None
        for name, request, resize in ([] if args.recipes_only else configurations(args.backbones, args.weights)):
            row, per_category = evaluate_configuration(catalogue, name, request, resize, args.ks,
                                                       features_cache)
            rows.append(row)
            if first_per_category is None:
                first_per_category = (row["configuration"], per_category)
            print(f"{row['configuration']}: MAP@10 = {row['MAP@10']:.3f} "
                  f"({row['indexed']} photos in {row['extraction s']:.0f} s)", flush=True)
        chance = {"configuration": "chance (random ranking, expected)", "backbone": "chance",
                  "weights": "-", "resize": "-", "indexed": len(catalogue), "extraction s": "-"}
        for k in args.ks:
            chance[f"P@{k}"], chance[f"MAP@{k}"] = chance_scores(labels, k)
        rows.append(chance)
        print()
        if args.recipes_only:
            rows = []

        ks = sorted(args.ks)
        if rows:
            print_table("Retrieval quality (leave-one-out, relevant = same category)", rows,
                        ["configuration", "indexed"] + [f"MAP@{k}" for k in ks] + ["P@10", "extraction s"])
        if first_per_category is not None:
            title, table = first_per_category
            print_table(f"MAP@10 per category: {title}", [
                {"category": r.category, "queries": r.n_queries, "relevant per query": r.n_relevant_mean,
                 "P@10": r.precision_at_k, "MAP@10": r.map_at_k}
                for r in table.sort_values("map_at_k", ascending=False).itertuples()])

        if rows:
            from cbir_tutorial.ui.plotting import map_comparison_figure

            bars = [f"{r['backbone']}\n{r['weights'].replace(' (untrained baseline)', ' weights')}\n{r['resize']}"
                    for r in rows[:-1]] + ["chance\n(random ranking)"]
            scores = pd.DataFrame({"backbone": bars, "map_at_k": [r["MAP@10"] for r in rows], "k": 10})
            figure = map_comparison_figure(scores, title=f"MAP@10, leave-one-out on {catalogue.name} "
                                                         f"({len(catalogue)} photos, {len(set(labels) - {''})} categories)")
            figure.savefig(figure_path, dpi=110)
            note(f"Chart: {figure_path} ({figure_path.stat().st_size:,} bytes)")

        from cbir_tutorial.search.recipes import RECIPES

        recipes = args.recipes if args.recipes is not None else (["baseline", "single"] if args.smoke else list(RECIPES))
        if recipes and recipes[0] != "baseline":
            recipes = ["baseline", *recipes]  # extras are measured against it
        if recipes and "efficientnet_lite0" in args.backbones:
            print()
            print_table("Recipes (efficientnet_lite0; MAP@10 leave-one-out; extra = over the baseline)",
                        recipe_rows(catalogue, recipes, features_cache),
                        ["recipe", "MAP@10", "tuning half", "report half", "extract s", "fit s", "index s",
                         "extra index s",
                         "query ms", "extra query ms", "steps"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
