"""Reader for the IDX files of MNIST and Fashion-MNIST (LeCun et al. 1998; Xiao, Rasul &
Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms"), gzipped or not.

IDX layout (all integers big-endian):

    byte 0-1   zero
    byte 2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
               0x0D float32, 0x0E float64
    byte 3     number of dimensions D
    byte 4..   D sizes, 4 bytes each
    then       the elements, row-major

Both datasets ship four files, ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each possibly ``.gz``). On Debian
and Ubuntu, ``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST's under
``/usr/share/datasets/fashion-mnist/``; any folder holding the same names works (MNIST too).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_STEMS = {"train": "train", "test": "t10k"}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic 1f 8b."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: damaged or truncated gzip data ({e}); "
                        f"the compressed file has {len(raw)} bytes") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array; ``name`` goes into error messages."""
    if len(data) < 4:
        raise UserError(f"{name}: truncated at byte {len(data)}: an IDX file starts with a "
                        f"4-byte magic number")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise UserError(f"{name}: wrong magic number at byte 0: expected 00 00 <type> <dims> "
                        f"with type one of {', '.join(f'{t:02x}' for t in _DTYPES)}, found "
                        f"{data[:4].hex(' ')}; is this an IDX file?")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{name}: truncated at byte {len(data)}: the header of {ndim} "
                        f"dimensions ends at byte {header}")
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_DTYPES[data[2]])
    need = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < need:
        raise UserError(f"{name}: truncated at byte {len(data)}: the header promises shape "
                        f"{shape} of {dtype.name}, which ends at byte {need}")
    if len(data) > need:
        raise UserError(f"{name}: {len(data) - need} unexpected bytes after byte {need}, "
                        f"where shape {shape} of {dtype.name} ends")
    count = (need - header) // dtype.itemsize
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header) if count \
        else np.zeros(0, dtype=dtype)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzipped, detected from its first bytes)."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write an array as an IDX file (used by the tests and to make small subsets)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    arr = np.ascontiguousarray(array)
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {arr.dtype}")
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                    for s in arr.shape)
    data = head + arr.astype(_DTYPES[code]).tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)


def find_file(folder: Path, split: str, kind: str) -> Path:
    """The path of ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in folder."""
    stem = _STEMS[split]
    dims = "idx3" if kind == "images" else "idx1"
    for name in (f"{stem}-{kind}-{dims}-ubyte", f"{stem}-{kind}.{dims}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    raise UserError(
        f"no {split} {kind} file ({stem}-{kind}-{dims}-ubyte[.gz]) in {folder}; install "
        f"Fashion-MNIST with `apt-get install {DEBIAN_PACKAGE}` (files go to {DEFAULT_DIR}) "
        f"or pass the folder holding the four IDX files")


@dataclass
class ImageSplit:
    """images uint8 (N, 28, 28), labels int64 (N,)."""
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def load_split(folder: str | os.PathLike | None = None, split: str = "train") -> ImageSplit:
    """Load the train or test split of MNIST-format data from folder (default: Debian's)."""
    if split not in _STEMS:
        raise ValueError(f"split must be 'train' or 'test', received {split!r}")
    folder = Path(folder) if folder else DEFAULT_DIR
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; install Fashion-MNIST with "
                        f"`apt-get install {DEBIAN_PACKAGE}` (files go to {DEFAULT_DIR}) or "
                        f"pass the folder holding the four IDX files")
    img_path, lab_path = find_file(folder, split, "images"), find_file(folder, split, "labels")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise UserError(f"{img_path}: expected 3 dimensions (N, rows, cols), "
                        f"found shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{lab_path}: expected {len(images)} labels (one per image in "
                        f"{img_path.name}), found shape {labels.shape}")
    return ImageSplit(images, labels.astype(np.int64))
