from lamina.testing import parametrize_with_checks
from lamina_swish import ChannelScale, RMSprop, SmoothedCrossEntropy, Swish


@parametrize_with_checks([Swish, ChannelScale, SmoothedCrossEntropy, RMSprop])
def test_conformance(plugin, check):
    check(plugin)
