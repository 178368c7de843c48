"""Every built-in layer and loss passes the conformance suite (one test per check).

Third-party plugins are not loaded here (entry points off): this file certifies
lamina's own plugins, whatever BUILTIN_PLUGINS lists at the time.
"""

from lamina.registry import load_registry
from lamina.testing import parametrize_with_checks

_registry = load_registry(load_entry_points=False)
BUILTINS = [entry.cls for entry in (*_registry.layers.values(), *_registry.losses.values())]


@parametrize_with_checks(BUILTINS)
def test_builtin_conformance(plugin, check):
    check(plugin)
