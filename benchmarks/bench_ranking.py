"""Ranking: the original tutorial's dict loop vs the package's EuclideanIndex vs FAISS IndexFlatL2.

Gallery: random unit vectors (float32; bfloat16, int8 and float16 storage too for the package), queries: other random unit
vectors. Every method answers the same queries in this process, after one warm-up call; the repeats go
round-robin over the methods (medians), so a busy spell on a shared machine hits all of them alike.
"1 query" is the time per query when queries come one at a time, "64 queries" one call with the whole
batch (the original loop has no batch: it answers them one by one). FAISS (``pip install faiss-cpu``),
run with its default OpenMP threads and with one, is the reference for speed; the top-k lists are compared
with the exact float64 ranking (order and overlap) and with FAISS's (overlap). Without FAISS its columns
are skipped. ``--profile`` explains the package's times: where a search spends them,
chunk size, threads (``pip install threadpoolctl``).

    python benchmarks/bench_ranking.py               # 10,000 and 100,000 x 2048
    python benchmarks/bench_ranking.py --profile     # + cProfile breakdown, chunk sizes, BLAS threads
    python benchmarks/bench_ranking.py --smoke       # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import (add_json_option, interleaved_medians, median_seconds, note, print_header, print_table,
                    unit_vectors, write_json)

try:
    import faiss
except ImportError:  # optional reference
    faiss = None

#: The reference ranking: every distance in float64, ties to the lower row. FAISS and the package both
#: compute ‖q‖² + ‖x‖² − 2q·x in float32, so near-ties (gaps under ~1e-6) may come out in either order.
SAME_ORDER = "same order % vs exact float64"
OVERLAP_EXACT = "overlap % vs exact float64"
OVERLAP_FAISS = "overlap vs FAISS %"


def original_search(query: np.ndarray, features_by_id: dict, k: int) -> list[str]:
    """The original tutorial's ranking: one ``np.linalg.norm`` per catalogue item in a Python loop, then sort."""
    distances = {}
    for item_id, feature in features_by_id.items():
        distances[item_id] = np.linalg.norm(query - feature)
    ranked = sorted(distances.items(), key=lambda item: item[1])
    return [item_id for item_id, _ in ranked[:k]]


def read_seconds(gallery: np.ndarray, repeats: int) -> float:
    """Median time to read every byte of ``gallery`` once (an integer sum over its bytes): the memory floor."""
    words = gallery.reshape(-1).view(np.int64)
    return median_seconds(lambda: words.sum(), repeats)[0]


#: Shortest timed sample (s): calls faster than this are repeated back to back within one sample;
#: pause (s) before each sample. Both shrink with --smoke.
TIMING = {"min_seconds": 0.05, "pause": 0.1}
FAISS = "FAISS IndexFlatL2"
FAISS_1 = "FAISS IndexFlatL2, 1 thread"
PACKAGE = "package EuclideanIndex"
ORIGINAL = "original dict loop"


def same_order_percent(found: np.ndarray, reference: np.ndarray) -> float:
    """% of the queries whose top-k list (``(Q, k)`` rows) equals the reference's, order included."""
    return 100 * float(np.mean(np.all(found == reference, axis=1)))


def exact_float64(gallery: np.ndarray, queries: np.ndarray, k: int, chunk: int = 8_192) -> np.ndarray:
    """``(Q, k)`` rows of the ``k`` nearest gallery rows by float64 distances (stable: ties to the lower row)."""
    q = queries.astype(np.float64)
    d = np.empty((len(q), len(gallery)))
    for start in range(0, len(gallery), chunk):
        block = gallery[start:start + chunk].astype(np.float64)
        # float64 rounding (~1e-16) is far below float32's: this order is the true one
        d[:, start:start + len(block)] = (q ** 2).sum(1)[:, None] + (block ** 2).sum(1)[None] - 2 * q @ block.T
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def overlap_percent(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean % of the reference's top-k rows that ``found`` (``(Q, k)`` rows) also returns, in any order."""
    return 100 * float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, reference)]))


def one_thread(search):
    """``search`` with FAISS limited to one OpenMP thread (often its best setting for one query)."""
    def limited(*args):
        default = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return search(*args)
        finally:
            faiss.omp_set_num_threads(default)
    return limited


def bench_size(n: int, dim: int, queries: np.ndarray, k: int, repeats: int, n_single: int,
               original_max: int) -> tuple[list[dict], list[dict]]:
    """Table rows for one gallery size (ratios and top-k agreement with the reference included), and the
    time to read the gallery once per storage type."""
    from cbir_tutorial import make_index

    gallery = unit_vectors(n, dim, seed=0)
    floors = []
    for stored in (gallery, gallery.astype(np.float16), make_index("exact", gallery, dtype="int8").gallery):
        seconds = read_seconds(stored, repeats)
        floors.append({"gallery": f"{n:,} x {dim}", "storage": stored.dtype.name, "MB": stored.nbytes / 1e6,
                       "read once ms": 1e3 * seconds, "GB/s": stored.nbytes / seconds / 1e9})

    # (method, storage) -> (search one (D,) query, search a (Q, D) batch -> (Q, k) gallery rows)
    methods = {}
    if faiss is not None:
        flat = faiss.IndexFlatL2(dim)
        flat.add(gallery)
        methods[(FAISS, "float32")] = (lambda q: flat.search(q[None], k), lambda qs: flat.search(qs, k)[1])
        methods[(FAISS_1, "float32")] = (one_thread(lambda q: flat.search(q[None], k)),
                                         one_thread(lambda qs: flat.search(qs, k)[1]))
    for dtype in ("float32", "bfloat16", "int8", "float16"):
        index = make_index("exact", gallery, dtype=dtype)
        methods[(PACKAGE, index.storage)] = (lambda q, index=index: index.search(q, k),
                                             lambda qs, index=index: index.search(qs, k)[1])
    if n <= original_max:
        by_id = {str(i): feature for i, feature in enumerate(gallery)}
        methods[(ORIGINAL, "float32")] = (
            lambda q: original_search(q, by_id, k),
            lambda qs: np.array([[int(i) for i in original_search(q, by_id, k)] for q in qs]))

    found = {key: np.asarray(batch(queries)) for key, (_, batch) in methods.items()}
    fns = {}
    for key, (one, batch) in methods.items():
        fns[key + ("1 query",)] = lambda one=one: [one(q) for q in queries[:n_single]]
        fns[key + ("batch",)] = lambda batch=batch: batch(queries)
    seconds = interleaved_medians(fns, repeats, **TIMING)

    batch_key = f"{len(queries)} queries ms"
    rows = []
    for key in methods:
        single, batch = seconds[key + ("1 query",)] / n_single, seconds[key + ("batch",)]
        rows.append({"gallery": f"{n:,} x {dim}", "method": key[0], "storage": key[1],
                     "1 query ms": 1e3 * single, batch_key: 1e3 * batch,
                     "ms/query in batch": 1e3 * batch / len(queries)})
    by = {(row["method"], row["storage"]): row for row in rows}
    original = by.get((ORIGINAL, "float32"))
    best_faiss = None
    if faiss is not None:  # the faster of FAISS's two thread settings, column by column
        best_faiss = {c: min(by[(m, "float32")][c] for m in (FAISS, FAISS_1)) for c in ("1 query ms", batch_key)}
    reference = exact_float64(gallery, queries, k)
    for row in rows:
        row["x original (1 query)"] = original["1 query ms"] / row["1 query ms"] if original else "-"
        row["x original (batch)"] = original[batch_key] / row[batch_key] if original else "-"
        row["x best FAISS (1 query)"] = best_faiss["1 query ms"] / row["1 query ms"] if best_faiss else "-"
        row["x best FAISS (batch)"] = best_faiss[batch_key] / row[batch_key] if best_faiss else "-"
        row[SAME_ORDER] = same_order_percent(found[(row["method"], row["storage"])], reference)
        row[OVERLAP_EXACT] = overlap_percent(found[(row["method"], row["storage"])], reference)
        row[OVERLAP_FAISS] = (overlap_percent(found[(row["method"], row["storage"])], found[(FAISS, "float32")])
                              if faiss is not None else "-")
    return rows, floors


def profile_rows(index, queries: np.ndarray, k: int, repeats: int, top: int = 6) -> list[dict]:
    """Where ``index.search(queries, k)`` spends its time: functions by own time per call (cProfile,
    mean of ``repeats`` calls). Matrix products and element-wise arithmetic are operators, not calls:
    they count in ``search``'s own time."""
    index.search(queries, k)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    for _ in range(repeats):
        index.search(queries, k)
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    entries = sorted(((value[2], key) for key, value in stats.items()), reverse=True)[:top]
    rows = []
    for own, (filename, line, function) in entries:
        where = function if filename == "~" else f"{Path(filename).name}:{line} {function}"
        rows.append({"function": where.replace("<", "").replace(">", ""), "own ms per call": 1e3 * own / repeats,
                     "share %": 100 * own / total})
    return rows


def profile(n: int, dim: int, queries: np.ndarray, k: int, repeats: int) -> None:
    """Print why the package takes the time it takes at gallery size ``n``."""
    from cbir_tutorial import make_index
    from cbir_tutorial.search.exact import DEFAULT_CHUNK_ROWS

    gallery = unit_vectors(n, dim, seed=0)
    for dtype, batch in ((np.float32, queries), (np.float32, queries[:1]), (np.float16, queries[:1])):
        index = make_index("exact", gallery, dtype=dtype)
        print_table(f"Profile: {n:,} x {dim} {np.dtype(dtype).name}, {len(batch)} "
                    f"quer{'y' if len(batch) == 1 else 'ies'}, chunk_rows={index.chunk_rows}",
                    profile_rows(index, batch, k, repeats))
    batch_key = f"{len(queries)} queries ms"

    fns = {("matrix product alone", "batch"): lambda: gallery @ queries.T}
    chunks = sorted({2_048, 4_096, DEFAULT_CHUNK_ROWS, 65_536})
    for chunk in chunks:
        index = make_index("exact", gallery, chunk_rows=chunk)
        fns[(chunk, "1 query")] = lambda index=index: index.search(queries[0], k)
        fns[(chunk, "batch")] = lambda index=index: index.search(queries, k)
    seconds = interleaved_medians(fns, repeats, **TIMING)
    note(f"One float32 matrix product gallery @ queries.T alone ({n:,} x {dim} x {len(queries)}): "
         f"{1e3 * seconds[('matrix product alone', 'batch')]:.1f} ms - the floor for the batch\n")
    print_table(f"Package float32 by chunk_rows, {n:,} x {dim}", [
        {"chunk_rows": c, "1 query ms": 1e3 * seconds[(c, "1 query")], batch_key: 1e3 * seconds[(c, "batch")]}
        for c in chunks])

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        note("BLAS threads: skipped (pip install threadpoolctl to measure them)\n")
        return
    controller = ThreadpoolController()
    index = make_index("exact", gallery)
    searches = {("package float32", "1 query"): lambda: index.search(queries[0], k),
                ("package float32", "batch"): lambda: index.search(queries, k)}
    if faiss is not None:
        flat = faiss.IndexFlatL2(dim)
        flat.add(gallery)
        searches[(FAISS, "1 query")] = lambda: flat.search(queries[:1], k)
        searches[(FAISS, "batch")] = lambda: flat.search(queries, k)

    def limited(search, threads):
        def run():
            with controller.limit(limits=threads):
                return search()
        return run

    fns = {(threads,) + key: limited(search, threads) if threads else search
           for threads in (1, None) for key, search in searches.items()}
    seconds = interleaved_medians(fns, repeats, **TIMING)
    print_table(f"BLAS/OpenMP threads (threadpoolctl), {n:,} x {dim}", [
        {"threads": threads or "all (default)", "method": method,
         "1 query ms": 1e3 * seconds[(threads, method, "1 query")],
         batch_key: 1e3 * seconds[(threads, method, "batch")]}
        for threads in (1, None) for method in dict.fromkeys(key[0] for key in searches)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--single", type=int, default=8, help="queries timed one at a time per repeat")
    parser.add_argument("--original-max", type=int, default=10_000,
                        help="largest gallery the slow original loop runs on")
    parser.add_argument("--profile", action="store_true", help="also explain the package's times")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.dim, args.queries, args.repeats, args.single = [2_000], 128, 8, 3, 2
        args.original_max = 2_000
        TIMING.update(min_seconds=0.002, pause=0.0)

    print_header("Ranking: original dict loop vs EuclideanIndex vs FAISS IndexFlatL2",
                 ("numpy", "faiss"), gpu="not used (numpy and faiss-cpu search on the CPU)")
    if faiss is None:
        note("FAISS: not installed (pip install faiss-cpu); its rows and ratios are skipped")
    note(f"k = {args.k}; {args.repeats} round-robin repeats, medians; 1 query = mean over {args.single} "
         f"queries searched one at a time; FAISS runs with its default OpenMP threads and with 1 thread, "
         f"'x best FAISS' compares with the faster of the two\n")
    queries = unit_vectors(args.queries, args.dim, seed=1)

    all_rows, all_floors, verdicts = [], [], []
    for n in args.sizes:
        rows, floors = bench_size(n, args.dim, queries, args.k, args.repeats, args.single, args.original_max)
        all_rows += rows
        all_floors += floors
        by = {(r["method"], r["storage"]): r for r in rows}
        package = by[(PACKAGE, "float32")]
        if (ORIGINAL, "float32") in by:
            for key in ("1 query", "batch"):
                ratio = package[f"x original ({key})"]
                verdicts.append(f"{n:,}: package float32, {key}: {ratio:.1f}x the original loop "
                                f"(target >= 20x: {'met' if ratio >= 20 else 'NOT met'})")
        if faiss is not None:
            for key in ("1 query", "batch"):
                ratio = package[f"x best FAISS ({key})"]
                verdicts.append(f"{n:,}: package float32, {key}: {ratio:.2f}x the speed of the faster FAISS "
                                f"setting (target >= 1, no slower: {'met' if ratio >= 1 else 'NOT met'})")
    columns = ["gallery", "method", "storage", "1 query ms", f"{args.queries} queries ms", "ms/query in batch",
               "x original (1 query)", "x original (batch)", "x best FAISS (1 query)", "x best FAISS (batch)",
               SAME_ORDER, OVERLAP_EXACT, OVERLAP_FAISS]
    print_table("Memory floor: reading the gallery once (an integer sum over its bytes)", all_floors)
    print_table(f"Search time (k = {args.k}; x = speed relative to, > 1 is faster)", all_rows, columns)
    for line in verdicts:
        note(line)
    print()
    if args.profile:
        for n in args.sizes:
            profile(n, args.dim, queries, args.k, args.repeats)
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
