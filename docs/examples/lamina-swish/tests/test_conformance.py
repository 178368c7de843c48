from lamina.testing import parametrize_with_checks
from lamina_swish import ChannelScale, ConvSwish, RMSpropEpsOutside, SmoothedCrossEntropy, Swish


@parametrize_with_checks([Swish, ChannelScale, SmoothedCrossEntropy, RMSpropEpsOutside, ConvSwish])
def test_conformance(plugin, check):
    check(plugin)
