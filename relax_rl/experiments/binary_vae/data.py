"""Statically binarized MNIST and Omniglot for the binary VAE (paper §6.2).

MNIST is the fixed binarization of Larochelle & Murray (2011), 50,000 / 10,000 / 10,000
images. It loads from MATLAB files (``binarized_mnist_{split}.mat``, ``X`` of shape
``(N, 784)``) or from the public text files (``binarized_mnist_{split}.amat``: one image a
line, 784 space-separated 0/1 values). Every file is checked against a known sha256 before
use, and its array is cached as ``.npy`` under that checksum, so it is parsed once.

Omniglot is read from the ``chardata.mat`` of Burda et al. (2016) and split and binarized
exactly as the REBAR code does (fixed seeds), since no checksum for it is published.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

SPLITS = ("train", "valid", "test")
PIXELS = 784
AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{split}.amat"
OMNIGLOT_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
OMNIGLOT_FILE = "chardata.mat"

#: sha256 of each file the loader accepts. The ``.mat`` sums are those of the shared data
#: folder's README; the ``.amat`` sums are TensorFlow Datasets' for the public URLs
#: (tensorflow_datasets/url_checksums/binarized_mnist.txt).
CHECKSUMS: Mapping[str, str] = {
    "binarized_mnist_train.mat": "79a0312c7389d855cfc97e3812de3998417c5829d8a51543b56a90a91252ae7e",
    "binarized_mnist_valid.mat": "7436afc856959075c7787025bb8a4ba2b520b9230ee39667c66aa7dd2819dd68",
    "binarized_mnist_test.mat": "5bc30222e1e7896cbccd1e1db6b28540cc1230f4d2d5473841a5f6cc54be8d38",
    "binarized_mnist_train.amat": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "binarized_mnist_valid.amat": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "binarized_mnist_test.amat": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}

# REBAR's Omniglot protocol (tensorflow/models research/rebar/datasets.py).
OMNIGLOT_VALID = 1345
OMNIGLOT_BINARIZE_SEED = 5
OMNIGLOT_SHUFFLE_SEED = 123


class DataError(Exception):
    """Missing or corrupt data; the message is one line that says what to do."""


@dataclass(frozen=True)
class Dataset:
    """Binary images as ``uint8`` arrays of shape ``(N, 784)``."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def split(self, name: str) -> np.ndarray:
        return getattr(self, name)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/relax_rl`` (``~/.cache/relax_rl`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "relax_rl"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, checksums: Mapping[str, str], name: str | None = None) -> str:
    """The file's sha256, after checking it against ``checksums[name or path.name]``."""
    actual = sha256(path)
    expected = checksums.get(name or path.name)
    if expected is None:
        raise DataError(f"no known sha256 for {path}; cannot verify it")
    if actual != expected:
        raise DataError(f"sha256 mismatch for {path}: expected {expected}, got {actual}; delete it and fetch it again")
    return actual


def _check_binary(x: np.ndarray, source: Path) -> np.ndarray:
    if x.ndim != 2 or x.shape[1] != PIXELS or x.shape[0] == 0:
        raise DataError(f"{source} holds an array of shape {x.shape}, expected (N, {PIXELS})")
    if not ((x == 0) | (x == 1)).all():
        raise DataError(f"{source} holds values other than 0 and 1")
    return x.astype(np.uint8, copy=False)


def read_mat(path: Path) -> np.ndarray:
    """``X`` from a MATLAB file, as ``uint8`` ``(N, 784)``."""
    contents = scipy.io.loadmat(path)
    if "X" not in contents:
        raise DataError(f"{path} has no variable 'X'")
    return _check_binary(np.asarray(contents["X"]), path)


def parse_amat(path: Path) -> np.ndarray:
    """A text file of 0/1 values, one image a line, as ``uint8`` ``(N, 784)``.

    Vectorised over the raw bytes: ``np.loadtxt`` takes tens of seconds on the 78 MB
    training file, this takes well under one.
    """
    text = path.read_bytes()
    raw = np.frombuffer(text, dtype=np.uint8)
    digits = raw[~np.isin(raw, np.frombuffer(b" \t\r\n", dtype=np.uint8))]
    if not np.isin(digits, np.frombuffer(b"01", dtype=np.uint8)).all():
        raise DataError(f"{path} holds characters other than 0, 1 and whitespace")
    rows = sum(1 for line in text.splitlines() if line.strip())
    if rows == 0 or digits.size != rows * PIXELS:
        raise DataError(f"{path} has {digits.size} values on {rows} lines, expected {PIXELS} per line")
    return (digits - ord("0")).reshape(rows, PIXELS)


def _download(url: str, dest: Path, checksums: Mapping[str, str], opener: Callable) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file, kept only if its checksum matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as tmp:
        partial = Path(tmp.name)
        try:
            with opener(url) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as err:
            partial.unlink()
            raise DataError(f"could not download {url}: {err}") from err
    try:
        verify(partial, checksums, name=dest.name)
    except DataError:
        partial.unlink()
        raise
    partial.replace(dest)


def load_split(
    data_dir: Path,
    split: str,
    cache_dir: Path | None = None,
    download: bool = False,
    checksums: Mapping[str, str] = CHECKSUMS,
    opener: Callable = urllib.request.urlopen,
) -> np.ndarray:
    """One split of binarized MNIST from ``data_dir``: the ``.mat`` file, else the ``.amat`` one.

    With ``download`` a missing ``.amat`` file is fetched into ``data_dir`` first. The
    verified file's array is cached as ``.npy`` under its checksum in ``cache_dir``
    (default :func:`default_cache_dir`): parsing takes seconds, loading the cache
    milliseconds. ``opener`` is ``urllib.request.urlopen``; tests replace it.
    """
    mat, amat = data_dir / f"binarized_mnist_{split}.mat", data_dir / f"binarized_mnist_{split}.amat"
    if mat.is_file():
        source, read = mat, read_mat
    elif amat.is_file() or download:
        source, read = amat, parse_amat
        if not amat.is_file():
            _download(AMAT_URL.format(split=split), amat, checksums, opener)
    else:
        raise DataError(
            f"binarized MNIST not found: {data_dir} has neither {mat.name} nor {amat.name}; "
            "pass --download to fetch the .amat files there, or --data DIR to point elsewhere"
        )
    digest = verify(source, checksums)
    cache = (cache_dir or default_cache_dir()) / f"{source.name}-{digest[:16]}.npy"
    if cache.is_file():
        return _check_binary(np.load(cache), cache)
    x = read(source)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Through a temporary file, so a concurrent or interrupted run never sees half an array.
    with tempfile.NamedTemporaryFile(dir=cache.parent, prefix=f".{cache.name}.", delete=False) as tmp:
        np.save(tmp, x)
    Path(tmp.name).replace(cache)
    return x


def load_mnist(
    data_dir: Path,
    cache_dir: Path | None = None,
    download: bool = False,
    checksums: Mapping[str, str] = CHECKSUMS,
    opener: Callable = urllib.request.urlopen,
) -> Dataset:
    """All three splits of statically binarized MNIST (see :func:`load_split`)."""
    return Dataset(*(load_split(data_dir, s, cache_dir, download, checksums, opener) for s in SPLITS))


def load_omniglot(data_dir: Path) -> Dataset:
    """Omniglot from ``data_dir/chardata.mat``: 23,000 / 1,345 / 8,070 images with REBAR's split.

    The file stores grey levels as ``784 × N`` column-major images; like REBAR we transpose
    each image to row-major, binarize once with a fixed seed and hold out the last 1,345
    images of a fixed shuffle of the training set for validation.
    """
    path = data_dir / OMNIGLOT_FILE
    if not path.is_file():
        raise DataError(f"Omniglot not found: put {OMNIGLOT_FILE} (from {OMNIGLOT_URL}) in {data_dir}")
    contents = scipy.io.loadmat(path)
    if "data" not in contents or "testdata" not in contents:
        raise DataError(f"{path} lacks the 'data' and 'testdata' variables of chardata.mat")

    def images(key: str) -> np.ndarray:
        x = np.asarray(contents[key], dtype=np.float32).T
        if x.ndim != 2 or x.shape[1] != PIXELS:
            raise DataError(f"{path}: '{key}' has shape {x.T.shape}, expected ({PIXELS}, N)")
        return x.reshape(-1, 28, 28).reshape(-1, PIXELS, order="F")

    train, test = images("data"), images("testdata")
    if train.shape[0] <= OMNIGLOT_VALID:
        raise DataError(f"{path}: 'data' has {train.shape[0]} images, too few to hold out {OMNIGLOT_VALID}")
    rng = np.random.RandomState(OMNIGLOT_BINARIZE_SEED)
    train = (rng.random_sample(train.shape) < train).astype(np.uint8)
    test = (rng.random_sample(test.shape) < test).astype(np.uint8)
    train = train[np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(train.shape[0])]
    return Dataset(train[:-OMNIGLOT_VALID], train[-OMNIGLOT_VALID:], test)
