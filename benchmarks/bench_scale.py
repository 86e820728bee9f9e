"""Scale: searching a simulated 1,000,000 x 2048 float16 gallery, and extraction memory vs catalogue size.

1. Gallery of random unit vectors, generated in chunks straight into float16 (4 GB). Reported: the
   index's own memory, the extra memory one search needs (numpy allocations traced by tracemalloc, and the
   rise of the process's peak RSS), and the time per query, one at a time and as a batch of 64.
2. Extraction memory must not grow with the catalogue: peak RSS while extracting 200 and 2,000 images
   (the sample's photos cycled), each size in a fresh subprocess so that the peaks are separate.

    python benchmarks/bench_scale.py            # 1,000,000 rows; 200 and 2,000 images
    python benchmarks/bench_scale.py --smoke    # 20,000 rows; 8 and 24 images, seconds
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import (median_seconds, peak_rss_mib, print_header, print_table, reset_peak_rss, rss_mib,
                    sample_catalogue, unit_vectors)


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


def gallery_rows(n: int, dim: int, n_queries: int, k: int, repeats: int, dtype) -> list[dict]:
    """Build a ``(n, dim)`` gallery and index; time and measure single and batched search."""
    from cbir_tutorial import EuclideanIndex

    start = time.perf_counter()
    gallery = unit_vectors(n, dim, seed=0, dtype=dtype, chunk=16_384)
    generated = time.perf_counter() - start
    rss_gallery = rss_mib()
    start = time.perf_counter()
    index = EuclideanIndex(gallery, dtype=dtype)
    built = time.perf_counter() - start
    shares = np.shares_memory(index.gallery, gallery)
    print(f"Gallery {n:,} x {dim} {np.dtype(dtype).name}: {gallery.nbytes / 2**30:.2f} GiB, generated in "
          f"{generated:.1f} s; index built in {built:.1f} s "
          f"({'shares the array, no copy' if shares else 'COPIED the array'}; + "
          f"{index.sq_norms.nbytes / 2**20:.1f} MiB of squared norms); RSS {rss_gallery:,.0f} MiB\n")
    queries = unit_vectors(n_queries, dim, seed=1)
    rows = []
    for label, batch in (("1 query", queries[:1]), (f"batch of {n_queries}", queries)):
        seconds, _ = median_seconds(lambda: index.search(batch, k), repeats)
        traced, rss_rise = search_memory(index, batch, k)
        rows.append({"gallery": f"{n:,} x {dim} {np.dtype(dtype).name}", "gallery GiB": gallery.nbytes / 2**30,
                     "search": label, "median s": seconds, "ms per query": 1e3 * seconds / len(batch),
                     "extra MiB (tracemalloc)": traced, "peak RSS rise MiB": rss_rise,
                     "extra / gallery %": 100 * traced / (gallery.nbytes / 2**20)})
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
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, nargs="+", default=[200, 2_000])
    parser.add_argument("--backbone", default=None,
                        help="extraction backbone (default efficientnet_lite0 with ImageNet weights, "
                             "resnet50 with random weights if that module is missing)")
    parser.add_argument("--weights", default=None, choices=["imagenet", "random"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--child-extract", type=int, help=argparse.SUPPRESS)
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

    print_header("Scale: a million-row gallery, and extraction memory vs catalogue size",
                 ("numpy", "tensorflow"))
    print(f"k = {args.k}; {args.repeats} repeats, medians\n")
    rows = gallery_rows(args.rows, args.dim, args.queries, args.k, args.repeats, np.dtype(args.dtype))
    print_table("Search over the simulated gallery", rows)
    rows = extraction_rows(args.images, args.backbone, args.weights, args.batch_size)
    print_table(f"Extraction memory (each size in a fresh process, batch {args.batch_size}, cache off)", rows)
    growth = rows[-1]["rise MiB"] - rows[0]["rise MiB"]
    output = rows[-1]["output MiB"] - rows[0]["output MiB"]
    print(f"{rows[0]['images']} -> {rows[-1]['images']} images: peak RSS rise grew by {growth:.0f} MiB; "
          f"the output features themselves grew by {output:.1f} MiB (x2 while the kept rows are copied out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
