"""The pytest certificate: one test per (plugin, example, check).

A plugin author's whole conformance test is three lines::

    @parametrize_with_checks([Swish])
    def test_conformance(plugin, check):
        check(plugin)

Importing lamina never imports pytest; only :func:`parametrize_with_checks` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import ConformanceError, plugin_name
from .checks_export import check_onnx_export, exportable, not_exportable_reason
from .runner import ExpectedFailures, _planned, _reason_for, plugin_class


class BoundCheck:
    """One check applied to one example; call it with the plugin class."""

    def __init__(self, func: Any, example: Any):
        self.func, self.example = func, example
        self.__name__ = func.__name__

    def __call__(self, plugin: Any) -> None:
        self.func(plugin_class(plugin), self.example)

    def __repr__(self) -> str:
        return f"{self.func.__name__}[{self.example.id}]"


def parametrize_with_checks(plugins: Iterable[Any], *,
                            expected_failed_checks: ExpectedFailures | None = None,
                            onnx: bool | None = None, registry: Any = None):
    """A ``pytest.mark.parametrize`` over (plugin, check), one test per check::

        @parametrize_with_checks([Swish])
        def test_conformance(plugin, check):
            check(plugin)

    Test ids read ``swish-<example id>-check_gradient``, so ``-k`` selects them.
    ``expected_failed_checks`` maps a plugin (class or name) to ``{check: reason}``;
    those tests are strict xfails carrying the reason: reported, never skipped, and
    an error once the check starts passing. ``onnx`` as for :func:`generate_checks`
    (by default a layer's ONNX export is certified when ONNX Runtime is installed).
    A block is certified like a layer; the types its layers name come from ``registry``
    (default: every installed plugin; ``lamina.load_registry(plugins=[...])`` adds
    local ones).
    """
    import pytest  # only here: importing lamina must not need or touch pytest

    params = []
    for plugin in plugins:
        cases, reasons = _planned(plugin, expected_failed_checks, onnx, registry=registry)
        for cls, example, func in cases:
            reason = _reason_for(reasons, example, func)
            marks = [pytest.mark.xfail(strict=True, reason=reason, raises=ConformanceError)
                     ] if reason else []
            if func is check_onnx_export and not exportable(cls):
                marks = [pytest.mark.skip(reason=not_exportable_reason(cls))]
            params.append(pytest.param(cls, BoundCheck(func, example), marks=marks,
                                       id=f"{plugin_name(cls)}-{example.id}-{func.__name__}"))
    return pytest.mark.parametrize(("plugin", "check"), params)
