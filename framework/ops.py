"""Array kernels shared by the convolution and pooling layers (any plugin may use them).

Images are batched and channels first: ``x`` is (N, C, H, W). A kernel of
(kh, kw) slides with stride (sh, sw) over ``x`` padded by ``((top, bottom),
(left, right))`` zeros; the output has

    H' = (H + top + bottom - kh) // sh + 1,   W' = (W + left + right - kw) // sw + 1

positions. :func:`im2col` lays every receptive field out as one column of

    cols   (C, kh, kw, N, H', W')   viewed as the matrix (C*kh*kw, N*H'*W')

The rows are ordered (c, i, j), exactly like a weight ``W`` (F, C, kh, kw)
reshaped to (F, C*kh*kw), so a whole batch of cross-correlations is the single
matrix product ``W2 @ cols`` (F, N*H'*W'). Columns are ordered (n, oh, ow), which
keeps both BLAS operands of every product in the layer (forward, dW, dcols) plain
2-D matrices: one large GEMM each instead of N small ones (see docs/layers/conv2d.md
for the measured trade-off). :func:`col2im` is the adjoint: it adds every column
back onto the input position it was read from.

Both kernels loop over the kh*kw kernel offsets only; each step moves one strided
block (C, N, H', W') with a single NumPy copy or add. Positions that fall in the
zero padding are never read from ``x`` and never written to ``dx``: each offset's
block is clipped to the rows and columns that land inside the image, so no padded
copy of ``x`` or ``dx`` is ever made.

:class:`Workspace` keeps large work buffers alive across calls of the same shape:
allocating tens of megabytes afresh on every training step costs a page fault per
4 KiB page, which was measured to slow a step down by up to 2x on this kind of
machine.
"""

from __future__ import annotations

import numpy as np

Pair = tuple[int, int]
Padding = tuple[Pair, Pair]


def pair(value: int | tuple[int, int] | list[int]) -> Pair:
    """``3`` -> ``(3, 3)``; a pair stays a pair (as a tuple of ints)."""
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


def conv_output_size(size: int, kernel: int, stride: int, pad_lo: int = 0, pad_hi: int = 0) -> int:
    """Number of kernel positions along one axis (floor: a partial window is dropped)."""
    return (size + pad_lo + pad_hi - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> Pair:
    """Zero padding (lo, hi) giving ``ceil(size / stride)`` outputs, as TensorFlow does.

    For stride 1 the output size equals the input size. When the total padding is
    odd the extra zero goes after the image (bottom or right), also as in TensorFlow.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2)


def _span(
    offset: int, pad_lo: int, size_in: int, size_out: int, stride: int
) -> tuple[int, int, int]:
    """Outputs [o_lo, o_hi) whose tap at kernel ``offset`` lands inside the image.

    Output ``o`` reads input ``o * stride + offset - pad_lo``. Returns
    ``(o_lo, o_hi, first_input)``; ``o_hi <= o_lo`` means the tap only sees padding.
    """
    o_lo = max(0, -(-(pad_lo - offset) // stride))
    o_hi = min(size_out, (size_in - 1 + pad_lo - offset) // stride + 1)
    return o_lo, o_hi, o_lo * stride + offset - pad_lo


def _taps(x_shape, kernel: Pair, stride: Pair, padding: Padding):
    """Yield (i, j, rows, cols, src_rows, src_cols) for every kernel offset.

    ``rows``/``cols`` slice the output grid (H', W'); ``src_rows``/``src_cols``
    slice the image (H, W) with the stride; both cover the same positions.
    """
    _, _, h, w = x_shape
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = kernel, stride, padding
    h_out = conv_output_size(h, kh, sh, top, bottom)
    w_out = conv_output_size(w, kw, sw, left, right)
    for i in range(kh):
        r0, r1, hs = _span(i, top, h, h_out, sh)
        for j in range(kw):
            c0, c1, ws = _span(j, left, w, w_out, sw)
            if r1 <= r0 or c1 <= c0:
                yield i, j, None, None, None, None
                continue
            yield (
                i,
                j,
                (slice(r0, r1), slice(c0, c1)),
                (r0, r1, c0, c1),
                slice(hs, hs + sh * (r1 - r0 - 1) + 1, sh),
                slice(ws, ws + sw * (c1 - c0 - 1) + 1, sw),
            )


def cols_shape(x_shape, kernel: Pair, stride: Pair, padding: Padding) -> tuple[int, ...]:
    """Shape (C, kh, kw, N, H', W') of the columns of an input of ``x_shape``."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), ((top, bottom), (left, right)) = kernel, stride, padding
    return (
        c,
        kh,
        kw,
        n,
        conv_output_size(h, kh, sh, top, bottom),
        conv_output_size(w, kw, sw, left, right),
    )


def im2col(
    x: np.ndarray,
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Receptive fields of ``x`` (N, C, H, W) as columns (C, kh, kw, N, H', W').

    ``out``, if given, must have that shape; it is overwritten entirely (the
    entries that read padding are set to zero), so a reused buffer may hold
    anything beforehand. ``cols.reshape(C*kh*kw, N*H'*W')`` is the matrix form.
    """
    shape = cols_shape(x.shape, kernel, stride, padding)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape:
        raise ValueError(f"im2col: out has shape {out.shape}, expected {shape}")
    x_cn = x.transpose(1, 0, 2, 3)  # (C, N, H, W) view: matches a block's axis order
    for i, j, window, bounds, src_rows, src_cols in _taps(x.shape, kernel, stride, padding):
        block = out[:, i, j]  # (C, N, H', W')
        if window is None:
            block[...] = 0
            continue
        block[(..., *window)] = x_cn[:, :, src_rows, src_cols]
        r0, r1, c0, c1 = bounds
        # Only the taps that reach into the padding have a border to clear.
        if r0 > 0:
            block[:, :, :r0] = 0
        if r1 < shape[4]:
            block[:, :, r1:] = 0
        if c0 > 0:
            block[:, :, r0:r1, :c0] = 0
        if c1 < shape[5]:
            block[:, :, r0:r1, c1:] = 0
    return out


def col2im(
    cols: np.ndarray,
    x_shape: tuple[int, int, int, int],
    kernel: Pair,
    stride: Pair = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum columns (C, kh, kw, N, H', W') back onto (N, C, H, W).

    Where windows overlap, the contributions of every offset are added; entries
    that came from the padding are dropped. ``out`` (N, C, H, W), if given, is
    overwritten.
    """
    shape = cols_shape(x_shape, kernel, stride, padding)
    if cols.shape != shape:
        raise ValueError(f"col2im: cols has shape {cols.shape}, expected {shape}")
    if out is None:
        out = np.zeros(x_shape, dtype=cols.dtype)
    else:
        out[...] = 0
    dx_cn = out.transpose(1, 0, 2, 3)
    for i, j, window, _, src_rows, src_cols in _taps(x_shape, kernel, stride, padding):
        if window is not None:
            dx_cn[:, :, src_rows, src_cols] += cols[(slice(None), i, j, slice(None), *window)]
    return out


class Workspace:
    """Scratch buffers that live across calls while their shape and dtype stay the same.

    ``get`` returns a buffer with undefined contents: the caller must overwrite all
    of it. A workspace buffer must never be returned to a layer's caller, because
    the next call writes over it; it may be kept in the layer's own cache.
    Copies of the owner (``copy.deepcopy``, pickling) start with an empty workspace.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != np.dtype(dtype):
            buf = np.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    def clear(self) -> None:
        """Free every buffer (they are allocated again on the next ``get``)."""
        self._buffers.clear()

    def __getstate__(self) -> dict:
        return {"_buffers": {}}

    def __setstate__(self, state: dict) -> None:
        self._buffers = {}

    def __len__(self) -> int:
        return len(self._buffers)
