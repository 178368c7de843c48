from lamina_swish import Swish

from framework.testing import parametrize_with_checks


@parametrize_with_checks([Swish])
def test_conformance(plugin, check):
    check(plugin)
