"""Where the package keeps its caches (features, converted weights, downloads)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CBIR_TUTORIAL_CACHE"


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$CBIR_TUTORIAL_CACHE`` or ``~/.cache/cbir_tutorial``), sub-folder created."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cbir_tutorial")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
