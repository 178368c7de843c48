"""``lamina bench``: how fast a network trains and infers on this machine.

Times, on random data of the config's input shape, each layer's forward and
backward, the whole training step (forward, loss, backward, optimizer update)
and inference (forward in eval mode). Every figure is the median of ``steps``
repetitions after ``warmup`` untimed ones, with the spread (min and max), since
a shared machine is noisy. Throughput is samples per second of the median step;
the projected epoch time is for 60,000 samples.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from .config import load_config
from .graph import Network
from .registry import Registry

EPOCH_SAMPLES = 60_000


def _spread(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(seconds) * 1e3, "min_ms": min(seconds) * 1e3,
            "max_ms": max(seconds) * 1e3}


def run_bench(config_source: str, registry: Registry, *, batch_size: int = 128,
              steps: int = 20, warmup: int = 3, seed: int = 0) -> dict[str, Any]:
    config = load_config(config_source, registry)
    rng = np.random.default_rng(seed)
    network = Network(config, registry, rng)
    loss = registry.loss(config.loss.type)(config.loss.config)
    optimizer = registry.optimizer(config.optimizer.type)(config.optimizer.config)
    x = rng.random((batch_size, *config.input_shape), dtype=np.float32)
    classes = int(np.prod(network.output_shape))
    y = rng.integers(0, classes, batch_size)
    params, grads = network.params(), network.grads()

    per_layer: dict[str, dict[str, list[float]]] = {
        n.name: {"forward": [], "backward": []} for n in network.nodes}
    train, infer = [], []
    for i in range(warmup + steps):
        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        started = time.perf_counter()
        logits = network.forward(x, training=True, timings=fwd)
        loss.forward(logits, y)
        network.backward(loss.backward(), timings=bwd)
        optimizer.step(params, grads)
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        network.forward(x, training=False)
        inferred = time.perf_counter() - started
        if i >= warmup:
            train.append(elapsed)
            infer.append(inferred)
            for name in per_layer:
                per_layer[name]["forward"].append(fwd[name])
                per_layer[name]["backward"].append(bwd[name])

    train_sps = batch_size / statistics.median(train)
    return {
        "config": config.source,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "dtype": str(network.dtype),
        "layers": [
            {"name": n.name, "type": n.config.type,
             "forward": _spread(per_layer[n.name]["forward"]),
             "backward": _spread(per_layer[n.name]["backward"])}
            for n in network.nodes
        ],
        "train_step": _spread(train),
        "infer_step": _spread(infer),
        "train_samples_per_s": train_sps,
        "infer_samples_per_s": batch_size / statistics.median(infer),
        "epoch_seconds": EPOCH_SAMPLES / train_sps,
    }


def format_bench(result: dict[str, Any]) -> str:
    rows = [("layer", "type", "forward ms", "backward ms")]
    for layer in result["layers"]:
        rows.append((layer["name"], layer["type"], _fmt(layer["forward"]),
                     _fmt(layer["backward"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{result['config']}: batch {result['batch_size']}, {result['dtype']}, median of "
             f"{result['steps']} steps after {result['warmup']} warm-up (min-max)", ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    lines += [
        "",
        f"training step   {_fmt(result['train_step'])} ms  "
        f"{result['train_samples_per_s']:,.0f} samples/s  "
        f"({result['epoch_seconds']:.1f} s per {EPOCH_SAMPLES:,}-sample epoch)",
        f"inference       {_fmt(result['infer_step'])} ms  "
        f"{result['infer_samples_per_s']:,.0f} samples/s",
    ]
    return "\n".join(lines)


def _fmt(spread: dict[str, float]) -> str:
    return f"{spread['median_ms']:.2f} ({spread['min_ms']:.2f}-{spread['max_ms']:.2f})"
