"""ONNX export: a trained network's inference graph, for ONNX Runtime and other servers.

Every layer writes its own part. A layer plugin that can be exported defines the
optional method

    def export_onnx(self, graph: OnnxGraph, inputs: list[str], name: str) -> str

which adds ONNX nodes for its eval-mode forward to ``graph`` (reading its trained
arrays from ``self.params()`` and ``self.state()``), taking the tensors named
``inputs`` (one per input; one for an ordinary layer) and returning the name of the
tensor it produces; ``name`` is the layer's name in the network, for naming what it
adds. A loss plugin defines ``export_onnx(self, graph, logits) -> str`` for its
``predict_proba``. The exported model maps ``x`` (N, *input_shape), float32, to
``probabilities`` (N, classes), as :meth:`lamina.Model.predict` does. A layer without
the method stops the export with an error naming it and its provider.

:class:`OnnxGraph` only records; the ``onnx`` package (the optional extra
``lamina[onnx]``) is imported when the model is assembled, so plugins never need it.
See docs/export.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import INPUT
from .errors import PASSED_THROUGH, LaminaError, PluginError

#: the ONNX operator set the exported models use (ONNX Runtime 1.14 and later run it)
OPSET = 17
INPUT_NAME = "x"
OUTPUT_NAME = "probabilities"


class ExportError(LaminaError):
    """The network cannot be exported (a layer without export_onnx, no onnx package)."""


@dataclass
class OnnxGraph:
    """The nodes and constant tensors of an ONNX graph being written.

    Tensor names are unique in a graph: a name already taken (by another layer's
    tensor, or the model's input ``x`` and output ``probabilities``) gets a suffix, so
    always use the name a call returns."""

    nodes: list[tuple[str, list[str], str, dict[str, Any]]] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = OPSET
    taken: set[str] = field(default_factory=lambda: {INPUT_NAME, OUTPUT_NAME})

    def unique(self, name: str) -> str:
        """``name``, or ``name_1``, ``name_2``... when taken; marks it taken."""
        candidate, n = name, 1
        while candidate in self.taken:
            candidate, n = f"{name}_{n}", n + 1
        self.taken.add(candidate)
        return candidate

    def constant(self, value: np.ndarray, name: str) -> str:
        """Add a constant tensor (a weight) named after ``name``; returns its name."""
        name = self.unique(name)
        self.constants[name] = np.ascontiguousarray(value)
        return name

    def add(self, op_type: str, inputs: list[str], name: str, **attributes: Any) -> str:
        """Add the ONNX node ``op_type`` reading ``inputs`` (tensor names; "" for an
        omitted optional input) with ``attributes``; returns its output's name (``name``,
        or ``name`` with a suffix when that is taken)."""
        name = self.unique(name)
        self.nodes.append((op_type, list(inputs), name, attributes))
        return name


def build_graph(network, loss) -> OnnxGraph:
    """Every node's export, in the network's order, then the loss's probabilities. Every
    layer that cannot be exported is named in one error."""
    missing = [node for node in network.nodes if getattr(node.layer, "export_onnx", None) is None]
    if missing:
        names = "; ".join(f"{node.config.path} {node.name!r} ({node.provider.module}, from "
                          f"{node.provider})" for node in missing)
        raise ExportError(
            f"{len(missing)} layer{'s' if len(missing) != 1 else ''} of this network cannot be "
            f"exported to ONNX (no export_onnx() method): {names}. Add the method "
            "(docs/export.md) or ask the plugin's author to")
    graph = OnnxGraph()
    tensors = {INPUT: INPUT_NAME}
    for node in network.nodes:
        inputs = [tensors[ref] for ref in node.inputs]
        try:
            out = node.layer.export_onnx(graph, inputs, node.name)
        except PASSED_THROUGH:
            raise
        except BaseException as exc:
            raise node.plugin_failed("export_onnx()", exc) from exc
        tensors[node.name] = _exported(out, graph, f"{node.config.path} {node.name!r} "
                                       f"({node.provider.module}, from {node.provider})")
    method = getattr(loss, "export_onnx", None)
    who = f"the {loss.name} loss ({type(loss).__module__})"
    if method is None:
        raise ExportError(f"{who} cannot be exported to ONNX: it defines no export_onnx() "
                          "method for its probabilities (docs/export.md)")
    try:
        probabilities = method(graph, tensors[network.output])
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise PluginError(f"{who} raised {type(exc).__name__} in export_onnx(): {exc}. This is "
                          "a bug in the plugin; report it to its author") from exc
    graph.nodes.append(("Identity", [_exported(probabilities, graph, who)], OUTPUT_NAME, {}))
    return graph


def _exported(name: Any, graph: OnnxGraph, who: str) -> str:
    """The tensor name an export_onnx() returned, checked: a plugin returning anything
    else (None, a node, a list) is named, rather than failing inside onnx."""
    if not isinstance(name, str) or name not in graph.taken:
        raise PluginError(f"{who}: export_onnx() returned {name!r}; it must return the name "
                          "(a str) of the tensor it added, as graph.add() and "
                          "graph.constant() return it. This is a bug in the plugin; report it "
                          "to its author")
    return name


def to_onnx(network, loss, *, description: str = "") -> Any:
    """The checked ``onnx.ModelProto`` of ``network`` (eval mode) and ``loss``'s
    probabilities."""
    _onnx()  # before any plugin code runs: a missing package is the first thing said
    return assemble(build_graph(network, loss),
                    [(INPUT_NAME, ["N", *network.input_shape])],
                    [(OUTPUT_NAME, ["N", *network.output_shape])], description)


def layer_to_onnx(layer, input_shapes: list[tuple[int, ...]]) -> Any:
    """One built layer alone as an ONNX model: inputs ``x0``, ``x1``... (N, *shape),
    output ``y`` (N, *output_shape); what the conformance suite runs (check_onnx_export)."""
    _onnx()
    graph = OnnxGraph(taken={"y"})
    names = [graph.unique(f"x{i}") for i in range(len(input_shapes))]
    out = layer.export_onnx(graph, names, getattr(layer, "name", "layer"))
    graph.nodes.append(("Identity", [_exported(out, graph, type(layer).__name__)], "y", {}))
    return assemble(graph, [(name, ["N", *shape]) for name, shape in
                            zip(names, input_shapes, strict=True)],
                    [("y", ["N", *layer.output_shape])], "")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting needs the onnx package: pip install 'lamina[onnx]' (or "
                          "pip install onnx)") from None
    except PASSED_THROUGH:
        raise
    except BaseException as exc:  # installed but broken: its import itself raised
        raise ExportError(f"the onnx package is installed but cannot be imported "
                          f"({type(exc).__name__}: {exc}); reinstall it: pip install "
                          "--force-reinstall onnx") from None
    return onnx


def assemble(graph: OnnxGraph, inputs: list[tuple[str, list]], outputs: list[tuple[str, list]],
             description: str) -> Any:
    """The checked float32 ONNX model of ``graph`` with these (name, shape) inputs and
    outputs."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    try:
        nodes = [helper.make_node(op, node_inputs, [out], name=out, **attrs)
                 for op, node_inputs, out, attrs in graph.nodes]
        initializers = [numpy_helper.from_array(value, name)
                        for name, value in graph.constants.items()]
    except PASSED_THROUGH:
        raise
    except Exception as exc:  # a plugin recorded a node or constant onnx cannot hold
        raise ExportError(f"a node or constant a plugin's export_onnx() added cannot be "
                          f"written as ONNX ({type(exc).__name__}: {exc}); check its "
                          "attributes and constants (docs/export.md)") from exc

    def values(pairs: list[tuple[str, list]]) -> list:
        return [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
                for name, shape in pairs]

    model = helper.make_model(
        helper.make_graph(nodes, "lamina", values(inputs), values(outputs), initializers),
        opset_imports=[helper.make_opsetid("", graph.opset)],
        producer_name="lamina", doc_string=description)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx's own checker errors: a plugin wrote a bad node
        raise ExportError(f"the exported graph is not valid ONNX: {exc}") from exc
    return model


def export_run(run_dir: str | Path, out: str | Path, registry, *, weights: str | None = None,
               force: bool = False) -> dict[str, Any]:
    """Write ``run_dir``'s network as ONNX to ``out`` (atomically; an existing file only
    with ``force``); returns what was written."""
    from .training.api import load_trained
    from .training.runs import atomic_write

    out = Path(out)
    check_target(out, force)
    session = load_trained(run_dir, registry, weights=weights)
    model = to_onnx(session.network, session.loss,
                    description=f"lamina run {run_dir}, weights {session.weights}")
    data = model.SerializeToString()
    atomic_write(out, data)
    return {"run_dir": str(run_dir), "out": str(out), "weights": session.weights,
            "opset": OPSET, "bytes": len(data),
            "input": [INPUT_NAME, ["N", *session.network.input_shape]],
            "output": [OUTPUT_NAME, ["N", *session.network.output_shape]]}


def check_target(out: Path, force: bool) -> None:
    """Refuse an output path that would fail or lose something, before any work."""
    from .config.files import shown

    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{shown(out)}: give the output file the .onnx extension")
    try:
        is_dir, exists = out.is_dir(), out.exists()
        parent_is_dir, parent_exists = out.parent.is_dir(), out.parent.exists()
    except (OSError, ValueError) as exc:  # a name too long for the system, a NUL byte
        raise ExportError(f"{shown(out)} cannot be written "
                          f"({getattr(exc, 'strerror', None) or exc}); give another "
                          "path") from None
    if is_dir:
        raise ExportError(f"{shown(out)} is a directory; give a file name ending in .onnx")
    if not parent_is_dir:
        raise ExportError(f"{shown(out.parent)} is a file, not a folder; give a path in a "
                          "folder" if parent_exists else
                          f"the folder {shown(out.parent)} does not exist; create it first")
    if exists and not force:
        raise ExportError(f"{shown(out)} exists; choose another name, or pass --force to "
                          "replace it")
