"""File helpers every layer shares: atomic writes, file modes, hashes, JSON sanitising, Markdown tables.

Nothing here imports from the rest of medgan (beyond :mod:`medgan.errors`), so any module may use it.

* :func:`atomic_write` writes a file under a temporary name beside its destination and renames it into place:
  a reader (or a crash) never sees half a file. ``fsync=True`` (the default) also flushes the data to disk
  before the rename; per-sample writers that sync once at the end pass ``fsync=False``.
* :func:`default_file_mode`: the permissions a plain ``open`` would give a new file under this umask.
* :func:`file_digest`: SHA-256 (or MD5, for MedMNIST's published checksums) of a file, streamed.
* :func:`json_safe` / :func:`write_json`: the one JSON policy of medgan: NaN and infinities become ``null``,
  numpy and torch scalars and arrays become plain numbers and lists.
* :func:`markdown_table`: a GitHub-flavoured Markdown table.
* :func:`append_text`: an append to a log (``metrics.jsonl``, ``train.log``).
* Owners: while a command's :class:`medgan.outputs.OutputFolder` is open (:func:`register_owner`), every
  :func:`atomic_write` and :func:`append_text` into it is checked against the folder's ownership rule and recorded.
* :func:`is_disk_error` / :func:`ensure_writable_dir`: a full, over-quota or read-only disk is the user's to fix:
  callers turn it into one line (:class:`medgan.errors.OutputError`) instead of a traceback.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from medgan.errors import OutputError

#: ``errno`` values that say the disk cannot take a write: full, over quota, read-only.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@functools.lru_cache(maxsize=1)
def default_file_mode() -> int:
    """Permissions of a newly created file under this process's umask (``0o666 & ~umask``, e.g. 0o644).

    ``tempfile.mkstemp`` creates its files 0o600; files renamed into place from it would otherwise end up
    owner-only whatever the user's umask says (read once: ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: Open output folders (:class:`medgan.outputs.OutputFolder`), innermost last.
_OWNERS: list[Any] = []


def register_owner(owner: Any) -> None:
    """Route writes under ``owner.path`` through ``owner`` (its ``before_*``/``after_*`` hooks)."""
    _OWNERS.append(owner)


def unregister_owner(owner: Any) -> None:
    if owner in _OWNERS:
        _OWNERS.remove(owner)


def owner_of(path: str | Path) -> Any:
    """The open output folder ``path`` lies in, or ``None``."""
    for o in reversed(_OWNERS):
        if o.rel(path) is not None:
            return o
    return None


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (UTF-8) to ``path`` and flush, recorded by the output folder it lies in (if any)."""
    path = Path(path)
    data = text.encode("utf-8")
    owner = owner_of(path)
    if owner is not None:
        owner.before_append(path, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
    if owner is not None:
        owner.after_append(path)


def atomic_write(path: str | Path, content: bytes | str | Callable[[IO[bytes]], Any], *, fsync: bool = True) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function called with the open binary file) to ``path``
    through a temporary file in the same folder and a rename; the file gets :func:`default_file_mode`.

    On any failure (including ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    owner = owner_of(path)
    if owner is not None:
        owner.check_one(owner.rel(path))  # a link or a file that is not medgan's: refused before the write
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if owner is not None:
            owner.before_replace(path, tmp)
        os.replace(tmp, path)
        if owner is not None:
            owner.after_replace(path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # name the file in messages (a failed write() names none)
        raise
    return path


def write_bytes_fast(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write` for many small files: raw ``os`` calls, a fixed temporary name ``.<name>.tmp`` and
    no fsync (the caller syncs once, e.g. before writing the manifest that lists the files)."""
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), default_file_mode())
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_disk_error(e: BaseException) -> bool:
    """Whether ``e`` is an ``OSError`` meaning the disk is full, over quota or read-only."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


def ensure_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the folder ``path`` if needed and prove a file can be created in it; else :class:`OutputError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file; pass a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".medgan-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write to {path} ({e.strerror or type(e).__name__}); choose a writable "
                          f"{flag}") from None
    return path


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (checkpoints, synthetic outputs)."""
    return file_digest(path, "sha256")


_FORMULA = re.compile(r"'*[=+\-@\t\r]")  # what a spreadsheet may run as a formula, behind any quotes


def escape_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text (OWASP's advice against CSV injection): a string that starts,
    after any quotes, with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``; anything
    else is returned as is. :func:`unescape_cell` gives the string back exactly."""
    return "'" + value if isinstance(value, str) and _FORMULA.match(value) else value


def unescape_cell(value: str) -> str:
    """The inverse of :func:`escape_cell` on the text read back."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value, 1) else value


def json_safe(o: Any) -> Any:
    """A JSON-safe copy: NaN/inf -> ``None``, numpy/torch scalars and arrays -> numbers and lists, tuples ->
    lists, dict keys -> strings."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, bool) or o is None or isinstance(o, (str, int)):
        return o
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    tolist = getattr(o, "tolist", None)  # numpy and torch scalars and arrays
    if callable(tolist):
        return json_safe(tolist())
    return o


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """``obj`` through :func:`json_safe`, written atomically with a trailing newline."""
    text = json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write(path, text)


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells converted with ``str``)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)
