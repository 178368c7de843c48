"""maxpool2d: the maximum of each (ph, pw) window of every channel.

Shapes (per batch): x (N, C, H, W), y (N, C, H', W') with
``H' = (H - ph) // sh + 1`` and ``W' = (W - pw) // sw + 1`` (floor: rows and columns
that do not fill a window are dropped, so 11 -> 5 for a 2x2 pool with stride 2).

Forward, for the window offsets (i, j) in 0 <= i < ph, 0 <= j < pw:

    y[n, c, p, q] = max_{i, j} x[n, c, p*sh + i, q*sw + j]

Backward: y is locally a selection of one input, the window's argmax (i*, j*), so

    dx[n, c, p*sh + i, q*sw + j] += dy[n, c, p, q]  if (i, j) == (i*, j*) else 0

Each output's gradient goes to exactly one input. On ties the winner is the first
maximal offset in row-major order (i, then j), which keeps the gradient a valid
subgradient and the result independent of memory layout. When windows overlap
(stride < pool) one input can win several windows and its gradients are summed.

Both passes loop over the ph*pw window offsets, each step one strided slice of the
whole batch: the forward keeps the running maximum and the offset that set it
(``winner``, (N, C, H', W'), uint8 for pools up to 16x16), on a contiguous copy of the
offsets when windows tile the input (stride == pool); the backward writes
``dy`` masked by ``winner == k`` into the slice of offset k. Eval-mode forwards
skip the winner bookkeeping; a backward after one derives it from the cached input.
See docs/layers/maxpool2d.md for the derivation.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from lamina import Example, Layer, LayerConfig, LayerTraits, ShapeError, hookimpl
from lamina.ops import Workspace, conv_output_size, pair

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Size = PositiveInt | tuple[PositiveInt, PositiveInt]


class MaxPool2DConfig(LayerConfig):
    pool_size: Size = Field(
        default=2, description="window height and width: an int or [ph, pw], each >= 1"
    )
    stride: Size | None = Field(
        default=None,
        description="step between windows: an int or [sh, sw], each >= 1; default pool_size",
    )


class MaxPool2D(Layer):
    """Max pooling over (ph, pw) windows: (N, C, H, W) -> (N, C, H', W')."""

    name: ClassVar[str] = "maxpool2d"
    Config: ClassVar[type[LayerConfig]] = MaxPool2DConfig
    # Each output is its window's first maximum and alone gets its gradient, so a relu
    # before this layer may run after it instead (lamina.layer, lamina.graph).
    traits: ClassVar[LayerTraits] = LayerTraits(max_selecting=True)

    def __init__(self, config=None, /, **kwargs):
        super().__init__(config, **kwargs)
        self.pool = pair(self.config.pool_size)
        self.stride = pair(self.config.stride if self.config.stride is not None else self.pool)
        ph, pw = self.pool
        self._winner_dtype = np.min_scalar_type(ph * pw - 1)
        self._work = Workspace()

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """The window offsets (i, j) in row-major order. Made when used: a config's
        pool_size is only checked against the input when shapes are inferred."""
        ph, pw = self.pool
        return [(i, j) for i in range(ph) for j in range(pw)]

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ShapeError(
                "maxpool2d expects (channels, height, width) per sample; "
                f"received {input_shape} ({len(input_shape)}-D). Fix: pool images (e.g. the "
                "output of a conv2d), before any flatten"
            )
        c, h, w = input_shape
        (ph, pw), (sh, sw) = self.pool, self.stride
        if ph > h or pw > w:
            raise ShapeError(
                f"maxpool2d pool_size ({ph}, {pw}) is larger than its input ({h}, {w}); "
                "expected a pool that fits inside the input. Fix: use a smaller pool_size "
                "or fewer pooling layers before this one"
            )
        return (c, conv_output_size(h, ph, sh), conv_output_size(w, pw, sw))

    def _window(self, a, i, j, h_out, w_out):
        """The (N, C, H', W') strided view of ``a`` at window offset (i, j)."""
        sh, sw = self.stride
        return a[:, :, i : i + sh * (h_out - 1) + 1 : sh, j : j + sw * (w_out - 1) + 1 : sw]

    def _windows(self, x, h_out, w_out, *, stacked=False):
        """The ph*pw offset slices of ``x`` (N, C, H', W') in offset order: strided views,
        or with ``stacked`` (windows that tile the input only) rows of one contiguous
        copy. Ufuncs on the stride-sw views ran ~3x slower than on contiguous arrays, and
        one strided copy costs about as much as one such ufunc, so a training forward
        (three ufuncs per offset) gathers them first; an eval forward (one) does not."""
        if not stacked:
            return [self._window(x, i, j, h_out, w_out) for i, j in self.offsets]
        (ph, pw), (n, c) = self.pool, x.shape[:2]
        tiles = x[:, :, : h_out * ph, : w_out * pw].reshape(n, c, h_out, ph, w_out, pw)
        stack = self._work.get("stack", (ph, pw, n, c, h_out, w_out), x.dtype)
        np.copyto(stack, tiles.transpose(3, 5, 0, 1, 2, 4))
        return stack.reshape(ph * pw, n, c, h_out, w_out)

    def _pool(self, windows, out, winner=None):
        """Running max over the offsets' ``windows`` into ``out``; if ``winner`` is given,
        also the first offset that reached it (strict > keeps the earliest of tied values)."""
        np.copyto(out, windows[0])
        if winner is not None:
            winner[...] = 0
            beats = self._work.get("beats", out.shape, np.bool_)
            stamp = self._work.get("stamp", out.shape, winner.dtype)
        for k in range(1, len(windows)):
            x_k = windows[k]
            if winner is not None:
                np.greater(x_k, out, out=beats)
                # Offsets run in increasing k, so the winner so far is < k: max() sets k
                # exactly where x_k beats the running maximum (cheaper than a masked copy).
                np.multiply(beats, stamp.dtype.type(k), out=stamp)
                np.maximum(winner, stamp, out=winner)
            np.maximum(out, x_k, out=out)

    def forward(self, x, *, training):
        n, c = x.shape[:2]
        out_shape = (n, c, *self.output_shape[1:])
        y = np.empty(out_shape, dtype=self.dtype)
        if training:
            winner = self._work.get("winner", out_shape, self._winner_dtype)
            stacked = self.stride == self.pool
            self._pool(self._windows(x, *out_shape[2:], stacked=stacked), y, winner)
            self.cache = (x.shape, None, winner)
        else:
            self._pool(self._windows(x, *out_shape[2:]), y)
            self.cache = (x.shape, x, None)
        return y

    def backward(self, dy, *, input_grad=True):
        x_shape, x, winner = self.cached()
        if winner is None:  # the last forward ran in eval mode: recover its argmax
            winner = self._work.get("winner", dy.shape, self._winner_dtype)
            self._pool(self._windows(x, *dy.shape[2:]), self._work.get("y", dy.shape, self.dtype),
                       winner)
        h_out, w_out = dy.shape[2:]
        (ph, pw), (sh, sw) = self.pool, self.stride
        chosen = self._work.get("beats", dy.shape, np.bool_)
        if (sh, sw) == (ph, pw):
            # Windows tile the input: each input is in at most one window, so every
            # offset writes its slice directly; only the cropped tail needs zeros.
            dx = np.empty(x_shape, dtype=self.dtype)
            dx[:, :, h_out * sh :] = 0
            dx[:, :, : h_out * sh, w_out * sw :] = 0
            for k, (i, j) in enumerate(self.offsets):
                np.equal(winner, k, out=chosen)
                np.multiply(dy, chosen, out=self._window(dx, i, j, h_out, w_out))
            return dx
        # Overlapping (or gapped) windows: an input may win several windows, so add.
        dx = np.zeros(x_shape, dtype=self.dtype)
        routed = self._work.get("routed", dy.shape, self.dtype)
        for k, (i, j) in enumerate(self.offsets):
            np.equal(winner, k, out=chosen)
            np.multiply(dy, chosen, out=routed)
            self._window(dx, i, j, h_out, w_out)[...] += routed
        return dx

    @classmethod
    def examples(cls):
        return [
            Example(config={}, input_shape=(2, 4, 4), id="2x2"),
            Example(config={"pool_size": 2}, input_shape=(2, 5, 7), id="2x2-odd"),
            Example(
                config={"pool_size": 3, "stride": 2}, input_shape=(2, 7, 6), id="3x3-s2-overlap"
            ),
            Example(
                config={"pool_size": [2, 3], "stride": [1, 3]}, input_shape=(1, 4, 7), id="2x3-s13"
            ),
            Example(config={"pool_size": 2, "stride": 3}, input_shape=(2, 7, 8), id="2x2-s3-gaps"),
        ]


@hookimpl
def lamina_register_layers():
    return [MaxPool2D]
