"""Plugin discovery: built-ins, fake third-party distributions, clashes, broken plugins."""

from __future__ import annotations

import pytest

from lamina import PluginError, UnknownPluginError
from lamina.registry import (
    BUILTIN_PLUGINS,
    DISABLE_AUTOLOAD_ENV,
    Provider,
    load_registry,
)

SWISH = """
import numpy as np
from lamina import Example, Layer, LayerConfig, hookimpl

class Scale(Layer):
    name = "{name}"
    Config = LayerConfig

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, *, training):
        self.cache = x.shape
        return 2.0 * x

    def backward(self, dy, *, input_grad=True):
        self.cached()
        return 2.0 * dy

    @classmethod
    def examples(cls):
        return [Example({{}}, (3,))]

@hookimpl
def lamina_register_layers():
    return [Scale]
"""


def test_builtins_are_registered_with_lamina_as_provider():
    registry = load_registry(load_entry_points=False)
    modules = {e.provider.module for e in registry.entries()}
    assert modules == set(BUILTIN_PLUGINS)
    assert {e.provider.dist for e in registry.entries()} == {"lamina"}
    assert "conv2d" in registry.layers and "softmax_cross_entropy" in registry.losses
    assert {"sgd", "adam"} <= set(registry.optimizers)


def test_fake_distribution_is_discovered_with_its_provenance(fake_dist):
    fake_dist("lamina-scale", "1.2.3", "lamina_scale", SWISH.format(name="scale"))
    registry = load_registry()
    entry = registry.layers["scale"]
    assert entry.provider == Provider("lamina-scale", "1.2.3", "lamina_scale = lamina_scale")
    assert str(entry.provider) == "lamina-scale 1.2.3"


def test_autoload_can_be_disabled_by_environment(fake_dist, monkeypatch):
    fake_dist("lamina-scale", "1.2.3", "lamina_scale", SWISH.format(name="scale"))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "scale" not in load_registry().layers


def test_duplicate_name_is_an_error_naming_both_providers(fake_dist):
    fake_dist("lamina-dupe", "0.4.0", "lamina_dupe", SWISH.format(name="relu"))
    with pytest.raises(PluginError) as info:
        load_registry()
    message = str(info.value)
    assert "'relu' is provided twice" in message
    assert "lamina 0.1.0 (lamina.plugins.relu)" in message
    assert "lamina-dupe 0.4.0" in message


def test_plugin_failing_to_import_is_reported_and_skipped(fake_dist):
    fake_dist("lamina-broken", "0.0.1", "lamina_broken", "raise ImportError('no numpy here')\n")
    fake_dist("lamina-scale", "1.2.3", "lamina_scale", SWISH.format(name="scale"))
    registry = load_registry()
    assert "scale" in registry.layers  # the others keep working
    [problem] = registry.problems
    assert problem.provider.dist == "lamina-broken" and problem.provider.version == "0.0.1"
    assert "import failed" in str(problem) and "no numpy here" in str(problem)


def test_broken_plugin_is_fatal_in_strict_mode(fake_dist):
    fake_dist("lamina-broken", "0.0.1", "lamina_broken", "raise ImportError('no numpy here')\n")
    with pytest.raises(PluginError, match=r"lamina-broken 0\.0\.1.*strict"):
        load_registry(strict=True)


def test_strict_mode_from_environment(fake_dist, monkeypatch):
    fake_dist("lamina-broken", "0.0.1", "lamina_broken", "raise ImportError('boom')\n")
    monkeypatch.setenv("LAMINA_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError):
        load_registry()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (SWISH.format(name="Bad Name"), "lowercase letters"),
        (SWISH.format(name="loose").replace("Config = LayerConfig",
                                            "Config = __import__('pydantic').BaseModel"),
         "must forbid unknown keys"),
        (SWISH.format(name="nobackward").replace("def backward", "def _backward"),
         "lacks the method(s) backward"),
        ("from lamina import hookimpl\n@hookimpl\ndef lamina_register_layers():\n"
         "    return [42]\n", "expected a layer class"),
        ("from lamina import hookimpl\n@hookimpl\ndef lamina_register_layer():\n"
         "    return []\n", "unknown hook 'lamina_register_layer'"),
        (SWISH.format(name="flagged").replace("    Config = LayerConfig\n",
                                              "    Config = LayerConfig\n    stochastic = True\n"),
         "sets stochastic as a class attribute, where lamina does not read it; declare it as "
         "traits = LayerTraits(stochastic=True)"),
        (SWISH.format(name="traits").replace("    Config = LayerConfig\n",
                                             "    Config = LayerConfig\n    traits = {}\n"),
         "`traits` must be a lamina.LayerTraits, received {}"),
        (SWISH.format(name="oldbackward").replace("def backward(self, dy, *, input_grad=True)",
                                                  "def backward(self, dy)"),
         "backward() takes no `input_grad` keyword; the runner calls backward(dy, "
         "input_grad=...)"),
    ],
    ids=["bad-name", "config-allows-extra", "missing-method", "not-a-class", "misspelled-hook",
         "flag-on-the-class", "traits-not-declared-so", "backward-without-input-grad"],
)
def test_invalid_plugin_class_is_skipped_with_reason(fake_dist, source, reason):
    fake_dist("lamina-invalid", "2.0", "lamina_invalid", source)
    registry = load_registry()
    [problem] = registry.problems
    assert problem.provider.dist == "lamina-invalid"
    assert reason in problem.reason
    assert "relu" in registry.layers


def test_extra_plugins_register_objects_directly():
    namespace: dict = {}
    exec(SWISH.format(name="scale"), namespace)

    class Plugin:
        lamina_register_layers = staticmethod(namespace["lamina_register_layers"])

    provider = Provider("embedded", "1", "scale-plugin")
    registry = load_registry(load_entry_points=False, extra_plugins=((Plugin(), provider),))
    assert registry.layers["scale"].provider == provider
    assert registry.problems == []


def test_unknown_name_suggests_the_closest():
    registry = load_registry(load_entry_points=False)
    with pytest.raises(UnknownPluginError, match=r"did you mean 'conv2d'\?"):
        registry.layer("conv2")
    with pytest.raises(UnknownPluginError,
                       match="known optimizer types: adagrad, adam, rmsprop, sgd"):
        registry.optimizer("adamw_x")


def test_no_global_plugin_manager_or_rng():
    import lamina.registry as module

    first = load_registry(load_entry_points=False)
    second = load_registry(load_entry_points=False)
    assert first is not second and first.layers["relu"] == second.layers["relu"]
    assert not any(type(v).__name__ in ("PluginManager", "Generator")
                   for v in vars(module).values())


@pytest.mark.parametrize("statement", [
    "import sys\nsys.exit(3)\n",
    "class Stop(BaseException):\n    pass\nraise Stop('no GPU found')\n",
])
def test_a_plugin_exiting_at_import_is_skipped_not_fatal(fake_dist, statement):
    fake_dist("lamina-exits", "0.1", "lamina_exits", statement)
    registry = load_registry()
    [problem] = [p for p in registry.problems if p.provider.dist == "lamina-exits"]
    assert problem.reason.startswith("import failed: ")
    assert "relu" in registry.layers  # everything else still works
