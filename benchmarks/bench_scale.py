"""Scale: a simulated 1,000,000 x 2048 gallery by storage, approximate indexes, and extraction memory.

1. Gallery of random unit vectors (float32, 8 GiB, generated in chunks), indexed with float32 (in place),
   bfloat16 and int8 storage, the three held at once (14 GiB) and timed round-robin. Reported: the index's
   memory, the time per query (one at a time and a batch of 64), the extra memory one search needs,
   recall@10 against exact float32 for random queries and for queries near a gallery row, and the
   issue's targets (met or not, and why: for int8, the gap between the 10th and 11th exact distances
   against how far int8 codes move a distance).
2. FAISS flat, IVF (and IVF-PQ) and HNSW, and Milvus Lite (FLAT) at 100,000 rows, on queries near a gallery
   row: build time (insert rate), latency and recall@10 against the exact index.
3. Extraction memory must not grow with the catalogue: peak RSS while extracting 200 and 2,000 images
   (the sample's photos cycled), each size in a fresh subprocess so that the peaks are separate.

    python benchmarks/bench_scale.py            # 1,000,000 rows; ANN at 100,000 and 1,000,000; 200 and 2,000 images
    python benchmarks/bench_scale.py --rows 1000000 --ann-rows 100000 --images   # what RESULTS.md reports
    python benchmarks/bench_scale.py --smoke    # 20,000 rows; 4,000 for ANN; 8 and 24 images, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from cbir_tutorial.search.sizing import ann_recall_at_k

from common import (add_json_option, median_seconds, note, peak_rss_mib, print_header, print_table,
                    reset_peak_rss, rss_mib, sample_catalogue, unit_vectors, write_json)


def search_memory(index, queries: np.ndarray, k: int) -> tuple[float, float]:
    """``(MiB, MiB)``: peak numpy allocations during ``index.search(queries, k)`` (tracemalloc) and the rise
    of peak RSS above the RSS before it (NaN when the peak cannot be reset)."""
    index.search(queries, k)  # warm-up, outside the measurement
    resettable = reset_peak_rss()
    before = rss_mib()
    tracemalloc.start()
    try:
        index.search(queries, k)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_rise = peak_rss_mib() - before if resettable else float("nan")
    return traced_peak / 2**20, rss_rise


def near_queries(gallery: np.ndarray, n: int, seed: int = 2, noise: float = 0.5) -> np.ndarray:
    """``(n, D)`` unit vectors near gallery rows (a row plus Gaussian noise of ``noise`` x its norm, normalised):
    queries with a clear nearest neighbour, like a second photo of a product."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(gallery), n, replace=False)
    q = gallery[rows].astype(np.float32) + noise * rng.standard_normal((n, gallery.shape[1]), dtype=np.float32) / np.sqrt(gallery.shape[1])
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def storage_rows(n: int, dim: int, n_queries: int, k: int, repeats: int) -> list[dict]:
    """One float32 gallery indexed with float32 (in place), bfloat16 and int8 storage, all three held at once
    so that their repeats go round-robin: index memory, time per query (1 query and a batch), extra memory
    of a search, and recall@k against exact float32 for random queries and for queries near a gallery row."""
    from cbir_tutorial import make_index

    start = time.perf_counter()
    gallery = unit_vectors(n, dim, seed=0, chunk=16_384)
    note(f"Gallery {n:,} x {dim} float32: {gallery.nbytes / 2**30:.2f} GiB, generated in "
         f"{time.perf_counter() - start:.1f} s; RSS {rss_mib():,.0f} MiB\n")
    query_sets = {"random": unit_vectors(n_queries, dim, seed=1), "near a row": near_queries(gallery, n_queries)}
    indexes, built = {"float32": make_index("exact", gallery)}, {"float32": 0.0}
    assert np.shares_memory(indexes["float32"].gallery, gallery), "float32 storage must use the array in place"
    for storage in ("bfloat16", "int8"):
        start = time.perf_counter()
        indexes[storage] = make_index("exact", gallery, dtype=storage)
        built[storage] = time.perf_counter() - start
    reference = {name: indexes["float32"].search(q, k)[1] for name, q in query_sets.items()}
    queries = query_sets["random"]
    one = {storage: [] for storage in indexes}
    batch = {storage: [] for storage in indexes}
    for _ in range(repeats):  # round-robin: a busy spell of the machine hits every storage alike
        for storage, index in indexes.items():
            one[storage] += median_seconds(lambda: [index.search(q, k) for q in queries[:4]], 1)[1]
            batch[storage] += median_seconds(lambda: index.search(queries, k), 1)[1]
    rows = []
    for storage, index in indexes.items():
        traced, rss_rise = search_memory(index, queries[:1], k)
        recalls = {name: ann_recall_at_k(index.search(q, k)[1], reference[name]) for name, q in query_sets.items()}
        rows.append({"gallery": f"{n:,} x {dim}", "storage": storage, "index GiB": index.nbytes / 2**30,
                     "built s": built[storage], "1 query s": float(np.median(one[storage])) / 4,
                     f"batch of {n_queries} s": float(np.median(batch[storage])),
                     "ms per query in batch": 1e3 * float(np.median(batch[storage])) / n_queries,
                     "extra MiB, 1 query (tracemalloc)": traced, "peak RSS rise MiB": rss_rise,
                     f"recall@{k} random": recalls["random"], f"recall@{k} near a row": recalls["near a row"]})
        if storage == "int8":
            rows[-1]["margin"] = int8_margin(gallery, indexes["float32"], index, queries, k)
        print(f"  {storage}: 1 query {rows[-1]['1 query s']:.3f} s, batch {rows[-1][f'batch of {n_queries} s']:.2f} s, "
              f"recall {recalls}", flush=True)
    return rows


def int8_margin(gallery: np.ndarray, exact, index, queries: np.ndarray, k: int) -> dict:
    """Why int8 misses some of the top ``k``: the gap between the ``exact`` index's k-th and (k+1)-th
    distances against how far int8 codes move a distance (both over 8 ``queries``, squared distances)."""
    nearest = exact.search(queries[:8], k + 1)[0].astype(np.float64) ** 2
    rows = np.random.default_rng(3).choice(len(gallery), min(4096, len(gallery)), replace=False)
    decoded = index.vectors(rows)
    true_sq = ((gallery[rows][None] - queries[:8, None]) ** 2).sum(axis=2)
    int8_sq = ((decoded[None] - queries[:8, None]) ** 2).sum(axis=2)
    return {"gap": float(np.median(nearest[:, k] - nearest[:, k - 1])), "error": float(np.std(int8_sq - true_sq))}


def storage_verdicts(rows: list[dict], k: int, dim: int) -> list[str]:
    """The issue's targets, met or not, with the measured figures."""
    f32 = next(r for r in rows if r["storage"] == "float32")
    base_time, base_bytes = f32["1 query s"], f32["index GiB"]
    lines = [f"float32 1 query: {base_time:.3f} s"]
    for row in rows:
        if row["storage"] == "float32":
            continue
        ratio, share = row["1 query s"] / base_time, row["index GiB"] / base_bytes
        want_share = 0.5 if row["storage"] == "bfloat16" else 0.25
        low_recall = min(row[f"recall@{k} random"], row[f"recall@{k} near a row"])
        checks = [f"time {ratio:.2f}x float32 (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'})",
                  f"memory {share:.3f}x (target {want_share} + the float32 norms, 1/dim: "
                  f"{'met' if share <= want_share + 1.01 / dim else 'NOT met'})",
                  f"recall@{k} >= {low_recall:.3f} (target >= 0.99: {'met' if low_recall >= 0.99 else 'NOT met'})"]
        lines.append(f"{row['storage']}: " + "; ".join(checks))
        if ratio > 1.25:
            lines.append(f"  why: every stored value is decoded to float32 (a cast on each core) before the same "
                         f"matrix-vector product float32 runs, which only reads memory")
        if "margin" in row and low_recall < 0.99:
            margin = row["margin"]
            lines.append(f"  why: on these random unit vectors the exact {k}th and {k + 1}th squared distances differ "
                         f"by {margin['gap']:.2e} (median), while int8 codes move a squared distance by "
                         f"{margin['error']:.2e} (std): {margin['error'] / margin['gap']:.1f}x the gap, so "
                         f"neighbours at the cut swap (on the sample's real features "
                         f"tests/search/test_exact.py measures recall@10 >= 0.99).")
    return lines


def ann_rows(n: int, dim: int, n_queries: int, k: int, repeats: int, milvus_max: int) -> list[dict]:
    """FAISS flat / IVF / HNSW (and Milvus Lite FLAT up to ``milvus_max`` rows) on one gallery: build time,
    memory, latency of 1 query and of a batch, recall@k against the exact float32 index."""
    import tempfile

    from cbir_tutorial.search.backends import make_index

    gallery = unit_vectors(n, dim, seed=0, chunk=16_384)
    queries = near_queries(gallery, n_queries, seed=4)
    reference = make_index("exact", gallery).search(queries, k)[1]
    configs = [("faiss-flat", {}), ("faiss-ivf", {"nprobe": 8}), ("faiss-ivf", {"nprobe": 32}),
               ("faiss-ivf", {"nprobe": 32, "pq": dim // 32}), ("faiss-hnsw", {"ef_search": 64}),
               ("faiss-hnsw", {"ef_search": 256})]
    if importlib.util.find_spec("faiss") is None:
        note("FAISS: not installed (pip install faiss-cpu); its rows are skipped")
        configs = []
    if n <= milvus_max and importlib.util.find_spec("milvus_lite") is not None:
        configs.append(("milvus", {}))
    rows, built_cache = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, options in configs:
            build_options = {key: v for key, v in options.items() if key not in ("nprobe", "ef_search")}
            key = (name, tuple(sorted(build_options.items())))
            if key not in built_cache:
                built_cache.clear()  # one built index at a time: memory
                extra = {"uri": f"{tmp}/bench.db"} if name == "milvus" else {}
                start = time.perf_counter()
                built_cache[key] = (make_index(name, gallery, **build_options, **extra), time.perf_counter() - start)
            index, built = built_cache[key]
            searching = {key: v for key, v in options.items() if key not in build_options}
            if searching:  # the search options of the built index
                index.set_search_options(**searching)
            one, _ = median_seconds(lambda: index.search(queries[0], k), repeats)
            batch, _ = median_seconds(lambda: index.search(queries, k), repeats)
            label = name + "".join(f", {o}={v}" for o, v in options.items())
            rows.append({"gallery": f"{n:,} x {dim}", "index": label, "build s": built,
                         "rows/s added": n / built, "1 query ms": 1e3 * one,
                         f"batch of {n_queries} ms": 1e3 * batch,
                         f"recall@{k}": ann_recall_at_k(index.search(queries, k)[1], reference)})
            if name == "milvus":
                index.close()
    return rows


def extraction_child(n: int, backbone: str, weights, batch_size: int) -> dict:
    """Run in a fresh process: extract ``n`` images (the sample cycled), report peak RSS."""
    from cbir_tutorial import FeatureExtractor

    paths = list(itertools.islice(itertools.cycle(sample_catalogue().paths), n))
    extractor = FeatureExtractor(backbone, weights, batch_size=batch_size)
    extractor.extract(paths[:batch_size], cache=False, progress=False)  # warm-up: graph, thread pool
    resettable = reset_peak_rss()
    before = rss_mib()
    start = time.perf_counter()
    extraction = extractor.extract(paths, cache=False, progress=False)
    seconds = time.perf_counter() - start
    return {"images": n, "rss_before": before, "peak": peak_rss_mib(), "resettable": resettable,
            "seconds": seconds, "output_mib": extraction.features.nbytes / 2**20,
            "kept": int(extraction.kept.sum())}


def extraction_rows(sizes: list[int], backbone: str, weights: str, batch_size: int) -> list[dict]:
    rows = []
    for n in sizes:
        command = [sys.executable, __file__, "--child-extract", str(n), "--backbone", backbone,
                   "--weights", weights, "--batch-size", str(batch_size)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"extraction of {n} images failed:\n{done.stderr[-3000:]}")
        child = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({
            "backbone": f"{backbone} ({'ImageNet' if weights == 'imagenet' else 'random'})",
            "images": n, "kept": child["kept"], "RSS before MiB": child["rss_before"],
            "peak RSS MiB": child["peak"], "rise MiB": child["peak"] - child["rss_before"],
            "output MiB": child["output_mib"], "img/s": n / child["seconds"],
            "note": "" if child["resettable"] else "peak not resettable: includes model build",
        })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--ann-rows", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="gallery sizes for the FAISS IVF / HNSW / Milvus table (none: skip it)")
    parser.add_argument("--milvus-max", type=int, default=100_000, help="largest gallery put into Milvus Lite")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, nargs="*", default=[200, 2_000])
    parser.add_argument("--backbone", default=None,
                        help="extraction backbone (default efficientnet_lite0 with ImageNet weights, "
                             "resnet50 with random weights if that module is missing)")
    parser.add_argument("--weights", default=None, choices=["imagenet", "random"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--child-extract", type=int, help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.backbone is None:
        args.backbone = "efficientnet_lite0"
    if args.weights is None:
        args.weights = "imagenet" if args.backbone == "efficientnet_lite0" else "random"

    if args.child_extract:
        weights = None if args.weights == "random" else args.weights
        print(json.dumps(extraction_child(args.child_extract, args.backbone, weights, args.batch_size)))
        return 0
    if args.smoke:
        args.rows, args.queries, args.images, args.batch_size = 20_000, 8, [8, 24], 4
        args.ann_rows, args.dim = [3_000], 128
        try:  # OpenMP's spinning threads crawl on a shared CI machine; the smoke run only checks the script
            import faiss
            faiss.omp_set_num_threads(1)
        except ImportError:
            pass

    print_header("Scale: a million-row gallery, and extraction memory vs catalogue size",
                 ("numpy", "tensorflow"))
    note(f"k = {args.k}; {args.repeats} repeats, medians\n")
    rows = storage_rows(args.rows, args.dim, args.queries, args.k, args.repeats)
    print_table("Search over the simulated gallery by storage", [{c: v for c, v in r.items() if c != "margin"}
                                                                  for r in rows])
    for line in storage_verdicts(rows, args.k, args.dim):
        note(line)
    print()
    ann = []
    for n in args.ann_rows:
        ann += ann_rows(n, args.dim, args.queries, args.k, args.repeats, args.milvus_max)
    if ann:
        print_table("Approximate indexes and Milvus Lite (queries near a gallery row)", ann)
    if not args.images:
        write_json(args.json)
        return 0
    rows = extraction_rows(args.images, args.backbone, args.weights, args.batch_size)
    print_table(f"Extraction memory (each size in a fresh process, batch {args.batch_size}, cache off)", rows)
    growth = rows[-1]["rise MiB"] - rows[0]["rise MiB"]
    output = rows[-1]["output MiB"] - rows[0]["output MiB"]
    note(f"{rows[0]['images']} -> {rows[-1]['images']} images: peak RSS rise grew by {growth:.0f} MiB; "
         f"the output features themselves grew by {output:.1f} MiB (x2 while the kept rows are copied out)")
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
