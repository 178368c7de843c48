"""The three ways to run the checks, and what installing lamina does not do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import broken
import pytest

from lamina.testing import check_layer, parametrize_with_checks


def test_check_layer_reports_every_check_of_every_example():
    results = check_layer(broken.RefDense)
    ids = [r.id for r in results]
    assert ids[:2] == ["ref_dense-all-check_declarations", "ref_dense-all-check_examples"]
    assert "ref_dense-units_3-check_gradient" in ids
    assert "ref_dense-ex1-check_gradient" in ids  # a blank example id becomes ex<i>
    assert len(ids) == len(set(ids))
    assert all(r.ok for r in results)
    assert {r.id for r in results if r.status != "passed"} <= {
        "ref_dense-all-check_onnx_export"}  # not exportable, where ONNX Runtime is installed


def test_declared_failures_are_xfailed_with_their_reason():
    results = check_layer(broken.WrongGradientSign,
                          expected_failed_checks={"check_gradient": "sign flipped on purpose"})
    xfailed = [r for r in results if r.status == "xfailed"]
    assert {r.example for r in xfailed} == {"units_3", "ex1"}
    assert all(r.expected_failure == "sign flipped on purpose" and r.ok for r in xfailed)
    assert all(r.ok for r in results)


def test_a_declared_failure_that_passes_is_an_xpass_and_not_ok():
    results = check_layer(broken.RefDense,
                          expected_failed_checks={"units_3-check_gradient": "stale"})
    [declared] = [r for r in results if r.expected_failure]
    assert (declared.example, declared.status, declared.ok) == ("units_3", "xpassed", False)


def test_declaring_a_check_that_does_not_run_is_an_error():
    with pytest.raises(ValueError, match="check_training_flag"):
        check_layer(broken.RefDense, expected_failed_checks={"check_training_flag": "typo"})


def test_parametrize_gives_one_id_per_check_and_strict_xfails():
    mark = parametrize_with_checks(
        [broken.RefDense, broken.WrongGradientSign],
        expected_failed_checks={"wrong_gradient_sign": {"check_gradient": "on purpose"}},
    )
    argnames, params = mark.args
    assert argnames == ("plugin", "check")
    ids = [p.id for p in params]
    assert "ref_dense-units_3-check_gradient" in ids
    assert len(ids) == len(set(ids))
    xfails = {p.id: p.marks[0] for p in params if p.marks and p.marks[0].name == "xfail"}
    assert set(xfails) == {"wrong_gradient_sign-units_3-check_gradient",
                           "wrong_gradient_sign-ex1-check_gradient"}
    for m in xfails.values():
        assert m.name == "xfail" and m.kwargs["strict"] and m.kwargs["reason"] == "on purpose"


def test_parametrized_tests_run_under_pytest(tmp_path: Path):
    here = Path(__file__).parent
    (tmp_path / "test_plugin.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(here)!r})
        import broken
        from lamina.testing import parametrize_with_checks

        @parametrize_with_checks(
            [broken.RefAdd, broken.WrongGradientSign, broken.AccumulatingGrads],
            expected_failed_checks={{"wrong_gradient_sign": {{"check_gradient": "known"}}}},
        )
        def test_conformance(plugin, check):
            check(plugin)
    """))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfxX",
         "-k", "wrong_gradient_sign and check_gradient or check_backward_twice",
         str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "2 failed" in out and "2 xfailed" in out, out
    failed = ("FAILED test_plugin.py::test_conformance"
              "[accumulating_grads-units_3-check_backward_twice]")
    assert failed in out
    assert "accumulating_grads [example 'units_3'] check_backward_twice: expected" in out
    assert "XFAIL" in out and "known" in out


def test_importing_the_suite_does_not_import_pytest():
    code = "import sys, lamina.testing; print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_installing_lamina_injects_nothing_into_pytest():
    dist = metadata.distribution("lamina")
    assert [ep for ep in dist.entry_points if ep.group == "pytest11"] == []
    root = Path(__file__).resolve().parents[3]
    shipped = [p for pkg in ("framework", "plugins") for p in (root / pkg).rglob("conftest.py")]
    assert shipped == []
