"""The ``lamina`` command line.

Every mistake a user can make (a bad config, a missing data file, a corrupt
checkpoint, a broken plugin) arrives here as a :class:`LaminaError` and is
printed as a message without a traceback. Exit codes: 0 success, 1 a failed
run or check, 2 invalid input (argparse uses 2 for bad arguments as well). A
Python warning raised during a command (by NumPy, the imaging library or a plugin)
is printed as one line, ``warning: ...``, as lamina prints its own.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from collections.abc import Callable, Sequence

from .errors import LaminaError

DEFAULT_CONFIG = "mnist_cnn"
EXIT_FAILED = 1
EXIT_INVALID = 2


def _registry(args: argparse.Namespace, comm=None):
    from .localplugins import as_plugins
    from .registry import load_registry

    given = getattr(args, "plugins", None) or []
    local = as_plugins(given, labels=[f"-p {spec}" for spec in given])
    registry = load_registry(strict=True if args.strict_plugins else None, extra_plugins=local)
    if comm is None or comm.rank == 0:  # one warning, not one per MPI rank
        for problem in registry.problems:
            print(f"warning: {problem}", file=sys.stderr)
    return registry


def _communicator(args: argparse.Namespace):
    """The MPI communicator with ``--distributed mpi``; without it, a warning when an MPI
    launcher started this process as one of several (each would do the whole work)."""
    from .runtime.distributed import init_mpi, launched_by_mpi

    if args.distributed == "mpi":
        return init_mpi()
    launch = launched_by_mpi()
    if launch is not None and launch[0] == 0:
        print(f"warning: this is one of {launch[1]} processes an MPI launcher started, but "
              f"--distributed mpi was not given: each runs the whole {args.command} alone. "
              f"Add --distributed mpi to share the work", file=sys.stderr, flush=True)
    return None


def _plan(args: argparse.Namespace, registry):
    """The config checked as a whole (shapes and run settings included), nothing allocated."""
    from .plan import make_plan

    return make_plan(args.config, registry)


# -- commands -------------------------------------------------------------------------
#: the kinds of plugin, in the order ``lamina layers`` lists them, with their plurals
KINDS = {"layer": "layers", "block": "blocks", "loss": "losses", "optimizer": "optimizers"}


def cmd_layers(args: argparse.Namespace) -> int:
    """Every registered plugin, grouped by kind: name, provider, the module defining it
    and, for layers, losses and blocks, whether ``lamina export`` can write it."""
    entries = list(_registry(args).entries())
    header = ("name", "provider", "module", "onnx")
    rows = {kind: [(e.name, str(e.provider), e.cls.__module__, _exports(e))
                   for e in entries if e.kind == kind] for kind in KINDS}
    widths = [max(len(r[i]) for r in [header, *sum(rows.values(), [])]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    sections = []
    for kind, plural in KINDS.items():
        if rows[kind]:
            title = f"{len(rows[kind])} {plural if len(rows[kind]) != 1 else kind}"
            sections.append("\n".join([title, line(header), *map(line, rows[kind])]))
    print("\n\n".join(sections))
    return 0


def _exports(entry) -> str:
    """Whether ``lamina export`` can write this plugin: a layer's or loss's export_onnx."""
    if entry.kind == "optimizer":
        return ""
    if entry.kind == "block":
        return "as its layers"
    return "yes" if callable(getattr(entry.cls, "export_onnx", None)) else "not exportable"


def cmd_summary(args: argparse.Namespace) -> int:
    plan = _plan(args, _registry(args))
    print(f"config: {plan.config.source}")
    print(plan.architecture.summary(expand=args.expand))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    plan = _plan(args, _registry(args))  # shapes and run settings are part of validity
    # every value held, as the summary's total and Model.count_params() count them
    total = plan.architecture.count(trainable=True) + plan.architecture.count(trainable=False)
    print(f"{plan.config.source}: valid ({len(plan.config.nodes)} layers, output "
          f"{plan.architecture.output_shape}, {total:,} parameters)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import resume_run, start_run

    comm = _communicator(args)
    if comm is not None and comm.rank != 0:
        args.quiet = True
    registry = _registry(args, comm)
    overrides = {key: getattr(args, key) for key in
                 ("epochs", "batch_size", "seed", "dataset", "limit", "shards")
                 if getattr(args, key) is not None}
    if args.resume is not None:
        fixed = [f"--{k.replace('_', '-')}" for k in overrides if k != "epochs"]
        fixed += ["--lr"] if args.lr is not None else []
        fixed += ["--run-dir"] if args.run_dir is not None else []
        fixed += ["CONFIG"] if args.config is not None else []
        if fixed:
            print(f"error: {', '.join(fixed)} cannot change a run being resumed (its "
                  "config.json decides); only --epochs, --data-dir and --quiet apply",
                  file=sys.stderr)
            return EXIT_INVALID
        _on_ranks(comm, lambda log, note: resume_run(
            args.resume, registry, epochs=args.epochs, data_dir=args.data_dir,
            quiet=args.quiet, log=log, note=note, comm=comm))
        return 0
    _on_ranks(comm, lambda log, note: start_run(
        args.config or DEFAULT_CONFIG, registry, overrides=overrides, optimizer_lr=args.lr,
        run_dir=args.run_dir, data_dir=args.data_dir, quiet=args.quiet, log=log, note=note,
        comm=comm))
    return 0


def _on_ranks(comm, run: Callable[[Callable[[str], None], Callable[[str], None]], object]
              ) -> object:
    """Run a command's work; over MPI only rank 0 prints. An error the ranks share (a
    collective check that failed, a NaN stop) is printed by rank 0 alone; one only
    this rank saw ends every rank (lamina.runtime.distributed)."""
    from .runtime.distributed import collective_failure, ending_every_rank_on_failure
    from .training.callbacks import silent

    if comm is None or comm.rank == 0:
        return run(_out, _note)
    try:
        with ending_every_rank_on_failure(comm):
            return run(silent, silent)
    except BaseException as exc:
        if collective_failure(exc):
            raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else EXIT_INVALID) \
                from None
        raise


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from .training import evaluate_run, format_evaluation

    comm = _communicator(args)
    registry = _registry(args, comm)
    result = _on_ranks(comm, lambda log, note: evaluate_run(
        args.run_dir, registry, data_dir=args.data_dir, note=note, weights=args.weights,
        comm=comm))
    if comm is None or comm.rank == 0:
        print(json.dumps(result, indent=2) if args.json else format_evaluation(result))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .predict import format_predictions, predict_files

    result = predict_files(args.run_dir, args.files, _registry(args), weights=args.weights,
                           note=_note, invert=args.invert)
    print(json.dumps(result, indent=2) if args.json else format_predictions(result))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_run

    result = export_run(args.run_dir, args.out, _registry(args), weights=args.weights,
                        force=args.force)
    (x, x_shape), (y, y_shape) = result["input"], result["output"]
    print(f"wrote {result['out']} (ONNX opset {result['opset']}, {result['bytes']:,} bytes): "
          f"{x} {tuple(x_shape)} -> {y} {tuple(y_shape)}, weights {result['weights']}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .training.plots import plot_run

    for path in plot_run(args.run_dir, _registry(args), args.out):
        print(f"wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .testing.report import run_report

    if args.onnx:
        from .testing.checks_export import onnx_setup_problem

        problem = onnx_setup_problem()
        if problem is not None:
            received, fix = problem
            print(f"error: lamina check --onnx runs each layer's export in ONNX Runtime; "
                  f"{received}: {fix} (or leave out --onnx)", file=sys.stderr)
            return EXIT_INVALID
    registry = _registry(args)
    if args.config is not None:  # what one network is made of, its own blocks included
        from .plan import make_plan
        from .testing.report import run_config_report

        if args.names:
            print("error: give plugin names or --config, not both", file=sys.stderr)
            return EXIT_INVALID
        text, n_failed = run_config_report(make_plan(args.config, registry), registry,
                                           onnx=args.onnx, quick=args.quick)
        print(text)
        return EXIT_FAILED if n_failed else 0
    names = args.names or None
    if names is None and args.plugins:  # `lamina check -p my_layers.py` certifies those
        names = [e.name for e in registry.entries() if e.provider.local]
    text, n_failed = run_report(registry, names, onnx=args.onnx, quick=args.quick)
    print(text)
    return EXIT_FAILED if n_failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .runtime.bench import format_bench, run_bench

    result = run_bench(args.config, _registry(args), batch_size=args.batch_size,
                       steps=args.steps, warmup=args.warmup, shards=args.shards)
    print(json.dumps(result, indent=2) if args.json else format_bench(result))
    return 0


def _out(message: str) -> None:
    """Results (a run's directory and epoch lines, tables, JSON) go to stdout, so that
    ``lamina train --quiet > train.log`` keeps them."""
    print(message, flush=True)


def _note(message: str) -> None:
    """Progress and diagnostics (downloads, warnings) go to stderr, apart from results."""
    from .training.callbacks import to_stderr

    to_stderr(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (lamina.cli_parser), its commands bound to this module's."""
    from .cli_parser import parser_for

    return parser_for(sys.modules[__name__])


def main(argv: Sequence[str] | None = None) -> int:
    # A file name need not be UTF-8 (it reaches Python with surrogate escapes): print
    # such names with escapes rather than fail on them.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .runtime.allocator import tune_allocator

    tune_allocator()  # process-wide, so only the command does it, never an import
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(args)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning raised during a command (by NumPy, Pillow, a plugin), said as
    lamina says its own: one line on stderr, without the source line."""
    text = " ".join(str(message).split())
    origin = category.__module__.split(".")[0] if category.__module__ != "builtins" else ""
    print(f"warning: {text}" + (f" ({origin})" if origin and origin != "lamina" else ""),
          file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except LaminaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        fix = {"train": "use a smaller --batch-size or a smaller network (lamina bench "
                        "shows what a step needs), or ",
               "bench": "use a smaller --batch-size or a smaller network, or ",
               "predict": "give fewer or smaller files, or "}.get(args.command, "")
        print(f"error: out of memory; {fix}give the process more memory: lamina needs about "
              "1 GiB of address space (docs/limits-and-guarantees.md)", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # e.g. `lamina evaluate RUN | head`: the reader left early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # the system refused (a full disk, a permission): no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # the name given is the mistake
            print(f"error: {exc.strerror}{where}; give a shorter path", file=sys.stderr)
            return EXIT_INVALID
        print(f"error: {exc.strerror or exc}{where}; nothing lamina saved before this was "
              "changed", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
