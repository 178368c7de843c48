"""Every built-in layer, loss, optimizer and block passes the conformance suite (one test
per check), as ``lamina check`` certifies them.

Third-party plugins are not loaded here (entry points off): this file certifies
lamina's own plugins, whatever BUILTIN_PLUGINS lists at the time.
"""

from lamina.registry import load_registry
from lamina.testing import parametrize_with_checks

_registry = load_registry(load_entry_points=False)
BUILTINS = [entry.cls for table in (_registry.layers, _registry.losses, _registry.optimizers,
                                    _registry.blocks)
            for entry in table.values()]


@parametrize_with_checks(BUILTINS, registry=_registry)
def test_builtin_conformance(plugin, check):
    check(plugin)
