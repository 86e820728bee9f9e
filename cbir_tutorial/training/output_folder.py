"""The folder a training run writes: checked before any work, and held by one run at a time.

* :func:`check_output_folder` - a folder, or a place where one can be made, that this process can write in
  (not a file, not under a file, not read-only);
* :class:`OutputLock` - while a run writes a folder, a lock file beside it (``.NAME.lock``, holding the
  run's pid and host) refuses a second run at once, naming the first; the file goes when the run ends.
  Where ``fcntl`` exists the lock is the system's (``flock``: a killed run's lock is dropped at once); on
  Windows the file's exclusive creation is the lock, and a killed run's file must be deleted by hand.
  Written here rather than taken from the ``filelock`` package: a refused run must name the holder (pid
  and host, which ``filelock`` does not record), and the package's dependencies stay what Colab ships.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from ..paths import PathError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class OutputFolderError(PathError):
    """A training folder that cannot be used now; one line: the folder, what is wrong, the fix."""


class FolderBusyError(OutputFolderError):
    """Another training run holds the folder's lock."""


class OutputWriteError(OSError):
    """Writing a run's folder failed part way (a full disk...); one line saying what the folder still holds."""


def check_output_folder(folder: str | os.PathLike) -> Path:
    """``folder`` (``~`` expanded) when a run can write it: an existing folder, or a path whose nearest
    existing ancestor is a folder; this process must be able to create a file there (tried, not guessed
    from permission bits). Else :class:`OutputFolderError` naming the file in the way or the folder that
    cannot be written. Creates nothing that stays."""
    folder = Path(folder).expanduser()
    for place in (folder, *folder.parents):
        if place.is_dir():
            break
        if place.exists() or place.is_symlink():
            if place == folder:
                raise OutputFolderError(folder, "is a file, not a folder: give the folder to write the trained "
                                                "model in (a new one, or a trained model's)")
            raise OutputFolderError(folder, f"{place} is a file, not a folder: give a folder path that does not "
                                            "go through a file")
    try:
        probe, name = tempfile.mkstemp(prefix=".write-test-", dir=place)
        os.close(probe)
        os.unlink(name)
    except OSError as error:
        where = "" if place == folder else f" (it would be made in {place})"
        raise OutputFolderError(folder, f"cannot be written{where}: {error.strerror or error}; choose a folder "
                                        "you can write in") from None
    return folder


#: The lock files this process holds (a run's own :class:`OutputLock` taken again inside it is a no-op).
_HELD: dict[tuple[Path, int], int] = {}


def lock_path(folder: str | os.PathLike) -> Path:
    """``.NAME.lock`` beside the folder ``NAME`` (outside it, so a folder replaced whole stays locked)."""
    folder = Path(folder).expanduser().absolute()
    return folder.with_name(f".{folder.name}.lock")


class OutputLock:
    """``with OutputLock(folder):`` - this run alone writes ``folder``; a second run (another process) gets
    :class:`FolderBusyError` at once, naming the holder's pid and host. Taken again by the same thread
    inside, it is a no-op. The lock file's parent folder is created."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        self.path = lock_path(folder)
        self._key = (self.path, threading.get_ident())
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        if _HELD.get(self._key):
            _HELD[self._key] += 1
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._flocked() if fcntl is not None else self._created()
        except FolderBusyError:
            raise
        except OSError as error:
            raise OutputFolderError(self.folder, f"cannot create its lock file {self.path} "
                                                 f"({error.strerror or error}): a run locks its folder with a file "
                                                 "beside it; choose a folder whose parent you can write in") from None
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}, since "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        _HELD[self._key] = 1
        return self

    def __exit__(self, *exc) -> None:
        _HELD[self._key] -= 1
        if _HELD[self._key]:
            return
        del _HELD[self._key]
        if self._fd is None:
            return
        if fcntl is not None:
            self.path.unlink(missing_ok=True)  # while still locked: a run that opens it now finds it gone
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        else:
            os.close(self._fd)  # Windows removes no open file
            self.path.unlink(missing_ok=True)
        self._fd = None

    def _busy(self) -> FolderBusyError:
        try:
            holder = self.path.read_text(encoding="utf-8", errors="replace").strip() or "starting"
        except OSError:
            holder = "unknown"
        return FolderBusyError(self.folder, f"another training run is writing it ({holder}; lock file "
                                            f"{self.path}): wait for it to end, or train into another folder")

    def _flocked(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._busy() from None
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:  # its holder removed it on leaving, after this open
                same = False
            if same:
                os.ftruncate(fd, 0)
                return fd
            os.close(fd)

    def _created(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise FolderBusyError(self.folder, f"{self._busy().problem.rstrip()} (a run that was killed leaves "
                                               "its lock file here: delete it if none is running)") from None
