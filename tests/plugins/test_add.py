import numpy as np
import pytest

from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import add
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shapes=((2,), (2,)), dtype=np.float32):
    layer = add.Add()
    layer.build(input_shapes, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_and_flagged_multi_input():
    assert add.lamina_register_layers() == [add.Add]
    assert add.Add.traits.multi_input


def test_hand_worked_sum_of_three():
    layer = built(((2,),) * 3)
    xs = [np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]), np.array([[5.0, -6.0]])]
    xs = [x.astype(np.float32) for x in xs]
    np.testing.assert_array_equal(layer.forward(xs, training=True), [[9.0, 0.0]])
    np.testing.assert_array_equal(xs[0], [[1.0, 2.0]])


def test_backward_returns_independent_copies():
    layer = built(((2,),) * 3)
    layer.forward([np.zeros((1, 2), dtype=np.float32)] * 3, training=True)
    dy = np.array([[1.0, -2.0]], dtype=np.float32)
    dxs = layer.backward(dy)
    assert len(dxs) == 3
    for dx in dxs:
        np.testing.assert_array_equal(dx, dy)
        assert not np.shares_memory(dx, dy)
    # The graph runner may sum into a returned gradient at a fan-out.
    dxs[0] += dxs[1]
    np.testing.assert_array_equal(dxs[2], dy)
    np.testing.assert_array_equal(dy, [[1.0, -2.0]])


def test_output_shape():
    assert built(((3, 4, 4), (3, 4, 4))).output_shape == (3, 4, 4)


@pytest.mark.parametrize("input_shapes", [((4,),), (4,), ()])
def test_fewer_than_two_inputs_rejected(input_shapes):
    with pytest.raises(ShapeError, match="two or more inputs"):
        built(input_shapes)


def test_mismatched_input_named():
    message = r"expected \(8, 5, 5\) \(the shape of input 0\), received \(8, 4, 4\) for input 2"
    with pytest.raises(ShapeError, match=message):
        built(((8, 5, 5), (8, 5, 5), (8, 4, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built(dtype=dtype)
    y = layer.forward([np.ones((3, 2), dtype=dtype)] * 2, training=False)
    assert y.dtype == dtype
    assert all(dx.dtype == dtype for dx in layer.backward(np.ones_like(y)))


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    layer = built(((2, 3),) * 3, dtype=np.float64)
    xs = [rng.normal(size=(4, 2, 3)) for _ in range(3)]
    dy = rng.normal(size=(4, 2, 3))
    layer.forward(xs, training=True)
    dxs = layer.backward(dy)
    for dx, x in zip(dxs, xs, strict=True):
        numeric = numerical_gradient(lambda: np.sum(layer.forward(xs, training=True) * dy), x)
        assert max_relative_error(dx, numeric) < 1e-6


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="add"):
        built().backward(np.ones((1, 2), dtype=np.float32))
