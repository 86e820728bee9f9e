"""Every benchmark script at its ``--smoke`` size, run as a command (``tests/test_benchmarks_smoke.py`` reads
the output).

They start when the first smoke test runs, two at a time, at the unit tests' priority: the tests wait for
them, unlike the notebook runs (:mod:`background`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

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
