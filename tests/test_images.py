"""The IDX reader on small files written here (no dataset package needed)."""
import gzip
import struct

import numpy as np
import pytest

from rnnlab.data.images import load_split, parse_idx, read_idx, write_idx
from rnnlab.errors import UserError


def _handmade_idx(arr: np.ndarray) -> bytes:
    """IDX bytes built from the format's description, independently of write_idx."""
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _dataset(folder, n=5, compress=True, split="train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    stem = "train" if split == "train" else "t10k"
    sfx = ".gz" if compress else ""
    write_idx(folder / f"{stem}-images-idx3-ubyte{sfx}", images, compress)
    write_idx(folder / f"{stem}-labels-idx1-ubyte{sfx}", labels, compress)
    return images, labels


def test_reads_handmade_plain_and_gzipped(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_handmade_idx(arr))
    (tmp_path / "b.gz").write_bytes(gzip.compress(_handmade_idx(arr)))
    for name in ("a", "b.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
def test_round_trip_every_type(tmp_path, dtype):
    arr = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "x", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), arr)


def test_big_endian_sizes_and_values():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])   # int16 [258, -2]
    np.testing.assert_array_equal(parse_idx(data), [258, -2])


@pytest.mark.parametrize("compress", [False, True])
def test_load_split(tmp_path, compress):
    images, labels = _dataset(tmp_path, compress=compress, split="test")
    split = load_split(tmp_path, "test")
    assert len(split) == 5 and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)


def test_truncated_file_names_file_and_byte(tmp_path):
    data = _handmade_idx(np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes(data[:100])
    with pytest.raises(UserError, match=r"cut: truncated at byte 100.*ends at byte 2368"):
        read_idx(tmp_path / "cut")
    (tmp_path / "head").write_bytes(data[:9])
    with pytest.raises(UserError, match=r"head: truncated at byte 9.*header"):
        read_idx(tmp_path / "head")


def test_truncated_gzip(tmp_path):
    raw = gzip.compress(_handmade_idx(np.ones((4, 28, 28), np.uint8)))
    (tmp_path / "t.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"t\.gz: damaged or truncated gzip"):
        read_idx(tmp_path / "t.gz")


def test_wrong_magic(tmp_path):
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(UserError, match=r"png: wrong magic number at byte 0.*89 50 4e 47"):
        read_idx(tmp_path / "png")


def test_trailing_bytes(tmp_path):
    (tmp_path / "long").write_bytes(_handmade_idx(np.zeros((2, 2), np.uint8)) + b"xx")
    with pytest.raises(UserError, match=r"long: 2 unexpected bytes after byte 16"):
        read_idx(tmp_path / "long")


def test_missing_folder_and_files_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_split(tmp_path / "nowhere", "train")
    with pytest.raises(UserError, match=r"no train images file.*dataset-fashion-mnist"):
        load_split(tmp_path, "train")


def test_label_count_mismatch(tmp_path):
    _dataset(tmp_path, compress=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: expected 5 labels"):
        load_split(tmp_path, "train")
