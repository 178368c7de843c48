"""Network configs: reading files (:mod:`.files`), their schema (:mod:`.schema`), the
graph they describe (:mod:`.dag`), run settings (:mod:`.run`), two-stage validation
(:mod:`.validate`) and pydantic errors as config issues (:mod:`.issues`). Re-exports."""

from .dag import readers_of, topological_order
from .files import MAX_CONFIG_BYTES, MAX_DEPTH, read_config, shipped_configs
from .run import DEFAULT_SHARDS, MAX_SHARDS, TrainingConfig
from .schema import INPUT, NetworkConfig, NodeConfig, PluginConfig
from .validate import load_config, validate_config, validate_document

__all__ = [
    "DEFAULT_SHARDS",
    "INPUT",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_SHARDS",
    "NetworkConfig",
    "NodeConfig",
    "PluginConfig",
    "TrainingConfig",
    "load_config",
    "read_config",
    "readers_of",
    "shipped_configs",
    "topological_order",
    "validate_config",
    "validate_document",
]
