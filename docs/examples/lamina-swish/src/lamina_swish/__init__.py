"""lamina-swish: an example third-party plugin package for lamina, with one plugin of each
kind: the swish activation (a layer), label-smoothed cross-entropy (a loss) and RMSprop
(an optimizer)."""

from .rmsprop import RMSprop, RMSpropConfig
from .smoothing import SmoothedCrossEntropy, SmoothedCrossEntropyConfig
from .swish import Swish, SwishConfig

__all__ = ["RMSprop", "RMSpropConfig", "SmoothedCrossEntropy", "SmoothedCrossEntropyConfig",
           "Swish", "SwishConfig"]
