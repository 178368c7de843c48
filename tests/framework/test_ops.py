import copy
import pickle

import numpy as np
import pytest

from lamina.ops import (
    Workspace,
    col2im,
    cols_shape,
    conv_output_size,
    im2col,
    pair,
    same_padding,
)

# (x shape, kernel, stride, padding): valid, padded, strided, asymmetric, taps into padding only
GEOMETRIES = [
    ((2, 3, 5, 4), (3, 3), (1, 1), ((0, 0), (0, 0))),
    ((2, 2, 6, 7), (3, 2), (2, 3), ((1, 1), (0, 2))),
    ((1, 2, 4, 4), (5, 5), (1, 1), ((2, 2), (2, 2))),
    ((1, 1, 5, 5), (3, 3), (3, 3), ((2, 2), (2, 2))),
    ((3, 1, 7, 6), (3, 3), (2, 2), ((1, 1), (0, 1))),
]


def reference_im2col(x, kernel, stride, padding):
    """Straightforward im2col over an explicitly padded copy."""
    xp = np.pad(x, ((0, 0), (0, 0), *padding))
    shape = cols_shape(x.shape, kernel, stride, padding)
    h_out, w_out = shape[4:]
    cols = np.empty(shape, dtype=x.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            window = xp[:, :, i : i + stride[0] * h_out : stride[0],
                        j : j + stride[1] * w_out : stride[1]]
            cols[:, i, j] = window[:, :, :h_out, :w_out].transpose(1, 0, 2, 3)
    return cols


def test_pair_and_output_size():
    assert pair(3) == (3, 3) and pair([2, 5]) == (2, 5) and pair((4, 1)) == (4, 1)
    assert conv_output_size(28, 3, 1) == 26
    assert conv_output_size(11, 2, 2) == 5
    assert conv_output_size(7, 3, 2, 1, 1) == 4


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(5, 3, 1, (1, 1)), (5, 4, 1, (1, 2)), (7, 3, 2, (1, 1)), (6, 3, 2, (0, 1)),
     (6, 1, 2, (0, 0)), (2, 2, 1, (0, 1))],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    lo, hi = expected
    assert conv_output_size(size, kernel, stride, lo, hi) == -(-size // stride)


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), GEOMETRIES)
def test_im2col_matches_padded_reference_and_overwrites_buffer(x_shape, kernel, stride, padding):
    x = np.random.default_rng(0).standard_normal(x_shape)
    expected = reference_im2col(x, kernel, stride, padding)
    buffer = np.full(expected.shape, np.nan)  # a reused buffer may hold anything
    cols = im2col(x, kernel, stride, padding, out=buffer)
    assert cols is buffer
    np.testing.assert_array_equal(cols, expected)


def test_im2col_hand_worked_rows_follow_weight_layout():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    cols = im2col(x, (2, 2)).reshape(4, 4)
    # Row (i, j) holds x[p + i, q + j] for the four positions (p, q) in row-major order.
    np.testing.assert_array_equal(
        cols, [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    )
    W = np.array([1.0, 2.0, 3.0, 4.0])  # a (1, 1, 2, 2) kernel reshaped to (1, 4)
    np.testing.assert_array_equal(W @ cols, [27, 37, 57, 67])


def test_im2col_accepts_non_contiguous_input():
    x = np.random.default_rng(1).standard_normal((4, 3, 6, 5))
    view = x[::2, :, ::-1, :]
    np.testing.assert_array_equal(
        im2col(view, (3, 3), (1, 2), ((1, 1), (1, 1))),
        reference_im2col(np.ascontiguousarray(view), (3, 3), (1, 2), ((1, 1), (1, 1))),
    )


@pytest.mark.parametrize(("x_shape", "kernel", "stride", "padding"), GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(x_shape, kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape)
    c = rng.standard_normal(cols_shape(x_shape, kernel, stride, padding))
    lhs = np.sum(im2col(x, kernel, stride, padding) * c)
    rhs = np.sum(x * col2im(c, x_shape, kernel, stride, padding))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_col2im_counts_overlapping_windows():
    ones = np.ones(cols_shape((1, 1, 4, 4), (3, 3), (1, 1), ((0, 0), (0, 0))))
    counts = col2im(ones, (1, 1, 4, 4), (3, 3))
    np.testing.assert_array_equal(
        counts[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]
    )


def test_col2im_drops_padding_and_overwrites_out():
    shape = (1, 1, 3, 3)
    padding = ((1, 1), (1, 1))
    ones = np.ones(cols_shape(shape, (3, 3), (2, 2), padding))
    out = np.full(shape, 99.0)
    counts = col2im(ones, shape, (3, 3), (2, 2), padding, out=out)
    assert counts is out
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_wrong_buffer_shapes_are_rejected():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"expected \(1, 3, 3, 1, 2, 2\)"):
        im2col(x, (3, 3), out=np.empty((1, 3, 3, 1, 3, 3)))
    with pytest.raises(ValueError, match="col2im: cols has shape"):
        col2im(np.zeros((1, 3, 3, 1, 3, 3)), x.shape, (3, 3))


def test_workspace_reuses_a_buffer_until_shape_or_dtype_changes():
    work = Workspace()
    a = work.get("cols", (2, 3), np.float32)
    assert work.get("cols", (2, 3), np.float32) is a
    b = work.get("cols", (4, 3), np.float32)
    assert b is not a and b.shape == (4, 3)
    c = work.get("cols", (4, 3), np.float64)
    assert c is not b and c.dtype == np.float64
    assert len(work) == 1
    work.get("other", (1,), np.float32)
    assert len(work) == 2
    work.clear()
    assert len(work) == 0


def test_workspace_copies_start_empty():
    work = Workspace()
    work.get("cols", (1000,), np.float32)
    assert len(copy.deepcopy(work)) == 0
    assert len(pickle.loads(pickle.dumps(work))) == 0
