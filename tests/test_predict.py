"""lamina predict: images and .npy arrays in, a trained run's classes out."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from lamina.cli import main
from lamina.predict import InputFileError, read_samples

SHAPE = (1, 28, 28)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A .npy header declaring ``shape`` of ``descr``, whatever follows it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def notes():
    said = []
    return said, said.append


def test_a_light_on_dark_28x28_png_is_read_as_is(tmp_path):
    pixels = np.zeros((28, 28), np.uint8)
    pixels[8:20, 12:16] = 255
    Image.fromarray(pixels).save(tmp_path / "one.png")
    said, note = notes()
    [(label, sample)] = read_samples(tmp_path / "one.png", SHAPE, note)
    assert label == str(tmp_path / "one.png") and sample.shape == SHAPE
    np.testing.assert_array_equal(sample[0], pixels / np.float32(255))
    assert said == [f"{tmp_path / 'one.png'}: 28x28 PNG L"]


def test_a_dark_digit_on_white_in_colour_is_converted_inverted_and_resized(tmp_path):
    pixels = np.full((56, 84, 3), 250, np.uint8)
    pixels[10:46, 30:50] = 5  # a dark stroke
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    said, note = notes()
    [(_, sample)] = read_samples(tmp_path / "photo.png", SHAPE, note)
    assert sample.shape == SHAPE and sample.dtype == np.float32
    assert sample[0, 0, 0] < 0.05 and sample[0, 14, 14] > 0.9  # light stroke on dark now
    assert said == [f"{tmp_path / 'photo.png'}: 84x56 PNG RGB, grayscale, resized to 28x28, "
                    "inverted (dark on light; the training images are light on dark)"]


@pytest.mark.parametrize(("shape", "count"), [((28, 28), 1), ((1, 28, 28), 1),
                                              ((3, 1, 28, 28), 3), ((4, 28, 28), 4)])
def test_npy_arrays_of_one_sample_or_a_batch(tmp_path, shape, count):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    samples = read_samples(tmp_path / "x.npy", SHAPE, lambda _: None)
    assert len(samples) == count and all(s.shape == SHAPE for _, s in samples)
    if count == 3:
        assert [label for label, _ in samples][-1] == f"{tmp_path / 'x.npy'}[2]"


def test_uint8_arrays_are_scaled_and_said_so(tmp_path):
    np.save(tmp_path / "x.npy", np.full((28, 28), 255, np.uint8))
    said, note = notes()
    [(_, sample)] = read_samples(tmp_path / "x.npy", SHAPE, note)
    assert sample.max() == 1.0 and said == [f"{tmp_path / 'x.npy'}: uint8 pixels scaled to "
                                            "[0, 1]"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b"not an image"), "is not a PNG or JPEG image"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((2, 27, 28))), "shape \\(2, 27, 28\\)"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((0, 1, 28, 28))), "holds no samples"),
    (lambda p: np.save(p.with_suffix(".npy"), np.full((28, 28), np.nan)), "NaN or infinite"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((28, 28), np.int64)), "int64 values"),
    (lambda p: p.with_suffix(".npy").write_bytes(b"\x93NUMPY garbage"), "format version"),
    # an .npz archive renamed .npy: np.load would hand back an archive, not an array
    (lambda p: np.savez(p.with_suffix(".npy.npz"), x=np.zeros(SHAPE))
     or p.with_suffix(".npy.npz").rename(p.with_suffix(".npy")), "is an .npz archive"),
    (lambda p: p.with_suffix(".npy").write_bytes(npy_header((-2, 28, 28)) + bytes(2 * 784 * 4)),
     "negative dimension, shape \\(-2, 28, 28\\)"),
    (lambda p: p.with_suffix(".npy").write_bytes(npy_header((9, 28, 28)) + bytes(2 * 784 * 4)),
     "declares shape \\(9, 28, 28\\) of float32 .* but holds"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([{"a": 1}], dtype=object)),
     "holds object values"),
])
def test_unreadable_inputs_are_one_clear_error(tmp_path, make, message):
    path = tmp_path / "input.png"
    make(path)
    target = path if path.exists() or not path.with_suffix(".npy").exists() \
        else path.with_suffix(".npy")
    with pytest.raises(InputFileError, match=message):
        read_samples(target, SHAPE, lambda _: None)


def test_values_beyond_float32_are_refused_without_a_raw_warning(tmp_path, recwarn):
    np.save(tmp_path / "x.npy", np.full(SHAPE, 1e300))
    with pytest.raises(InputFileError, match="beyond float32's range"):
        read_samples(tmp_path / "x.npy", SHAPE, lambda _: None)
    assert not recwarn.list  # no "overflow encountered in cast"


def test_a_corrupt_exif_block_is_said_in_the_file_s_note(tmp_path, recwarn):
    from tests.framework.test_images import corrupt_exif

    Image.new("L", (28, 28)).save(tmp_path / "a.jpg", exif=corrupt_exif())
    said, note = notes()
    read_samples(tmp_path / "a.jpg", SHAPE, note)
    assert len(said) == 1 and "the imaging library warned: " in said[0]
    assert not recwarn.list


def test_only_the_declared_samples_are_read(tmp_path):
    """A batch larger than lamina predict reads is refused from its header alone."""
    from lamina.predict import MAX_SAMPLES

    path = tmp_path / "x.npy"
    path.write_bytes(npy_header((MAX_SAMPLES + 1, 28, 28), "|u1")
                     + bytes((MAX_SAMPLES + 1) * 784))
    with pytest.raises(InputFileError, match=f"holds {MAX_SAMPLES + 1:,} samples"):
        read_samples(path, SHAPE, lambda _: None)


def test_without_pillow_images_say_how_to_install_it(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(InputFileError, match=r"pip install 'lamina\[image\]'"):
        read_samples(tmp_path / "a.png", SHAPE, lambda _: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny convnet trained one epoch on an MNIST slice (LAMINA_DATA)."""
    import os
    from pathlib import Path

    from lamina.registry import load_registry
    from lamina.training import start_run

    root = os.environ.get("LAMINA_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("set LAMINA_DATA to a folder holding mnist/ to run this test")
    from tests.conftest import TINY_CNN

    folder = tmp_path_factory.mktemp("predict")
    (folder / "tiny.toml").write_text(TINY_CNN)
    run = start_run(folder / "tiny.toml", load_registry(load_entry_points=False),
                    run_dir=folder / "run", data_dir=root, quiet=True, log=lambda _: None,
                    note=lambda _: None, overrides={"epochs": 1, "limit": 2000})
    return run, root


def test_pngs_of_mnist_test_digits_get_lamina_s_own_predictions(trained, tmp_path, capsys):
    import lamina
    from lamina.data import load_dataset

    run, root = trained
    test = load_dataset("mnist", data_dir=root, parts=("test",))
    files = []
    for i in range(8):
        pixels = np.rint(test.test_x[i, 0] * 255).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"digit-{i}.png")
        files.append(str(tmp_path / f"digit-{i}.png"))
    assert main(["predict", str(run), *files, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = lamina.Model.load(run).predict(test.test_x[:8])
    assert [r["class"] for r in result["predictions"]] == list(expected.argmax(axis=1))
    np.testing.assert_allclose([r["probability"] for r in result["predictions"]],
                               expected.max(axis=1), rtol=1e-6)
    assert result["weights"] == "epoch 1 (last)"
    assert main(["predict", str(run), files[0]]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{run} (epoch 1 (last))"
    assert out.splitlines()[1].split() == ["file", "class", "probability"]
    assert f"{files[0]}: 28x28 PNG L" in err  # what was done goes to stderr


def test_predict_errors_are_one_line_without_traceback(trained, tmp_path, capsys):
    run, _ = trained
    (tmp_path / "bad.png").write_bytes(b"nope")
    for argv, message in [
        (["predict", str(run), str(tmp_path / "bad.png")], "is not a PNG"),
        (["predict", str(tmp_path / "nowhere"), str(tmp_path / "bad.png")], "does not exist"),
        (["predict", str(run), str(tmp_path / "missing.npy")], "does not exist"),
        (["predict", str(run), str(tmp_path / "bad.png"), "--weights", "best"], "is not a PNG"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_jpeg_is_read_too(tmp_path):
    pixels = np.zeros((40, 40), np.uint8)
    pixels[10:30, 18:22] = 240
    Image.fromarray(pixels).save(tmp_path / "digit.jpg", quality=95)
    said, note = notes()
    [(_, sample)] = read_samples(tmp_path / "digit.jpg", SHAPE, note)
    assert sample.shape == SHAPE and sample[0, 14, 14] > 0.7 and sample[0, 0, 0] < 0.1
    assert said == [f"{tmp_path / 'digit.jpg'}: 40x40 JPEG L, resized to 28x28"]


def test_a_drawing_on_a_transparent_canvas_is_put_on_white_then_inverted(tmp_path):
    rgba = np.zeros((28, 28, 4), np.uint8)  # transparent black everywhere...
    rgba[6:22, 12:16] = (0, 0, 0, 255)      # ...and an opaque black stroke
    Image.fromarray(rgba, "RGBA").save(tmp_path / "canvas.png")
    said, note = notes()
    [(_, sample)] = read_samples(tmp_path / "canvas.png", SHAPE, note)
    assert sample[0, 14, 14] == 1.0 and sample[0, 0, 0] == 0.0  # a light stroke on dark
    assert "transparency on white" in said[0] and "inverted" in said[0]


def test_invert_can_be_forced_either_way(tmp_path):
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "light.png")
    [(_, kept)] = read_samples(tmp_path / "light.png", SHAPE, lambda _: None, invert="never")
    [(_, flipped)] = read_samples(tmp_path / "light.png", SHAPE, lambda _: None,
                                  invert="always")
    np.testing.assert_allclose(kept + flipped, 1.0, atol=1e-6)
