"""Work buffers that outlive one call, so a training step does not allocate them afresh.

Allocating tens of megabytes on every step costs a page fault per 4 KiB page, which
was measured to slow a step down by up to 2x on this kind of machine
(docs/performance.md).
"""

from __future__ import annotations

import numpy as np


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

    def find(self, key: str) -> np.ndarray | None:
        """The buffer under ``key`` if one was made, else None (its contents as last left)."""
        return self._buffers.get(key)

    def clear(self) -> None:
        """Free every buffer (they are allocated again on the next ``get``)."""
        self._buffers.clear()

    def __getstate__(self) -> dict:
        return {"_buffers": {}}

    def __setstate__(self, state: dict) -> None:
        self._buffers = {}

    def __len__(self) -> int:
        return len(self._buffers)
