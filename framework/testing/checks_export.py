"""The optional ONNX export of a layer: what it writes computes what the layer does.

Runs on layers whose class defines ``export_onnx`` (docs/export.md): by default in a
plugin's pytest certificate when onnx and ONNX Runtime are installed (``pip install
'lamina[onnx]'``),
and in ``lamina check --onnx``. A layer without the method is reported as not
exportable there: a visible line, neither a pass nor a failure.

``lamina export`` exports a trained network: layers whose values have moved since
they were built or were loaded from a checkpoint, beside other layers (and other
instances of the same type) in one graph, on whatever input rank the network feeds
them. The check exports the layer in each of those situations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .base import ConformanceError, NotApplicable, check, fail
from .harness import (
    backward,
    build,
    copy_values,
    draw_inputs,
    forward,
    input_shapes,
    max_diff,
    shared_keys,
    upstream,
)

#: the largest difference, relative to the output's largest magnitude, between ONNX
#: Runtime and the layer's own float32 forward (the built-ins reach ~1e-7)
TOLERANCE = 1e-5


def onnx_setup_problem() -> tuple[str, str] | None:
    """What keeps the export check from running here and its fix: onnx (to build the
    graph) or onnxruntime (to run it) missing, or installed but failing to import;
    None when both import."""
    import importlib

    missing = []
    for name in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
        except Exception as exc:  # installed but broken: its import itself raised
            return (f"the {name} package is installed but cannot be imported "
                    f"({type(exc).__name__}: {exc})",
                    f"reinstall it: pip install --force-reinstall {name}")
    if missing:
        return (f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed",
                "pip install 'lamina[onnx]'")
    return None


def onnx_runtime_available() -> bool:
    return onnx_setup_problem() is None


def exportable(plugin: type) -> bool:
    return callable(getattr(plugin, "export_onnx", None))


NOT_EXPORTABLE = "not exportable"


def not_exportable_reason(plugin: type) -> str:
    return (f"{NOT_EXPORTABLE}: {plugin.__name__} defines no export_onnx(), so `lamina "
            "export` refuses a network that holds it (docs/export.md shows how to write one)")


@check
def check_onnx_export(plugin: type, example: Any) -> None:
    """export_onnx's graph, run by ONNX Runtime in float32, agrees with
    forward(training=False) within TOLERANCE of the output's largest magnitude: on every
    input rank the layer accepts, after its parameters moved, after new values were
    loaded into it, and beside a second instance of itself in one graph."""
    if not exportable(plugin):
        raise NotApplicable(not_exportable_reason(plugin), NOT_EXPORTABLE)
    problem = onnx_setup_problem()
    if problem is not None:
        received, fix = problem
        fail("onnx and ONNX Runtime, to export the layer and run its graph", received,
             f"{fix} (or leave the ONNX check out)")
    from .checks_usage import other_rank_shapes

    for shape in other_rank_shapes(plugin, example):
        ranked = dataclasses.replace(example, input_shape=shape)
        layer, _ = build(plugin, ranked, dtype=np.float32)
        _compare(f"on inputs of shape {shape}: ", [layer], plugin, ranked)
    trained, _ = build(plugin, example, dtype=np.float32)
    _compare("", [trained], plugin, example)  # exported once before: no cache may survive
    xs = draw_inputs(plugin, example, dtype=np.float32)
    backward(trained, upstream(forward(trained, xs, training=True), np.float32), len(xs))
    for key in shared_keys(trained):
        trained.params()[key] -= np.float32(0.5) * trained.grads()[key]
    _compare("after a training step moved its parameters: ", [trained], plugin, example)
    loaded, _ = build(plugin, example, dtype=np.float32)
    source, _ = build(plugin, example, dtype=np.float32, seed=3)
    forward(source, xs, training=True)  # running statistics away from their start
    copy_values(source, loaded)
    _compare("after other values were loaded into it: ", [loaded], plugin, example)
    twin, _ = build(plugin, example, dtype=np.float32, seed=4)
    _compare("beside a second instance of itself in one graph (outputs added): ",
             [loaded, twin], plugin, example)


def _compare(where: str, layers: list[Any], plugin: type, example: Any) -> None:
    import onnxruntime

    shapes = input_shapes(plugin, example)
    xs = draw_inputs(plugin, example, dtype=np.float32)
    expected = sum(forward(layer, xs, training=False) for layer in layers)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings would go to stderr
    try:
        model = _model(layers, shapes)
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        [got] = session.run(["y"], {f"x{i}": x for i, x in enumerate(xs)})
    except ConformanceError:
        raise
    except Exception as exc:  # onnx's checker and ONNX Runtime raise types of their own
        fail(f"{where}the layer's export to be a valid ONNX graph that ONNX Runtime runs",
             f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
             "Check the operators and their attributes against forward(), for every input "
             "rank the layer accepts")
    if got.shape != expected.shape:
        fail(f"{where}the exported graph to give the forward's shape {expected.shape}",
             f"shape {got.shape}", "Check the ONNX operators' attributes (axes, strides, "
             "pads, reshapes) against forward(), for every input rank it accepts")
    scale = max(float(np.abs(expected).max()), 1e-12)
    if max_diff(got, expected) > TOLERANCE * scale:
        fail(f"{where}ONNX Runtime to agree with forward(training=False) within "
             f"{TOLERANCE:g} of the output's largest magnitude",
             f"a difference of {max_diff(got, expected) / scale:.3g} of it",
             "export_onnx must write the eval-mode forward from the values params() and "
             "state() hold when it is called (docs/export.md): read them there, never from "
             "a copy made earlier, and use the tensor names it is given and graph.unique() "
             "returns")


def _model(layers: list[Any], shapes: list[tuple[int, ...]]) -> Any:
    """``layers`` side by side on the inputs ``x0``, ``x1``... (each fed through a node of
    its own, so no export may assume it reads the model's input), outputs added."""
    from lamina.export import OnnxGraph, assemble, layer_to_onnx

    if len(layers) == 1:
        return layer_to_onnx(layers[0], shapes)
    graph = OnnxGraph(taken={"y"})
    names = [graph.unique(f"x{i}") for i in range(len(shapes))]
    fed = [graph.add("Identity", [name], "fed") for name in names]
    outputs = []
    for k, layer in enumerate(layers):
        out = layer.export_onnx(graph, list(fed), f"layer_{k}")
        if not isinstance(out, str) or out not in graph.taken:
            fail("export_onnx() to return the name of the tensor it added", repr(out))
        outputs.append(out)
    total = graph.add("Sum", outputs, "total")
    graph.nodes.append(("Identity", [total], "y", {}))
    return assemble(graph, [(name, ["N", *shape]) for name, shape in
                            zip(names, shapes, strict=True)],
                    [("y", ["N", *layers[0].output_shape])], "")
