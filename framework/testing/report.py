"""The ``lamina check`` report: every discovered layer, loss, optimizer and block,
certified or not.

:func:`run_report` takes the registry as an argument (the CLI passes the one it
loaded, tests pass their own) and returns the text to print and the number of
failures; exiting non-zero on failures is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lamina.errors import UnknownPluginError

from .base import CheckResult
from .runner import QUICK_SKIPS, run_checks


def _selected(registry: Any, names: Sequence[str] | None) -> list[Any]:
    entries = {**registry.layers, **registry.losses, **registry.optimizers, **registry.blocks}
    if not names:
        return list(entries.values())
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise UnknownPluginError(registry.unknown_message("plugin", unknown[0], entries))
    return [entries[n] for n in dict.fromkeys(names)]


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_report(results: dict[Any, list[CheckResult]], problems: Sequence[Any] = ()) -> str:
    """A pass/fail table, one row per plugin, then every failing check's message."""
    rows = [("plugin", "kind", "provider", "passed", "failed", "xfailed", "status")]
    details, skipped = [], []
    for entry, checks in results.items():
        failed = [r for r in checks if not r.ok]
        notes = sorted({r.skipped for r in checks if r.skipped})
        rows.append((entry.name, entry.kind, str(entry.provider),
                     str(sum(r.status == "passed" for r in checks)), str(len(failed)),
                     str(sum(r.status == "xfailed" for r in checks)),
                     ("FAIL" if failed else "ok") + "".join(f", {n}" for n in notes)))
        skipped += [f"  {r.message}" for r in checks if r.skipped]
        for r in failed:
            why = f" (declared to fail: {r.expected_failure})" if r.status == "xpassed" else ""
            details.append(f"  {r.id}: {r.message or 'passed unexpectedly'}{why}")
    lines = _table(rows)
    if skipped:
        lines += ["", "not applicable (neither passed nor failed):", *skipped]
    if details:
        lines += ["", "failures:", *details]
    if problems:
        lines += ["", "plugins that could not be loaded (not certified):",
                  *(f"  {p}" for p in problems)]
    n_checks = sum(len(c) for c in results.values())
    n_failed = sum(not r.ok for c in results.values() for r in c) + len(problems)
    lines += ["", f"{len(results)} plugins, {n_checks} checks, {n_failed} "
                  f"failure{'' if n_failed == 1 else 's'}"]
    return "\n".join(lines)


def run_report(registry: Any, names: Sequence[str] | None = None, *, onnx: bool = False,
               quick: bool = False) -> tuple[str, int]:
    """Run the conformance checks on the named (default: all) plugins.

    ``onnx`` adds the ONNX export check (it needs ONNX Runtime, and takes longer);
    ``quick`` leaves out the slowest checks (:data:`lamina.testing.runner.QUICK_SKIPS`)
    and says so under the table.
    Returns ``(text, n_failed)``: the table to print and the number of failed checks
    plus, when no names are given, plugins the registry had to skip. An unknown
    name raises :class:`~lamina.errors.UnknownPluginError`.
    """
    entries = _selected(registry, names)
    results = {entry: run_checks(entry.cls, onnx=onnx, quick=quick, registry=registry)
               for entry in entries}
    problems = [] if names else list(getattr(registry, "problems", []))
    text = format_report(results, problems)
    if quick:
        text += (f"\n--quick left out {', '.join(QUICK_SKIPS)}; run without it before "
                 "releasing (CI does)")
    return text, sum(not r.ok for c in results.values() for r in c) + len(problems)


def run_config_report(plan: Any, registry: Any, *, onnx: bool = False, quick: bool = False
                      ) -> tuple[str, int]:
    """Certify what a checked config (a :class:`lamina.plan.Plan`) is made of: every
    plugin it uses, and each block it defines itself, on its uses in the config
    (:func:`lamina.testing.blocks.config_block_classes`)."""
    from lamina.providers import Provider
    from lamina.registry import Entry

    from .blocks import config_block_classes

    config = plan.config
    used = {node.type for node in config.nodes} | {use.type for use in config.blocks}
    used |= {config.loss.type, config.optimizer.type}
    entries = [e for e in registry.entries() if e.name in used]
    entries += [Entry("block", cls.name, cls, Provider("config", "", f"blocks.{cls.name} of "
                                                                     f"{config.source}"))
                for cls in config_block_classes(plan, registry)]
    results = {entry: run_checks(entry.cls, onnx=onnx, quick=quick, registry=registry)
               for entry in entries}
    text = format_report(results)
    if quick:
        text += (f"\n--quick left out {', '.join(QUICK_SKIPS)}; run without it before "
                 "releasing (CI does)")
    return text, sum(not r.ok for c in results.values() for r in c)
