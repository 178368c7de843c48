"""PyTorch CPU timing of lamina's reference MNIST convnet, the other side of issue 6's comparison.

Network (input x: (N, 1, 28, 28) float32, labels y: (N,) int64):

    Conv2d(1, 32, 3) -> ReLU -> MaxPool2d(2)      (N, 32, 13, 13)
    Conv2d(32, 64, 3) -> ReLU -> MaxPool2d(2)     (N, 64, 5, 5)
    Flatten -> Dropout(0.5) -> Linear(1600, 10)   (N, 10)

trained with CrossEntropyLoss and Adam(lr=1e-3) on one fixed batch of random synthetic data.

Two things are timed per mode, each as the median over --steps after --warmup untimed steps:
  train  zero_grad, forward, loss, backward, optimizer step (model.train());
  infer  forward only, under model.eval() and torch.no_grad().

Modes:
  eager  PyTorch as installed: contiguous NCHW tensors, default thread count, default allocator.
  best   the fastest configuration found on the 2-core machine of issue 6 (see README.md):
         channels_last memory format for the model and the input, one intra-op thread per
         available CPU, and glibc malloc tunables (BEST_GLIBC_TUNABLES) that stop the allocator
         from handing the multi-megabyte activations back to the kernel after every op, which
         otherwise costs fresh page faults on every step.

Each mode runs in its own child process: glibc reads GLIBC_TUNABLES only at process start, and a
fresh process keeps one mode's allocator and thread-pool state from leaking into the other.

This script deliberately does not import lamina: it runs in its own virtual environment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

MODES = ("eager", "best")

# mmap_threshold: serve blocks up to 32 MiB (the largest value glibc accepts; the biggest
# activation here is 128*32*26*26*4 B ~ 11 MiB) from the heap instead of fresh mmap()s.
# trim_threshold and top_pad: keep up to 1 GiB / 256 MiB of freed heap mapped so the next step
# reuses already-faulted pages instead of shrinking and regrowing the heap.
BEST_GLIBC_TUNABLES = (
    "glibc.malloc.mmap_threshold=33554432"
    ":glibc.malloc.trim_threshold=1073741824"
    ":glibc.malloc.top_pad=268435456"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time PyTorch training and inference of the reference MNIST convnet on CPU."
    )
    parser.add_argument("--batch-size", type=int, default=128, help="samples per step")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all", help="what to time")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and data")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    # Internal: set by the parent when it re-runs this file for one mode in a fresh process.
    parser.add_argument("--child-mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (quartiles need two samples), got {args.steps}")
    if args.warmup < 0:
        parser.error(f"--warmup must be 0 or more, got {args.warmup}")
    return args


def build_model(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(1600, 10),
    )


def summarize(seconds: list[float], batch_size: int) -> dict:
    """Step times (s) -> throughput (samples/s); the slowest step gives the spread's minimum."""
    q1, median, q3 = statistics.quantiles(seconds, n=4, method="inclusive")
    return {
        "samples_per_s": batch_size / median,
        "spread": {
            "min": batch_size / max(seconds),
            "q1": batch_size / q3,
            "q3": batch_size / q1,
            "max": batch_size / min(seconds),
        },
        "median_step_ms": median * 1e3,
    }


def time_steps(step, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """Time one mode in this process; the caller has already set the environment."""
    import torch

    if mode == "best":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(args.seed)
    model = build_model(torch)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 1, 28, 28, generator=gen, dtype=torch.float32)
    y = torch.randint(0, 10, (args.batch_size,), generator=gen)
    if mode == "best":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.no_grad():
            model(x)

    model.train()
    train = summarize(time_steps(train_step, args.steps, args.warmup), args.batch_size)
    model.eval()
    infer = summarize(time_steps(infer_step, args.steps, args.warmup), args.batch_size)
    return {
        "train_samples_per_s": train["samples_per_s"],
        "train_spread": train["spread"],
        "train_median_step_ms": train["median_step_ms"],
        "infer_samples_per_s": infer["samples_per_s"],
        "infer_spread": infer["spread"],
        "infer_median_step_ms": infer["median_step_ms"],
        "num_threads": torch.get_num_threads(),
        "memory_format": "channels_last" if mode == "best" else "contiguous (NCHW)",
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "torch_version": torch.__version__,
        # the widest vector extension torch's own kernels use here ("AVX512", "AVX2")
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def child_env(mode: str) -> dict[str, str]:
    env = dict(os.environ)
    if mode == "best":
        # Appended so that anything the caller set stays, and ours wins where both set a key.
        previous = env.get("GLIBC_TUNABLES")
        env["GLIBC_TUNABLES"] = (
            f"{previous}:{BEST_GLIBC_TUNABLES}" if previous else BEST_GLIBC_TUNABLES
        )
    return env


def run_child(mode: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child-mode",
        mode,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(command, env=child_env(mode), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"torch_reference: the {mode!r} run failed (exit {done.returncode}).\n"
            f"command: {' '.join(command)}\n{done.stderr.strip()}"
        )
    return json.loads(done.stdout)


def fmt_spread(spread: dict) -> str:
    return (
        f"IQR {spread['q1']:,.0f}-{spread['q3']:,.0f}, "
        f"range {spread['min']:,.0f}-{spread['max']:,.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_mode:
        print(json.dumps(run_mode(args.child_mode, args)))
        return 0
    modes = MODES if args.mode == "all" else (args.mode,)
    results = {mode: run_child(mode, args) for mode in modes}
    first = next(iter(results.values()))
    report = {
        "torch_version": first["torch_version"],
        "cpu_capability": first["cpu_capability"],
        "num_threads": {mode: r["num_threads"] for mode, r in results.items()},
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "modes": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"torch {report['torch_version']}, batch {args.batch_size}, "
        f"median of {args.steps} steps after {args.warmup} warm-up (samples/s)"
    )
    for mode, r in results.items():
        print(f"{mode:>6} ({r['num_threads']} threads, {r['memory_format']})")
        print(f"   train {r['train_samples_per_s']:>9,.0f}   {fmt_spread(r['train_spread'])}")
        print(f"   infer {r['infer_samples_per_s']:>9,.0f}   {fmt_spread(r['infer_spread'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
