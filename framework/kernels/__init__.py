"""lamina's kernels: the array work around the layers' matrix products, one function per operation.

Any plugin may use them. Each function's docstring gives its formula; the layer docs
(docs/layers/) derive them. Most are NumPy; those that NumPy cannot do in one pass
run compiled loops (:mod:`lamina.kernels._loops`, Numba, imported on first use).

- geometry: window sizes, padding, kernel taps       (:mod:`lamina.kernels.geometry`)
- conv2d / conv2d_backward: the convolution as patch matrices and matrix products
  (:mod:`lamina.kernels.conv`)
- grouped_conv2d / grouped_conv2d_backward: the same with channels and filters in groups,
  depthwise by compiled loops (:mod:`lamina.kernels.grouped`)
- winograd_conv2d / winograd_input_grad / winograd_weight_grad: 3x3 stride-1 convolutions
  and their gradients by Winograd F(2x2, 3x3) and F(3x3, 2x2) (:mod:`lamina.kernels.winograd`;
  conv2d chooses it by the layer's shape)
- conv2d_max_pool / conv2d_max_pool_backward: a convolution ending in its 2x2 max pool, one
  pass (:mod:`lamina.kernels.fused`)
- max_pool / max_pool_backward: pooling with winners (:mod:`lamina.kernels.pool`)
- erfc, sigmoid: the special functions NumPy lacks (:mod:`lamina.kernels.special`)
- relu / relu_backward: relu's mask and product in one pass (:mod:`lamina.kernels.elementwise`)
- avg_pool / avg_pool_backward: average pooling, padding left out of each average
  (:mod:`lamina.kernels.pool`)
- Workspace: buffers reused across calls of one shape (:mod:`lamina.kernels.workspace`)
"""

from __future__ import annotations

from lamina.kernels.conv import (
    SAMPLE_COLUMNS_MAX_K,
    PixelRows,
    SampleColumns,
    conv2d,
    conv2d_backward,
    sample_patches,
    winograd_applies,
    winograd_input_grad_applies,
)
from lamina.kernels.elementwise import relu, relu_backward
from lamina.kernels.fused import POOL_2X2, conv2d_max_pool, conv2d_max_pool_backward
from lamina.kernels.geometry import Padding, Pair, conv_output_size, pair, same_padding
from lamina.kernels.grouped import (
    DepthwiseInput,
    GroupCaches,
    grouped_conv2d,
    grouped_conv2d_backward,
)
from lamina.kernels.pool import (
    Pooled,
    avg_pool,
    avg_pool_backward,
    max_pool,
    max_pool_backward,
    winner_dtype,
)
from lamina.kernels.special import erfc, sigmoid
from lamina.kernels.winograd import winograd_conv2d, winograd_input_grad, winograd_weight_grad
from lamina.kernels.workspace import Workspace

__all__ = [
    "POOL_2X2",
    "SAMPLE_COLUMNS_MAX_K",
    "DepthwiseInput",
    "GroupCaches",
    "Padding",
    "Pair",
    "PixelRows",
    "Pooled",
    "SampleColumns",
    "Workspace",
    "avg_pool",
    "avg_pool_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_max_pool",
    "conv2d_max_pool_backward",
    "conv_output_size",
    "erfc",
    "grouped_conv2d",
    "grouped_conv2d_backward",
    "max_pool",
    "max_pool_backward",
    "pair",
    "relu",
    "relu_backward",
    "sample_patches",
    "same_padding",
    "sigmoid",
    "winner_dtype",
    "winograd_applies",
    "winograd_conv2d",
    "winograd_input_grad",
    "winograd_input_grad_applies",
    "winograd_weight_grad",
]
