import numpy as np

from lamina.plugins import elu, relu


def built(shape=(4,), dtype=np.float32, **settings):
    layer = elu.ELU(**settings)
    layer.build(shape, np.random.default_rng(0), dtype=dtype)
    return layer


def test_registered_through_the_layer_hook():
    assert elu.lamina_register_layers() == [elu.ELU]
    assert elu.ELU.name == "elu"
    assert elu.ELU.traits.monotone_elementwise


def test_expm1_keeps_the_digits_just_below_0():
    # alpha (e^x - 1) for x = -1e-6: exp(x) - 1 in float32 would give -9.5367e-7
    y = built((2,)).forward(np.array([[-1e-6, -1e-30]], dtype=np.float32), training=False)
    np.testing.assert_allclose(y, [[np.expm1(-1e-6), -1e-30]], rtol=1e-7)


def test_the_floor_minus_alpha_has_a_zero_gradient():
    layer = built((3,), alpha=2.0)
    x = np.array([[-3e38, -200.0, -10.0]], dtype=np.float32)
    with np.errstate(all="raise", under="ignore"):
        y = layer.forward(x, training=True)
        dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(y[0, :2], [-2.0, -2.0])
    np.testing.assert_array_equal(dx[0, :2], [0.0, 0.0])
    np.testing.assert_allclose(dx[0, 2], 2 * np.exp(-10.0), rtol=1e-3)  # y + alpha, rounded


def test_alpha_0_is_relu_exactly():
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    x[0, :2] = 0.0
    dy = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    flat, plain = built((6,), alpha=0.0), relu.ReLU()
    plain.build((6,), np.random.default_rng(0))
    np.testing.assert_array_equal(flat.forward(x, training=True), plain.forward(x, training=True))
    np.testing.assert_array_equal(flat.backward(dy), plain.backward(dy))
