"""The table behind `lamina check`."""

from __future__ import annotations

import broken
import pytest

from lamina.errors import UnknownPluginError
from lamina.registry import Entry, PluginProblem, Provider, Registry
from lamina.testing.report import run_report


def make_registry() -> Registry:
    provider = Provider("lamina-selftest", "9.9", "broken")
    registry = Registry()
    for cls in (broken.RefDense, broken.WrongGradientSign):
        registry.layers[cls.name] = Entry("layer", cls.name, cls, provider)
    cls = broken.RefSoftmaxCrossEntropy
    registry.losses[cls.name] = Entry("loss", cls.name, cls, provider)
    return registry


def test_report_lists_every_plugin_and_counts_failures():
    text, n_failed = run_report(make_registry())
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line}
    assert rows["ref_dense"][1:] == ["layer", "lamina-selftest", "9.9", "54", "0", "0", "ok"]
    assert rows["wrong_gradient_sign"][-1] == "FAIL"
    assert rows["ref_softmax_ce"][-1] == "ok"
    assert n_failed == 2  # check_gradient on both examples of wrong_gradient_sign
    assert "wrong_gradient_sign-units_3-check_gradient: wrong_gradient_sign [example" in text
    assert text.endswith("3 plugins, 127 checks, 2 failures")


def test_report_on_named_plugins_only():
    text, n_failed = run_report(make_registry(), ["ref_softmax_ce"])
    assert n_failed == 0
    assert "ref_dense" not in text and "ref_softmax_ce" in text


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownPluginError, match="did you mean 'ref_dense'.*ref_softmax_ce"):
        run_report(make_registry(), ["ref_dens"])


def test_a_plugin_that_could_not_load_counts_as_a_failure():
    registry = make_registry()
    registry.problems.append(PluginProblem(Provider("bad-plugin", "1.0", "bad = bad"), "boom"))
    registry.layers.pop("wrong_gradient_sign")
    text, n_failed = run_report(registry)
    assert n_failed == 1
    assert "plugin 'bad = bad' from bad-plugin 1.0 was skipped: boom" in text


def test_quick_leaves_out_the_slowest_checks_and_says_so():
    from lamina.testing.runner import QUICK_SKIPS

    full, _ = run_report(make_registry(), ["ref_dense"])
    quick, n_failed = run_report(make_registry(), ["ref_dense"], quick=True)
    assert n_failed == 0
    assert quick.endswith("--quick left out check_threads, check_input_ranks; run without it "
                          "before releasing (CI does)")
    import re

    def checks(text: str) -> int:
        return int(re.search(r"(\d+) checks, ", text).group(1))

    assert checks(quick) < checks(full)
    assert set(QUICK_SKIPS) == {"check_threads", "check_input_ranks"}


def test_with_onnx_a_layer_without_export_is_listed_not_exportable():
    text, n_failed = run_report(make_registry(), ["ref_dense"], onnx=True)
    assert n_failed == 0
    row = next(line for line in text.splitlines() if line.startswith("ref_dense"))
    assert row.endswith("ok, not exportable")
    assert "not applicable (neither passed nor failed):" in text
    assert "check_onnx_export: not exportable: RefDense defines no export_onnx()" in text
