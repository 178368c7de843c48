"""The classic networks shipped as configs (lenet5, mnist_mlp, mnist_allconv): each has
its published layout and parameter count, trains, and exports to ONNX with ONNX Runtime
agreeing with predict. Their full-data results are in docs/training.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lamina
from lamina.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
CONFIGS = Path(__file__).resolve().parents[1] / "framework" / "configs"

#: config -> (every value held, the trainable ones)
PARAMS = {
    "lenet5": (61_706, 61_706),           # LeCun et al. 1998, adapted to 28x28
    "mnist_mlp": (669_706, 669_706),      # the Keras example's MLP
    "mnist_allconv": (70_746, 70_330),    # + 416 batchnorm running means and variances
}
CLASSIC = list(PARAMS)


@pytest.mark.parametrize("name", CLASSIC)
def test_summary_shows_the_published_parameter_count(name, capsys):
    total, trainable = PARAMS[name]
    model = lamina.Model(name)
    assert model.count_params() == total
    assert model.count_params(trainable=True) == trainable
    assert main(["summary", name]) == 0
    out = capsys.readouterr().out
    assert f"Total params: {total:,}\n" in out
    assert f"Trainable params: {trainable:,}\n" in out


def test_lenet5_has_lecuns_layout():
    """C1 6@28x28, S2 6@14x14, C3 16@10x10, S4 16@5x5, C5 120, F6 84, 10 outputs."""
    shapes: dict[str, list] = {}
    for info in lamina.Model("lenet5").layers:
        shapes.setdefault(info.type, []).append((info.output_shape, info.params))
    assert shapes["conv2d"] == [((6, 28, 28), 156), ((16, 10, 10), 2_416)]
    assert shapes["avgpool2d"] == [((6, 14, 14), 0), ((16, 5, 5), 0)]
    assert shapes["dense"] == [((120,), 48_120), ((84,), 10_164), ((10,), 850)]
    assert len(shapes["tanh"]) == 4 and "relu" not in shapes and "maxpool2d" not in shapes


def test_mnist_allconv_is_made_of_its_own_block_and_has_no_dense_layer():
    model = lamina.Model("mnist_allconv")
    types = [info.type for info in model.layers]
    assert "dense" not in types and "flatten" not in types
    assert types[-2:] == ["conv2d", "global_avgpool2d"]
    assert [info.output_shape for info in model.layers][-2:] == [(10, 7, 7), (10,)]
    blocks = {info.name.split(".")[0] for info in model.layers if "." in info.name}
    assert blocks == {f"conv_bn_relu_{i}" for i in range(1, 6)}


@pytest.fixture
def mnist_slice(mnist_root):
    """The first 512 training and 64 test images (skips without MNIST)."""
    from lamina.data import load_dataset

    data = load_dataset("mnist", data_dir=mnist_root, download=False, limit=512)
    return data.train_x, data.train_y, data.test_x[:64]


def run_onnx(model: lamina.Model, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from lamina.export import to_onnx

    proto = to_onnx(model.network, model.loss)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    [probabilities] = session.run(["probabilities"], {"x": x})
    return probabilities


@pytest.mark.parametrize("name", CLASSIC)
def test_one_short_epoch_lowers_the_loss_and_the_trained_network_exports(name, mnist_slice):
    x, y, x_test = mnist_slice
    model = lamina.Model(name, seed=0)
    before = model.evaluate(x, y)
    history = model.fit(x, y, epochs=1, batch_size=64, validation_split=0, verbose=0)
    after = model.evaluate(x, y)
    [trained] = history.history["loss"]
    assert trained < before["loss"] and after["loss"] < before["loss"], (before, after)
    assert after["accuracy"] > before["accuracy"], (before, after)
    if name != "mnist_allconv":  # whose batchnorm running statistics have moved 8% of the
        # way in 8 steps (momentum 0.99): its inference lags what it learnt (16% here)
        assert after["accuracy"] > 0.4, after
    expected = model.predict(x_test)
    np.testing.assert_allclose(run_onnx(model, x_test), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CLASSIC)
def test_onnx_runtime_agrees_with_predict_on_random_weights(name):
    """Without data: every array drawn away from its initial value, running statistics
    included, so that a transposed weight or a skipped bias cannot hide."""
    model = lamina.Model(name, seed=1)
    rng = np.random.default_rng(2)
    for key, value in {**model.network.params(), **model.network.state()}.items():
        value[...] = (rng.uniform(0.5, 2.0, value.shape) if key.endswith("running_var")
                      else rng.normal(0.0, 0.3, value.shape))
    x = np.random.default_rng(3).random((7, 1, 28, 28), dtype=np.float32)
    got = run_onnx(model, x)
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, model.predict(x), atol=1e-5, rtol=0)


# mnist_allconv is left out: its check takes 11 s, and two gradient checks of its
# conv_bn_relu block fail without a wrong gradient (one five-point stencil at h = 1e-3
# crosses a relu kink the detector misses, one example has too many kinks), as they do
# for the conv_bn_relu block of docs/blocks.md
@pytest.mark.parametrize("name", ["lenet5", "mnist_mlp"])
def test_lamina_check_certifies_what_the_network_is_made_of(name, capsys):
    assert main(["check", "--config", str(CONFIGS / f"{name}.toml")]) == 0
    assert "0 failures" in capsys.readouterr().out


@pytest.mark.parametrize("name", CLASSIC)
def test_docs_report_each_network_with_its_parameter_count(name):
    training = (DOCS / "training.md").read_text(encoding="utf-8")
    section = training.split("## Classic networks", 1)[1].split("\n## ", 1)[0]
    [row] = [line for line in section.splitlines() if line.startswith(f"| `{name}` |")]
    assert f"| {PARAMS[name][0]:,}" in row
    assert f"lamina train {name} " in section
