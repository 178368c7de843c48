"""The ``lamina`` command line's arguments: every command, option and its help.

The commands themselves are in :mod:`lamina.cli`; a value argparse can check (a whole
number, a positive float) is refused here, with exit status 2 and its own message.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def _whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, received {text!r}") \
                from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a number of at least {minimum}, received {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, received {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text}")
    return value


# -- parser ---------------------------------------------------------------------------
def parser_for(commands: Any) -> argparse.ArgumentParser:
    """The ``lamina`` parser; each subcommand calls ``commands.cmd_<name>``."""
    parser = argparse.ArgumentParser(
        prog="lamina",
        description="A plugin-based neural-network layer framework on NumPy.",
    )
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail when a third-party plugin cannot be loaded "
                             "(also LAMINA_STRICT_PLUGINS=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # -p, as pytest's: plugins defined where you work, for one command (lamina.localplugins)
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument("-p", "--plugin", dest="plugins", action="append", default=[],
                       metavar="MODULE",
                       help="also load this plugin: the path of a .py file or an importable "
                            "module's name (repeat for several)")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help, parents=[local])
        p.set_defaults(func=func)
        return p

    default = commands.DEFAULT_CONFIG
    named = "a .toml or .json config file, or the name of a shipped config"
    config_help = f"{named} (default: {default})"
    data_dir_help = "folder holding <dataset>/ (else LAMINA_DATA, else ~/.cache/lamina)"
    add("layers", commands.cmd_layers,
        "list every registered layer, loss, optimizer and block with its provider")
    p = add("summary", commands.cmd_summary,
            "print a network's layers, output shapes and parameters")
    p.add_argument("config", nargs="?", default=default, metavar="CONFIG", help=config_help)
    p.add_argument("--expand", action="store_true",
                   help="list the layers of each block under it (by default a block is one row)")
    p = add("validate", commands.cmd_validate,
            "check a config (structure, plugin settings and shapes); exit 0 if valid, 2 if not")
    p.add_argument("config", metavar="CONFIG", help=named)

    p = add("train", commands.cmd_train, "train a network (the reference MNIST convnet by default)")
    p.add_argument("config", nargs="?", default=None, metavar="CONFIG", help=config_help)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--epochs", type=_whole_number(1), help="number of epochs")
    p.add_argument("--batch-size", type=_whole_number(1), help="samples per minibatch")
    p.add_argument("--lr", type=_positive_float, help="the optimizer's learning rate")
    p.add_argument("--seed", type=_whole_number(0), help="seed of the run's one generator")
    p.add_argument("--dataset", help="mnist or fashion-mnist")
    p.add_argument("--limit", type=_whole_number(1), metavar="N",
                   help="train on the first N training samples (quick runs)")
    p.add_argument("--shards", type=_whole_number(1), metavar="N",
                   help="slices of each batch run in parallel threads (default 2, or 1 for "
                        "networks with batch-dependent layers)")
    p.add_argument("--data-dir", help=data_dir_help)
    p.add_argument("--run-dir", help="where the run is written (default runs/<config>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar: one line per epoch")
    p.add_argument("--distributed", choices=("mpi",),
                   help="train one run on every process mpiexec started (pip install "
                        "'lamina[mpi]'; see docs/distributed.md)")

    p = add("evaluate", commands.cmd_evaluate,
            "test-set report of a run: loss, accuracy, per-class accuracy and confusion "
            "matrix (for a value loss such as mse: loss, MSE, MAE and the largest output's "
            "accuracy)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--data-dir", help=data_dir_help)
    p.add_argument("--weights", choices=("last", "best"),
                   help="the last epoch's weights or the best epoch's by validation loss "
                        "(default: best if the run's config sets training.restore_best, "
                        "else last)")
    p.add_argument("--distributed", choices=("mpi",),
                   help="split the test set over the processes mpiexec started")

    p = add("predict", commands.cmd_predict,
            "a trained run's class and probability for image files (PNG, JPEG) or .npy arrays")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="images (converted to the network's input: grayscale, size, light on "
                        "dark) or .npy arrays of one sample or a batch")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--weights", choices=("last", "best"),
                   help="the last epoch's weights or the best epoch's (default: the run's "
                        "choice, as for evaluate)")
    p.add_argument("--invert", choices=("auto", "always", "never"), default="auto",
                   help="invert one-channel images: auto (when the border is light), always "
                        "or never")

    p = add("export", commands.cmd_export,
            "write a trained run's inference graph as ONNX (pip install 'lamina[onnx]')")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out", metavar="OUT.onnx")
    p.add_argument("--weights", choices=("last", "best"),
                   help="the last epoch's weights or the best epoch's (default: the run's "
                        "choice, as for evaluate)")
    p.add_argument("--force", action="store_true", help="replace OUT.onnx if it exists")

    p = add("plot", commands.cmd_plot, "write training-curve and first-layer filter PNGs of a run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", help="folder for the PNGs (default: the run directory)")

    p = add("check", commands.cmd_check,
            "run the conformance suite on every discovered layer, loss, optimizer and block (or "
            "those named, or those of the -p modules); exit 1 on any failure")
    p.add_argument("names", nargs="*", metavar="NAME", help="plugin names (default: all)")
    p.add_argument("--config", metavar="CONFIG",
                   help="certify what this network is made of instead: the plugins it uses "
                        "and the blocks it defines itself, on their uses in it")
    p.add_argument("--onnx", action="store_true",
                   help="also check each layer's ONNX export in ONNX Runtime (pip install "
                        "'lamina[onnx]')")
    p.add_argument("--quick", action="store_true",
                   help="leave out the slowest checks (threads, every input rank), for an "
                        "edit-test loop; CI runs them all")

    p = add("bench", commands.cmd_bench,
            "time each layer, the training step and inference on random data (samples/s)")
    p.add_argument("config", nargs="?", default=default, metavar="CONFIG", help=config_help)
    p.add_argument("--batch-size", type=_whole_number(1), default=128,
                   help="samples per minibatch (default 128)")
    p.add_argument("--steps", type=_whole_number(1), default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=_whole_number(0), default=3,
                   help="untimed steps first (default 3)")
    p.add_argument("--shards", type=_whole_number(1), default=None,
                   help="slices of the batch run in parallel (default: the config's)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    return parser
