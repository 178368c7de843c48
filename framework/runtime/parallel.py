"""The training step on shards of the batch, one thread per core.

A batch of N samples is cut into ``shards`` contiguous slices. Each slice runs
forward, loss and backward on its own *replica* of the network (same config and
layer classes, its own gradients, caches and work buffers; see
:meth:`lamina.graph.Network.replica`), and the gradients are combined into the
network's own::

    dW = sum_i (n_i / N) dW_i       (the loss is a mean, so a shard of n_i samples
    loss = sum_i (n_i / N) loss_i    weighs n_i / N)

which is the gradient of the whole batch up to float rounding. The optimizer then
updates the network's parameters, and the next step copies them into the replicas
(a few hundred kilobytes for the reference network, ~0.1 ms).

Why: on this kind of machine half of a step is memory-bound NumPy work (im2col,
col2im, pooling, elementwise layers) that runs on one core, while BLAS spreads only
the matrix products over both. With one shard per core and BLAS kept to one thread
(:mod:`lamina.runtime.blas`) both cores do everything: `lamina bench` on the reference
network went from ~2,700 to ~4,000 training samples/s (docs/performance.md). NumPy
releases the GIL inside its copies, ufuncs and products, so plain threads suffice.

What it changes, and when it is not used:

- Stochastic layers (dropout) draw their masks from each replica's own generator,
  reseeded on every step from the run's generator and the shard's index. Results
  are therefore reproducible from the seed and the shard count, and do not depend
  on how many threads ran the shards; they differ from an unsharded run's, as two
  seeds do.
- A layer whose output depends on the other samples of the batch
  (``batch_dependent``, batchnorm) would see only its shard, and non-trainable state
  (running statistics) has no single value to merge, so such networks run whole:
  :func:`lamina.config.run.resolve_shards` picks 1 for them, and an explicit larger
  count is a config mistake (:func:`lamina.plan.make_plan`).
- Where the BLAS thread count cannot be controlled (:func:`lamina.runtime.blas.find_blas`
  is ``None``) or there is one core, the shards run one after the other: the same
  results, without the speed-up.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from ..errors import PASSED_THROUGH, PluginError
from ..graph import Network
from .blas import blas_threads, find_blas


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) of each non-empty shard of n samples; sizes differ by at most one."""
    shards = max(1, min(shards, n))
    size, extra = divmod(n, shards)
    bounds, start = [], 0
    for i in range(shards):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class ShardedStep:
    """Training steps and predictions of ``network`` on ``shards`` slices of each batch.

    ``network`` keeps the parameters the optimizer updates and the gradients it reads;
    ``loss`` is the run's loss (each replica gets one of the same class and config);
    ``rng`` is the run's generator (one draw per training step when the network has a
    stochastic layer). ``threads`` defaults to one per core, at most one per shard.
    With ``shards == 1`` every call goes straight to ``network`` and ``loss``.
    Worker threads start with the first parallel call; use the object as a context
    manager, or call :meth:`close`, to stop them (a later call starts them again).
    """

    def __init__(self, network: Network, loss: Any, rng: np.random.Generator, *,
                 shards: int = 1, threads: int | None = None, comm: Any = None,
                 loss_who: str | None = None):
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.network, self.loss, self.rng = network, loss, rng
        #: how messages name the loss plugin (lamina.registry.Entry.who)
        self.loss_who = loss_who or f"the {getattr(loss, 'name', '?')} loss plugin " \
            f"({type(loss).__module__})"
        self.shards = shards
        # Over MPI (lamina.runtime.distributed) this process runs its range of the shards.
        self.comm = comm
        ranks, rank = (comm.size, comm.rank) if comm is not None else (1, 0)
        if shards < ranks:
            raise ValueError(f"{shards} shards cannot be split over {ranks} ranks")
        self.local = range(*shard_bounds(shards, ranks)[rank])
        self.blas = find_blas()
        cores = _usable_cores()
        if threads is None:
            threads = min(len(self.local), cores) if self.blas is not None else 1
        self.threads = max(1, min(threads, len(self.local)))
        self._stochastic = any(node.layer.traits.stochastic for node in network.nodes)
        self._replicas: list[tuple[Network, Any, np.random.Generator]] = []
        self._pool: ThreadPoolExecutor | None = None
        if shards > 1:
            for _ in self.local:
                generator = np.random.Generator(np.random.PCG64(0))  # reseeded every step
                replica = network.replica(generator)
                self._replicas.append((replica, type(loss)(loss.config), generator))

    def __enter__(self) -> ShardedStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def describe(self) -> str:
        """``"2 shards on 2 threads"``, for logs and ``lamina bench``."""
        if self.shards == 1:
            return "whole batch"
        if self.comm is not None:
            return (f"{self.shards} shards on {self.comm.size} MPI ranks, "
                    f"{len(self.local)} on this one")
        return (f"{self.shards} shards on {self.threads} thread"
                f"{'s' if self.threads != 1 else ''}")

    # -- the two entry points ---------------------------------------------------------
    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Forward, loss and backward of one batch: returns (mean loss, logits) and leaves
        the batch's gradient in ``network.grads()`` for the optimizer."""
        if self.shards == 1:
            logits = self.network.forward(x, training=True)
            value = loss_value(self.loss, logits, y, self.loss_who)
            self.network.backward(loss_gradient(self.loss, logits, self.loss_who))
            return value, logits
        bounds = shard_bounds(len(x), self.shards)
        # this process's shards: global indices (a short batch may have fewer shards)
        mine = [i for i in self.local if i < len(bounds)]
        if self._stochastic:
            step_seed = int(self.rng.integers(2**63))
            for k, i in enumerate(mine):  # the global index: the same masks on any N
                self._replicas[k][2].bit_generator.state = np.random.PCG64([step_seed, i]).state

        def run(k: int) -> tuple[float, np.ndarray]:
            network, loss, _ = self._replicas[k]
            start, stop = bounds[mine[k]]
            logits = network.forward(x[start:stop], training=True)
            value = loss_value(loss, logits, y[start:stop], self.loss_who)
            network.backward(loss_gradient(loss, logits, self.loss_who))
            return value, logits

        results = self._map(run, len(mine))
        weights = [(bounds[i][1] - bounds[i][0]) / len(x) for i in mine]
        parts = [self._replicas[k][0].grads() for k in range(len(mine))]
        for key, grad in self.network.grads().items():
            if not parts:  # a short batch left this rank no shard
                grad[...] = 0
                continue
            np.multiply(parts[0][key], weights[0], out=grad)
            for part, weight in zip(parts[1:], weights[1:], strict=True):
                grad += weight * part[key]  # only the shards that ran (a batch may have fewer)
        value = sum(w * v for w, (v, _) in zip(weights, results, strict=True))
        logits = [logits for _, logits in results]
        if self.comm is not None:
            value = self._sum_over_ranks(value)
            logits = [part for parts in self.comm.gather_all(logits) for part in parts]
        return float(value), np.concatenate(logits)

    def _sum_over_ranks(self, value: float) -> float:
        """Sum the gradients (one all-reduce of all of them) and ``value`` over the ranks."""
        grads = self.network.grads()
        flat = np.concatenate([g.ravel() for g in grads.values()]) if grads else np.zeros(0)
        self.comm.sum_in_place(flat)
        offset = 0
        for grad in grads.values():
            grad[...] = flat[offset:offset + grad.size].reshape(grad.shape)
            offset += grad.size
        return self.comm.sum(value)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The network's eval-mode output for ``x``, shard by shard."""
        if self.shards == 1:
            return self.network.forward(x, training=False)
        bounds = shard_bounds(len(x), self.shards)
        mine = [i for i in self.local if i < len(bounds)]

        def run(k: int) -> np.ndarray:
            start, stop = bounds[mine[k]]
            return self._replicas[k][0].forward(x[start:stop], training=False)

        outputs = self._map(run, len(mine))
        if self.comm is not None:
            outputs = [part for parts in self.comm.gather_all(outputs) for part in parts]
        return np.concatenate(outputs)

    # -- running the shards -----------------------------------------------------------
    def _map(self, run, count: int) -> list[Any]:
        """``[run(i) for i in range(count)]``, the shards spread over the threads, after
        copying the network's current parameters into the replicas."""
        if count == 0:  # a short batch left this rank no shard
            return []
        params = self.network.params()
        for replica, _, _ in self._replicas[:count]:
            for key, target in replica.params().items():
                np.copyto(target, params[key])
        threads = min(self.threads, count)
        if threads == 1:
            if self.comm is None:
                return [run(i) for i in range(count)]
            with blas_threads(1, self.blas):  # the other ranks keep the other cores busy
                return [run(i) for i in range(count)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="lamina-shard")
        groups = [range(t, count, threads) for t in range(threads)]
        futures = []
        with blas_threads(1, self.blas):
            # This thread runs the first group; the pool the others. Every submitted
            # shard is waited for before an error (or Ctrl-C) propagates, so none is
            # still running on the replicas, or with BLAS limited, afterwards.
            try:
                for group in groups[1:]:
                    futures.append(self._pool.submit(_run_group, run, group))
                first = _run_group(run, groups[0])
            finally:
                wait(futures)
        results = dict(first)
        for future in futures:
            results.update(future.result())
        return [results[i] for i in range(count)]


def plugin_failed(who: str, exc: BaseException, where: str = "") -> PluginError:
    """The error for an unexpected exception from a loss or optimizer plugin, ``who``
    naming it with its provider (:attr:`lamina.registry.Entry.who`)."""
    return PluginError(f"{who} raised {type(exc).__name__}{' ' + where if where else ''}: "
                       f"{exc}. This is a bug in the plugin; report it to its author, or use "
                       "another one")


def probabilities(loss: Any, logits: np.ndarray, who: str) -> np.ndarray:
    """The loss plugin's ``predict_proba(logits)``, its failures and what it returns
    checked: one row of probabilities per sample."""
    try:
        found = loss.predict_proba(logits)
    except PASSED_THROUGH:
        raise
    except BaseException as exc:
        raise plugin_failed(who, exc, "in predict_proba()") from exc
    if not isinstance(found, np.ndarray) or found.shape != logits.shape:
        got = (f"an array of shape {found.shape}" if isinstance(found, np.ndarray)
               else type(found).__name__)
        raise PluginError(f"{who} returned {got} from predict_proba(); expected an array of "
                          f"shape {logits.shape}, one row of probabilities per sample. This "
                          "is a bug in the plugin; report it to its author, or use another one")
    return found


def loss_value(loss: Any, logits: np.ndarray, y: np.ndarray, who: str) -> float:
    """The loss's ``forward(logits, y)``, checked to be one number: an
    array or an object is the loss's mistake, named before arithmetic on it fails."""
    value = loss.forward(logits, y)
    if isinstance(value, bool) or not (isinstance(value, float | int | np.floating | np.integer)
                                       or (isinstance(value, np.ndarray) and value.shape == ())):
        got = f"an array of shape {value.shape}" if isinstance(value, np.ndarray) \
            else type(value).__name__
        raise PluginError(f"{who} returned {got} from forward(); expected the batch's mean "
                          "loss, one number. This is a bug in the plugin; report it to its "
                          "author, or use another one")
    return float(value)


def loss_gradient(loss: Any, logits: np.ndarray, who: str) -> np.ndarray:
    """The loss's ``backward()``, checked: anything but a floating-point array like
    ``logits`` is the loss's mistake, not that of the layer it would reach."""
    dz = loss.backward()
    if not isinstance(dz, np.ndarray) or dz.shape != logits.shape or dz.dtype.kind != "f":
        got = f"an array of shape {dz.shape} and dtype {dz.dtype}" \
            if isinstance(dz, np.ndarray) else type(dz).__name__
        raise PluginError(f"{who} returned {got} from backward(); expected the gradient of "
                          f"the logits, a floating-point array of shape {logits.shape}. This "
                          "is a bug in the plugin; report it to its author, or use another one")
    return dz


def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_group(run, group: range) -> list[tuple[int, Any]]:
    return [(i, run(i)) for i in group]

