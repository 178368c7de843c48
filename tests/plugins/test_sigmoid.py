import numpy as np

from lamina.plugins import sigmoid


def built(shape=(4,), dtype=np.float32):
    layer = sigmoid.Sigmoid()
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert sigmoid.lamina_register_layers() == [sigmoid.Sigmoid]
    assert sigmoid.Sigmoid.name == "sigmoid"
    assert sigmoid.Sigmoid.traits.monotone_elementwise


def test_the_lower_tail_keeps_its_relative_accuracy():
    # sigma(-x) = exp(-x) / (1 + exp(-x)), never 1 - sigma(x), which is 0 in float32 here
    x = np.array([[-20.0, -50.0, -80.0]], dtype=np.float32)
    y = built((3,)).forward(x, training=False)
    exact = np.exp(x.astype(np.float64)) / (1 + np.exp(x.astype(np.float64)))
    np.testing.assert_allclose(y, exact, rtol=3e-7)
    assert (1 - built((3,)).forward(-x, training=False) == 0).all()


def test_saturated_outputs_are_exactly_0_and_1_with_a_zero_gradient():
    layer = built((4,))
    x = np.array([[-3e38, -200.0, 200.0, 3e38]], dtype=np.float32)
    with np.errstate(all="raise", under="ignore"):
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(y, [[0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 0.0, 0.0]])


def test_symmetric_about_one_half():
    x = np.linspace(-6, 6, 49)[None]
    y, y_neg = built((49,), np.float64).forward(x, training=False), \
        built((49,), np.float64).forward(-x, training=False)
    np.testing.assert_allclose(y + y_neg, 1.0, rtol=0, atol=1e-15)
