import gzip

import numpy as np
import pytest

from exitgate.errors import ExitgateError
from exitgate.quant.datasets import load_dataset, read_idx, write_idx


def test_digits_split_is_fixed_stratified_and_disjoint(digits):
    assert len(digits.y_test) >= 300
    assert digits.x_test.dtype == np.uint8 and digits.x_test.max() <= 16
    total = len(digits.y_train) + len(digits.y_val) + len(digits.y_test)
    assert total == 1797
    counts = np.bincount(digits.y_test, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified: ~20% of each class
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    from sklearn.datasets import load_digits
    full = {}
    for img in load_digits().images.astype(np.uint8):
        full[img.tobytes()] = full.get(img.tobytes(), 0) + 1
    seen = {}
    for split in (digits.x_train, digits.x_val, digits.x_test):  # every image used exactly once
        for img in split[:, 0]:
            seen[img.tobytes()] = seen.get(img.tobytes(), 0) + 1
    assert seen == full


def _mnist_dir(tmp_path, n_train=60, n_test=40, compress=True, train=True):
    rng = np.random.default_rng(0)
    if train:
        write_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if compress else "")),
                  rng.integers(0, 256, (n_train, 28, 28)), compress)
        write_idx(tmp_path / ("train-labels-idx1-ubyte" + (".gz" if compress else "")),
                  np.arange(n_train) % 10, compress)
    write_idx(tmp_path / ("t10k-images-idx3-ubyte" + (".gz" if compress else "")),
              rng.integers(0, 256, (n_test, 28, 28)), compress)
    write_idx(tmp_path / ("t10k-labels-idx1-ubyte" + (".gz" if compress else "")),
              np.arange(n_test) % 10, compress)
    return tmp_path


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_idx(tmp_path, compress):
    d = load_dataset(f"mnist:{_mnist_dir(tmp_path, compress=compress)}")
    assert d.x_test.shape == (40, 1, 28, 28) and len(d.y_train) + len(d.y_val) == 60
    assert d.max_pixel == 255
    assert load_dataset(f"fashion-mnist:{tmp_path}").x_test.shape == (40, 1, 28, 28)


def test_mnist_t10k_split(tmp_path):
    d = load_dataset(f"mnist-t10k:{_mnist_dir(tmp_path, n_test=100, train=False)}")
    assert len(d.y_test) == 20 and len(d.y_train) + len(d.y_val) == 80


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(ExitgateError, match="does not exist"):
        load_dataset(f"mnist:{tmp_path / 'nope'}")
    _mnist_dir(tmp_path, train=False)
    with pytest.raises(ExitgateError, match="train-images-idx3-ubyte.*mnist-t10k"):
        load_dataset(f"mnist:{tmp_path}")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ExitgateError, match="t10k-labels-idx1-ubyte"):
        load_dataset(f"mnist-t10k:{tmp_path}")


def test_corrupt_and_truncated_idx(tmp_path):
    p = tmp_path / "x"
    write_idx(p, np.zeros((3, 4, 4)), compress=False)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ExitgateError, match="truncated or corrupt"):
        read_idx(p)
    p.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ExitgateError, match="bad magic"):
        read_idx(p)
    p.write_bytes(gzip.compress(b"abc")[:-4])
    with pytest.raises(ExitgateError, match="cannot read IDX"):
        read_idx(p)


def test_unknown_dataset():
    with pytest.raises(ExitgateError, match="unknown dataset 'cifar'; allowed: digits, mnist:DIR"):
        load_dataset("cifar")
    with pytest.raises(ExitgateError, match="needs a directory"):
        load_dataset("mnist")
