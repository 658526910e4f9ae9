"""The binary VAE's data loaders: both MNIST formats, checksums, the cache, download and Omniglot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from relax_rl.experiments.binary_vae import data
from relax_rl.experiments.binary_vae.data import DataError, load_mnist, load_omniglot, sha256

ROWS = {"train": 5, "valid": 3, "test": 2}


def images(split: str) -> np.ndarray:
    rng = np.random.default_rng(len(split))
    return (rng.random((ROWS[split], data.PIXELS)) < 0.3).astype(np.uint8)


def write_mat(directory: Path) -> dict[str, str]:
    sums = {}
    for split in data.SPLITS:
        path = directory / f"binarized_mnist_{split}.mat"
        scipy.io.savemat(path, {"X": images(split)}, do_compression=True)
        sums[path.name] = sha256(path)
    return sums


def amat_text(x: np.ndarray) -> bytes:
    return "".join(" ".join(map(str, row)) + "\n" for row in x).encode()


def write_amat(directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split in data.SPLITS:
        path = directory / f"binarized_mnist_{split}.amat"
        path.write_bytes(amat_text(images(split)))
        sums[path.name] = sha256(path)
    return sums


def assert_round_trip(dataset: data.Dataset) -> None:
    for split in data.SPLITS:
        loaded = dataset.split(split)
        assert loaded.dtype == np.uint8 and np.array_equal(loaded, images(split))


def test_mat_files_round_trip(tmp_path) -> None:
    sums = write_mat(tmp_path)
    assert_round_trip(load_mnist(tmp_path, cache_dir=tmp_path / "cache", checksums=sums))


def test_amat_files_round_trip_and_are_parsed_once(tmp_path, monkeypatch) -> None:
    sums = write_amat(tmp_path)
    cache = tmp_path / "cache"
    assert_round_trip(load_mnist(tmp_path, cache_dir=cache, checksums=sums))
    assert len(list(cache.glob("binarized_mnist_*.amat-*.npy"))) == 3

    def no_parsing(path: Path) -> np.ndarray:
        raise AssertionError(f"parsed {path} again instead of loading the cache")

    monkeypatch.setattr(data, "parse_amat", no_parsing)
    assert_round_trip(load_mnist(tmp_path, cache_dir=cache, checksums=sums))


def test_mat_is_preferred_to_amat(tmp_path) -> None:
    sums = {**write_amat(tmp_path), **write_mat(tmp_path)}
    (tmp_path / "binarized_mnist_train.amat").write_text("garbage\n")  # never read: the .mat wins
    assert_round_trip(load_mnist(tmp_path, cache_dir=tmp_path / "cache", checksums=sums))


def test_checksum_mismatch_is_a_clear_error(tmp_path) -> None:
    write_mat(tmp_path)  # small files, so the real MNIST checksums cannot match
    with pytest.raises(DataError, match=r"sha256 mismatch for .*binarized_mnist_train\.mat: expected 79a0312c"):
        load_mnist(tmp_path, cache_dir=tmp_path / "cache")


def test_malformed_amat_is_refused(tmp_path) -> None:
    path = tmp_path / "binarized_mnist_train.amat"
    path.write_bytes(amat_text(images("train")).replace(b"1", b"2", 1))
    with pytest.raises(DataError, match="other than 0, 1"):
        data.parse_amat(path)
    path.write_bytes(b"0 1 0\n")
    with pytest.raises(DataError, match="784 per line"):
        data.parse_amat(path)


def test_missing_files_say_how_to_get_them(tmp_path) -> None:
    with pytest.raises(DataError, match="--download") as err:
        load_mnist(tmp_path / "empty", cache_dir=tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_download_fetches_verifies_and_keeps_the_text_files(tmp_path) -> None:
    texts = {split: amat_text(images(split)) for split in data.SPLITS}
    sums = write_amat(tmp_path / "reference")
    urls: list[str] = []

    def opener(url: str) -> io.BytesIO:
        urls.append(url)
        return io.BytesIO(texts[url.rsplit("_", 1)[1].removesuffix(".amat")])

    target = tmp_path / "data"
    dataset = load_mnist(target, cache_dir=tmp_path / "cache", download=True, checksums=sums, opener=opener)
    assert_round_trip(dataset)
    assert urls == [data.AMAT_URL.format(split=s) for s in data.SPLITS]
    assert sorted(p.name for p in target.iterdir()) == sorted(f"binarized_mnist_{s}.amat" for s in data.SPLITS)


def test_a_corrupt_download_leaves_nothing_behind(tmp_path) -> None:
    sums = write_amat(tmp_path / "reference")
    target = tmp_path / "data"
    with pytest.raises(DataError, match="sha256 mismatch"):
        load_mnist(target, download=True, checksums=sums, opener=lambda url: io.BytesIO(b"0 1\n"))
    assert list(target.iterdir()) == []


def test_missing_omniglot_says_where_to_put_it(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        load_omniglot(tmp_path)
    message = str(err.value)
    assert "chardata.mat" in message and str(tmp_path) in message and data.OMNIGLOT_URL in message


def test_omniglot_loads_with_rebars_split(tmp_path) -> None:
    # Grey levels of exactly 0 or 1 binarize deterministically; the top 5 rows of every image are on.
    image = np.zeros((28, 28), dtype=np.float32)
    image[:5] = 1.0
    column = image.flatten(order="F")  # chardata.mat stores images column-major, 784 × N
    train_n, test_n = data.OMNIGLOT_VALID + 7, 4
    contents = {"data": np.tile(column[:, None], (1, train_n)), "testdata": np.tile(column[:, None], (1, test_n))}
    scipy.io.savemat(tmp_path / "chardata.mat", contents)
    dataset = load_omniglot(tmp_path)
    assert [dataset.split(s).shape[0] for s in data.SPLITS] == [7, data.OMNIGLOT_VALID, test_n]
    for split in data.SPLITS:
        assert dataset.split(split).dtype == np.uint8
        assert np.array_equal(dataset.split(split)[0].reshape(28, 28), image.astype(np.uint8))
