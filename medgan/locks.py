"""A real lock on an output folder, so that two medgan processes never write into the same one.

:class:`FolderLock` takes an exclusive ``fcntl.flock`` on ``FOLDER/.medgan.lock`` for the whole command and
writes the holder (pid, host, command, start time) into that file. A second process asking for the same folder
is refused at once with one line naming the holder: ``runs/x is in use by pid 4242 on host-a (medgan train, since
2025-01-01 12:00:00); wait for it to finish or use another --out``.

The kernel releases a ``flock`` when its holder exits, however it exits (``kill -9`` included), so a lock file
left behind by a dead process never blocks a new run: it is simply locked again. On a normal release the lock
file is removed (while still locked; a process that opened the old file in the meantime notices that the file
it locked is no longer the one at the path, and starts over). A folder the lock created is removed again on
release when nothing was written into it.

Platforms without ``fcntl`` (Windows) get no lock: the command runs as before.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

from medgan.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".medgan.lock"


def _holder_text(fd: int) -> str:
    """What the holder wrote into the lock file ("pid N on HOST (COMMAND, since T)"), or a neutral phrase."""
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        raw = ""
    fields = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
    if "pid" not in fields:
        return "another medgan process"
    text = f"pid {fields['pid']}"
    if fields.get("host") and fields["host"] != socket.gethostname():
        text += f" on {fields['host']}"
    what = ", ".join(v for v in (fields.get("command"), f"since {fields['since']}" if fields.get("since") else "")
                     if v)
    return text + (f" ({what})" if what else "")


class FolderLock:
    """An exclusive lock on ``folder`` (created if missing) for ``command``; use as a context manager.

    ``flag`` names the option that chose the folder, for the messages (``--out``).
    """

    def __init__(self, folder: str | Path, command: str, flag: str = "--out") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.flag = flag
        self._fd: int | None = None
        self._created = False

    def _make_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.flag} {self.folder} is a file; pass a folder")
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True)
                self._created = True
        except FileExistsError:
            pass
        except OSError as e:
            raise OutputError(f"cannot create {self.folder} ({e.strerror or type(e).__name__}); choose a writable "
                              f"{self.flag}") from None

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`OutputError` naming the process that holds it."""
        self._make_folder()
        if fcntl is None:  # pragma: no cover
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                raise OutputError(f"cannot write to {self.folder} ({e.strerror or type(e).__name__}); choose a "
                                  f"writable {self.flag}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _holder_text(fd)
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputError(f"{self.folder} is in use by {holder}; wait for it to finish or use another "
                                      f"{self.flag}") from None
                raise
            try:  # the previous holder may have removed the file between our open and our lock: lock the new one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        info = f"pid={os.getpid()}\nhost={socket.gethostname()}\ncommand={self.command}\nsince={since}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the message names no pid
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (and the folder, when the lock created it and it is empty)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if self._created:
            try:
                self.folder.rmdir()  # only succeeds when nothing was written
            except OSError:
                pass

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
