import numpy as np

from lamina.plugins import tanh


def built(shape=(4,), dtype=np.float32):
    layer = tanh.Tanh()
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert tanh.lamina_register_layers() == [tanh.Tanh]
    assert tanh.Tanh.name == "tanh"
    assert tanh.Tanh.traits.monotone_elementwise


def test_saturated_outputs_are_exactly_plus_minus_1_with_a_zero_gradient():
    layer = built((4,))
    x = np.array([[-3e38, -20.0, 20.0, 3e38]], dtype=np.float32)
    with np.errstate(all="raise"):
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(y, [[-1.0, -1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 0.0, 0.0]])


def test_twice_a_sigmoid_of_twice_x_minus_one():
    # tanh(x) = 2 sigma(2x) - 1, an independent form of the same function
    x = np.linspace(-5, 5, 41)[None]
    y = built((41,), np.float64).forward(x, training=False)
    np.testing.assert_allclose(y, 2 / (1 + np.exp(-2 * x)) - 1, rtol=0, atol=1e-15)
