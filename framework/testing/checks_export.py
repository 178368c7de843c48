"""The optional ONNX export of a layer: what it writes computes what the layer does.

Runs on layers whose class defines ``export_onnx`` (docs/export.md): by default in a
plugin's pytest certificate when ONNX Runtime is installed (``pip install onnxruntime``),
and in ``lamina check --onnx``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import check, fail
from .harness import build, draw_inputs, forward, input_shapes, max_diff

#: the largest difference, relative to the output's largest magnitude, between ONNX
#: Runtime and the layer's own float32 forward (the built-ins reach ~1e-7)
TOLERANCE = 1e-5


def onnx_runtime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@check
def check_onnx_export(plugin: type, example: Any) -> None:
    """export_onnx's graph, run by ONNX Runtime in float32, agrees with forward(training=
    False) within TOLERANCE of the output's largest magnitude."""
    try:
        import onnxruntime
    except ImportError:
        fail("ONNX Runtime, to run the exported graph", "no onnxruntime package",
             "pip install onnxruntime (or leave the ONNX check out)")
    from lamina.export import layer_to_onnx

    layer, _ = build(plugin, example, dtype=np.float32)
    xs = draw_inputs(plugin, example, dtype=np.float32)
    expected = forward(layer, xs, training=False)
    model = layer_to_onnx(layer, input_shapes(plugin, example))
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    [got] = session.run(["y"], {f"x{i}": x for i, x in enumerate(xs)})
    if got.shape != expected.shape:
        fail(f"the exported graph to give the forward's shape {expected.shape}",
             f"shape {got.shape}", "Check the ONNX operators' attributes (axes, strides, "
             "pads) against forward()")
    scale = max(float(np.abs(expected).max()), 1e-12)
    if max_diff(got, expected) > TOLERANCE * scale:
        fail(f"ONNX Runtime to agree with forward(training=False) within {TOLERANCE:g} of "
             "the output's largest magnitude",
             f"a difference of {max_diff(got, expected) / scale:.3g} of it",
             "export_onnx must write the eval-mode forward (docs/export.md): check each "
             "operator and the arrays it reads from self.params() and self.state()")
