"""The one ownership rule of every command that writes: a command owns only what it wrote.

An :class:`OutputFolder` is the folder a command (``train``, ``evaluate``, ``export --format bundle``) writes
into. The rule, in four parts:

1. **Whose folder.** A command writes into a folder it created, an empty folder, or a folder that holds its own
   record (``.medgan-owned.json``: the command and the SHA-256 of every file it wrote there). Any other folder is
   refused before work starts, naming what is in it.
2. **No links.** Nothing is written, read back or removed through a symbolic link inside the folder: a link where
   medgan would write is refused, naming it. (The folder named by ``--out`` may itself be a link: the user named
   it.)
3. **Replace only what it wrote.** A file is medgan's when the record holds its current SHA-256 (under its name or,
   for a file medgan's user moved within the folder, another). Only such files
   are replaced or removed; a file in the way that medgan cannot prove it wrote (a user's file, or medgan's file
   edited since) stops the command before work starts, naming the file. Files medgan does not need are left alone.
4. **Crash-safe record.** Every write goes through a temporary file; the new file's hash is added to the record
   *before* the rename and the old one dropped after it, so a crash at any point leaves each file provably
   medgan's (old or new content). Appends (``metrics.jsonl``, ``train.log``) record the hash the file will have
   after the append before appending.

While a folder is open (``with OutputFolder(...) as f:``) every :func:`medgan.io.atomic_write` and
:func:`medgan.io.append_text` into it is checked and recorded, so code below (checkpoints, figures, reports)
follows the rule without knowing about it. ``augment`` follows the same rule with a staged folder swapped in
whole and a per-file hash in its ``augment.json`` (:mod:`medgan.synthesis.outdir`).

Folders of older medgan versions, which kept no record, are recognised by their mark (``legacy``: e.g. a run's
``.medgan-run``) and their files of the command's known names are recorded as they are found.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from medgan import io
from medgan.errors import OutputError
from medgan.locks import LOCK_NAME

RECORD = ".medgan-owned.json"
_SKIP = (LOCK_NAME, RECORD)


def _sha(path: Path) -> str:
    return io.file_sha256(path)


class OutputFolder:
    """The folder ``path`` as written by ``command`` (see the module docstring).

    ``legacy(path) -> list[str] | None``: for a folder without a record, the files an older medgan wrote there
    (relative paths), or ``None`` when the folder is not such a folder. ``accepts``: other commands whose record
    this command may take over (none by default).
    """

    def __init__(self, path: str | Path, command: str, flag: str = "--out",
                 legacy: Callable[[Path], list[str] | None] | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        self.command = command
        self.flag = flag
        self.legacy = legacy
        self.files: dict[str, list[str]] = {}
        self._open = False

    # ------------------------------------------------------------------------------------------- opening
    def open(self) -> OutputFolder:
        """Create or take the folder, or raise :class:`OutputError` naming what is in the way."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise OutputError(f"{self.flag} {p} is a file; pass a folder")
        if not p.exists():
            try:
                p.mkdir(parents=True)
            except FileExistsError:
                pass
            except OSError as e:
                raise OutputError(f"cannot create {p} ({e.strerror or type(e).__name__}); choose a writable "
                                  f"{self.flag}") from None
        record = self._read_record()
        if record is not None:
            self.files = record
        else:
            entries = self.entries()
            found = self.legacy(p) if (self.legacy is not None and entries) else None
            if found is None and entries:
                raise OutputError(f"{self.flag} {p} holds files medgan {self.command} did not write "
                                  f"({_shown(entries)}); medgan writes only into a new or empty folder or one it "
                                  f"wrote: choose another {self.flag}")
            for rel in found or ():
                q = p / rel
                if q.is_file() and not _linked(p, rel):
                    self.files[rel] = [_sha(q)]
        if self.files:
            self._save()
        self._open = True
        io.register_owner(self)
        return self

    def entries(self) -> list[str]:
        """The folder's top-level entries other than the lock and the record."""
        return sorted(e.name for e in self.path.iterdir() if e.name not in _SKIP)

    def _read_record(self) -> dict[str, list[str]] | None:
        rp = self.path / RECORD
        if not rp.is_file() or rp.is_symlink():
            return None
        try:
            rec = json.loads(rp.read_text(encoding="utf-8"))
            if not isinstance(rec, dict) or rec.get("command") != f"medgan {self.command}":
                raise ValueError
            files = rec["files"]
            if not isinstance(files, dict):
                raise ValueError
            return {str(k): [str(h) for h in v] for k, v in files.items() if isinstance(v, list)}
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise OutputError(f"{rp} is not a record medgan {self.command} wrote (another command's, or damaged); "
                              f"choose another {self.flag}") from None

    def _save(self) -> None:
        text = json.dumps({"command": f"medgan {self.command}", "files": self.files}, indent=1, sort_keys=True)
        io.atomic_write(self.path / RECORD, text + "\n", fsync=False)

    def close(self) -> None:
        if self._open:
            io.unregister_owner(self)
            self._open = False
            if self.path.is_dir() and (self.files or (self.path / RECORD).is_file()):
                self._save()  # an empty folder stays empty: the lock removes a folder it made when nothing was written

    def __enter__(self) -> OutputFolder:
        return self.open() if not self._open else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- the rule
    def rel(self, path: str | Path) -> str | None:
        """``path`` relative to the folder (``/``-separated), or ``None`` when it is outside."""
        a = os.path.abspath(path)
        base = str(self.path)
        if a == base or not a.startswith(base + os.sep):
            return None
        return Path(a[len(base) + 1:]).as_posix()

    def owns(self, rel: str) -> bool:
        """Whether the file at ``rel`` is one medgan wrote (its current hash is recorded), reached without a link."""
        q = self.path / rel
        if _linked(self.path, rel) or not q.is_file():
            return False
        h = _sha(q)  # content medgan wrote, under this name or another of the folder (a run's step_N.pt -> last.pt)
        return h in self.files.get(rel, ()) or any(h in v for v in self.files.values())

    def check(self, rels: Iterable[str]) -> None:
        """Before work: every path in ``rels`` that exists must be medgan's, reached without a link."""
        for rel in rels:
            self.check_one(rel)

    def check_one(self, rel: str) -> None:
        if rel == RECORD:
            return
        link = _linked(self.path, rel)
        if link:
            raise OutputError(f"{self.path / link} is a symbolic link; medgan never writes through a link in its "
                              f"output folder: remove the link or choose another {self.flag}")
        q = self.path / rel
        if q.is_dir() and rel in self.files:
            raise OutputError(f"{q} is a folder where medgan {self.command} wrote a file; move it away or choose "
                              f"another {self.flag}")
        if os.path.lexists(q) and not q.is_dir() and not self.owns(rel):
            raise OutputError(f"{q} exists and was not written by medgan {self.command} (or was changed since); "
                              f"move it away or choose another {self.flag}")

    # ----------------------------------------------------------------- hooks of io.atomic_write / append_text
    def before_replace(self, path: Path, tmp: str) -> None:
        rel = self.rel(path)
        if rel is None or rel == RECORD:
            return
        self.check_one(rel)
        h = _sha(Path(tmp))
        self.files[rel] = [*[x for x in self.files.get(rel, ()) if x != h and os.path.exists(path)], h]
        self._save()

    def after_replace(self, path: Path) -> None:
        rel = self.rel(path)
        if rel is not None and rel != RECORD and rel in self.files:
            self.files[rel] = self.files[rel][-1:]

    def before_append(self, path: Path, data: bytes) -> None:
        rel = self.rel(path)
        if rel is None:
            return
        self.check_one(rel)
        import hashlib

        h = hashlib.sha256()
        if path.is_file():
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        old = [h.hexdigest()] if path.is_file() else []
        h.update(data)
        self.files[rel] = [*old, h.hexdigest()]
        self._save()

    def after_append(self, path: Path) -> None:
        self.after_replace(path)

    def adopt(self, rel: str) -> None:
        """Record a file medgan just wrote by other means (a library's writer, e.g. TensorBoard's event files)."""
        q = self.path / rel
        if q.is_file() and not _linked(self.path, rel):
            self.files[rel] = [_sha(q)]

    # ------------------------------------------------------------------------------------------ removing
    def remove(self, rel: str) -> bool:
        """Remove the file at ``rel`` when it is medgan's; returns whether it did (others stay)."""
        if not self.owns(rel):
            return False
        (self.path / rel).unlink()
        self.files.pop(rel, None)
        self._save()
        return True

    def remove_matching(self, keep: Callable[[str], bool] | None = None, under: str = "") -> list[str]:
        """Remove every recorded file (under ``under``) that is still medgan's, and then the folders left empty;
        ``keep(rel)`` spares files. Returns the files that stayed because they were changed since."""
        stayed = []
        for rel in sorted(self.files):
            if under and not rel.startswith(under.rstrip("/") + "/"):
                continue
            if keep is not None and keep(rel):
                continue
            if not self.remove(rel) and os.path.lexists(self.path / rel):
                stayed.append(rel)
        self.files = {r: h for r, h in self.files.items() if os.path.lexists(self.path / r)}
        self._save()
        if under:
            _remove_empty_dirs(self.path / under, self.path)
        return stayed


def _shown(entries: list[str]) -> str:
    return ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")


def _linked(base: Path, rel: str) -> str | None:
    """The first component of ``rel`` under ``base`` that is a symbolic link (relative), or ``None``."""
    cur = base
    parts = Path(rel).parts
    for i, part in enumerate(parts):
        cur = cur / part
        try:
            if stat.S_ISLNK(os.lstat(cur).st_mode):
                return "/".join(parts[: i + 1])
        except FileNotFoundError:
            return None
    return None


def _remove_empty_dirs(top: Path, base: Path) -> None:
    if not top.is_dir() or top.is_symlink():
        return
    for root, _dirs, _names in sorted(os.walk(top, topdown=False), key=lambda t: -len(t[0])):
        try:
            os.rmdir(root)
        except OSError:
            pass


def replaceable_file(path: str | Path, is_ours: Callable[[Path], bool], flag: str, overwrite: bool = True) -> Path:
    """A single output file (``info --grid``, ``export --format torchscript|onnx``): a new path, or (with
    ``overwrite``) a file ``is_ours`` proves medgan wrote; anything else is refused naming it."""
    p = Path(path)
    if p.is_symlink():
        raise OutputError(f"{flag} {p} is a symbolic link; medgan never writes through links: pass the real path")
    if p.is_dir():
        raise OutputError(f"{flag} {p} is a folder; pass a file path")
    if p.exists():
        if not is_ours(p):
            raise OutputError(f"{flag} {p} exists and is not a file medgan wrote; move it away or choose another "
                              f"{flag}")
        if not overwrite:
            raise OutputError(f"{p} exists; pass --overwrite to replace it or choose another {flag}")
    return p
