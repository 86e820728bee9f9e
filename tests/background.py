"""The work that runs beside the unit tests (the notebook runs) yields the CPU to them.

The unit tests are CI's longest chain and mostly use one core; at a lower priority the background runs take
whatever the tests leave idle instead of slowing them down, so the session ends when its total work does.
"""

from __future__ import annotations

import os
import subprocess

#: Added to the background processes' nice value (children, such as nbval's kernels, inherit it).
NICENESS = 10


def in_background(process: subprocess.Popen) -> subprocess.Popen:
    """``process``, its scheduling priority lowered by :data:`NICENESS` where the system allows it (POSIX)."""
    if hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, process.pid) + NICENESS)
        except (ProcessLookupError, PermissionError):
            pass  # already ended, or not ours to change: it runs at the normal priority
    return process
