"""lamina-swish: an example third-party plugin package for lamina, with plugins of every
kind: the swish activation and a per-channel scale with learned parameters (layers),
label-smoothed cross-entropy (a loss), RMSprop with epsilon outside the square root (an
optimizer) and a convolution followed by swish (a block)."""

from .blocks import ConvSwish, ConvSwishConfig
from .rmsprop import RMSpropEpsOutside, RMSpropEpsOutsideConfig
from .scale import ChannelScale, ChannelScaleConfig
from .smoothing import SmoothedCrossEntropy, SmoothedCrossEntropyConfig
from .swish import Swish, SwishConfig

__all__ = ["ChannelScale", "ChannelScaleConfig", "ConvSwish", "ConvSwishConfig",
           "RMSpropEpsOutside", "RMSpropEpsOutsideConfig",
           "SmoothedCrossEntropy", "SmoothedCrossEntropyConfig", "Swish", "SwishConfig"]
