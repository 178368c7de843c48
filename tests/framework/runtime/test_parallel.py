"""The sharded training step: same gradients as the whole batch, reproducible dropout,
and networks that must run whole."""

from __future__ import annotations

import numpy as np
import pytest

from lamina import ConfigError, DataError
from lamina.cli import main
from lamina.config import load_config, validate_config
from lamina.config.run import DEFAULT_SHARDS, resolve_shards
from lamina.graph import Network
from lamina.plan import make_plan
from lamina.registry import load_registry
from lamina.runtime.parallel import ShardedStep, shard_bounds

CONVNET = [
    {"type": "conv2d", "filters": 3, "kernel_size": 3},
    {"type": "relu"},
    {"type": "maxpool2d"},
    {"type": "flatten"},
    {"type": "dense", "units": 4},
]


@pytest.fixture(scope="module")
def registry():
    return load_registry(load_entry_points=False)


def make(registry, layers, *, input_shape=(1, 8, 8), dtype=np.float64, seed=0, training=None):
    raw = {"model": {"input_shape": list(input_shape), "layers": layers}}
    if training:
        raw["training"] = training
    config = validate_config(raw, registry)
    network = Network(config, registry, np.random.default_rng(seed), dtype=dtype)
    loss = registry.loss(config.loss.type)(config.loss.config)
    return network, loss


def batch(n, *, input_shape=(1, 8, 8), classes=4, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *input_shape)).astype(dtype), rng.integers(0, classes, n)


@pytest.mark.parametrize(("n", "shards", "expected"), [
    (128, 2, [(0, 64), (64, 128)]),
    (5, 2, [(0, 3), (3, 5)]),
    (7, 3, [(0, 3), (3, 5), (5, 7)]),
    (1, 2, [(0, 1)]),  # fewer samples than shards: no empty shard
    (4, 1, [(0, 4)]),
])
def test_shard_bounds_cover_the_batch_in_near_equal_slices(n, shards, expected):
    assert shard_bounds(n, shards) == expected


@pytest.mark.parametrize(("n", "shards", "threads"), [(6, 2, 2), (5, 2, 2), (7, 3, 2), (1, 2, 2)])
def test_sharded_gradient_loss_and_logits_equal_the_whole_batch(registry, n, shards, threads):
    """Shards weighted by their size give the whole batch's mean-loss gradient (float64)."""
    whole, whole_loss = make(registry, CONVNET)
    x, y = batch(n)
    logits = whole.forward(x, training=True)
    value = whole_loss.forward(logits, y)
    whole.backward(whole_loss.backward())
    expected = {k: g.copy() for k, g in whole.grads().items()}

    network, loss = make(registry, CONVNET)
    with ShardedStep(network, loss, np.random.default_rng(0), shards=shards,
                     threads=threads) as step:
        got_value, got_logits = step.train_step(x, y)
    assert got_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-12, atol=1e-14)
    for key, grad in network.grads().items():
        np.testing.assert_allclose(grad, expected[key], rtol=1e-10, atol=1e-14, err_msg=key)


def test_replicas_see_each_update_of_the_parameters(registry):
    network, loss = make(registry, CONVNET)
    x, _ = batch(6)
    with ShardedStep(network, loss, np.random.default_rng(0), shards=2) as step:
        before = step.predict(x)
        for value in network.params().values():
            value *= 0.5  # an optimizer updates in place
        after = step.predict(x)
    np.testing.assert_allclose(after, network.forward(x, training=False), rtol=1e-12)
    assert not np.allclose(after, before)


DROPOUT_NET = [*CONVNET[:-1], {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 4}]


def sharded_grads(registry, *, shards, threads, steps=2, run_seed=7):
    network, loss = make(registry, DROPOUT_NET)
    x, y = batch(9)
    with ShardedStep(network, loss, np.random.default_rng(run_seed), shards=shards,
                     threads=threads) as step:
        for _ in range(steps):
            step.train_step(x, y)
    return {k: g.copy() for k, g in network.grads().items()}


def test_dropout_results_depend_on_seed_and_shards_not_on_threads(registry):
    one_thread = sharded_grads(registry, shards=3, threads=1)
    two_threads = sharded_grads(registry, shards=3, threads=2)
    for key in one_thread:  # bit for bit
        np.testing.assert_array_equal(one_thread[key], two_threads[key], err_msg=key)
    other_seed = sharded_grads(registry, shards=3, threads=2, run_seed=8)
    assert not np.array_equal(other_seed["dense_1.W"], one_thread["dense_1.W"])


def test_each_shard_draws_its_own_dropout_mask(registry):
    """Two shards of identical samples must not get the same mask (one stream per shard)."""
    network, loss = make(registry, DROPOUT_NET)
    x, y = batch(1)
    x2, y2 = np.concatenate([x, x]), np.concatenate([y, y])
    with ShardedStep(network, loss, np.random.default_rng(3), shards=2) as step:
        _, logits = step.train_step(x2, y2)
    assert not np.allclose(logits[0], logits[1])


def test_a_failing_shard_raises_after_all_shards_stopped_and_the_step_still_works(registry):
    network, loss = make(registry, CONVNET)
    x, y = batch(4)
    with ShardedStep(network, loss, np.random.default_rng(0), shards=2, threads=2) as step:
        before = step.blas.get_threads() if step.blas is not None else None
        with pytest.raises(DataError, match="99"):
            step.train_step(x, np.array([0, 1, 2, 99]))  # a label past the 4 classes
        if step.blas is not None:
            assert step.blas.get_threads() == before  # the BLAS limit was lifted again
        value, _ = step.train_step(x, y)
    assert np.isfinite(value)


def test_shards_default_to_two_and_to_one_where_the_batch_matters(registry):
    network, _ = make(registry, CONVNET)
    assert resolve_shards(None, network.nodes) == (DEFAULT_SHARDS, None)
    assert DEFAULT_SHARDS == 2
    assert resolve_shards(3, network.nodes) == (3, None)
    normed, _ = make(registry, [{"type": "flatten"}, {"type": "batchnorm"},
                                {"type": "dense", "units": 4}])
    assert resolve_shards(None, normed.nodes) == (1, None)
    assert resolve_shards(1, normed.nodes) == (1, None)
    _, issue = resolve_shards(2, normed.nodes)
    message = str(issue)
    assert "training.shards" in message and "batchnorm_1" in message
    assert "set shards = 1" in message


def test_validate_rejects_shards_for_a_batch_dependent_network(registry, tmp_path, capsys):
    path = tmp_path / "net.toml"
    path.write_text(
        "[model]\ninput_shape = [4]\n[[model.layers]]\ntype = \"batchnorm\"\n"
        "[[model.layers]]\ntype = \"dense\"\nunits = 3\n[training]\nshards = 2\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "training.shards" in err and "batchnorm_1" in err and "Traceback" not in err


def test_shards_must_be_a_positive_count(registry):
    with pytest.raises(ConfigError, match="shards"):
        validate_config({"model": {"input_shape": [4], "layers": [{"type": "dense", "units": 2}]},
                         "training": {"shards": 0}}, registry)
    with pytest.raises(ConfigError, match=r"training.shards: Input should be less than or "
                                          r"equal to 64 \(received 1000\)"):
        make_plan("mnist_cnn", registry, training={"shards": 1000})  # `bench --shards 1000`


def test_the_reference_config_trains_on_two_shards(registry):
    config = load_config("mnist_cnn", registry)
    assert config.training.shards is None
    assert make_plan(config, registry).config.training.shards == 2
