"""What every check shares: the failure type, the result record and the check decorator.

A check is a plain function ``check_x(plugin, example)``: ``plugin`` is the class
under test, ``example`` one of its :class:`~lamina.Example` (or
:class:`~lamina.LossExample`). It returns nothing when the plugin conforms and
raises :class:`ConformanceError` when it does not. The :func:`check` decorator
prefixes every failure with the plugin, the example and the check, so a message
read on its own (in a pytest log, in the ``lamina check`` table) says who failed
what; an unexpected exception inside the plugin becomes a failure of that check,
chained to the original so that its traceback is kept.
"""

from __future__ import annotations

import copy
import functools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: every check draws its data and builds its layers from this seed (and seed + 1)
SEED = 0


class ConformanceError(AssertionError):
    """A plugin broke the contract one conformance check verifies.

    A subclass of :class:`AssertionError`, so pytest reports it as a test failure
    and shows the message, not as an error in the test's machinery.
    """


class NotApplicable(Exception):
    """A check that cannot apply to this plugin, and says so (a layer without export_onnx is
    "not exportable"): reported as a visible line, neither a pass nor a failure. ``label``
    is the short form a report's table shows."""

    def __init__(self, message: str, label: str = "not applicable"):
        super().__init__(message)
        self.label = label


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one example of one plugin.

    ``expected_failure`` is the reason the caller gave for expecting this check to
    fail (``None`` when it was expected to pass). A declared failure that happens is
    ``"xfailed"``; a declared failure that does not happen is ``"xpassed"`` and
    counts as a failure, so that stale declarations get noticed and removed.
    """

    plugin: str
    example: str
    check: str
    passed: bool
    message: str = ""
    expected_failure: str | None = None
    #: the short reason the check does not apply (:class:`NotApplicable`'s label, such as
    #: "not exportable"); the result is then "skipped" and ``message`` says the rest
    skipped: str | None = None

    @property
    def status(self) -> str:
        if self.skipped is not None:
            return "skipped"
        if self.expected_failure is None:
            return "passed" if self.passed else "failed"
        return "xpassed" if self.passed else "xfailed"

    @property
    def ok(self) -> bool:
        """True unless this result should make a run fail."""
        return self.status in ("passed", "xfailed", "skipped")

    @property
    def id(self) -> str:
        return f"{self.plugin}-{self.example}-{self.check}"


def plugin_name(plugin: Any) -> str:
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return str(getattr(cls, "name", cls.__name__))


def check(func: Callable[[type, Any], None]) -> Callable[[type, Any], None]:
    """Mark ``func`` as a conformance check and make its failures self-describing."""

    @functools.wraps(func)
    def run(plugin: type, example: Any) -> None:
        where = f"{plugin_name(plugin)} [example {getattr(example, 'id', '?')!r}] {func.__name__}"
        try:
            func(plugin, example)
        except ConformanceError as exc:
            raise ConformanceError(f"{where}: {exc}") from None
        except NotApplicable as exc:
            raise NotApplicable(f"{where}: {exc}", exc.label) from None
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            raise ConformanceError(
                f"{where}: the plugin raised {type(exc).__name__}: {exc} "
                f"(at {frame.filename}:{frame.lineno})"
            ) from exc

    run.is_conformance_check = True
    return run


def fail(expected: str, received: str, fix: str = "") -> None:
    """Raise a ConformanceError that says what was expected, what was received and the fix."""
    message = f"expected {expected}; received {received}"
    raise ConformanceError(f"{message}. {fix}" if fix else message)


def fresh_copy(obj: Any) -> Any:
    """A deep copy of a layer or loss that shares its (frozen, immutable) config and dtype.

    Copying the generator a stochastic layer keeps is what lets a check replay the
    same random mask. The checks make thousands of copies (every finite-difference
    evaluation starts from one), so the immutable parts are shared and the generator
    is cloned through its state, about twice as fast as deep-copying it.
    """
    memo: dict[int, Any] = {}
    for name in ("config", "dtype"):
        value = getattr(obj, name, None)
        if value is not None:
            memo[id(value)] = value
    generator = getattr(obj, "rng", None)
    if isinstance(generator, np.random.Generator):
        memo[id(generator)] = clone_generator(generator)
    return copy.deepcopy(obj, memo)


def clone_generator(generator: np.random.Generator) -> np.random.Generator:
    """A new generator that will draw exactly what ``generator`` draws next."""
    try:
        bit_generator = type(generator.bit_generator)(0)  # seeded: no call for OS entropy
        bit_generator.state = generator.bit_generator.state
    except (TypeError, ValueError):  # a bit generator that takes no seed or no state
        return copy.deepcopy(generator)
    return np.random.Generator(bit_generator)


def rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


def describe_array(a: Any) -> str:
    a = np.asarray(a)
    return f"an array of shape {a.shape} and dtype {a.dtype}"
