"""lamina-swish: an example third-party plugin package for lamina, with plugins of every
kind: the swish activation and a per-channel scale with learned parameters (layers),
label-smoothed cross-entropy (a loss) and RMSprop (an optimizer)."""

from .rmsprop import RMSprop, RMSpropConfig
from .scale import ChannelScale, ChannelScaleConfig
from .smoothing import SmoothedCrossEntropy, SmoothedCrossEntropyConfig
from .swish import Swish, SwishConfig

__all__ = ["ChannelScale", "ChannelScaleConfig", "RMSprop", "RMSpropConfig",
           "SmoothedCrossEntropy", "SmoothedCrossEntropyConfig", "Swish", "SwishConfig"]
