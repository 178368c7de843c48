"""Time forward and backward of the reference network's conv2d and maxpool2d layers.

    python benchmarks/bench_layers.py [--batch-size 128] [--repeat 50] [--dtype float32]

Prints the median (and the fastest and slowest) of ``--repeat`` timed calls after
a warm-up, per layer and direction. Other processes on the machine inflate the
median; the minimum is the better guide when comparing two versions of a kernel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from lamina.plugins.conv2d import Conv2D
from lamina.plugins.maxpool2d import MaxPool2D

# (label, layer class, config, per-sample input shape) as in the mnist_cnn network
CASES = [
    ("conv2d 1->32 3x3 on 28x28", Conv2D, {"filters": 32, "kernel_size": 3}, (1, 28, 28)),
    ("maxpool2d 2x2 on 32x26x26", MaxPool2D, {"pool_size": 2}, (32, 26, 26)),
    ("conv2d 32->64 3x3 on 13x13", Conv2D, {"filters": 64, "kernel_size": 3}, (32, 13, 13)),
    ("maxpool2d 2x2 on 64x11x11", MaxPool2D, {"pool_size": 2}, (64, 11, 11)),
]


def _time(fn, repeat: int) -> np.ndarray:
    for _ in range(3):
        fn()
    times = np.empty(repeat)
    for r in range(repeat):
        start = time.perf_counter()
        fn()
        times[r] = time.perf_counter() - start
    return times * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    dtype = np.dtype(args.dtype)
    print(f"batch {args.batch_size}, {dtype}, {args.repeat} runs; times in ms")
    print(f"{'layer':<30}{'pass':>10}{'median':>9}{'min':>9}{'max':>9}")
    total = 0.0
    for label, cls, config, shape in CASES:
        layer = cls(config)
        layer.build(shape, rng, dtype=dtype)
        x = rng.uniform(-1.0, 1.0, (args.batch_size, *shape)).astype(dtype)
        dy = rng.standard_normal((args.batch_size, *layer.output_shape)).astype(dtype)
        forward = _time(lambda layer=layer, x=x: layer.forward(x, training=True), args.repeat)
        layer.forward(x, training=True)
        backward = _time(lambda layer=layer, dy=dy: layer.backward(dy), args.repeat)
        for name, times in (("forward", forward), ("backward", backward)):
            median = float(np.median(times))
            total += median
            print(f"{label:<30}{name:>10}{median:>9.2f}{times.min():>9.2f}{times.max():>9.2f}")
    print(f"{'sum of medians':<40}{total:>9.2f}")


if __name__ == "__main__":
    main()
