"""The generator of checks and the two library entry points built on it.

:func:`generate_checks` is the one place that decides which checks run on which
example of a plugin; :func:`check_layer` / :func:`check_loss` run them and return
results, :func:`parametrize_with_checks` turns them into pytest parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lamina.layer import Example
from lamina.loss import LossExample

from .base import CheckResult, ConformanceError, check, fail, plugin_name
from .checks_config import (
    check_config_forbids_unknown_keys,
    check_config_json_roundtrip,
    check_config_rejects_invalid_values,
)
from .checks_layer import layer_checks
from .checks_loss import loss_checks

#: the example id of checks that look at the plugin as a whole
WHOLE_PLUGIN = "all"
_CONFIG_CHECKS = [
    check_config_forbids_unknown_keys,
    check_config_rejects_invalid_values,
    check_config_json_roundtrip,
]

ExpectedFailures = Mapping[Any, Mapping[str, str]]


def plugin_class(plugin: Any) -> type:
    return plugin if isinstance(plugin, type) else type(plugin)


def is_loss(plugin: Any) -> bool:
    cls = plugin_class(plugin)
    return callable(getattr(cls, "predict_proba", None)) and not callable(
        getattr(cls, "build", None))


def _whole(example_type: type) -> Any:
    if example_type is LossExample:
        return LossExample(config={}, n_classes=0, id=WHOLE_PLUGIN)
    return Example(config={}, input_shape=(), id=WHOLE_PLUGIN)


def examples_of(plugin: Any) -> list[Any]:
    """The plugin's examples with every id filled in (``ex0``, ``ex1``... when blank).

    For an instance rather than a class, its own config replaces each example's
    config, and a built layer's input shape replaces the examples' shapes.
    """
    cls = plugin_class(plugin)
    examples = list(cls.examples())
    if not isinstance(plugin, type):
        config = plugin.config.model_dump(mode="json")
        shape = getattr(plugin, "input_shape", None)
        if shape is not None and examples:  # a built layer: its own shape
            examples = [dataclasses.replace(examples[0], config=config, input_shape=shape,
                                            id="instance")]
        else:
            examples = [dataclasses.replace(ex, config=config, id=f"instance-{ex.id or i}")
                        for i, ex in enumerate(examples)]
    return [ex if ex.id else dataclasses.replace(ex, id=f"ex{i}")
            for i, ex in enumerate(examples)]


@check
def check_examples(plugin: type, example: Any) -> None:
    kind, want = ("loss", LossExample) if is_loss(plugin) else ("layer", Example)
    examples = examples_of(plugin)
    if not examples:
        fail(f"examples() to list at least one framework.{want.__name__}", "an empty list")
    wrong = [type(ex).__name__ for ex in examples if not isinstance(ex, want)]
    if wrong:
        fail(f"examples() of a {kind} to return framework.{want.__name__} objects",
             ", ".join(wrong))
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        fail("examples() to have distinct ids (they name the pytest tests)", str(ids))


def generate_checks(plugin: Any) -> Iterator[tuple[type, Any, Any]]:
    """Yield (plugin class, example, check) for every check that applies to ``plugin``."""
    cls = plugin_class(plugin)
    loss = is_loss(cls)
    yield cls, _whole(LossExample if loss else Example), check_examples
    try:
        examples = examples_of(plugin)
    except Exception:  # check_examples reports it
        return
    for example in examples:
        if not isinstance(example, LossExample if loss else Example):
            continue
        for func in _CONFIG_CHECKS:
            yield cls, example, func
        for func in (loss_checks if loss else layer_checks)(cls, example):
            yield cls, example, func


def _reasons(plugin: Any, expected: ExpectedFailures | None) -> dict[str, str]:
    if not expected:
        return {}
    cls = plugin_class(plugin)
    found: dict[str, str] = {}
    for key in (cls, plugin_name(cls), plugin):
        try:
            found.update(expected.get(key, {}))
        except TypeError:  # an unhashable instance
            continue
    return found


def _reason_for(reasons: dict[str, str], example: Any, func: Any) -> str | None:
    return reasons.get(f"{example.id}-{func.__name__}", reasons.get(func.__name__))


def _declared_but_unknown(reasons: dict[str, str], cases: list[tuple[type, Any, Any]]) -> list:
    known = {f.__name__ for _, _, f in cases} | {f"{e.id}-{f.__name__}" for _, e, f in cases}
    return sorted(set(reasons) - known)


def _planned(plugin: Any, expected_failed_checks: ExpectedFailures | None):
    """The checks that apply to ``plugin`` and its declared failures; a declaration that
    names no check that runs is an error (a typo must not silently hide a failure)."""
    cases = list(generate_checks(plugin))
    reasons = _reasons(plugin, expected_failed_checks)
    unknown = _declared_but_unknown(reasons, cases)
    if unknown:
        raise ValueError(f"expected_failed_checks names checks that do not run on "
                         f"{plugin_name(plugin)}: {', '.join(unknown)}")
    return cases, reasons


def run_checks(plugin: Any, *, expected_failed_checks: ExpectedFailures | None = None,
               ) -> list[CheckResult]:
    """Run every check that applies to ``plugin`` (a layer or loss class or instance)."""
    cases, reasons = _planned(plugin, expected_failed_checks)
    results = []
    for cls, example, func in cases:
        try:
            func(cls, example)
            passed, message = True, ""
        except ConformanceError as exc:
            passed, message = False, str(exc)
        results.append(CheckResult(plugin_name(cls), example.id, func.__name__, passed,
                                   message, _reason_for(reasons, example, func)))
    return results


def check_layer(layer: Any, *, expected_failed_checks: Mapping[str, str] | None = None,
                ) -> list[CheckResult]:
    """Run the layer checks on a layer class (or instance); returns one result per check.

    ``expected_failed_checks`` maps a check name (``"check_gradient"``) or an
    example-qualified one (``"stride2-check_gradient"``) to the reason it fails.
    """
    if is_loss(layer):
        raise TypeError(f"{plugin_name(layer)} is a loss; use check_loss()")
    return run_checks(layer, expected_failed_checks={layer: expected_failed_checks or {}})


def check_loss(loss: Any, *, expected_failed_checks: Mapping[str, str] | None = None,
               ) -> list[CheckResult]:
    """Run the loss checks on a loss class (or instance); returns one result per check."""
    if not is_loss(loss):
        raise TypeError(f"{plugin_name(loss)} is not a loss; use check_layer()")
    return run_checks(loss, expected_failed_checks={loss: expected_failed_checks or {}})


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
                            expected_failed_checks: ExpectedFailures | None = None):
    """A ``pytest.mark.parametrize`` over (plugin, check), one test per check::

        @parametrize_with_checks([Swish])
        def test_conformance(plugin, check):
            check(plugin)

    Test ids read ``swish-<example id>-check_gradient``, so ``-k`` selects them.
    ``expected_failed_checks`` maps a plugin (class or name) to ``{check: reason}``;
    those tests are strict xfails carrying the reason: reported, never skipped, and
    an error once the check starts passing.
    """
    import pytest  # only here: importing lamina must not need or touch pytest

    params = []
    for plugin in plugins:
        cases, reasons = _planned(plugin, expected_failed_checks)
        for cls, example, func in cases:
            reason = _reason_for(reasons, example, func)
            marks = [pytest.mark.xfail(strict=True, reason=reason, raises=ConformanceError)
                     ] if reason else []
            params.append(pytest.param(cls, BoundCheck(func, example), marks=marks,
                                       id=f"{plugin_name(cls)}-{example.id}-{func.__name__}"))
    return pytest.mark.parametrize(("plugin", "check"), params)
