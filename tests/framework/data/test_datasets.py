import os
import re
from pathlib import Path

import numpy as np
import pytest

from lamina import ConfigError, DataError
from lamina.data import DATASETS, FASHION_MNIST, MNIST, get_spec, load_dataset, split

# Captured at import: the sandbox fixture clears LAMINA_DATA for every other test.
REAL_DATA = os.environ.get("LAMINA_DATA")


@pytest.fixture
def real_data() -> str:
    """The data root holding mnist/, as LAMINA_DATA named it when the tests started."""
    if not REAL_DATA or not (Path(REAL_DATA).expanduser() / "mnist").is_dir():
        pytest.skip("set LAMINA_DATA to a folder holding mnist/ to run this test")
    return str(Path(REAL_DATA).expanduser().resolve())


def _install(toy, tmp_path, replace=None):
    """Put the toy files in <tmp>/cli/toy, with ``replace`` {file name: bytes} swapped in."""
    directory = toy.install(tmp_path / "cli" / "toy")
    for name, data in (replace or {}).items():
        (directory / name).unlink()
        (directory / name.removesuffix(".gz")).write_bytes(data)
    return tmp_path / "cli"


def test_loads_float_pixels_and_int_labels(toy, tmp_path):
    data = load_dataset(toy.spec, data_dir=_install(toy, tmp_path), download=False)

    assert data.name == "toy" and data.class_names == ("a", "b", "c") and data.num_classes == 3
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (6, 1, 28, 28)
    assert data.input_shape == (1, 28, 28)
    assert data.train_x.dtype == np.float32 and data.test_x.dtype == np.float32
    assert data.train_y.dtype == np.int64 and data.test_y.dtype == np.int64
    assert data.train_x[0, 0, 0, 0] == 0.0 and data.train_x[0, 0, 0, 1] == 1.0
    np.testing.assert_array_equal(
        data.train_x[:, 0] * np.float32(255), toy.arrays["train_images"].astype(np.float32)
    )
    np.testing.assert_array_equal(data.test_x[:, 0], toy.arrays["test_images"] / np.float32(255))
    np.testing.assert_array_equal(data.train_y, toy.arrays["train_labels"])
    np.testing.assert_array_equal(data.test_y, toy.arrays["test_labels"])


def test_loads_by_downloading_from_a_file_mirror(toy, sandbox):
    data = load_dataset(toy.spec)
    np.testing.assert_array_equal(data.test_y, toy.arrays["test_labels"])
    assert data.files["test_labels"].parent == sandbox / ".cache" / "lamina" / "toy"


def test_limit_keeps_the_first_training_samples_only(toy, tmp_path):
    data = load_dataset(toy.spec, data_dir=_install(toy, tmp_path), download=False, limit=5)
    assert data.train_x.shape == (5, 1, 28, 28) and data.test_x.shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(data.train_y, toy.arrays["train_labels"][:5])


@pytest.mark.parametrize("limit", [0, 21])
def test_limit_out_of_range(toy, tmp_path, limit):
    with pytest.raises(ConfigError, match=f"limit: expected 1 <= limit <= 20.*received {limit}"):
        load_dataset(toy.spec, data_dir=_install(toy, tmp_path), download=False, limit=limit)


def test_unpacked_files_are_read_and_checked_by_structure(toy, tmp_path, idx_bytes):
    raw = idx_bytes(toy.arrays["train_images"])
    root = _install(toy, tmp_path, {"train-images-idx3-ubyte.gz": raw})
    data = load_dataset(toy.spec, data_dir=root, download=False)
    np.testing.assert_array_equal(data.train_x[:, 0] * 255, toy.arrays["train_images"])

    truncated = root / "toy" / "train-images-idx3-ubyte"
    truncated.write_bytes(raw[:-100])
    with pytest.raises(DataError, match=re.escape(str(truncated)) + ".*truncated"):
        load_dataset(toy.spec, data_dir=root, download=False)


def test_images_of_the_wrong_size(toy, tmp_path, idx_bytes):
    wrong = idx_bytes(np.zeros((6, 28, 27), np.uint8))
    root = _install(toy, tmp_path, {"t10k-images-idx3-ubyte.gz": wrong})
    with pytest.raises(DataError, match=r"expected toy images of 28 x 28 .*\(6, 28, 27\)"):
        load_dataset(toy.spec, data_dir=root, download=False)


def test_swapped_images_and_labels(toy, tmp_path, idx_bytes):
    labels_as_images = idx_bytes(toy.arrays["test_labels"])
    root = _install(toy, tmp_path, {"t10k-images-idx3-ubyte.gz": labels_as_images})
    with pytest.raises(DataError, match="magic 2051 .* received magic 2049"):
        load_dataset(toy.spec, data_dir=root, download=False)


def test_label_count_must_match_image_count(toy, tmp_path, idx_bytes):
    root = _install(toy, tmp_path, {"t10k-labels-idx1-ubyte.gz": idx_bytes(np.zeros(5, np.uint8))})
    with pytest.raises(DataError, match="holds 5 labels but .* holds 6 images"):
        load_dataset(toy.spec, data_dir=root, download=False)


def test_labels_beyond_the_classes(toy, tmp_path, idx_bytes):
    labels = idx_bytes(np.array([0, 1, 2, 3, 0, 1], np.uint8))
    root = _install(toy, tmp_path, {"t10k-labels-idx1-ubyte.gz": labels})
    with pytest.raises(DataError, match=r"expected labels 0\.\.2, received 3"):
        load_dataset(toy.spec, data_dir=root, download=False)


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'mnsit'; known datasets: fashion-mnist"):
        get_spec("mnsit")


def test_builtin_specs():
    assert set(DATASETS) == {"mnist", "fashion-mnist"}
    for spec in (MNIST, FASHION_MNIST):
        assert len(spec.class_names) == 10 and spec.image_shape == (28, 28)
        assert all(re.fullmatch("[0-9a-f]{32}", digest) for digest in spec.md5.values())
        assert all(url.startswith(("http://", "https://")) for url in spec.mirrors)
    assert MNIST.md5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert FASHION_MNIST.md5["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"


# --- the validation split ----------------------------------------------------------


def _samples(n=50):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return x, np.arange(n) * 10


def test_split_takes_ten_percent_by_default_and_loses_nothing():
    x, y = _samples()
    (x_train, y_train), (x_val, y_val) = split(x, y, rng=np.random.default_rng(0))
    assert len(x_train) == 45 and len(x_val) == 5
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), y)
    np.testing.assert_array_equal(x_val[:, 0] * 5, y_val)  # pairs stay together
    assert np.all(np.diff(y_train) > 0) and np.all(np.diff(y_val) > 0)  # order kept


def test_split_is_seeded():
    x, y = _samples()
    first = split(x, y, fraction=0.2, rng=np.random.default_rng(7))[1][1]
    again = split(x, y, fraction=0.2, rng=np.random.default_rng(7))[1][1]
    other = split(x, y, fraction=0.2, rng=np.random.default_rng(8))[1][1]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_split_with_zero_fraction_has_no_validation():
    x, y = _samples(4)
    (x_train, _), (x_val, y_val) = split(x, y, fraction=0.0, rng=np.random.default_rng(0))
    assert len(x_train) == 4 and x_val.shape == (0, 2) and y_val.shape == (0,)


@pytest.mark.parametrize(
    ("n", "fraction", "match"),
    [(50, 1.0, "0 <= fraction < 1"), (50, -0.1, "0 <= fraction < 1"),
     (4, 0.1, "leaves 0 for validation"), (2, 0.9, "leaves 2 for validation and 0")],
)
def test_split_rejects_fractions_that_leave_a_side_empty(n, fraction, match):
    x, y = _samples(n)
    with pytest.raises(ConfigError, match=match):
        split(x, y, fraction=fraction, rng=np.random.default_rng(0))


def test_split_needs_matching_lengths():
    x, y = _samples()
    with pytest.raises(DataError, match="received 49 and 50"):
        split(x, y[:-1], rng=np.random.default_rng(0))


# --- the real MNIST ----------------------------------------------------------------


def test_real_mnist_through_lamina_data(monkeypatch, real_data):
    monkeypatch.setenv("LAMINA_DATA", real_data)
    data = load_dataset("mnist", download=False)

    assert data.files["train_images"].parent == Path(real_data) / "mnist"
    assert data.train_x.shape == (60000, 1, 28, 28) and data.train_y.shape == (60000,)
    assert data.test_x.shape == (10000, 1, 28, 28) and data.test_y.shape == (10000,)
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int64
    assert data.train_x.min() == 0.0 and data.train_x.max() == 1.0
    assert data.test_x.min() == 0.0 and data.test_x.max() == 1.0
    histogram = np.bincount(data.train_y, minlength=10).tolist()
    assert histogram == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist_copies_are_verified_by_content_however_compressed(tmp_path, real_data):
    """The shipped content checksums are MNIST's: an unpacked copy and a copy recompressed
    by another tool (as a dataset package may ship it) are accepted."""
    import gzip

    source = Path(real_data) / "mnist"
    copy = tmp_path / "data" / "mnist"
    copy.mkdir(parents=True)
    images = gzip.decompress((source / "t10k-images-idx3-ubyte.gz").read_bytes())
    (copy / "t10k-images-idx3-ubyte").write_bytes(images)
    labels = gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes())
    recompressed = gzip.compress(labels, compresslevel=1, mtime=0)
    assert recompressed != (source / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (copy / "t10k-labels-idx1-ubyte.gz").write_bytes(recompressed)
    data = load_dataset("mnist", data_dir=tmp_path / "data", download=False, parts=("test",))
    assert data.test_x.shape == (10000, 1, 28, 28)
    (copy / "t10k-images-idx3-ubyte").write_bytes(images[:-1] + bytes([images[-1] ^ 1]))
    with pytest.raises(DataError, match="the content differs from the canonical "
                                        "t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path / "data", download=False, parts=("test",))


def with_content_sums(toy):
    """The toy spec as a real one is: the SHA-256 of each file's decompressed content and
    the number of samples."""
    import dataclasses
    import gzip
    import hashlib

    sums = {name: hashlib.sha256(gzip.decompress(blob)).hexdigest()
            for name, blob in toy.blobs.items()}
    return dataclasses.replace(toy.spec, content_sha256=sums, samples=(20, 6))


def test_recompressed_and_unpacked_copies_are_accepted_by_content(toy, tmp_path, idx_bytes):
    import gzip

    spec = with_content_sums(toy)
    recompressed = gzip.compress(idx_bytes(toy.arrays["train_images"]), compresslevel=1,
                                 mtime=12345)
    assert recompressed != toy.blobs["train-images-idx3-ubyte.gz"]  # other bytes, same content
    root = _install(toy, tmp_path, {"t10k-labels-idx1-ubyte.gz":
                                    idx_bytes(toy.arrays["test_labels"])})
    (root / "toy" / "train-images-idx3-ubyte.gz").write_bytes(recompressed)
    data = load_dataset(spec, data_dir=root, download=False)
    np.testing.assert_array_equal(data.train_x[:, 0] * 255, toy.arrays["train_images"])
    np.testing.assert_array_equal(data.test_y, toy.arrays["test_labels"])


def test_content_that_differs_says_so_precisely(toy, tmp_path, idx_bytes):
    spec = with_content_sums(toy)
    changed = toy.arrays["test_images"].copy()
    changed[3, 10, 10] ^= 1  # one pixel
    root = _install(toy, tmp_path, {"t10k-images-idx3-ubyte.gz": idx_bytes(changed)})
    with pytest.raises(DataError) as info:
        load_dataset(spec, data_dir=root, download=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte: the IDX header is right (uint8, shape (6, 28, 28)) but " \
           "the content differs from the canonical t10k-images-idx3-ubyte.gz" in message
    assert "the images themselves are damaged or from another version" in message
    assert "delete it so lamina downloads it again" in message


def test_a_file_inflating_to_gigabytes_is_refused_after_its_header(toy, tmp_path, gz):
    """A gzip stored under a dataset name whose header declares far more than the dataset
    holds: refused from the header, before the payload is inflated."""
    import struct
    import tracemalloc

    spec = with_content_sums(toy)
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2_000_000, 28, 28)
    bomb = gz(header + bytes(50_000_000))  # 50 MB of zeros, ~50 kB compressed
    root = _install(toy, tmp_path)
    (root / "toy" / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    tracemalloc.start()
    with pytest.raises(DataError, match=r"expected an IDX array of shape \(20, 28, 28\), the "
                                        r"header declares \(2000000, 28, 28\)"):
        load_dataset(spec, data_dir=root, download=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5_000_000  # the 50 MB payload was never inflated


def test_a_damaged_system_copy_says_where_to_put_a_good_one(toy, tmp_path, sandbox):
    from lamina.data import lookup

    system = toy.install(lookup.SYSTEM_ROOT / "toy")
    (system / "train-labels-idx1-ubyte.gz").write_bytes(toy.blobs[
        "train-labels-idx1-ubyte.gz"][:-3])
    with pytest.raises(DataError) as info:
        load_dataset(toy.spec, download=False)
    message = str(info.value)
    assert "this is the system's copy, which lamina reads last: put an intact copy in " \
           f"{sandbox / '.cache' / 'lamina' / 'toy'} (searched first)" in message
    assert "delete it" not in message


def test_the_test_part_alone_needs_no_training_files(toy, tmp_path):
    root = tmp_path / "cli"
    toy.install(root / "toy", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
    data = load_dataset(toy.spec, data_dir=root, download=False, parts=("test",))
    assert data.test_x.shape == (6, 1, 28, 28) and data.train_x.shape == (0, 1, 28, 28)
    assert set(data.files) == {"test_images", "test_labels"}
