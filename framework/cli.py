"""The ``lamina`` command line.

Every mistake a user can make (a bad config, a missing data file, a corrupt
checkpoint, a broken plugin) arrives here as a :class:`LaminaError` and is
printed as a message without a traceback. Exit codes: 0 success, 1 a failed
run or check, 2 invalid input (argparse uses 2 for bad arguments as well).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import ConfigError, LaminaError

DEFAULT_CONFIG = "mnist_cnn"
EXIT_FAILED = 1
EXIT_INVALID = 2


def _registry(args: argparse.Namespace):
    from .registry import load_registry

    registry = load_registry(strict=True if args.strict_plugins else None)
    for problem in registry.problems:
        print(f"warning: {problem}", file=sys.stderr)
    return registry


def _network(args: argparse.Namespace, registry, config):
    import numpy as np

    from .graph import Network

    return Network(config, registry, np.random.default_rng(config.training.seed))


# -- commands -------------------------------------------------------------------------
def cmd_layers(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = [("kind", "name", "provider", "module")]
    rows += [(e.kind, e.name, str(e.provider), e.provider.module) for e in registry.entries()]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .config import load_config

    registry = _registry(args)
    config = load_config(args.config, registry)
    print(f"{config.source}")
    print(_network(args, registry, config).summary())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config

    registry = _registry(args)
    config = load_config(args.config, registry)
    network = _network(args, registry, config)  # shape inference is part of validity
    total = sum(v.size for v in network.params().values())
    print(f"{config.source}: valid ({len(config.nodes)} layers, output {network.output_shape}, "
          f"{total:,} parameters)")
    return 0


# -- parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina",
        description="A plugin-based neural-network layer framework on NumPy.",
    )
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail when a third-party plugin cannot be loaded "
                             "(also LAMINA_STRICT_PLUGINS=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    config_help = (f"a .toml or .json config file, or the name of a shipped config "
                   f"(default: {DEFAULT_CONFIG})")
    add("layers", cmd_layers, "list every registered layer, loss and optimizer with its provider")
    p = add("summary", cmd_summary, "print a network's layers, output shapes and parameters")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG, metavar="CONFIG", help=config_help)
    p = add("validate", cmd_validate,
            "check a config (structure, plugin settings and shapes); exit 0 if valid, 2 if not")
    p.add_argument("config", metavar="CONFIG", help=config_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except LaminaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
