"""The lock on a run directory while a process writes it (``train``, ``resume``, a twin).

``RUN_DIR/.lock`` is held with an exclusive ``fcntl.flock``: the operating system releases it when
the process ends, however it ends (SIGKILL included), so the lock is what counts. The holder writes
its pid, host and start time into the file, for the message a second process gets
(:class:`~selfexpand.errors.RunLockedError`), and empties it when it releases the lock; a file
found non-empty by the next holder was left by a process that died holding it, which is logged as a
stale lock taken over. One process holds it for the whole run (in a distributed run: rank 0).

``flock`` locks are advisory and local: on a network file system that does not support them, or on
Windows (no ``fcntl``), the lock is not taken and a debug message says so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path

from .errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RunLock", "LOCK_FILE"]

log = logging.getLogger("selfexpand.runs")

LOCK_FILE = ".lock"


class RunLock:
    """``with RunLock(run_dir): ...`` holds the run directory's lock for the block.

    Raises:
        RunLockedError: another live process holds it (on entering).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover
                log.debug("no fcntl on this platform: %s is not locked", self.run_dir)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            err = RunLockedError(f"run directory {self.run_dir} is being written by {_describe(holder)}; "
                                 f"wait for it or stop it")
            err.run_dir = str(self.run_dir)
            raise err from None
        previous = _read(fd)
        if previous:
            log.warning("run directory %s: took over the lock left by %s, which ended without releasing it "
                        "(killed?)", self.run_dir, _describe(previous))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (nothing when not held); the emptied file says it was released."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 4096, 0)
        if not data.strip():
            return None  # released cleanly (or never held)
        value = json.loads(data.decode())
    except (OSError, ValueError):
        return {"unreadable": True}
    return value if isinstance(value, dict) else {"unreadable": True}


def _describe(holder: dict | None) -> str:
    if not holder or "pid" not in holder:
        return "another process"
    return f"process {holder['pid']} on {holder.get('host', '?')} (started {holder.get('started', '?')})"
