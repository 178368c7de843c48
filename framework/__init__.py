"""lamina's core: the layer, loss and optimizer protocols, plugin discovery,
validated network configs and the graph runner. This module only re-exports.

The folder is ``framework/`` in the repository and installs as ``lamina``; imported by
its folder name (``import framework`` in a checkout's root) it would be a second copy of
the core whose classes are not lamina's, so that import stops here with the fix.
"""

if __name__ != "lamina":
    raise ImportError(
        f"lamina's core was imported as {__name__!r}, the name of its folder in the "
        "repository; import it as 'lamina' (install the checkout with pip install -e .)"
    )

from .block import Block
from .config import NetworkConfig, load_config
from .errors import (
    BackwardBeforeForwardError,
    CheckpointError,
    ConfigError,
    ConfigIssue,
    DataError,
    KernelError,
    LaminaError,
    PluginError,
    ShapeError,
    StateError,
    TrainingError,
    UnknownPluginError,
)
from .graph import Architecture, Network
from .hookspecs import hookimpl, hookspec
from .initializers import INITIALIZERS, initialize
from .layer import (
    Example,
    FreeText,
    Layer,
    LayerConfig,
    LayerTraits,
    ParamSpec,
    Reference,
    Shape,
    sample_axis,
)
from .loss import (
    TARGET_FORMS,
    Loss,
    LossConfig,
    LossExample,
    LossReference,
    LossTraits,
    as_target_rows,
)
from .optimizer import Optimizer, OptimizerConfig, OptimizerExample, OptimizerReference
from .registry import Registry, load_registry

__version__ = "0.1.0"

#: names imported when first used: ``lamina.Model`` is for Python sessions, and the
#: command line (which imports lamina at every start) need not compile it
_LAZY = {"Model": ".model", "InputError": ".inputs", "Sequential": ".builder",
         "layers": ".builder", "LayerSpec": ".builder", "History": ".training.history",
         "Callback": ".training.callbacks"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "TARGET_FORMS",
    "Architecture",
    "BackwardBeforeForwardError",
    "Block",
    "Callback",
    "CheckpointError",
    "ConfigError",
    "ConfigIssue",
    "DataError",
    "Example",
    "FreeText",
    "History",
    "INITIALIZERS",
    "InputError",
    "KernelError",
    "LaminaError",
    "Layer",
    "LayerConfig",
    "LayerSpec",
    "LayerTraits",
    "Loss",
    "LossConfig",
    "LossExample",
    "LossReference",
    "LossTraits",
    "Model",
    "Network",
    "NetworkConfig",
    "Optimizer",
    "OptimizerConfig",
    "OptimizerExample",
    "OptimizerReference",
    "ParamSpec",
    "Reference",
    "PluginError",
    "Registry",
    "Shape",
    "Sequential",
    "ShapeError",
    "StateError",
    "TrainingError",
    "UnknownPluginError",
    "__version__",
    "as_target_rows",
    "hookimpl",
    "hookspec",
    "initialize",
    "sample_axis",
    "layers",
    "load_config",
    "load_registry",
]
