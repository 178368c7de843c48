"""conv2d's kernels for ``groups`` > 1: each group of channels convolved with its own filters.

For x (N, C, H, W) in G groups of Cg = C / G channels, weights W (F, Cg, kh, kw) in G
groups of Fg = F / G filters, bias b (F,), stride (sh, sw) and zero padding
((top, bottom), (left, right)), filter f reads only the channels of its group
g = f // Fg:

    y[n, f, p, q] = b[f] + sum_{c, i, j} W[f, c, i, j] * x[n, g*Cg + c, p*sh + i - top,
                                                           q*sw + j - left]

(c over the Cg channels of the group; an index outside the image reads 0). So the
groups are G independent convolutions side by side, and there are two ways to run them:

- **Depthwise** (Cg = 1, groups = C: every filter sees one channel; with F = m*C, m
  filters per channel): there is no sum over channels, so a patch matrix would feed
  products of one row. Compiled loops run the sum over the kh*kw taps directly
  (:func:`lamina.kernels._loops.depthwise_conv` and its two gradients).
- **Any other grouping**: one ungrouped :func:`lamina.kernels.conv.conv2d` per group, on
  the group's channels and filters, each with the patch layout its own K = Cg*kh*kw
  chooses and a workspace of its own; y and dx are assembled from the groups' slices.

groups = 1 never comes here: the layer calls :func:`lamina.kernels.conv.conv2d` as it is.
docs/layers/conv2d.md ("Groups") derives the gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lamina.kernels.conv import PixelRows, SampleColumns, conv2d, conv2d_backward, output_size
from lamina.kernels.geometry import Padding, Pair
from lamina.kernels.jit import run
from lamina.kernels.workspace import Workspace


class DepthwiseInput(NamedTuple):
    """What :func:`grouped_conv2d_backward` needs from a depthwise forward."""

    x: np.ndarray
    """(N, C, H, W), C-contiguous: the input forward read."""


class GroupCaches(NamedTuple):
    """What :func:`grouped_conv2d_backward` needs from a per-group forward."""

    x_shape: tuple[int, int, int, int]
    groups: tuple[SampleColumns | PixelRows, ...]
    """Each group's :func:`lamina.kernels.conv.conv2d` cache, in group order."""


def grouped_conv2d(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, groups: int,
                   stride: Pair, padding: Padding, work: Sequence[Workspace], *,
                   training: bool = False) -> tuple[np.ndarray, DepthwiseInput | GroupCaches]:
    """y (N, F, H', W'), a new array, and the cache :func:`grouped_conv2d_backward` reads.

    ``work`` holds one workspace per group (the depthwise loops use the first only);
    ``training`` is passed to each group's :func:`lamina.kernels.conv2d`."""
    f, cg, kh, kw = W.shape
    h_out, w_out = output_size(x.shape, (kh, kw), stride, padding)
    (sh, sw), ((top, _), (left, _)) = stride, padding
    y = np.empty((x.shape[0], f, h_out, w_out), dtype=x.dtype)
    if cg == 1:
        x = np.ascontiguousarray(x)
        bias = np.zeros(f, x.dtype) if b is None else b
        run("depthwise_conv", x, W, bias, sh, sw, top, left, y)
        return y, DepthwiseInput(x)
    fg, caches = f // groups, []
    for g in range(groups):
        filters = slice(g * fg, (g + 1) * fg)
        y_g, cache = conv2d(x[:, g * cg:(g + 1) * cg], W[filters],
                            None if b is None else b[filters], stride, padding, work[g],
                            training=training)
        y[:, filters] = y_g
        caches.append(cache)
    return y, GroupCaches(x.shape, tuple(caches))


def grouped_conv2d_backward(dy: np.ndarray, cache: DepthwiseInput | GroupCaches, W: np.ndarray,
                            dW: np.ndarray, db: np.ndarray | None, groups: int, stride: Pair,
                            padding: Padding, work: Sequence[Workspace], *,
                            input_grad: bool = True) -> np.ndarray | None:
    """Fill dW (F, Cg, kh, kw) (and db, unless None) in place; return dx (N, C, H, W), a new
    array, or None without ``input_grad``."""
    n, f, h_out, w_out = dy.shape
    (sh, sw), ((top, _), (left, _)) = stride, padding
    if isinstance(cache, DepthwiseInput):
        dy = np.ascontiguousarray(dy)
        lanes = work[0].get("lanes", (*W.shape[2:], w_out), dy.dtype)
        run("depthwise_conv_weight_grad", dy, cache.x, sh, sw, top, left, lanes, dW)
        if db is not None:  # per sample and filter first: NumPy's pairwise sums on long rows
            np.sum(np.sum(dy.reshape(n, f, h_out * w_out), axis=2), axis=0, out=db)
        if not input_grad:
            return None
        return run("depthwise_conv_input_grad", dy, W, sh, sw, top, left,
                   np.empty(cache.x.shape, dtype=dy.dtype))
    fg, cg = f // groups, W.shape[1]
    dx = np.empty(cache.x_shape, dtype=dy.dtype) if input_grad else None
    for g, group_cache in enumerate(cache.groups):
        filters = slice(g * fg, (g + 1) * fg)
        dx_g = conv2d_backward(dy[:, filters], group_cache, W[filters], dW[filters],
                               None if db is None else db[filters], stride, padding, work[g],
                               input_grad=input_grad)
        if input_grad:
            dx[:, g * cg:(g + 1) * cg] = dx_g
    return dx
