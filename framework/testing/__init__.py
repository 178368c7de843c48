"""lamina's conformance suite: certify any layer or loss plugin, built-in or third-party.

Three ways to run the same checks:

- :func:`check_layer` / :func:`check_loss` return a list of :class:`CheckResult`
  and need no pytest;
- :func:`parametrize_with_checks` gives a pytest test per (plugin, example, check);
- ``lamina check [NAME ...]`` prints a table for every discovered plugin
  (:func:`lamina.testing.report.run_report`).

Every check is a plain function ``check_x(plugin_class, example)`` that raises
:class:`ConformanceError` on failure; docs/conformance.md explains each one.
Importing this package imports neither pytest nor any plugin.
"""

from .base import CheckResult, ConformanceError
from .checks_config import (
    check_config_forbids_unknown_keys,
    check_config_json_roundtrip,
    check_config_rejects_invalid_values,
)
from .checks_layer import (
    check_backward_before_forward,
    check_backward_twice,
    check_batch_independence,
    check_dtype_preserved,
    check_eval_deterministic,
    check_gradient,
    check_input_not_mutated,
    check_optimizer_step,
    check_output_shape,
    check_params_grads_match,
    check_state_roundtrip,
    check_training_flag,
)
from .checks_loss import (
    check_loss_backward_before_forward,
    check_loss_finite_at_large_logits,
    check_loss_gradient,
    check_loss_gradient_shape,
    check_loss_predict_proba,
    check_loss_row_invariance,
    check_loss_scalar,
    check_loss_target_forms,
    check_loss_unfused_reference,
)
from .runner import (
    check_examples,
    check_layer,
    check_loss,
    generate_checks,
    parametrize_with_checks,
    run_checks,
)

__all__ = [
    "CheckResult",
    "ConformanceError",
    "check_backward_before_forward",
    "check_backward_twice",
    "check_batch_independence",
    "check_config_forbids_unknown_keys",
    "check_config_json_roundtrip",
    "check_config_rejects_invalid_values",
    "check_dtype_preserved",
    "check_eval_deterministic",
    "check_examples",
    "check_gradient",
    "check_input_not_mutated",
    "check_layer",
    "check_loss",
    "check_loss_backward_before_forward",
    "check_loss_finite_at_large_logits",
    "check_loss_gradient",
    "check_loss_gradient_shape",
    "check_loss_predict_proba",
    "check_loss_row_invariance",
    "check_loss_scalar",
    "check_loss_target_forms",
    "check_loss_unfused_reference",
    "check_optimizer_step",
    "check_output_shape",
    "check_params_grads_match",
    "check_state_roundtrip",
    "check_training_flag",
    "generate_checks",
    "parametrize_with_checks",
    "run_checks",
]
