import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import reshape
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shape=(12,), target_shape=(3, 4), dtype=np.float32):
    layer = reshape.Reshape(target_shape=target_shape)
    layer.build(input_shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert reshape.lamina_register_layers() == [reshape.Reshape]
    assert not reshape.Reshape.traits.multi_input


@pytest.mark.parametrize(("input_shape", "target", "output"), [
    ((784,), [1, 28, 28], (1, 28, 28)),
    ((64, 5, 5), [-1], (1600,)),
    ((3, 2, 4), [-1, 4], (6, 4)),
    ((3, 2, 4), [2, -1, 3], (2, 4, 3)),
    ((2, 3), [3, 1, 2], (3, 1, 2)),
    ((5,), [5], (5,)),
])
def test_output_shape_with_and_without_an_inferred_size(input_shape, target, output):
    assert built(input_shape, target).output_shape == output


def test_forward_is_row_major_and_backward_undoes_it():
    layer = built((2, 6), (3, 4))
    x = np.arange(2 * 12, dtype=np.float32).reshape(2, 2, 6)
    y = layer.forward(x, training=True)
    assert y.shape == (2, 3, 4)
    # sample 1's entry (r, c) of the (2, 6) input is flat 6r + c; at (3, 4) it is (i, j)
    # with 4i + j = 6r + c: x[1, 1, 2] (flat 8) lands at y[1, 2, 0]
    assert y[1, 2, 0] == x[1, 1, 2] == 20
    np.testing.assert_array_equal(y[0].ravel(), np.arange(12))
    assert np.shares_memory(x, y)
    dy = -np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    dx = layer.backward(dy)
    assert dx.shape == (2, 2, 6) and dx[1, 1, 2] == -20
    np.testing.assert_array_equal(dx, -x)


def test_batch_axis_is_never_mixed():
    layer = built((4,), (2, 2))
    x = np.stack([np.full(4, n, dtype=np.float32) for n in range(3)])
    y = layer.forward(x, training=False)
    for n in range(3):
        np.testing.assert_array_equal(y[n], np.full((2, 2), n))


def test_non_contiguous_input_gives_the_same_values():
    layer = built((3, 4), (-1,), dtype=np.float64)
    x = np.arange(24.0).reshape(2, 4, 3).transpose(0, 2, 1)  # a view, not C-ordered
    np.testing.assert_array_equal(layer.forward(x, training=True), np.ascontiguousarray(x)
                                  .reshape(2, 12))


@pytest.mark.parametrize(("input_shape", "target", "message"), [
    ((1, 6, 6), [5, 7], r"target_shape \[5, 7\] holds 35 entries per sample, but its input "
                        r"\(1, 6, 6\) holds 36; the sizes must match"),
    ((12,), [2, 2, 2], r"holds 8 entries per sample, but its input \(12,\) holds 12"),
    ((1, 6, 6), [-1, 5], r"infers its -1 from the input \(1, 6, 6\) of 36 entries per sample, "
                         r"which 5 \(the product of the other sizes\) does not divide"),
    ((7,), [2, -1], r"of 7 entries per sample, which 2"),
])
def test_sizes_that_do_not_match_rejected_naming_both(input_shape, target, message):
    with pytest.raises(ShapeError, match=message):
        built(input_shape, target)


@pytest.mark.parametrize(("target", "message"), [
    ([0, 36], r"received \[0, 36\] with a 0 at position 0"),
    ([4, 0], r"with a 0 at position 1"),
    ([-1, -1], r"may infer one size \(-1\), received \[-1, -1\] with 2"),
    ([-2, 5], r"greater than or equal to -1"),
    ([], r"at least 1 item"),
    ([2.0, 3], r"valid integer"),
    ("6", r"valid tuple"),
])
def test_bad_target_shapes_rejected_by_the_config(target, message):
    with pytest.raises(ValidationError, match=message):
        reshape.Reshape(target_shape=target)


def test_target_shape_is_required_and_unknown_keys_refused():
    with pytest.raises(ValidationError, match="target_shape"):
        reshape.Reshape()
    with pytest.raises(ValidationError):
        reshape.Reshape(target_shape=[4], shape=[4])


def config(target_shape, input_shape=(1, 6, 6)):
    return {"model": {"input_shape": list(input_shape), "layers": [
        {"type": "reshape", "target_shape": target_shape}, {"type": "flatten"},
        {"type": "dense", "units": 3}]},
        "loss": {"type": "softmax_cross_entropy"}, "optimizer": {"type": "sgd", "lr": 0.1}}


def test_validated_with_the_network_before_anything_runs():
    with pytest.raises(lamina.ConfigError, match=r"model\.layers\[0\] \(reshape\) 'reshape_1' "
                       r"cannot take its input \(from input \(1, 6, 6\)\): reshape target_shape "
                       r"\[5, 7\] holds 35 entries per sample, but its input \(1, 6, 6\) "
                       r"holds 36"):
        lamina.Model(config([5, 7]))
    with pytest.raises(lamina.ConfigError, match=r"model\.layers\[0\] \(reshape\)\.target_shape: "
                       r"reshape target_shape may infer one size"):
        lamina.Model(config([-1, -1]))
    model = lamina.Model(config([4, -1]))
    assert model.layers[0].output_shape == (4, 9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built((3, 2), (-1, 3), dtype=dtype)
    y = layer.forward(np.zeros((4, 3, 2), dtype=dtype), training=False)
    assert y.dtype == dtype and y.shape == (4, 2, 3)
    assert layer.backward(np.ones_like(y)).dtype == dtype


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    layer = built((2, 3, 2), (3, -1), dtype=np.float64)
    x = rng.normal(size=(3, 2, 3, 2))
    dy = rng.normal(size=(3, 3, 4))
    layer.forward(x, training=True)
    dx = layer.backward(dy)
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x, training=True) * dy), x)
    assert max_relative_error(dx, numeric) < 1e-6
    # independent: entry (n, i, j) of dy is the gradient of flat entry 4i + j of sample n
    np.testing.assert_array_equal(dx.reshape(3, 12), dy.reshape(3, 12))


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="reshape"):
        built().backward(np.ones((1, 3, 4), dtype=np.float32))


def test_export_keeps_the_batch_size():
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from lamina.export import layer_to_onnx

    layer = built((3, 2, 4), (-1, 4))
    model = layer_to_onnx(layer, [(3, 2, 4)])
    [node] = [n for n in model.graph.node if n.op_type == "Reshape"]
    [shape] = [t for t in model.graph.initializer if t.name == node.input[1]]
    # 0 copies the batch size; the -1 is resolved here, not left to ONNX Runtime
    np.testing.assert_array_equal(numpy_helper.to_array(shape), [0, 6, 4])
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = np.random.default_rng(n).normal(size=(n, 3, 2, 4)).astype(np.float32)
        [got] = session.run(["y"], {"x0": x})
        np.testing.assert_array_equal(got, layer.forward(x, training=False))
