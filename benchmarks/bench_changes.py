"""Catalogue changes: adding 1 % new products and removing 1 %, against rebuilding the index from scratch.

A gallery of ``--rows`` random unit vectors (float32, seeded) stored under random int64 ids (as an engine's
product keys are), in each backend: exact (float32), faiss-flat, faiss-ivf, faiss-hnsw (their default
options) and Milvus Lite (FLAT) in a temporary folder. Steps, each in a fresh subprocess:

1. first build on the ``--rows`` rows, saved to the temporary folder (timed, not compared);
2. (a) add ``--fraction`` new rows to the reopened index (timed), saved again;
3. (b) remove ``--fraction`` of the first build's rows from the reopened index (timed); then recall@k of
   the changed index against exact search on the final set, for queries near a final row;
4. (c) rebuild from scratch on the final set (timed), and the same recall.

Memory is the **peak RSS rise** of the step: the child's ``VmHWM`` is reset just before the step
(``/proc/self/clear_refs``, Linux) and read after it, minus the RSS before it. Where the kernel refuses the
reset it falls back to ``resource.getrusage``'s ``ru_maxrss`` rise, a lower bound (the child's set-up may
have peaked higher); the output says which. psutil is not used: it reports no peak on Linux. tracemalloc
would miss FAISS's and Milvus's own allocations. Milvus Lite 3 runs inside the process (threads), so its
memory counts; a Milvus server's would not. Each step runs once (a change cannot be repeated on the same
index), so the times carry the noise of one run.

Milvus Lite inserts about 1,000 rows/s and searches one query at a time at this size (RESULTS.md): its steps
share a budget of ``--milvus-budget`` seconds (default 3 minutes) and are skipped, with a line saying so,
once it is spent; its recall (FLAT: exact, a correctness check) uses at most 20 queries.

    python benchmarks/bench_changes.py            # 100,000 x 1280, + 1 % and - 1 %: minutes (FAISS IVF and HNSW
                                                  # are built twice, Milvus Lite up to --milvus-budget)
    python benchmarks/bench_changes.py --smoke    # 5,000 x 256: checks the script runs
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from common import (add_json_option, note, peak_rss_mib, print_header, print_table, reset_peak_rss, rss_mib,
                    unit_vectors, write_json)

BACKENDS = ("exact", "faiss-flat", "faiss-ivf", "faiss-hnsw", "milvus")
#: The steps, in order: each reopens what the one before saved (the rebuild starts from nothing).
STEPS = ("first build", "add", "remove", "rebuild")
#: Most queries sent to Milvus Lite for recall (it answers one at a time at 100,000 x 1280).
MILVUS_QUERIES = 20


# --------------------------------------------------------------------------------------------------
# The data, the same in every child (seeded)


def counts(rows: int, fraction: float) -> tuple[int, int]:
    """``(added, removed)`` rows for a change of ``fraction`` of ``rows``."""
    n = max(1, round(rows * fraction))
    return n, n


def ids_and_removed(rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first ids, new ids, removed ids)``: distinct random int64 ids (as product keys are), and the
    first build's ids that are removed."""
    n_add, n_remove = counts(rows, fraction)
    rng = np.random.default_rng(seed + 2)
    ids = rng.integers(1, 2**62, size=rows + n_add, dtype=np.int64)
    assert len(np.unique(ids)) == len(ids), "two random ids collided: choose another --seed"
    removed = ids[np.sort(rng.choice(rows, n_remove, replace=False))]
    return ids[:rows], ids[rows:], removed


def first_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    return unit_vectors(rows, dim, seed=seed)


def new_vectors(rows: int, dim: int, fraction: float, seed: int) -> np.ndarray:
    return unit_vectors(counts(rows, fraction)[0], dim, seed=seed + 1)


def final_set(rows: int, dim: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors, ids)`` after the changes: the first rows less the removed ones, then the new rows."""
    first_ids, new_ids, removed = ids_and_removed(rows, fraction, seed)
    keep = ~np.isin(first_ids, removed)
    vectors = np.concatenate([first_vectors(rows, dim, seed)[keep], new_vectors(rows, dim, fraction, seed)])
    return vectors, np.concatenate([first_ids[keep], new_ids])


def near_queries(vectors: np.ndarray, n: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """``(n, D)`` unit vectors near rows of ``vectors`` (a row plus Gaussian noise of ``noise`` x its norm):
    queries with a clear nearest neighbour, like a second photo of a product (as ``bench_scale.py``)."""
    rng = np.random.default_rng(seed + 3)
    rows = rng.choice(len(vectors), min(n, len(vectors)), replace=False)
    q = vectors[rows] + noise * rng.standard_normal((len(rows), vectors.shape[1]), dtype=np.float32) / np.sqrt(
        vectors.shape[1])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# One step, in a fresh process


def measured(fn) -> tuple[object, dict]:
    """``fn()``'s result and ``{"seconds", "peak_rise_mib", "kept_mib", "probe"}``: wall time, peak RSS
    above the RSS before the call, RSS after less before, and how the peak was read."""
    gc.collect()
    resettable = reset_peak_rss()
    before, max_before = rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    if resettable:
        rise, probe = peak_rss_mib() - before, "VmHWM reset"
    else:
        rise = max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - max_before)
        probe = "ru_maxrss rise (lower bound)"
    return result, {"seconds": seconds, "peak_rise_mib": rise, "kept_mib": rss_mib() - before, "probe": probe}


def recall(index, args, name: str) -> dict:
    """recall@k of ``index`` against exact float32 search on the final set, queries near final rows."""
    from cbir_tutorial.search.backends import make_index
    from cbir_tutorial.search.sizing import ann_recall_at_k

    vectors, ids = final_set(args.rows, args.dim, args.fraction, args.seed)
    queries = near_queries(vectors, MILVUS_QUERIES if name == "milvus" else args.queries, args.seed)
    reference = make_index("exact", vectors, ids).search(queries, args.k)[1]
    found = index.search(queries, args.k)[1]
    same_ids = len(index) == len(ids) and bool(np.array_equal(np.sort(index.ids), np.sort(ids)))
    return {"recall": ann_recall_at_k(found, reference), "queries": len(queries), "same_ids": same_ids}


def child(args) -> dict:
    """Run step ``args.child`` of backend ``args.backend`` in this (fresh) process; return what it measured."""
    from cbir_tutorial.search.backends import load_index, make_index

    name, step, work = args.backend, args.child, Path(args.work)
    if args.smoke and name.startswith("faiss"):  # OpenMP's spinning threads crawl on a shared machine
        import faiss
        faiss.omp_set_num_threads(1)
    options = {"uri": str(work / f"{'rebuild' if step == 'rebuild' else 'changes'}.db")} if name == "milvus" else {}
    saved = work / "index"
    out: dict = {}
    if name == "milvus" and step in ("first build", "rebuild"):  # start Milvus Lite (in this process) before
        from cbir_tutorial.search.milvus_index import milvus_client  # the step, as reopening an index does

        milvus_client(options["uri"])
    if step == "first build":
        vectors = first_vectors(args.rows, args.dim, args.seed)
        ids = ids_and_removed(args.rows, args.fraction, args.seed)[0]
        index, out = measured(lambda: make_index(name, vectors, ids, **options))
        index.save(saved)
    elif step in ("add", "remove"):
        index = load_index(saved, **({"uri": options["uri"]} if name == "milvus" else {}))
        if step == "add":
            vectors = new_vectors(args.rows, args.dim, args.fraction, args.seed)
            new_ids = ids_and_removed(args.rows, args.fraction, args.seed)[1]
            _, out = measured(lambda: index.add(vectors, new_ids))
            index.save(saved)
        else:
            removed = ids_and_removed(args.rows, args.fraction, args.seed)[2]
            _, out = measured(lambda: index.remove(removed))
            out.update(recall(index, args, name), dead=int(getattr(index, "dead", 0)))
    else:  # rebuild
        vectors, ids = final_set(args.rows, args.dim, args.fraction, args.seed)
        index, out = measured(lambda: make_index(name, vectors, ids, **options))
        del vectors
        out.update(recall(index, args, name))
    out["rows"] = len(index)
    if name == "milvus":
        index.close()
    return out


# --------------------------------------------------------------------------------------------------
# The parent: every step of every backend, then the tables


def run_step(args, name: str, step: str, work: Path, timeout: float | None) -> dict | None:
    """What step ``step`` of ``name`` measured in a fresh process; None when it ran past ``timeout`` s."""
    command = [sys.executable, __file__, "--child", step, "--backend", name, "--work", str(work),
               "--rows", str(args.rows), "--dim", str(args.dim), "--fraction", str(args.fraction),
               "--queries", str(args.queries), "--k", str(args.k), "--seed", str(args.seed)]
    command += ["--smoke"] if args.smoke else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        raise RuntimeError(f"{name}, {step}: the child exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(a: dict | None, b: dict | None, key: str):
    return a[key] / b[key] if a and b and b[key] > 0 else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the first build")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--fraction", type=float, default=0.01, help="share of rows added, and share removed")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--queries", type=int, default=100, help="queries for recall (Milvus: at most 20)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--milvus-budget", type=float, default=180.0,
                        help="seconds Milvus Lite's steps may take in all; the rest are skipped")
    parser.add_argument("--smoke", action="store_true", help="5,000 x 256: checks the script runs")
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.smoke:
        args.rows, args.dim, args.queries = 5_000, 256, 50

    print_header("Catalogue changes: add and remove 1 % against a rebuild", ("numpy", "faiss", "pymilvus",
                                                                            "milvus_lite"), gpu="not used")
    n_add, n_remove = counts(args.rows, args.fraction)
    backends = list(args.backends)
    if importlib.util.find_spec("faiss") is None:
        note("FAISS: not installed (pip install faiss-cpu); its rows are skipped")
        backends = [b for b in backends if not b.startswith("faiss")]
    if "milvus" in backends and importlib.util.find_spec("milvus_lite") is None:
        note("Milvus Lite: not installed (pip install milvus-lite pymilvus); its row is skipped")
        backends.remove("milvus")
    note(f"Gallery: {args.rows:,} random unit vectors x {args.dim} float32 under random int64 ids (seed "
         f"{args.seed}); add {n_add:,} new rows, then remove {n_remove:,} of the first ones; rebuild on the final "
         f"{args.rows:,} rows. A fresh process per step, one run each; default options of each backend.")
    results: dict[str, dict[str, dict | None]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_changes_") as tmp:
        for name in backends:
            work = Path(tmp) / name
            work.mkdir()
            results[name] = {}
            started = time.perf_counter()
            for step in STEPS:
                timeout = None
                if name == "milvus":
                    timeout = args.milvus_budget - (time.perf_counter() - started)
                    if timeout <= 0:
                        results[name][step] = None
                        continue
                results[name][step] = run_step(args, name, step, work, timeout)
                if results[name][step] is None:  # Milvus ran out of its budget
                    note(f"milvus: skipped from the {step!r} step on: its steps took over the --milvus-budget of "
                         f"{args.milvus_budget:.0f} s at {args.rows:,} x {args.dim} (Milvus Lite inserts about "
                         "1,000 rows/s and searches one query at a time at this size)")
                    for later in STEPS[STEPS.index(step) + 1:]:
                        results[name][later] = None
                    break
                done = results[name][step]
                print(f"  {name}: {step} {done['seconds']:.3f} s, peak RSS +{done['peak_rise_mib']:.0f} MiB", flush=True)

    rows, recalls = [], []
    for name, steps in results.items():
        add, remove, rebuild, first = steps["add"], steps["remove"], steps["rebuild"], steps["first build"]
        if not (add or remove or rebuild):
            continue
        seconds = lambda s: s["seconds"] if s else "-"
        mib = lambda s: s["peak_rise_mib"] if s else "-"
        rows.append({"backend": name, "first build s": seconds(first), f"add {n_add:,} s": seconds(add),
                     f"remove {n_remove:,} s": seconds(remove), "rebuild s": seconds(rebuild),
                     "add / rebuild (time)": ratio(add, rebuild, "seconds"),
                     "remove / rebuild (time)": ratio(remove, rebuild, "seconds"),
                     "add peak MiB": mib(add), "remove peak MiB": mib(remove), "rebuild peak MiB": mib(rebuild),
                     "add / rebuild (memory)": ratio(add, rebuild, "peak_rise_mib"),
                     "remove / rebuild (memory)": ratio(remove, rebuild, "peak_rise_mib"),
                     f"recall@{args.k} after changes": remove["recall"] if remove else "-",
                     f"recall@{args.k} rebuilt": rebuild["recall"] if rebuild else "-"})
        exact = name in ("exact", "faiss-flat", "milvus")
        recalls.append({"backend": name, "exact?": "yes" if exact else "approximate",
                        "queries": (remove or rebuild)["queries"] if (remove or rebuild) else "-",
                        f"recall@{args.k} after changes": remove["recall"] if remove else "-",
                        f"recall@{args.k} rebuilt": rebuild["recall"] if rebuild else "-",
                        "ids = final set": ("yes" if remove["same_ids"] else "NO") if remove else "-",
                        "tombstones after remove": remove.get("dead", 0) if remove else "-"})
    if not rows:
        note("No backend finished a step.")
        write_json(args.json)
        return 1
    print()
    print_table(f"Changes against a rebuild: {args.rows:,} x {args.dim}, add {n_add:,}, remove {n_remove:,} "
                f"(seconds, peak RSS rise in MiB; ratios change / rebuild)", rows)
    print_table(f"Recall@{args.k} against exact search on the final set (queries near a final row)", recalls)
    probes = sorted({s["probe"] for steps in results.values() for s in steps.values() if s})
    note(f"Peak memory: the step's peak RSS above the RSS before it, in a fresh process per step ({', '.join(probes)}"
         "); it includes what the step keeps (the added rows, a rebuilt index), not the data it was given.")
    note("Exact backends (exact, faiss-flat, Milvus FLAT) must show recall 1 after the changes: a correctness check. "
         "faiss-hnsw removes by tombstones (the removed vectors stay in the graph, skipped by searches, until "
         "dead slots pass half and it compacts).")
    write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
