"""The generator of checks and the library entry points built on it.

:func:`generate_checks` is the one place that decides which checks run on which
example of a plugin; :func:`check_layer`, :func:`check_loss` and
:func:`check_optimizer` run them and return results; :mod:`lamina.testing.certificate`
turns them into pytest parameters (``parametrize_with_checks``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lamina.block import Block
from lamina.layer import FUSED_POOL_WINDOWS, TRAIT_NAMES, Example, Layer
from lamina.loss import Loss, LossExample
from lamina.optimizer import Optimizer, OptimizerExample

from .base import CheckResult, ConformanceError, NotApplicable, check, fail, plugin_name
from .blocks import block_layer, check_block_expansion, expands, is_block_layer
from .checks_config import (
    check_config_forbids_unknown_keys,
    check_config_json_roundtrip,
    check_config_rejects_invalid_values,
    check_config_strings_constrained,
)
from .checks_export import (
    check_onnx_export,
    exportable,
    onnx_runtime_available,
)
from .checks_layer import (
    check_backward_before_forward,
    check_backward_twice,
    check_batch_independence,
    check_dtype_preserved,
    check_eval_deterministic,
    check_gradient,
    check_input_not_mutated,
    check_instances_independent,
    check_optimizer_step,
    check_output_shape,
    check_params_grads_match,
    check_state_roundtrip,
    check_training_flag,
)
from .checks_loss import loss_checks
from .checks_optimizer import optimizer_checks
from .checks_reference import check_reference_values
from .checks_training import (
    check_arrays_stay_live,
    check_backward_without_input_grad,
    check_draws_from_build_generator,
    check_float32_matches_float64,
    check_training_deterministic,
    check_uses_current_params,
)
from .checks_traits import (
    check_fuses_max_pool,
    check_max_selecting,
    check_monotone_elementwise,
    pools_to_fuse,
)
from .checks_usage import USAGE_CHECKS, applies
from .harness import flag

#: the example id of checks that look at the plugin as a whole
WHOLE_PLUGIN = "all"
_CONFIG_CHECKS = [
    check_config_forbids_unknown_keys,
    check_config_rejects_invalid_values,
    check_config_strings_constrained,
    check_config_json_roundtrip,
]
#: what a config's own block leaves to its layers: its settings are typed, and every value
#: is passed on to a layer whose Config bounds and constrains it
_BOUNDS_CHECKS = (check_config_rejects_invalid_values, check_config_strings_constrained)
#: each kind of plugin: its base class, the example type its examples() returns, and the
#: methods that identify a class implementing the protocol without the base class
KINDS = {
    "layer": (Layer, Example, "build"),
    "loss": (Loss, LossExample, "predict_proba"),
    "optimizer": (Optimizer, OptimizerExample, "load_state_dict"),
    "block": (Block, Example, "layers"),
}

ExpectedFailures = Mapping[Any, Mapping[str, str]]


def plugin_class(plugin: Any) -> type:
    return plugin if isinstance(plugin, type) else type(plugin)


def plugin_kind(plugin: Any) -> str:
    """``"layer"``, ``"loss"``, ``"optimizer"`` or ``"block"``: by base class, else by
    protocol method."""
    cls = plugin_class(plugin)
    for kind, (base, _, _) in KINDS.items():
        if issubclass(cls, base):
            return kind
    for kind, (_, _, method) in KINDS.items():
        if callable(getattr(cls, method, None)):
            return kind
    raise TypeError(f"{plugin_name(cls)} is neither a layer, a loss, an optimizer nor a block")


def is_loss(plugin: Any) -> bool:
    return plugin_kind(plugin) == "loss"


def layer_checks(plugin: type, example: Any) -> list:
    """The checks that apply to ``example`` of a layer ``plugin``, in the order they run."""
    stochastic = flag(plugin, example, "stochastic")
    checks = [
        check_output_shape, check_params_grads_match, check_dtype_preserved,
        check_input_not_mutated, check_gradient, check_float32_matches_float64,
    ]
    if not flag(plugin, example, "batch_dependent"):
        checks.append(check_batch_independence)
    checks.append(check_eval_deterministic)
    checks += [check_training_flag, check_draws_from_build_generator] if stochastic else [
        check_training_deterministic]
    checks += [check_backward_before_forward, check_backward_twice,
               check_backward_without_input_grad, check_state_roundtrip,
               check_uses_current_params, check_arrays_stay_live,
               check_instances_independent, check_optimizer_step,
               *(func for func in USAGE_CHECKS if applies(func, plugin, example))]
    if flag(plugin, example, "monotone_elementwise"):
        checks.append(check_monotone_elementwise)
    if flag(plugin, example, "max_selecting"):
        checks.append(check_max_selecting)
    # the class's declaration, as the runner reads it (an example cannot switch it off)
    if plugin.traits.fuses_max_pool and pools_to_fuse(plugin, example):
        checks.append(check_fuses_max_pool)
    if example.reference is not None:
        checks.append(check_reference_values)
    return checks


_KIND_CHECKS = {"layer": layer_checks, "loss": loss_checks, "optimizer": optimizer_checks}


def _whole(kind: str) -> Any:
    if kind == "loss":
        return LossExample(config={}, n_classes=0, id=WHOLE_PLUGIN)
    if kind == "optimizer":
        return OptimizerExample(config={}, id=WHOLE_PLUGIN)
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
def check_declarations(plugin: type, example: Any) -> None:
    """The plugin's declarations are where lamina reads them (``traits``), well formed,
    and its methods take what the runner passes (``backward(dy, input_grad=...)``)."""
    from lamina.errors import PluginError
    from lamina.plugin_classes import validate_declarations

    kind = plugin_kind(plugin)
    try:
        validate_declarations(kind, plugin, f"{kind} {plugin_name(plugin)!r}")
    except PluginError as exc:
        raise ConformanceError(f"expected the declarations of the lamina contract; received "
                               f"{exc}") from None


@check
def check_examples(plugin: type, example: Any) -> None:
    kind = plugin_kind(plugin)
    want = KINDS[kind][1]
    examples = examples_of(plugin)
    if not examples:
        fail(f"examples() to list at least one lamina.{want.__name__}", "an empty list")
    wrong = [type(ex).__name__ for ex in examples if not isinstance(ex, want)]
    if wrong:
        fail(f"examples() of a {kind} to return lamina.{want.__name__} objects",
             ", ".join(wrong))
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        fail("examples() to have distinct ids (they name the pytest tests)", str(ids))
    traits = getattr(plugin, "traits", None)
    if kind == "layer" and getattr(traits, "fuses_max_pool", False) is True and not any(
            _fuses_some_pool(plugin, ex) for ex in examples):
        fail("an example in which a layer declaring fuses_max_pool accepts one of the pools "
             f"the runner fuses ({', '.join(map(str, FUSED_POOL_WINDOWS))}) and whose "
             "output it fits", "none", "Add such an example: without one "
             "check_fuses_max_pool never runs, and the runner would fuse unchecked code")
    if kind in ("layer", "block"):
        unknown = sorted({key for ex in examples for key in ex.extra} - set(TRAIT_NAMES))
        if unknown:
            fail("Example.extra to override declarations by their names "
                 f"({', '.join(TRAIT_NAMES)})", f"the keys {unknown}",
                 "Fix the spelling: an unknown key overrides nothing")


def _fuses_some_pool(plugin: type, example: Any) -> bool:
    try:
        return bool(pools_to_fuse(plugin, example))
    except Exception:  # a broken example: check_examples' other lines or the layer checks say
        return False


#: the checks ``quick=True`` leaves out: the two slowest (threads running many rounds,
#: every input rank's gradient check); an author's edit-test loop may skip them, CI
#: and a certificate run them all
QUICK_SKIPS = ("check_threads", "check_input_ranks")


def generate_checks(plugin: Any, *, onnx: bool | None = None, quick: bool = False,
                    registry: Any = None) -> Iterator[tuple[type, Any, Any]]:
    """Yield (plugin class, example, check) for every check that applies to ``plugin``.

    ``onnx`` adds check_onnx_export for a layer (reported "not exportable" for one
    without ``export_onnx``): True always, False never, None (the default) when ONNX
    Runtime is installed. ``quick`` leaves out the checks in :data:`QUICK_SKIPS`.
    A block is checked as the layer lamina makes of it (:mod:`lamina.testing.blocks`),
    whose layers' types ``registry`` provides (default: every installed plugin)."""
    cls = plugin_class(plugin)
    kind = plugin_kind(cls)
    # With the ONNX check on, a layer without export_onnx gets it too, reported as not
    # exportable (NotApplicable): a visible line rather than a silent absence.
    exports = kind in ("layer", "block") and (
        onnx if onnx is not None else onnx_runtime_available())
    whole = _whole(kind)
    yield cls, whole, check_declarations
    yield cls, whole, check_examples
    try:  # declarations or examples that do not hold leave nothing sound to run on
        check_declarations(cls, whole)
        check_examples(cls, whole)
        examples = examples_of(plugin)
    except ConformanceError:  # check_declarations and check_examples report it
        return
    if kind == "block":  # checked as the layer lamina makes of it
        cls, kind = block_layer(cls, registry), "layer"
        examples = examples_of(cls)
    if exports and not exportable(cls):
        yield cls, whole, check_onnx_export  # once: "not exportable"
    for example in examples:
        if not isinstance(example, KINDS[kind][1]):
            continue
        if is_block_layer(cls):
            yield cls, example, check_block_expansion
            if not expands(cls, example):
                continue  # its tables do not make a network: nothing else can run
        for func in _CONFIG_CHECKS:
            if func in _BOUNDS_CHECKS and getattr(getattr(cls, "block_class", None),
                                                  "settings_bounded_by_layers", False):
                continue  # a config's block: each value reaches a layer that bounds it
            yield cls, example, func
        for func in _KIND_CHECKS[kind](cls, example):
            if not (quick and func.__name__ in QUICK_SKIPS):
                yield cls, example, func
        if exports and exportable(cls):
            yield cls, example, check_onnx_export


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


def _planned(plugin: Any, expected_failed_checks: ExpectedFailures | None,
             onnx: bool | None = None, quick: bool = False, registry: Any = None):
    """The checks that apply to ``plugin`` and its declared failures; a declaration that
    names no check that runs is an error (a typo must not silently hide a failure)."""
    cases = list(generate_checks(plugin, onnx=onnx, quick=quick, registry=registry))
    reasons = _reasons(plugin, expected_failed_checks)
    unknown = _declared_but_unknown(reasons, cases)
    if unknown:
        raise ValueError(f"expected_failed_checks names checks that do not run on "
                         f"{plugin_name(plugin)}: {', '.join(unknown)}")
    return cases, reasons


def run_checks(plugin: Any, *, expected_failed_checks: ExpectedFailures | None = None,
               onnx: bool | None = None, quick: bool = False, plugins: Iterable[Any] = (),
               registry: Any = None) -> list[CheckResult]:
    """Run every check that applies to ``plugin`` (a layer, loss, optimizer or block);
    ``onnx``, ``quick`` and ``registry`` as for :func:`generate_checks`; ``plugins`` are
    local plugins a block's layers need (``registry`` is then made with them)."""
    registry = _registry(registry, plugins)
    cases, reasons = _planned(plugin, expected_failed_checks, onnx, quick, registry)
    results = []
    for cls, example, func in cases:
        skipped = None
        try:
            func(cls, example)
            passed, message = True, ""
        except ConformanceError as exc:
            passed, message = False, str(exc)
        except NotApplicable as exc:
            passed, message, skipped = True, str(exc), exc.label
        results.append(CheckResult(plugin_name(cls), example.id, func.__name__, passed,
                                   message, _reason_for(reasons, example, func), skipped))
    return results


def _registry(registry: Any, plugins: Iterable[Any]) -> Any:
    if registry is not None or not plugins:
        return registry
    from lamina.registry import load_registry

    return load_registry(plugins=plugins)


def _check_kind(plugin: Any, kinds: tuple[str, ...],
                expected_failed_checks: Mapping[str, str] | None, plugins: Iterable[Any] = ()
                ) -> list[CheckResult]:
    found = plugin_kind(plugin)
    if found not in kinds:
        use = "layer" if found == "block" else found
        raise TypeError(f"{plugin_name(plugin)} is a {found}; use check_{use}()")
    return run_checks(plugin, expected_failed_checks={plugin: expected_failed_checks or {}},
                      plugins=plugins)


def check_layer(layer: Any, *, expected_failed_checks: Mapping[str, str] | None = None,
                plugins: Iterable[Any] = ()) -> list[CheckResult]:
    """Run the layer checks on a layer class (or instance), or on a block class as the
    layer lamina makes of it; returns one result per check.

    ``expected_failed_checks`` maps a check name (``"check_gradient"``) or an
    example-qualified one (``"stride2-check_gradient"``) to the reason it fails.
    ``plugins`` are local plugins a block's layers name (``check_layer(MyBlock,
    plugins=[MyLayer])``); installed ones are found without it.
    """
    return _check_kind(layer, ("layer", "block"), expected_failed_checks, plugins)


def check_loss(loss: Any, *, expected_failed_checks: Mapping[str, str] | None = None,
               ) -> list[CheckResult]:
    """Run the loss checks on a loss class (or instance); returns one result per check."""
    return _check_kind(loss, ("loss",), expected_failed_checks)


def check_optimizer(optimizer: Any, *, expected_failed_checks: Mapping[str, str] | None = None,
                    ) -> list[CheckResult]:
    """Run the optimizer checks on an optimizer class; returns one result per check."""
    return _check_kind(optimizer, ("optimizer",), expected_failed_checks)
