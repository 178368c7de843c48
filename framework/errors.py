"""lamina's exception hierarchy: one base error, one subclass per kind of mistake.

Every message says who (plugin, layer, config path), what was expected, what was
received and how to fix it. The CLI prints a ``LaminaError`` without a traceback;
anything else escaping is a bug in lamina.
"""

from __future__ import annotations

from dataclasses import dataclass


class LaminaError(Exception):
    """Base class of every error lamina raises on purpose."""


class PluginError(LaminaError):
    """A plugin could not be loaded, failed validation, or clashes with another."""


class UnknownPluginError(PluginError, KeyError):
    """A layer, loss or optimizer name that no registered plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(LaminaError):
    """A layer does not fit the shape of its input (raised at build time)."""


class StateError(LaminaError):
    """A state dict (params, non-trainable state, optimizer state) does not fit."""


class BackwardBeforeForwardError(LaminaError):
    """``backward()`` was called on a layer or loss that has not run ``forward()``."""


class DataError(LaminaError):
    """A dataset file is missing, truncated or corrupt, or cannot be fetched."""


class CheckpointError(LaminaError):
    """A checkpoint or run directory is missing, corrupt or already in use."""


class KernelError(LaminaError):
    """One of lamina's compiled kernels cannot run: Numba is missing or failed to compile it."""


class TrainingError(LaminaError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


#: what passes untouched through lamina's guards around plugin code: its own errors,
#: running out of memory and Ctrl-C. Anything else a plugin raises, ``SystemExit``
#: included, is a bug in the plugin and becomes a PluginError naming it::
#:
#:     except PASSED_THROUGH:
#:         raise
#:     except BaseException as exc:
#:         raise node.plugin_failed("forward()", exc) from exc
PASSED_THROUGH = (LaminaError, MemoryError, KeyboardInterrupt)


@dataclass(frozen=True)
class ConfigIssue:
    """One mistake in a config: where it is, what was received, what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(LaminaError):
    """A config has one or more mistakes; all of them are listed at once."""

    def __init__(self, issues: list[ConfigIssue], *, source: str | None = None):
        self.issues = list(issues)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        where = f" in {self.source}" if self.source else ""
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} found{where}:"
        return "\n".join([head, *(f"  - {issue}" for issue in self.issues)])
