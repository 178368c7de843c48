"""Window geometry shared by convolution and pooling: sizes, padding and the taps of a kernel.

A kernel of (kh, kw) slides with stride (sh, sw) over an image (H, W) padded by
``((top, bottom), (left, right))`` zeros; the output has

    H' = (H + top + bottom - kh) // sh + 1,   W' = (W + left + right - kw) // sw + 1

positions, and output (p, q) reads input (p*sh + i - top, q*sw + j - left) at kernel
offset (i, j).
"""

from __future__ import annotations

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


def taps(x_shape, kernel: Pair, stride: Pair, padding: Padding):
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
