"""``lamina bench``: how fast a network trains and infers on this machine.

Times, on random data of the config's input shape, the training step (forward,
loss, backward, optimizer update) and inference (forward in eval mode) as
``lamina train`` runs them: on the config's shards of the batch, in parallel
threads (:mod:`lamina.runtime.parallel`). For the breakdown, each layer's forward and
backward are timed on the whole batch in one thread, and that whole-batch step
is reported too. Every figure is the median of ``steps`` repetitions after
``warmup`` untimed ones, with the spread (min and max), since a shared machine is
noisy.
Throughput is samples per second of the median step; the projected epoch time is
for 60,000 samples.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from ..graph import Network
from ..plan import make_plan
from ..registry import Registry
from .machine import describe, machine
from .parallel import ShardedStep

EPOCH_SAMPLES = 60_000


def _spread(seconds: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(seconds) * 1e3, "min_ms": min(seconds) * 1e3,
            "max_ms": max(seconds) * 1e3}


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def run_bench(config_source: str, registry: Registry, *, batch_size: int = 128,
              steps: int = 20, warmup: int = 3, seed: int = 0,
              shards: int | None = None) -> dict[str, Any]:
    """Time ``config_source``'s network; ``shards`` overrides the config's shard count."""
    overrides = {"batch_size": batch_size} | ({"shards": shards} if shards is not None else {})
    config = make_plan(config_source, registry, training=overrides).config
    shards = config.training.shards
    rng = np.random.default_rng(seed)
    network = Network(config, registry, rng)
    loss = registry.loss(config.loss.type)(config.loss.config)
    optimizer = registry.optimizer(config.optimizer.type)(config.optimizer.config)
    x = rng.random((batch_size, *config.input_shape), dtype=np.float32)
    classes = int(np.prod(network.output_shape))
    y = rng.integers(0, classes, batch_size)

    per_layer: dict[str, dict[str, list[float]]] = {
        n.name: {"forward": [], "backward": []} for n in network.nodes}
    times: dict[str, list[float]] = {"whole": [], "train": [], "whole_infer": [], "infer": []}

    def whole_step(fwd: dict[str, float], bwd: dict[str, float]) -> None:
        logits = network.forward(x, training=True, timings=fwd)
        loss.forward(logits, y)
        network.backward(loss.backward(), timings=bwd)
        optimizer.step(network.params(), network.grads())

    for i in range(warmup + steps):
        fwd: dict[str, float] = {}
        bwd: dict[str, float] = {}
        whole = _timed(lambda: whole_step(fwd, bwd))  # noqa: B023
        whole_infer = _timed(lambda: network.forward(x, training=False))
        if i >= warmup:
            times["whole"].append(whole)
            times["whole_infer"].append(whole_infer)
            for name in per_layer:
                per_layer[name]["forward"].append(fwd[name])
                per_layer[name]["backward"].append(bwd[name])
    # The sharded steps run as a block of their own, after their own warm-up: right
    # after a whole-batch product OpenBLAS's idle worker spins on the second core for
    # up to ~0.1 s, which would slow a sharded step timed next to it (not in training,
    # where no whole-batch product runs).
    with ShardedStep(network, loss, rng, shards=shards) as sharded:
        for i in range(warmup + steps):
            train = _timed(lambda: (sharded.train_step(x, y),
                                        optimizer.step(network.params(), network.grads())))
            infer = _timed(lambda: sharded.predict(x))
            if i >= warmup:
                times["train"].append(train)
                times["infer"].append(infer)
        how = sharded.describe()

    def samples_per_s(key: str) -> float:
        return batch_size / statistics.median(times[key])

    fused_into = {chain[-1]: chain[0] for chain in network.fused_chains()}
    return {
        "config": config.source,
        "machine": machine(),
        "fused": [list(chain) for chain in network.fused_chains()],
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "dtype": str(network.dtype),
        "shards": shards,
        "parallel": how,
        "layers": [
            {"name": n.name, "type": n.config.type, "fused_into": fused_into.get(n.name),
             "forward": _spread(per_layer[n.name]["forward"]),
             "backward": _spread(per_layer[n.name]["backward"])}
            for n in network.nodes
        ],
        "whole_train_step": _spread(times["whole"]),
        "whole_infer_step": _spread(times["whole_infer"]),
        "whole_train_samples_per_s": samples_per_s("whole"),
        "whole_infer_samples_per_s": samples_per_s("whole_infer"),
        "train_step": _spread(times["train"]),
        "infer_step": _spread(times["infer"]),
        "train_samples_per_s": samples_per_s("train"),
        "infer_samples_per_s": samples_per_s("infer"),
        "epoch_seconds": EPOCH_SAMPLES / samples_per_s("train"),
    }


def format_bench(result: dict[str, Any]) -> str:
    rows = [("layer", "type", "forward ms", "backward ms")]
    for layer in result["layers"]:
        into = layer.get("fused_into")
        rows.append((layer["name"], layer["type"], *(
            (f"in {into}'s", "(fused)") if into else (_fmt(layer["forward"]),
                                                       _fmt(layer["backward"])))))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    chains = "; ".join(" -> ".join(chain) for chain in result["fused"])
    lines = [f"{result['config']}: batch {result['batch_size']}, {result['dtype']}, median of "
             f"{result['steps']} steps after {result['warmup']} warm-up (min-max)",
             f"machine: {describe(result['machine'])}",
             f"fused chains: {chains}" if chains else
             "fused chains: none (LAMINA_FUSION=0, or no layer ends in the pool after it)",
             ""]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    lines += [
        "",
        "whole batch (the layer times above):",
        f"  training step  {_fmt(result['whole_train_step'])} ms  "
        f"{result['whole_train_samples_per_s']:,.0f} samples/s",
        f"  inference      {_fmt(result['whole_infer_step'])} ms  "
        f"{result['whole_infer_samples_per_s']:,.0f} samples/s",
        f"as lamina train runs it ({result['parallel']}):",
        f"  training step  {_fmt(result['train_step'])} ms  "
        f"{result['train_samples_per_s']:,.0f} samples/s  "
        f"({result['epoch_seconds']:.1f} s per {EPOCH_SAMPLES:,}-sample epoch)",
        f"  inference      {_fmt(result['infer_step'])} ms  "
        f"{result['infer_samples_per_s']:,.0f} samples/s",
    ]
    return "\n".join(lines)


def _fmt(spread: dict[str, float]) -> str:
    return f"{spread['median_ms']:.2f} ({spread['min_ms']:.2f}-{spread['max_ms']:.2f})"
