"""lamina-swish: the swish activation as a lamina layer plugin."""

from .swish import Swish, SwishConfig

__all__ = ["Swish", "SwishConfig"]
