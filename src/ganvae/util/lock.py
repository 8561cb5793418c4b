"""``RunLock``: one writer per run folder.

``ganvae train`` holds an exclusive ``flock`` on ``RUN/.lock`` for as long as it runs; a second
process that wants to write the same folder (a second ``train --out``, ``--resume`` or
``--overwrite``) is refused with the holder's process id. The kernel drops the lock when the
process ends, however it ends (``kill -9`` included), so a lock left by a dead process never
blocks: the file stays, the lock does not.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import GanvaeError

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(folder): ...`` or ``lock = RunLock(folder).acquire()`` ... ``lock.release()``."""

    def __init__(self, folder: str | Path, what: str = "--out"):
        self.folder, self.what = Path(folder), what
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise GanvaeError(f"{self.what} {self.folder}: in use by process {holder} (a ganvae run writing "
                                  "there); wait for it to end or choose another folder") from None
            raise
        try:  # the holder's pid, for the message a second writer gets; a full disk only loses that
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(folder: str | Path) -> str | None:
    """The pid written by the process holding ``folder``'s lock, or None when nobody holds it."""
    path = Path(folder) / LOCK_NAME
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
