import numpy as np
import pytest
from pydantic import ValidationError

import lamina
from lamina import BackwardBeforeForwardError, ShapeError
from lamina.plugins import concat
from lamina.testing.gradcheck import max_relative_error, numerical_gradient


def built(input_shapes=((2,), (3,)), dtype=np.float32, **settings):
    layer = concat.Concat(**settings)
    layer.build(input_shapes, np.random.default_rng(0), dtype=dtype)
    return layer


def placed(xs, axis):
    """The concatenation written out: a zeros array filled input by input, in float64."""
    sizes = [x.shape[axis] for x in xs]
    shape = list(xs[0].shape)
    shape[axis] = sum(sizes)
    y = np.zeros(shape)
    start = 0
    for x, size in zip(xs, sizes, strict=True):
        index = [slice(None)] * y.ndim
        index[axis] = slice(start, start + size)
        y[tuple(index)] = x
        start += size
    return y


def test_registered_and_flagged_multi_input():
    assert concat.lamina_register_layers() == [concat.Concat]
    assert concat.Concat.traits.multi_input
    assert concat.Concat().config.axis == 1


@pytest.mark.parametrize(("input_shapes", "axis", "output"), [
    (((8, 5, 5), (4, 5, 5)), 1, (12, 5, 5)),
    (((8, 5, 5), (4, 5, 5), (1, 5, 5)), 1, (13, 5, 5)),
    (((3,), (1,), (4,)), 1, (8,)),
    (((3,), (1,)), -1, (4,)),
    (((2, 3, 2), (2, 3, 3)), -1, (2, 3, 5)),
    (((2, 3, 2), (2, 3, 3)), 3, (2, 3, 5)),
    (((2, 1, 4), (2, 3, 4)), 2, (2, 4, 4)),
    (((2, 1, 4), (2, 3, 4)), -2, (2, 4, 4)),
])
def test_output_shape(input_shapes, axis, output):
    assert built(input_shapes, axis=axis).output_shape == output


def test_hand_worked_channels():
    layer = built(((1, 2, 2), (2, 2, 2)), dtype=np.float64)
    x1 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    x2 = np.array([[[[5.0, 6.0], [7.0, 8.0]], [[9.0, 10.0], [11.0, 12.0]]]])
    y = layer.forward([x1, x2], training=True)
    np.testing.assert_array_equal(y, np.arange(1.0, 13.0).reshape(1, 3, 2, 2))
    dy = -np.arange(12.0).reshape(1, 3, 2, 2)
    dx1, dx2 = layer.backward(dy)
    np.testing.assert_array_equal(dx1, [[[[0.0, -1.0], [-2.0, -3.0]]]])
    np.testing.assert_array_equal(dx2, -np.arange(4.0, 12.0).reshape(1, 2, 2, 2))


@pytest.mark.parametrize(("input_shapes", "axis"), [
    (((2, 3, 3), (1, 3, 3), (3, 3, 3)), 1),
    (((2, 3, 2), (2, 3, 4)), -1),
    (((2, 1, 4), (2, 3, 4)), 2),
    (((5,), (2,)), 1),
])
def test_forward_and_gradient_match_an_independent_computation(input_shapes, axis):
    rng = np.random.default_rng(1)
    layer = built(input_shapes, dtype=np.float64, axis=axis)
    xs = [rng.normal(size=(3, *shape)) for shape in input_shapes]
    array_axis = axis if axis > 0 else len(input_shapes[0]) + 1 + axis
    y = layer.forward(xs, training=True)
    np.testing.assert_array_equal(y, placed(xs, array_axis))
    dy = rng.normal(size=y.shape)
    dxs = layer.backward(dy)
    start = 0
    for x, dx in zip(xs, dxs, strict=True):
        size = x.shape[array_axis]
        np.testing.assert_array_equal(dx, np.take(dy, range(start, start + size), array_axis))
        start += size
        numeric = numerical_gradient(lambda: np.sum(layer.forward(xs, training=True) * dy), x)
        assert max_relative_error(dx, numeric) < 1e-6


def test_gradients_are_contiguous_independent_copies():
    layer = built(((2, 2, 2), (1, 2, 2)))
    layer.forward([np.zeros((2, 2, 2, 2), np.float32), np.zeros((2, 1, 2, 2), np.float32)],
                  training=True)
    dy = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    before = dy.copy()
    dx1, dx2 = layer.backward(dy)
    for dx in (dx1, dx2):
        assert dx.flags.c_contiguous and not np.shares_memory(dx, dy)
    dx1 += 100  # the runner may sum into a returned gradient at a fan-out
    np.testing.assert_array_equal(dy, before)


@pytest.mark.parametrize("input_shapes", [((4,),), (4,), ()])
def test_fewer_than_two_inputs_rejected(input_shapes):
    with pytest.raises(ShapeError, match="two or more inputs"):
        built(input_shapes)


@pytest.mark.parametrize(("input_shapes", "settings", "message"), [
    (((8, 5, 5), (8, 5, 5), (8, 4, 4)), {},
     r"input 0 is \(8, 5, 5\), input 2 is \(8, 4, 4\) per sample, which differ on axis 2 "
     r"\(5 against 4"),
    (((3, 4, 4), (3, 4, 5)), {}, r"input 1 is \(3, 4, 5\) per sample, which differ on axis 3"),
    (((3, 4, 4), (2, 4, 4)), {"axis": -1},
     r"along axis -1 .* input 1 is \(2, 4, 4\) per sample, which differ on axis 1 "
     r"\(3 against 2"),
    (((8, 5, 5), (200,)), {}, r"same number of axes: input 0 is \(8, 5, 5\), input 1 is "
                              r"\(200,\)"),
    (((3, 4, 4), (3, 4, 4)), {"axis": 4}, r"axis 4 is not an axis of inputs with 3 "
                                          r"per-sample axes.*1 to 3 or from -3 to -1"),
    (((3,), (3,)), {"axis": -2}, r"axis -2 is not an axis"),
    (((), ()), {}, r"scalar shapes"),
])
def test_mismatched_inputs_named(input_shapes, settings, message):
    with pytest.raises(ShapeError, match=message):
        built(input_shapes, **settings)


@pytest.mark.parametrize("settings", [{"axis": 0}, {"axis": 65}, {"axis": -65},
                                      {"axis": 1.0}, {"axis": "1"}, {"dim": 1}])
def test_bad_config_rejected(settings):
    with pytest.raises(ValidationError):
        concat.Concat(**settings)


def test_batch_axis_refused_with_the_fix():
    with pytest.raises(ValidationError, match="axis 0 is the batch axis.*Use axis = 1"):
        concat.Concat(axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    layer = built(((2,), (3,)), dtype=dtype)
    y = layer.forward([np.ones((4, 2), dtype=dtype), np.ones((4, 3), dtype=dtype)],
                      training=False)
    assert y.dtype == dtype
    assert all(dx.dtype == dtype for dx in layer.backward(np.ones_like(y)))


def test_backward_before_forward_raises():
    with pytest.raises(BackwardBeforeForwardError, match="concat"):
        built().backward(np.ones((1, 5), dtype=np.float32))


def test_export_joins_on_the_same_axis():
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from lamina.export import layer_to_onnx

    for shapes, axis, onnx_axis in [(((2, 3, 3), (1, 3, 3)), 1, 1),
                                    (((2, 3, 2), (2, 3, 3)), -1, 3)]:
        layer = built(shapes, axis=axis)
        model = layer_to_onnx(layer, list(shapes))
        [node] = [n for n in model.graph.node if n.op_type == "Concat"]
        assert [a.i for a in node.attribute if a.name == "axis"] == [onnx_axis]
        session = onnxruntime.InferenceSession(model.SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        xs = [np.random.default_rng(k).normal(size=(2, *s)).astype(np.float32)
              for k, s in enumerate(shapes)]
        [got] = session.run(["y"], {f"x{k}": x for k, x in enumerate(xs)})
        np.testing.assert_array_equal(got, layer.forward(xs, training=False))


# -- in a network: two convolution branches joined ----------------------------------------
def branches(right_padding="same"):
    return {
        "model": {"input_shape": [1, 6, 6], "layers": [
            {"type": "conv2d", "name": "wide", "filters": 2, "kernel_size": 3,
             "padding": "same"},
            {"type": "conv2d", "name": "narrow", "filters": 3, "kernel_size": 3,
             "padding": right_padding, "inputs": ["input"]},
            {"type": "concat", "inputs": ["wide", "narrow"]},
            {"type": "relu"},
            {"type": "flatten"},
            {"type": "dense", "units": 4}]},
        "loss": {"type": "softmax_cross_entropy"},
        "optimizer": {"type": "sgd", "lr": 0.05},
        "training": {"epochs": 1, "batch_size": 4, "seed": 0},
    }


def test_branches_validated_and_trained_one_step():
    model = lamina.Model(branches())
    assert [(info.name, info.output_shape) for info in model.layers][:3] == [
        ("wide", (2, 6, 6)), ("narrow", (3, 6, 6)), ("concat_1", (5, 6, 6))]
    assert model.count_params() == (2 * 9 + 2) + (3 * 9 + 3) + (5 * 36 * 4 + 4)
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 6, 6), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    before = {key: w.copy() for key, w in model.get_weights().items()}
    loss = model.train_step(x, y)
    assert np.isfinite(loss) and 0 < loss < 10
    after = model.get_weights()
    assert set(after) == {"wide.W", "wide.b", "narrow.W", "narrow.b", "dense_1.W", "dense_1.b"}
    # both branches learn: the gradient reached each convolution through the concat
    unchanged = [key for key in before if np.array_equal(before[key], after[key])]
    assert unchanged == []
    assert model.train_step(x, y) < loss  # one more step on the same batch lowers it


def test_branches_that_disagree_refused_naming_both():
    with pytest.raises(lamina.ConfigError, match=(
            r"model\.layers\[2\] \(concat\) 'concat_1' cannot take its input \(from wide "
            r"\(2, 6, 6\), narrow \(3, 4, 4\)\): concat along axis 1 expects its inputs to "
            r"agree on every other axis: input 0 is \(2, 6, 6\), input 1 is \(3, 4, 4\)")):
        lamina.Model(branches(right_padding="valid"))
