"""Start-up cost: wall time and peak memory (RSS) of importing the package and of ``--help``.

Each command runs in a fresh Python process (its peak RSS is its own ``VmHWM``), interleaved round-robin,
medians reported. With ``--before PATH`` (another checkout, e.g. ``git worktree add /tmp/old a12a325``),
the same commands run against that checkout too, side by side, with the ratio.

    python benchmarks/bench_import.py
    python benchmarks/bench_import.py --before /tmp/old --repeats 7
    python benchmarks/bench_import.py --smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, add_json_option, note, print_header, print_table, write_json

COMMANDS = {
    "python -m cbir_tutorial --help": ["-m", "cbir_tutorial", "--help"],
    "import cbir_tutorial": ["-c", "import cbir_tutorial"],
    "metrics: map_at_k on a mask": ["-c", "import numpy as np; from cbir_tutorial import map_at_k; "
                                          "map_at_k(np.ones((2, 3), bool), [3, 3])"],
    "import tensorflow (reference)": ["-c", "import tensorflow"],
}


#: The children's working folder: ``python -c`` puts it first on ``sys.path``, so it must hold no checkout.
EMPTY = tempfile.mkdtemp(prefix="bench_import_")


def measured(checkout: Path, argv: list[str]) -> tuple[float, float, bool]:
    """``(seconds, peak RSS MiB, tensorflow imported?)`` of ``python argv`` with ``checkout`` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(checkout), TF_CPP_MIN_LOG_LEVEL="3")
    probe = ["-c", f"import runpy, sys; sys.argv = {argv[1:]!r}; "
                   f"runpy.run_module({argv[1]!r}, run_name='__main__')"] if argv[0] == "-m" else argv
    code = ("import atexit, sys\n"
            "def report():\n"
            "    peak = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "    print(f'TF={\"tensorflow\" in sys.modules} KB={peak}', file=sys.stderr)\n"
            "atexit.register(report)\n" + probe[1])
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=EMPTY)  # no checkout in the working folder
    seconds = time.perf_counter() - start
    last = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ""
    if run.returncode != 0 or not last.startswith("TF="):
        raise RuntimeError(f"{argv} failed under {checkout}:\n{run.stderr[-1500:]}")
    tf, kb = last.split()
    return seconds, int(kb.removeprefix("KB=")) / 1024, tf == "TF=True"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="another checkout to compare with (run side by side)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one repeat, no TensorFlow reference row")
    add_json_option(parser)
    args = parser.parse_args(argv)
    commands = dict(COMMANDS)
    if args.smoke:
        args.repeats = 1
        commands.pop("import tensorflow (reference)")
    checkouts = {"now": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    print_header("Start-up cost of the package", ("numpy", "tensorflow"))
    note(f"Fresh process per run; {args.repeats} interleaved repeats, medians; checkouts: "
         + ", ".join(f"{k} = {v}" for k, v in checkouts.items()) + "\n")
    runs = {(c, k): [] for c in commands for k in checkouts}
    for _ in range(args.repeats):
        for command, command_argv in commands.items():
            for key, checkout in checkouts.items():
                runs[(command, key)].append(measured(checkout, command_argv))
    rows = []
    for command in commands:
        row = {"command": command}
        for key in checkouts:
            seconds = statistics.median(r[0] for r in runs[(command, key)])
            rss = statistics.median(r[1] for r in runs[(command, key)])
            row[f"{key} s"] = seconds
            row[f"{key} MiB"] = rss
            row[f"{key} loads TF"] = "yes" if any(r[2] for r in runs[(command, key)]) else "no"
        if "before" in checkouts:
            before = statistics.median(r[0] for r in runs[(command, "before")])
            now = statistics.median(r[0] for r in runs[(command, "now")])
            row["x faster"] = before / now
        rows.append(row)
    print_table("Wall time and peak RSS (median)", rows, list(rows[0]))
    help_loads_tf = any(r[2] for r in runs[("python -m cbir_tutorial --help", "now")])
    print()
    note(f"--help imports TensorFlow: {'yes (target: no, NOT met)' if help_loads_tf else 'no (target met)'}")
    write_json(args.json)
    return 1 if help_loads_tf else 0


if __name__ == "__main__":
    sys.exit(main())
