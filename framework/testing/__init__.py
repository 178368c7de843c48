"""lamina's conformance suite: certify any layer, loss, optimizer or block plugin, built-in
or third-party (a block as the layer lamina makes of it, :mod:`lamina.testing.blocks`).

Three ways to run the same checks:

- :func:`check_layer` / :func:`check_loss` / :func:`check_optimizer` return a list of
  :class:`CheckResult` and need no pytest;
- :func:`parametrize_with_checks` gives a pytest test per (plugin, example, check);
- ``lamina check [NAME ...]`` prints a table for every discovered plugin
  (:func:`lamina.testing.report.run_report`).

Every check is a plain function ``check_x(plugin_class, example)`` that raises
:class:`ConformanceError` on failure; docs/conformance.md explains each one and
docs/writing-a-plugin.md the part of lamina each protects. Importing this package
imports neither pytest nor any plugin.
"""

from .base import CheckResult, ConformanceError
from .blocks import block_layer, check_block_expansion
from .certificate import parametrize_with_checks
from .checks_config import (
    check_config_forbids_unknown_keys,
    check_config_json_roundtrip,
    check_config_rejects_invalid_values,
    check_config_strings_constrained,
)
from .checks_export import check_onnx_export
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
from .checks_loss import (
    check_loss_backward_before_forward,
    check_loss_finite_at_large_logits,
    check_loss_float32_matches_float64,
    check_loss_gradient,
    check_loss_gradient_shape,
    check_loss_instances_independent,
    check_loss_predict_proba,
    check_loss_rejects_undeclared_targets,
    check_loss_row_invariance,
    check_loss_scalar,
    check_loss_shard_decomposition,
    check_loss_soft_targets,
    check_loss_target_forms,
    check_loss_unfused_reference,
)
from .checks_optimizer import (
    check_optimizer_dtype_preserved,
    check_optimizer_in_place,
    check_optimizer_lr_set_at_run_time,
    check_optimizer_lr_settable,
    check_optimizer_reduces_loss,
    check_optimizer_rejects_bad_state,
    check_optimizer_settings_matter,
    check_optimizer_state_roundtrip,
)
from .checks_reference import (
    check_loss_reference_values,
    check_optimizer_reference_values,
    check_reference_values,
)
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
)
from .checks_usage import (
    check_continuation,
    check_eval_changes_nothing,
    check_input_ranks,
    check_large_inputs,
    check_memory_layouts,
    check_threads,
)
from .runner import (
    check_declarations,
    check_examples,
    check_layer,
    check_loss,
    check_optimizer,
    generate_checks,
    run_checks,
)

__all__ = [
    "CheckResult",
    "ConformanceError",
    "check_arrays_stay_live",
    "check_backward_before_forward",
    "block_layer",
    "check_backward_twice",
    "check_block_expansion",
    "check_backward_without_input_grad",
    "check_batch_independence",
    "check_config_forbids_unknown_keys",
    "check_config_json_roundtrip",
    "check_config_rejects_invalid_values",
    "check_config_strings_constrained",
    "check_continuation",
    "check_declarations",
    "check_draws_from_build_generator",
    "check_dtype_preserved",
    "check_eval_changes_nothing",
    "check_eval_deterministic",
    "check_examples",
    "check_float32_matches_float64",
    "check_gradient",
    "check_input_not_mutated",
    "check_input_ranks",
    "check_instances_independent",
    "check_large_inputs",
    "check_layer",
    "check_loss",
    "check_loss_backward_before_forward",
    "check_loss_finite_at_large_logits",
    "check_loss_float32_matches_float64",
    "check_loss_gradient",
    "check_loss_gradient_shape",
    "check_loss_instances_independent",
    "check_loss_predict_proba",
    "check_loss_reference_values",
    "check_loss_rejects_undeclared_targets",
    "check_loss_row_invariance",
    "check_loss_scalar",
    "check_loss_shard_decomposition",
    "check_loss_soft_targets",
    "check_loss_target_forms",
    "check_loss_unfused_reference",
    "check_fuses_max_pool",
    "check_max_selecting",
    "check_memory_layouts",
    "check_monotone_elementwise",
    "check_onnx_export",
    "check_optimizer",
    "check_optimizer_dtype_preserved",
    "check_optimizer_in_place",
    "check_optimizer_lr_set_at_run_time",
    "check_optimizer_lr_settable",
    "check_optimizer_reduces_loss",
    "check_optimizer_reference_values",
    "check_optimizer_rejects_bad_state",
    "check_optimizer_settings_matter",
    "check_optimizer_state_roundtrip",
    "check_optimizer_step",
    "check_output_shape",
    "check_params_grads_match",
    "check_reference_values",
    "check_state_roundtrip",
    "check_threads",
    "check_training_deterministic",
    "check_training_flag",
    "check_uses_current_params",
    "generate_checks",
    "parametrize_with_checks",
    "run_checks",
]
