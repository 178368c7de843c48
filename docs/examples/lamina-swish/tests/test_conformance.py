from lamina.testing import parametrize_with_checks
from lamina_swish import ChannelScale, ConvSwish, RMSprop, SmoothedCrossEntropy, Swish


@parametrize_with_checks([Swish, ChannelScale, SmoothedCrossEntropy, RMSprop, ConvSwish])
def test_conformance(plugin, check):
    check(plugin)
