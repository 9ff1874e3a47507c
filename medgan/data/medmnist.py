"""MedMNIST subsets: the registry, lookup in the data directory, and MD5-checked downloads."""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path

from medgan.errors import DatasetError
from medgan.io import default_file_mode

SIZES = (28, 64, 128, 224)


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, dict]:
    """Facts of every MedMNIST v3 subset (task, labels, channels, dims, splits, licence, URLs, MD5s)."""
    text = resources.files("medgan.data").joinpath("medmnist_registry.json").read_text()
    return json.loads(text)


def parse_name(spec: str) -> tuple[str, int] | None:
    """``'breastmnist'`` -> ``('breastmnist', 28)``, ``'pneumoniamnist_64'`` -> ``('pneumoniamnist', 64)``.

    Returns ``None`` when ``spec`` is not a MedMNIST name.
    """
    m = re.fullmatch(r"([a-z0-9]+mnist(?:3d)?)(?:_(\d+))?", spec.strip().lower())
    if not m or m.group(1) not in registry():
        return None
    size = int(m.group(2) or 28)
    if str(size) not in registry()[m.group(1)]["sizes"]:
        sizes = ", ".join(registry()[m.group(1)]["sizes"])
        raise DatasetError(f"MedMNIST '{m.group(1)}' has no size {size}; available sizes: {sizes}")
    return m.group(1), size


def suggest(spec: str) -> str:
    """A 'did you mean' hint for an unknown dataset name (a size suffix such as ``_64`` is kept)."""
    names = [*registry(), "phantom2d", "phantom3d"]
    low = spec.strip().lower()
    m = re.fullmatch(r"(.+?)_(\d+)", low)
    base, suffix = (m.group(1), f"_{m.group(2)}") if m else (low, "")
    close = difflib.get_close_matches(re.sub(r"[^a-z0-9]", "", base), names, n=1, cutoff=0.5)
    if not close:
        return "; run 'medgan info datasets' for the list"
    return f"; did you mean '{close[0]}{suffix if close[0] in registry() else ''}'?"


def filename(subset: str, size: int) -> str:
    return f"{subset}.npz" if size == 28 else f"{subset}_{size}.npz"


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medgan" / "medmnist"


def search_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Where MedMNIST files are looked for, in order: ``--data-dir``, ``MEDGAN_DATA_DIR``, the user cache.

    Each directory is also searched for a ``medmnist/`` sub-folder, so the data root works as well.
    """
    dirs: list[Path] = []
    for d in (data_dir, os.environ.get("MEDGAN_DATA_DIR")):
        if d:
            dirs += [Path(d), Path(d) / "medmnist"]
    dirs.append(user_cache())
    return dirs


def find_local(subset: str, size: int, data_dir: str | Path | None = None) -> Path | None:
    name = filename(subset, size)
    for d in search_dirs(data_dir):
        if (d / name).is_file():
            return d / name
    return None


def download(subset: str, size: int, dest_dir: Path, timeout: float = 30.0) -> Path:
    """Download one subset file with an MD5 check; written to a temporary file, then renamed.

    A failed or mismatching download leaves nothing behind. A progress bar is shown on an interactive stderr.
    """
    import sys

    from tqdm import tqdm

    entry = registry()[subset]["sizes"][str(size)]
    url, md5 = entry["url"], entry["md5"]
    dest_dir = Path(dest_dir)
    dest = dest_dir / filename(subset, size)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{dest.name}.", suffix=".part")
        os.fchmod(fd, default_file_mode())
    except OSError as e:
        raise DatasetError(
            f"cannot write to {dest_dir} to download {dest.name} ({e.strerror}); pass a writable --data-dir"
        ) from None
    h = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
                      disable=not sys.stderr.isatty(), leave=False) as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        got = h.hexdigest()
        if got != md5:
            raise DatasetError(
                f"download of {dest.name} from {url} failed its MD5 check (got {got}, expected {md5}); try again, "
                f"or download it by hand into {dest_dir}"
            )
        os.replace(tmp, dest)
    except DatasetError:
        raise
    except Exception as e:  # network errors of every kind
        reason = getattr(e, "reason", None) or e
        raise DatasetError(
            f"{dest.name} is not available locally and could not be downloaded from {url} ({reason}); download it "
            f"by hand (MD5 {md5}) and put it in {dest_dir} (or in the folder given by --data-dir or MEDGAN_DATA_DIR)"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def locate(subset: str, size: int, data_dir: str | Path | None = None, allow_download: bool = True) -> Path:
    """The local path of a subset file, downloading it into the data directory (or cache) when missing."""
    found = find_local(subset, size, data_dir)
    if found is not None:
        return found
    for d, what in ((data_dir, "--data-dir"), (os.environ.get("MEDGAN_DATA_DIR"), "the variable MEDGAN_DATA_DIR")):
        if d and Path(d).is_file():
            raise DatasetError(f"{what} names a file ({d}), not a folder; point it at the folder that holds the "
                               f"MedMNIST .npz files (e.g. {Path(d).parent}), or pass the file itself as --dataset")
    entry = registry()[subset]["sizes"][str(size)]
    where = Path(data_dir or os.environ.get("MEDGAN_DATA_DIR") or user_cache())
    if not allow_download:
        raise DatasetError(
            f"{filename(subset, size)} not found in {', '.join(map(str, search_dirs(data_dir)))}; download "
            f"{entry['url']} (MD5 {entry['md5']}) into {where}, or allow downloads"
        )
    return download(subset, size, where)
