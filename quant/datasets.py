"""Datasets as unsigned-integer pixel arrays with fixed, seeded train/val/test splits.

Specs (the CLI's ``--dataset``):
    digits              scikit-learn's bundled 8x8 digits (1797 images, grey levels 0..16);
                        stratified 60/20/20 train/val/test split, seed 0 (test: 360 samples)
    mnist:DIR           the standard IDX files in DIR (gzip or raw): train-images-idx3-ubyte,
    fashion-mnist:DIR   train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte;
                        val = a stratified 10% of train (seed 0), test = t10k
    mnist-t10k:DIR      only the t10k files: their 10,000 samples split stratified 80/20
                        (train+val / test), seed 0 -- for machines without the training split

Images are ``uint8`` arrays (N, 1, H, W); labels ``int64`` (N,). The validation split is what
threshold calibration uses; accuracy is reported on the test split.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExitgateError

__all__ = ["Dataset", "load_dataset", "read_idx", "write_idx", "DATASET_KINDS"]

DATASET_KINDS = ("digits", "mnist:DIR", "fashion-mnist:DIR", "mnist-t10k:DIR")
_SEED = 0


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    max_pixel: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_test.shape[1:])

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")
        except AttributeError:
            raise ValueError(f"split must be train, val or test, got {which!r}") from None


def _stratified(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, picked): `fraction` of every class picked, seeded."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        picked.append(idx[: int(round(len(idx) * fraction))])
    picked = np.sort(np.concatenate(picked))
    rest = np.setdiff1d(np.arange(len(y)), picked)
    return rest, picked


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # grey levels 0..16
    y = d.target.astype(np.int64)
    rest, test = _stratified(y, 0.2, _SEED)
    tr, va = _stratified(y[rest], 0.25, _SEED + 1)
    train, val = rest[tr], rest[va]
    return Dataset("digits", x[train], y[train], x[val], y[val], x[test], y[test], 10, 16)


_IDX_TYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzip); raises ExitgateError naming the file if it is corrupt."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ExitgateError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ExitgateError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ExitgateError(f"{path} is truncated (header)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims)) if dims else 0
    if len(raw) != header + count:
        raise ExitgateError(f"{path} is truncated or corrupt: header says {dims} "
                            f"({count} bytes of data), file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file (used by tests to make tiny MNIST-like sets)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + b"".join(d.to_bytes(4, "big") for d in a.shape) + a.tobytes()
    Path(path).write_bytes(gzip.compress(raw) if compress else raw)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise ExitgateError(f"{directory} has no {stem} (or {stem}.gz): expected the standard "
                        "MNIST IDX file names")


def _pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ExitgateError(f"{directory}: {prefix} images {images.shape} and labels "
                            f"{labels.shape} do not match (want (N, H, W) and (N,))")
    if labels.size and labels.max() > 9:
        raise ExitgateError(f"{directory}: {prefix} labels must be 0..9, found {labels.max()}")
    return images[:, None].copy(), labels.astype(np.int64)


def _idx_dataset(kind: str, directory: Path) -> Dataset:
    if not directory.is_dir():
        raise ExitgateError(f"dataset directory {directory} does not exist "
                            f"(--dataset {kind}:DIR wants a directory of IDX files)")
    if kind == "mnist-t10k":
        x, y = _pair(directory, "t10k")
        rest, test = _stratified(y, 0.2, _SEED)
        tr, va = _stratified(y[rest], 0.1, _SEED + 1)
        return Dataset(f"{kind}:{directory}", x[rest[tr]], y[rest[tr]], x[rest[va]], y[rest[va]],
                       x[test], y[test], 10, 255)
    if not any((directory / f"train-images-idx3-ubyte{s}").is_file() for s in ("", ".gz")):
        raise ExitgateError(f"{directory} has no train-images-idx3-ubyte(.gz); with only the "
                            f"t10k files use --dataset mnist-t10k:{directory}")
    xt, yt = _pair(directory, "train")
    xs, ys = _pair(directory, "t10k")
    tr, va = _stratified(yt, 0.1, _SEED)
    return Dataset(f"{kind}:{directory}", xt[tr], yt[tr], xt[va], yt[va], xs, ys, 10, 255)


def load_dataset(spec: str) -> Dataset:
    """Load a dataset by its spec (see module docstring)."""
    if spec == "digits":
        return _digits()
    kind, sep, directory = spec.partition(":")
    if kind in ("mnist", "fashion-mnist", "mnist-t10k") and sep and directory:
        return _idx_dataset(kind, Path(directory).expanduser())
    if kind in ("mnist", "fashion-mnist", "mnist-t10k"):
        raise ExitgateError(f"--dataset {kind} needs a directory: {kind}:DIR")
    raise ExitgateError(f"unknown dataset {spec!r}; allowed: {', '.join(DATASET_KINDS)}")
