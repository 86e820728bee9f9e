"""Where the package keeps its caches (features, converted weights, downloads), and writing files and
folders atomically."""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
from pathlib import Path

CACHE_ENV = "CBIR_TUTORIAL_CACHE"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


class PathError(ValueError):
    """A file or folder that cannot be used as it is: one line, ``path: problem`` (the problem says the fix)."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(str(path), problem)
        self.path, self.problem = Path(path), problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def cache_dir(*parts: str) -> Path:
    """The cache folder (``$CBIR_TUTORIAL_CACHE`` or ``~/.cache/cbir_tutorial``), sub-folder created."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cbir_tutorial")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never half."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap the files or folders at ``a`` and ``b`` in one atomic step (Linux ``renameat2``, both must
    exist); False where the system or file system cannot, OSError for any other failure."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without renameat2
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_folder(new: Path, folder: Path) -> None:
    """Move folder ``new`` to ``folder``, replacing it: readers see the old folder or the new one, never
    none (where :func:`exchange_paths` works; elsewhere two renames). ``new`` is removed."""
    new, folder = Path(new), Path(folder)
    if not folder.exists():
        os.replace(new, folder)
        return
    if exchange_paths(new, folder):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    old = new.with_name(new.name + ".old")
    os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def temporary_sibling(path: Path) -> Path:
    """``.NAME.PID.tmp`` beside ``path``, after removing those that killed processes left behind."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        pid = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
