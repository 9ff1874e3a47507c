"""Tests for medgan.data.medmnist: the MedMNIST subsets, lookup order and the MD5-checked, atomic downloader."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest

from medgan.data import medmnist
from medgan.data.dataset import SPLITS
from medgan.data.sources import load_dataset
from medgan.errors import DatasetError
from medgan.io import file_digest


def test_breastmnist_counts_and_layout(medmnist_dir):
    data = load_dataset("breastmnist")
    assert data.source == "medmnist"
    assert data.class_names == ["malignant", "normal, benign"]
    assert data.counts("train") == [147, 399]
    assert [len(data.splits[s]) for s in SPLITS] == [546, 78, 156]
    assert data.splits["train"].images.shape == (546, 1, 28, 28)
    assert data.splits["train"].images.dtype == np.uint8
    assert (data.spatial_dims, data.channels, data.licence) == (2, 1, "CC BY 4.0")
    assert data.extra["path"].endswith("breastmnist.npz")


def test_adrenalmnist3d_volumes(medmnist_dir):
    data = load_dataset("adrenalmnist3d", data_dir=medmnist_dir)
    assert data.spatial_dims == 3
    assert data.splits["train"].images.shape == (1188, 1, 28, 28, 28)
    assert data.counts("train") == [929, 259]
    assert [len(data.splits[s]) for s in SPLITS] == [1188, 98, 298]


def test_unsupported_medmnist_size():
    with pytest.raises(DatasetError, match="no size 32"):
        load_dataset("breastmnist_32")


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    rs = np.random.RandomState(0)
    arrays = {}
    for s, n in (("train", 20), ("val", 4), ("test", 6)):
        arrays[f"{s}_images"] = rs.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def server():
    """A local HTTP server for one payload; records what the destination folder held mid-transfer."""
    state: dict = {"payload": _npz_bytes(), "dest": None, "seen_mid": None, "requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            state["requests"] += 1
            body = state["payload"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            if state["dest"] is not None:
                d: Path = state["dest"]
                state["seen_mid"] = sorted(p.name for p in d.iterdir()) if d.exists() else []
            self.wfile.write(body[half:])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/breastmnist.npz"
    yield state
    httpd.shutdown()
    httpd.server_close()


def _point_registry(monkeypatch, url: str, md5: str) -> None:
    entry = medmnist.registry()["breastmnist"]["sizes"]["28"]
    monkeypatch.setitem(entry, "url", url)
    monkeypatch.setitem(entry, "md5", md5)


def test_download_lands_atomically_and_is_then_used(tmp_path, monkeypatch, server):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)
    md5 = hashlib.md5(server["payload"]).hexdigest()
    _point_registry(monkeypatch, server["url"], md5)
    dest = tmp_path / "data"
    server["dest"] = dest
    data = load_dataset("breastmnist", data_dir=dest)
    assert server["requests"] == 1
    # mid-transfer only a hidden temporary file existed, never the final name
    assert server["seen_mid"] and all(n.startswith(".breastmnist.npz.") for n in server["seen_mid"])
    assert sorted(p.name for p in dest.iterdir()) == ["breastmnist.npz"]
    assert file_digest(dest / "breastmnist.npz", "md5") == md5
    assert data.counts("train") == [10, 10] and data.class_names[0] == "malignant"
    # a second load finds the local file and does not download again
    load_dataset("breastmnist", data_dir=dest)
    assert server["requests"] == 1


def test_download_goes_to_the_user_cache_without_a_data_dir(tmp_path, monkeypatch, server):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)
    _point_registry(monkeypatch, server["url"], hashlib.md5(server["payload"]).hexdigest())
    path = medmnist.locate("breastmnist", 28)
    assert path == medmnist.user_cache() / "breastmnist.npz" and path.is_file()


def test_md5_mismatch_leaves_no_file(tmp_path, monkeypatch, server):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)
    _point_registry(monkeypatch, server["url"], "0" * 32)
    dest = tmp_path / "data"
    with pytest.raises(DatasetError, match="MD5") as ei:
        medmnist.locate("breastmnist", 28, dest)
    assert "breastmnist.npz" in str(ei.value) and "\n" not in str(ei.value)
    assert list(dest.iterdir()) == []


def test_unreachable_url_names_file_url_and_destination(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)
    url = "http://127.0.0.1:9/breastmnist.npz"
    _point_registry(monkeypatch, url, "0" * 32)
    dest = tmp_path / "data"
    with pytest.raises(DatasetError) as ei:
        load_dataset("breastmnist", data_dir=dest)
    msg = str(ei.value)
    assert "breastmnist.npz" in msg and url in msg and str(dest) in msg and "\n" not in msg
    assert list(dest.iterdir()) == []


def test_downloads_off_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGAN_DATA_DIR", raising=False)
    with pytest.raises(DatasetError, match="not found") as ei:
        load_dataset("breastmnist", data_dir=tmp_path, download=False)
    assert "zenodo" in str(ei.value) and str(tmp_path) in str(ei.value)


def test_lookup_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b" / "medmnist"
    for d in (a, b, medmnist.user_cache()):
        d.mkdir(parents=True, exist_ok=True)
        (d / "breastmnist.npz").write_bytes(b"x")
    monkeypatch.setenv("MEDGAN_DATA_DIR", str(tmp_path / "b"))  # the data root works too (medmnist/ inside)
    assert medmnist.find_local("breastmnist", 28, a) == a / "breastmnist.npz"
    assert medmnist.find_local("breastmnist", 28) == b / "breastmnist.npz"
    monkeypatch.delenv("MEDGAN_DATA_DIR")
    assert medmnist.find_local("breastmnist", 28) == medmnist.user_cache() / "breastmnist.npz"
    assert medmnist.find_local("breastmnist", 64) is None
