"""Side-by-side throughput of lamina and PyTorch on this CPU, in one run (issue 6).

Runs `lamina bench --json` (with this interpreter, `python -m lamina.cli bench --json`) and
benchmarks/torch_reference.py (with the torch virtual environment's interpreter) in alternating
rounds, so that both sides see the same background noise, and prints lamina's throughput as a
ratio of PyTorch's eager and best modes. Each round's ratio is taken between runs made seconds
apart; the table shows the median ratio over rounds and its range.

Usage: python benchmarks/compare.py [--rounds 3] [--torch-python /work/torch-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

TORCH_SCRIPT = Path(__file__).resolve().with_name("torch_reference.py")
METRICS = ("train_samples_per_s", "infer_samples_per_s")
# lamina's target ratio to each torch mode, per metric: issue 6 set the eager ones, issue 24
# (Winograd and fused chains) the best ones, training's by the CPU's widest vector unit.
TARGETS = {
    ("train_samples_per_s", "eager"): 1.0,
    ("infer_samples_per_s", "eager"): 1.0,
    ("infer_samples_per_s", "best"): 1.5,
}
TRAIN_VS_BEST = {"AVX-512": 1.6, "AVX2": 1.3}


class CompareError(RuntimeError):
    """A benchmark command failed or printed something other than the expected JSON."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--torch-python",
        default="/work/torch-venv/bin/python",
        help="interpreter of the virtual environment holding torch (see benchmarks/README.md)",
    )
    parser.add_argument(
        "--lamina-python", default=sys.executable, help="interpreter with lamina installed"
    )
    parser.add_argument("--lamina-config", help="network config passed to `lamina bench`")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each side")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per step")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="torch warm-up steps")
    parser.add_argument("--json", action="store_true", help="print all rounds as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def run_json(command: list[str], what: str, hint: str) -> dict:
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise CompareError(f"{what}: cannot start {command[0]!r} ({exc}). {hint}") from exc
    if done.returncode != 0:
        raise CompareError(
            f"{what} failed (exit {done.returncode}).\ncommand: {' '.join(command)}\n"
            f"{done.stderr.strip()[-2000:]}\n{hint}"
        )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise CompareError(
            f"{what} did not print one JSON object on stdout ({exc}).\n"
            f"command: {' '.join(command)}\nstdout began: {done.stdout[:300]!r}"
        ) from exc
    return result


def lamina_command(args: argparse.Namespace) -> list[str]:
    command = [args.lamina_python, "-m", "lamina.cli", "bench"]
    if args.lamina_config:
        command.append(args.lamina_config)
    return [*command, "--json", "--batch-size", str(args.batch_size), "--steps", str(args.steps)]


def run_lamina(args: argparse.Namespace) -> dict:
    hint = (
        "Is `lamina bench` implemented and lamina installed for this interpreter "
        "(`pip install -e .` in the checkout; pick another one with --lamina-python)?"
    )
    result = run_json(lamina_command(args), "lamina bench", hint)
    missing = [key for key in METRICS if key not in result]
    if missing:
        raise CompareError(
            f"lamina bench --json lacks {', '.join(missing)}; it printed keys "
            f"{sorted(result)}. Both {', '.join(METRICS)} are required."
        )
    return result


def run_torch(args: argparse.Namespace) -> dict:
    command = [
        args.torch_python,
        str(TORCH_SCRIPT),
        "--mode",
        "all",
        "--json",
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    hint = (
        "Create the torch environment as described in benchmarks/README.md, or pass --torch-python."
    )
    return run_json(command, "torch_reference.py", hint)


def collect(args: argparse.Namespace) -> list[dict]:
    rounds = []
    for index in range(args.rounds):
        # Alternate who goes first so neither side always runs on a warmer (or hotter) machine.
        order = ("lamina", "torch") if index % 2 == 0 else ("torch", "lamina")
        this_round = {}
        for side in order:
            print(f"round {index + 1}/{args.rounds}: {side} ...", file=sys.stderr, flush=True)
            this_round[side] = run_lamina(args) if side == "lamina" else run_torch(args)
        rounds.append(this_round)
    return rounds


def ratios(rounds: list[dict], metric: str, mode: str) -> list[float]:
    return [r["lamina"][metric] / r["torch"]["modes"][mode][metric] for r in rounds]


def machine_lines(rounds: list[dict]) -> list[str]:
    """What the figures were measured on, as each side reported it in the first round, and
    a warning when a later round saw another BLAS kernel."""
    facts = rounds[0]["lamina"].get("machine")
    if facts is None:  # a lamina without the report
        return ["machine: not reported by this lamina bench"]
    forced = (f" (forced by OPENBLAS_CORETYPE={facts['blas_kernel_forced']}; unset it for "
              "the kernel users get)" if facts.get("blas_kernel_forced") else
              " (OpenBLAS's own choice)")
    lines = [f"machine: {facts['cpu']}, {facts['vector_extensions']}, {facts['cores']} cores",
             f"lamina's NumPy: OpenBLAS kernel {facts['blas_kernel']}{forced}",
             f"torch's kernels: {rounds[0]['torch'].get('cpu_capability', 'not reported')}"]
    kernels = {r["lamina"].get("machine", {}).get("blas_kernel") for r in rounds}
    if len(kernels) > 1:
        lines.append(f"WARNING: the rounds ran on different kernels: {sorted(kernels)}")
    return lines


def targets(rounds: list[dict]) -> dict[tuple[str, str], float]:
    """TARGETS, with training's against torch best for this CPU's vector extensions."""
    vector = rounds[0]["lamina"].get("machine", {}).get("vector_extensions")
    extra = {("train_samples_per_s", "best"): TRAIN_VS_BEST[vector]} \
        if vector in TRAIN_VS_BEST else {}
    return TARGETS | extra


def render(rounds: list[dict]) -> str:
    modes = list(rounds[0]["torch"]["modes"])
    torch_version = rounds[0]["torch"]["torch_version"]
    lines = [
        f"lamina vs torch {torch_version}, {len(rounds)} interleaved round(s), samples/s "
        "(median over rounds of each run's median step)",
        *machine_lines(rounds),
        "",
        f"{'':8}{'lamina':>10}" + "".join(f"{'torch ' + m:>13}" for m in modes),
    ]
    for metric in METRICS:
        row = f"{metric.split('_')[0]:8}"
        row += f"{statistics.median(r['lamina'][metric] for r in rounds):>10,.0f}"
        for mode in modes:
            row += f"{statistics.median(r['torch']['modes'][mode][metric] for r in rounds):>13,.0f}"
        lines.append(row)
    lines += ["", "each round (samples/s; train, then infer):", ""]
    head = f"{'round':>5}" + "".join(
        f"{side + ' ' + metric.split('_')[0]:>{14}}"
        for metric in METRICS for side in ("lamina", *modes)
    )
    lines.append(head)
    for index, r in enumerate(rounds, 1):
        row = f"{index:>5}"
        for metric in METRICS:
            row += f"{r['lamina'][metric]:>14,.0f}"
            row += "".join(f"{r['torch']['modes'][m][metric]:>14,.0f}" for m in modes)
        lines.append(row)
    lines += ["", "ratio lamina/torch: median [min-max over rounds]   target"]
    for metric in METRICS:
        for mode in modes:
            values = ratios(rounds, metric, mode)
            target = targets(rounds).get((metric, mode))
            verdict = ""
            if target is not None:
                met = "met" if statistics.median(values) >= target else "NOT met"
                verdict = f">= {target:.1f}  {met}"
            lines.append(
                f"  {metric.split('_')[0]:5} vs {mode:5}  {statistics.median(values):5.2f} "
                f"[{min(values):.2f}-{max(values):.2f}]              {verdict}".rstrip()
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rounds = collect(args)
    except CompareError as exc:
        print(f"compare.py: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"rounds": rounds}, indent=2))
    else:
        print(render(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
