"""The conformance checks themselves: each broken plugin fails exactly its check."""

from __future__ import annotations

import broken
import numpy as np
import pytest

import lamina.testing as testing
from lamina.registry import load_registry
from lamina.testing import (
    ConformanceError,
    check_gradient,
    check_layer,
    check_loss,
    run_checks,
)
from lamina.testing.runner import examples_of, generate_checks

# A bug that cannot help breaking two contracts lists both, with the reason here:
# - dropout_in_eval: eval outputs that depend on the generator also differ between
#   the batch and the sample alone, and between two builds with copied parameters;
# - stale_weight_copy: a copy of W taken at build time ignores values loaded before the
#   first forward (state round-trip) and values stepped or loaded after it;
# - undeclared_noise: randomness differs between any two builds, which every check
#   comparing two builds in training mode sees; check_training_deterministic names it;
# - loss_gradient_not_averaged: the unfused reference compares the same gradient, and
#   shards' gradients combined by their sizes come out N times too large;
# - loss_soft_targets_as_argmax: the unfused reference computes with the soft labels.
# - dropout_in_eval, eval_updates_state: an eval output that moves also moves when other
#   inputs ran in between (check_eval_changes_nothing);
# - dropout_own_generator, undeclared_noise: randomness the sharded step cannot reseed
#   differs between a run and its continuation after a load;
# - accumulating_grads, caches_weights_at_first_forward: what one call leaves behind
#   (summed gradients, a stale copy of W) spoils the next call on another batch, and a
#   continued run;
# - optimizer_keeps_config_lr: a learning rate set at run time that changes nothing cannot
#   change it as a configured one does;
# - batch_size_captured_once: a run's batches change size, a continued run's too;
# - low_precision_gradient: float16 disagrees with float64 at every scale, the large one too;
# - class_level_cache: a cache on the class is shared by instances used in turn and by
#   instances running at once in threads.
BROKEN = {
    broken.WrongGradientSign: {"check_gradient"},
    broken.MissingGradKey: {"check_params_grads_match"},
    broken.DottedParamKey: {"check_params_grads_match"},
    broken.InputMutated: {"check_input_not_mutated"},
    broken.OutputShapeLies: {"check_output_shape"},
    broken.ConfigAcceptsExtraKeys: {"check_config_forbids_unknown_keys"},
    broken.ConfigWithoutBounds: {"check_config_rejects_invalid_values"},
    broken.ConfigBoundNotEnforced: {"check_config_rejects_invalid_values"},
    broken.StringSettingFallsBack: {"check_config_strings_constrained"},
    broken.UndeclaredBatchCoupling: {"check_batch_independence"},
    broken.DropoutIgnoresTraining: {"check_training_flag"},
    broken.DropoutInEval: {"check_eval_deterministic", "check_batch_independence",
                           "check_state_roundtrip", "check_uses_current_params",
                           "check_eval_changes_nothing"},
    broken.DropoutOwnGenerator: {"check_draws_from_build_generator", "check_continuation"},
    broken.UndeclaredNoise: {"check_training_deterministic", "check_state_roundtrip",
                             "check_uses_current_params", "check_continuation"},
    broken.EvalUpdatesState: {"check_eval_deterministic", "check_eval_changes_nothing"},
    broken.EvalCentresWithTheBatch: {"check_eval_changes_nothing"},
    broken.BatchSizeCapturedOnce: {"check_gradient", "check_continuation"},
    broken.FirstBatchInitialises: {"check_continuation"},
    broken.ChannelScaleImageBranchBug: {"check_input_ranks"},
    broken.WritesThroughRavel: {"check_memory_layouts"},
    broken.NaiveSoftplus: {"check_large_inputs"},
    broken.ModuleScratchBuffer: {"check_threads"},
    broken.BackwardAttributeError: {"check_backward_before_forward"},
    broken.AccumulatingGrads: {"check_backward_twice", "check_gradient", "check_continuation"},
    broken.RebindsGrads: {"check_arrays_stay_live"},
    broken.SkipsGradsWithoutInputGrad: {"check_backward_without_input_grad"},
    broken.LowPrecisionGradient: {"check_float32_matches_float64", "check_large_inputs"},
    broken.DtypeUpcast: {"check_dtype_preserved"},
    broken.StaleWeightCopy: {"check_state_roundtrip", "check_uses_current_params"},
    broken.CachesWeightsAtFirstForward: {"check_uses_current_params", "check_gradient",
                                         "check_continuation"},
    broken.DeadParameter: {"check_optimizer_step"},
    broken.ClassLevelCache: {"check_instances_independent", "check_threads"},
    broken.SwishDeclaredMonotone: {"check_monotone_elementwise"},
    broken.AvgPoolDeclaredMaxSelecting: {"check_max_selecting"},
    broken.FusedPoolLastMaximum: {"check_fuses_max_pool"},
    broken.FusedPoolWrongInEval: {"check_fuses_max_pool"},
    broken.FusedPoolStaleWeights: {"check_fuses_max_pool"},
    broken.FusedPoolReusedBuffer: {"check_fuses_max_pool"},
    broken.FusedPoolAssumesCOrder: {"check_fuses_max_pool"},
    broken.FusedPoolWithoutExample: {"check_examples"},
    broken.MaxPoolSaysAnotherStride: {"check_max_selecting"},
    broken.ExportForgetsTheBias: {"check_onnx_export"},
    broken.ExportFreezesWeightsAtBuild: {"check_onnx_export"},
    broken.ExportHandlesOneRank: {"check_onnx_export"},
    broken.ExportCachesItsConstants: {"check_onnx_export"},
    broken.ScaleStartsAtOnes: {"check_gradient"},
    broken.BatchSizeKeptConsistently: {"check_continuation"},
    broken.EvalCachesWeights: {"check_uses_current_params"},
    broken.LossKeepsTheFirstN: {"check_loss_shard_decomposition"},
    broken.OptimizerQuietDecayReadsConfigLr: {"check_optimizer_lr_set_at_run_time"},
    broken.OptimizerIgnoresClipNorm: {"check_optimizer_settings_matter"},
    broken.ExportNamesItsConstantsAlike: {"check_onnx_export"},
    broken.FlagOnTheClass: {"check_declarations"},
    broken.ExampleOverrideTypo: {"check_examples"},
    broken.LossOverflows: {"check_loss_finite_at_large_logits"},
    broken.LossReturnsArray: {"check_loss_scalar"},
    broken.LossGradientNotAveraged: {"check_loss_gradient", "check_loss_unfused_reference",
                                     "check_loss_shard_decomposition"},
    broken.LossBackwardWithoutForward: {"check_loss_backward_before_forward"},
    broken.LossIndexTargetsOffByOne: {"check_loss_target_forms"},
    broken.LossSoftTargetsAsArgmax: {"check_loss_soft_targets", "check_loss_unfused_reference"},
    broken.LossIgnoresDeclaredTargets: {"check_loss_rejects_undeclared_targets"},
    broken.LossInHalfPrecision: {"check_loss_float32_matches_float64"},
    broken.LossClassLevelCache: {"check_loss_instances_independent"},
    broken.LossWeightedByTheBatch: {"check_loss_shard_decomposition"},
    broken.LossSqueezesTheBatch: {"check_loss_shard_decomposition"},
    broken.SquaredErrorPerSample: {"check_loss_gradient"},
    broken.SquaredErrorTakesIndices: {"check_loss_rejects_undeclared_targets"},
    broken.SigmoidCrossEntropyNaive: {"check_loss_finite_at_large_logits"},
    broken.SigmoidCrossEntropyPredictsLogits: {"check_loss_predict_proba"},
    broken.OptimizerAscends: {"check_optimizer_reduces_loss"},
    broken.OptimizerRebindsParams: {"check_optimizer_in_place"},
    broken.OptimizerFloat64State: {"check_optimizer_dtype_preserved"},
    broken.OptimizerKeepsConfigLr: {"check_optimizer_lr_settable",
                                    "check_optimizer_lr_set_at_run_time"},
    broken.OptimizerDecayReadsConfigLr: {"check_optimizer_lr_set_at_run_time"},
    broken.OptimizerExemptionNeverMatches: {"check_optimizer_settings_matter"},
    broken.OptimizerInertTypo: {"check_declarations"},
    broken.OptimizerMomentumTheOtherWay: {"check_optimizer_reference_values"},
    broken.LossWithATemperature: {"check_loss_reference_values"},
    broken.DenseSubtractsBias: {"check_reference_values"},
    broken.OptimizerHidesState: {"check_optimizer_state_roundtrip"},
    broken.OptimizerTakesAnyState: {"check_optimizer_rejects_bad_state"},
    broken.BlockSharesItsTables: {"check_block_expansion"},
}


@pytest.mark.parametrize("plugin", broken.REFERENCE, ids=lambda c: c.name)
def test_reference_plugins_pass_every_check(plugin):
    results = run_checks(plugin)
    assert [r.message for r in results if not r.passed] == []
    assert len({r.check for r in results}) >= 9


@pytest.mark.parametrize("plugin", list(BROKEN), ids=lambda c: c.name)
def test_broken_plugin_fails_exactly_its_check(plugin):
    results = run_checks(plugin)
    failed = {r.check for r in results if not r.passed}
    assert failed == BROKEN[plugin]
    for result in results:
        if not result.passed:
            # Recognisable: who, which example, which check, expected versus received.
            assert result.message.startswith(f"{plugin.name} [example '{result.example}'] "
                                             f"{result.check}: ")
            assert "expected" in result.message and "received" in result.message


def test_every_check_is_exercised_by_a_broken_plugin():
    caught = set().union(*BROKEN.values())
    ran = {r.check for plugin in broken.REFERENCE for r in run_checks(plugin)}
    ran |= {r.check for r in run_checks(lamina_builtin("relu"))}  # monotone_elementwise
    ran |= {r.check for r in run_checks(lamina_builtin("maxpool2d"))}  # max_selecting
    assert ran - caught == {"check_config_json_roundtrip", "check_loss_gradient_shape",
                            "check_loss_row_invariance"}
    every = {name for name in dir(testing) if name.startswith("check_")} - {
        "check_layer", "check_loss", "check_optimizer"}
    assert every <= ran, f"checks no plugin here runs: {sorted(every - ran)}"


def lamina_builtin(name: str) -> type:
    return load_registry(load_entry_points=False).layer(name)


def test_gradient_failure_names_the_worst_element():
    example = examples_of(broken.WrongGradientSign)[0]
    with pytest.raises(ConformanceError) as info:
        check_gradient(broken.WrongGradientSign, example)
    message = str(info.value)
    assert "worst element dx[" in message
    assert "relative error 1 " in message  # a flipped sign is off by 100 %
    assert "dW" not in message  # the parameter gradients are right


def test_gradient_check_skips_rare_kinks_and_passes_a_relu():
    results = check_layer(broken.RefLeakyRelu)
    assert all(r.passed for r in results if r.check == "check_gradient")


def test_gradient_of_a_dead_relu_is_compared_not_skipped():
    # slope 0: half the gradient is exactly 0; a wrong nonzero value there must fail.
    class LeakyGradient(broken.RefLeakyRelu):
        name = "leaky_gradient"

        def backward(self, dy, *, input_grad=True):
            return dy * np.maximum(self.cached(), 1e-3)

    example = [e for e in examples_of(LeakyGradient) if e.id == "relu"][0]
    with pytest.raises(ConformanceError, match="check_gradient"):
        check_gradient(LeakyGradient, example)


def test_config_failure_names_the_value_accepted():
    result = [r for r in check_layer(broken.ConfigBoundNotEnforced) if not r.passed][0]
    assert "slope=-1.0 (minimum 0.0)" in result.message
    assert "slope=2.0 (maximum 1.0)" in result.message


def test_an_exception_inside_the_plugin_is_a_failure_with_its_location():
    class Crashes(broken.RefDense):
        name = "crashes"

        def forward(self, x, *, training):
            raise RuntimeError("boom")

    results = check_layer(Crashes)
    forward_checks = [r for r in results if r.check == "check_output_shape"]
    assert forward_checks and not any(r.passed for r in forward_checks)
    assert "the plugin raised RuntimeError: boom (at " in forward_checks[0].message
    assert "test_checks.py:" in forward_checks[0].message


def test_checks_do_not_touch_the_callers_instance():
    layer = broken.RefDense(units=2)
    layer.build((3,), np.random.default_rng(5))
    before = {k: v.copy() for k, v in layer.params().items()}
    results = check_layer(layer)
    assert all(r.passed for r in results)
    assert {r.example for r in results} == {"all", "instance"}
    assert all(np.array_equal(layer.params()[k], v) for k, v in before.items())
    assert layer.cache is None


def test_examples_that_cannot_be_listed_fail_one_check():
    class NoExamples(broken.RefDense):
        name = "no_examples"

        @classmethod
        def examples(cls):
            return []

    results = check_layer(NoExamples)
    assert [(r.check, r.passed) for r in results] == [("check_declarations", True),
                                                      ("check_examples", False)]


def test_check_loss_rejects_a_layer_and_check_layer_a_loss():
    with pytest.raises(TypeError, match="use check_layer"):
        check_loss(broken.RefDense)
    with pytest.raises(TypeError, match="use check_loss"):
        check_layer(broken.RefSoftmaxCrossEntropy)
    with pytest.raises(TypeError, match="use check_optimizer"):
        check_layer(broken.RefMomentumSGD)


def test_the_onnx_export_check_runs_when_asked_or_available():
    relu = lamina_builtin("relu")
    names = {func.__name__ for _, _, func in generate_checks(relu, onnx=True)}
    assert "check_onnx_export" in names
    assert "check_onnx_export" not in {f.__name__ for _, _, f in generate_checks(relu,
                                                                                  onnx=False)}
    # a layer without export_onnx gets it once, reported as not exportable
    dense = [(e.id, f.__name__) for _, e, f in generate_checks(broken.RefDense, onnx=True)]
    assert [case for case in dense if case[1] == "check_onnx_export"] == [
        ("all", "check_onnx_export")]


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_the_onnx_export_check_without_onnx_or_onnx_runtime_names_what_to_install(
        missing, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    relu = lamina_builtin("relu")
    assert "check_onnx_export" not in {r.check for r in run_checks(relu)}  # by default: left out
    results = [r for r in run_checks(relu, onnx=True) if r.check == "check_onnx_export"]
    assert results and all(r.status == "failed" for r in results)
    for result in results:  # a setup problem, not the plugin's operators
        assert result.message.endswith(
            f"check_onnx_export: expected onnx and ONNX Runtime, to export the layer and run "
            f"its graph; received {missing} is not installed. pip install 'lamina[onnx]' (or "
            "leave the ONNX check out)")


def test_a_layer_without_export_onnx_is_reported_not_exportable_not_passed(tmp_path):
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    [result] = [r for r in run_checks(broken.RefDense, onnx=True)
                if r.check == "check_onnx_export"]
    assert (result.status, result.skipped, result.ok) == ("skipped", "not exportable", True)
    assert "RefDense defines no export_onnx()" in result.message
    (tmp_path / "test_plugin.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import broken
        from lamina.testing import parametrize_with_checks

        @parametrize_with_checks([broken.RefDense], onnx=True)
        def test_conformance(plugin, check):
            check(plugin)
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", "-k", "onnx", str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert "1 skipped" in proc.stdout and "not exportable: RefDense" in proc.stdout, proc.stdout


def test_a_setting_declared_inert_with_its_reason_is_not_reported():
    declared = type("DeclaresExemptInert", (broken.OptimizerExemptionNeverMatches,), {
        "name": "declares_exempt_inert",
        "inert_settings": {"exempt": "names layers of another framework's networks"}})
    assert not [r.message for r in run_checks(declared) if not r.passed]
