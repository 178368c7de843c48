from lamina.testing import parametrize_with_checks
from lamina_swish import Swish


@parametrize_with_checks([Swish])
def test_conformance(plugin, check):
    check(plugin)
