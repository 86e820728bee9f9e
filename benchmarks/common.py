"""What every benchmark shares: the machine's description, median timings, Markdown tables, memory probes.

Run the benchmarks from the repository root (``python benchmarks/bench_<name>.py``); each prints a header
(CPU, cores, library versions, load average, GPU) and Markdown tables that go into ``RESULTS.md``. With
``--json PATH`` (:func:`add_json_option`) a script also writes what it printed as data (:data:`REPORT`):
the header, every table with its raw values and its notes (:func:`note`), for the smoke tests and scripts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# The machine


def cpu_info() -> dict:
    """``model, vendor, family, cpus, mhz, flags`` of this machine from ``/proc/cpuinfo`` (Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor describes them all
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {
        "model": fields.get("model name", platform.processor() or "unknown CPU"),
        "vendor": fields.get("vendor_id", ""),
        "family": int(fields.get("cpu family", "0") or 0),
        "cpus": cpus,
        "mhz": float(fields.get("cpu MHz", "0") or 0),
        "flags": set(fields.get("flags", "").split()),
    }


def fp32_flops_per_cycle(info: dict) -> tuple[int, str]:
    """Peak float32 FLOPs per cycle per core from the SIMD flags, and the assumption behind it."""
    flags, vendor, family = info["flags"], info["vendor"], info["family"]
    if "avx512f" in flags and vendor == "AuthenticAMD" and family < 26:
        return 32, "AVX-512 on AMD Zen 4 runs as 2 x 256-bit FMA pipes: 2 FMA x 8 lanes x 2 = 32"
    if "avx512f" in flags:
        return 64, "AVX-512 with 2 x 512-bit FMA units: 2 FMA x 16 lanes x 2 = 64 (1-FMA parts: 32)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 with 2 x 256-bit FMA units: 2 FMA x 8 lanes x 2 = 32"
    if "avx" in flags:
        return 16, "AVX without FMA: 1 add + 1 mul x 8 lanes = 16"
    return 8, "SSE: 1 add + 1 mul x 4 lanes = 8"


_CLOCK_LOOP = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    unsigned long x = 0, n = 300000000UL;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned long i = 0; i < n; i++)  /* 4 dependent adds: 4 cycles per iteration */
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", 4.0 * n / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / 1e9);
    return x != 4 * n;
}
"""


def measured_ghz(runs: int = 3) -> float | None:
    """The core clock while busy (GHz): a chain of dependent integer adds (1 cycle each) compiled with the
    system C compiler and timed, best of ``runs``. None without an x86-64 C compiler."""
    import shutil
    import subprocess
    import tempfile

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as folder:
        source, binary = Path(folder) / "clock.c", Path(folder) / "clock"
        source.write_text(_CLOCK_LOOP)
        if subprocess.run([compiler, "-O1", str(source), "-o", str(binary)], capture_output=True).returncode:
            return None
        return max(float(subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout)
                   for _ in range(runs))


def peak_fp32_flops(info: dict | None = None, ghz: float | None = None) -> tuple[float, str]:
    """Float32 peak of the cores we may use (FLOP/s) = cores x GHz x FLOPs/cycle, and how it was estimated.

    ``ghz``: the clock to assume (e.g. :func:`measured_ghz`); default the ``cpu MHz`` of ``/proc/cpuinfo``,
    which under a hypervisor is often the base clock, below what a busy core runs at.
    """
    info = info or cpu_info()
    per_cycle, why = fp32_flops_per_cycle(info)
    source = "measured" if ghz else "cpu MHz in /proc/cpuinfo"
    ghz = ghz or info["mhz"] / 1000 or 1.0
    peak = info["cpus"] * ghz * 1e9 * per_cycle
    return peak, (f"{info['cpus']} cores x {ghz:.2f} GHz ({source}) x {per_cycle} FLOPs/cycle ({why}) "
                  f"= {peak / 1e9:.0f} GFLOP/s")


def versions(names: Iterable[str]) -> str:
    """``python 3.11.7, numpy 2.4.6, ...`` for the already importable modules among ``names``."""
    from cbir_tutorial.models.runtime import keras_module, tensorflow_module

    quiet = {"tensorflow": tensorflow_module, "keras": keras_module}  # without TensorFlow's C++ start-up lines
    parts = [f"python {platform.python_version()}"]
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            try:
                module = quiet[name]() if name in quiet else __import__(name)
            except ImportError:
                continue
        parts.append(f"{name} {getattr(module, '__version__', '?')}")
    return ", ".join(parts)


def print_header(title: str, modules: Sequence[str] = ("numpy",), gpu: str | None = None) -> None:
    """Print (and keep in :data:`REPORT`) what the figures below were measured on.

    ``gpu``: the GPU line's text; by default the GPUs TensorFlow sees (which imports TensorFlow).
    """
    info = cpu_info()
    if gpu is None:
        from cbir_tutorial.lessons.environment import gpu_names

        gpu = ", ".join(gpu_names()) or "none seen by TensorFlow (CPU only)"
    header = REPORT["header"] = {
        "title": title,
        "cpu": f"{info['model']} ({info['vendor']} family {info['family']}), {info['cpus']} cores usable, "
               f"{info['mhz']:.0f} MHz; SIMD: "
               + " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in info["flags"]),
        "load_average": f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} "
                        "(anything near or above the core count means other jobs share the CPU)",
        "versions": versions(modules),
        "gpu": gpu,
    }
    print(f"# {title}")
    print(f"CPU: {header['cpu']}")
    print(f"Load average at start: {header['load_average']}")
    print(f"Versions: {header['versions']}")
    print(f"GPU: {header['gpu']}")
    print()


# --------------------------------------------------------------------------------------------------
# Timing and tables


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1,
                   min_seconds: float = 0.0) -> tuple[float, list[float]]:
    """Median wall time of one ``fn()`` call in seconds over ``repeats`` samples, and all samples.

    ``warmup`` untimed calls come first. With ``min_seconds``, each sample times as many back-to-back
    calls as fill that long (judged from one call) and reports their mean, so that sub-millisecond
    calls are not at the mercy of one scheduler tick on a shared machine.
    """
    for _ in range(warmup):
        fn()
    calls = 1
    if min_seconds > 0:
        start = time.perf_counter()
        fn()
        calls = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times), times


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 3, min_seconds: float = 0.0,
                        pause: float = 0.0) -> dict[str, float]:
    """Median seconds per call of each of ``fns``, sampled round-robin: repeat 1 of every function, then
    repeat 2 of every function... so that a busy spell on a shared machine hits all of them alike.

    Each function is called once first (warm-up, and to size its samples: a sample repeats a fast call
    back to back until ``min_seconds`` are filled and reports the mean). ``pause`` seconds of sleep
    before each sample let the previous function's idle BLAS/OpenMP threads stop spinning.
    """
    calls = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        calls[name] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """``rows`` (dicts) as a Markdown table; floats with 3 significant digits and whole numbers from 1,000 with a
    thousands separator, unless already strings."""
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def print_table(title: str, rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` as a Markdown table under ``## title`` and keep them, unrounded, in :data:`REPORT`; a
    column empty in every row (a note no row needed) is left out."""
    columns = [c for c in (columns or rows[0].keys()) if any(row.get(c) is not None and str(row.get(c)) != ""
                                                             for row in rows)]
    REPORT["tables"].append({"title": title, "columns": columns,
                             "rows": [{c: row.get(c) for c in columns} for row in rows]})
    print(f"## {title}\n")
    print(markdown_table(rows, columns))
    print(flush=True)


def note(text: str) -> None:
    """Print ``text``, a sentence a reader of the results needs (a verdict, a choice, a file written), and
    keep it in :data:`REPORT` (without its leading and trailing newlines)."""
    print(text, flush=True)
    REPORT["notes"].append(text.strip("\n"))


# --------------------------------------------------------------------------------------------------
# The report as JSON

#: What this run printed, as data: ``header`` (title, cpu, load_average, versions, gpu: the lines' text),
#: ``tables`` (``{"title", "columns", "rows": [{column: raw value}]}`` in print order) and ``notes``.
REPORT: dict = {"header": {}, "tables": [], "notes": []}


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Give a benchmark's ``parser`` the ``--json PATH`` option that :func:`write_json` honours."""
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write what is printed (header, tables with unrounded values, notes) "
                             "to PATH as JSON")


def json_value(value):
    """``value`` as strict JSON holds it: numpy scalars and arrays as numbers and lists, NaN and
    infinities as null, any other object as its ``str``."""
    if isinstance(value, dict):
        return {str(key): json_value(v) for key, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_json(path: Path | None) -> None:
    """Write :data:`REPORT` to ``path`` (nothing when None) through a temporary file renamed over it, so
    that a run killed while writing leaves the previous file or none, never half of one."""
    if path is None:
        return
    path = Path(path)
    text = json.dumps(json_value(REPORT), indent=1, ensure_ascii=False, allow_nan=False)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# --------------------------------------------------------------------------------------------------
# Memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    """Resident memory of this process now, MiB (``VmRSS``)."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Highest resident memory of this process so far, MiB (``VmHWM``)."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0, writing 5 to ``clear_refs``); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# Inputs


def unit_vectors(n: int, dim: int, seed: int, dtype=np.float32, chunk: int = 65_536) -> np.ndarray:
    """``(n, dim)`` random unit vectors (Gaussian directions) of ``dtype``, generated ``chunk`` rows at a time."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=dtype)
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + len(block)] = block
    return out


def sample_catalogue():
    """The sample catalogue (``$CBIR_TUTORIAL_DATA``, by default ``../shared/data/fashion-sample``)."""
    from cbir_tutorial.data.loaders import load_sample

    return load_sample()
