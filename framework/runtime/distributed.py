"""Data-parallel training over MPI (mpi4py): many processes, one run.

``mpiexec -n N lamina train CONFIG --distributed mpi`` starts N processes (ranks),
on one machine or many. Every rank builds the same network from the same seed and
draws the same numbers from the run's generator (shuffles, dropout seeds), so they
agree on everything without sending it. The batch is cut into ``training.shards``
shards exactly as in one process (:mod:`lamina.runtime.parallel`); rank r runs its
contiguous range of them (``shard_bounds(shards, N)[r]``), on threads if it has
several. The shards' weighted gradients are summed over the ranks with one MPI
all-reduce per step, and every rank applies the same optimizer step to the same
sum, so the parameters stay identical without being broadcast. A run is therefore
defined by its total shard count, not by N: 2 ranks x 1 shard is the run 1 process
x 2 shards is, bit for bit (the sum of two terms does not depend on their order);
with more than two terms per sum MPI may add them in another order than one
process, and the runs agree within float32 rounding.

Rank 0 alone reads and writes the run directory (config, checkpoints, metrics) and
prints; it sends the others the checked config (and a resumed run's checkpoint).
Every rank loads the dataset itself: for MNIST-sized data that is faster and
simpler than sending ~200 MB of float32 images to every rank, and each rank needs
the whole training set anyway, to index its part of each shuffled batch.

mpi4py is the optional extra ``lamina[mpi]`` (with the ``mpich`` wheel, which brings
``mpiexec``); it is imported only with ``--distributed mpi``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from ..errors import LaminaError

T = TypeVar("T")

#: environment variables MPI launchers set in each process they start (MPICH/Hydra,
#: Open MPI, PMIx, Slurm's srun --mpi)
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_LAUNCHER_RANK = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


class DistributedError(LaminaError):
    """Distributed training cannot start (no mpi4py, a bad rank count)."""


class PeerFailed(LaminaError):
    """Another rank failed in a step all ranks take together; it reports the error."""


def launched_by_mpi() -> tuple[int, int] | None:
    """(rank, size) when an MPI launcher started this process as one of several."""
    for size_key in _LAUNCHER_SIZE:
        size = os.environ.get(size_key, "")
        if size.isdigit() and int(size) > 1:
            rank = next((os.environ[k] for k in _LAUNCHER_RANK if k in os.environ), "0")
            return (int(rank) if rank.isdigit() else 0, int(size))
    return None


class Comm:
    """The few collective operations lamina needs, over an mpi4py communicator."""

    def __init__(self, mpi_comm: Any):
        self._comm = mpi_comm
        self.rank: int = mpi_comm.Get_rank()
        self.size: int = mpi_comm.Get_size()
        from mpi4py import MPI

        self._mpi = MPI

    def sum_in_place(self, array: np.ndarray) -> None:
        """array = the sum of every rank's array (an all-reduce)."""
        self._comm.Allreduce(self._mpi.IN_PLACE, array, op=self._mpi.SUM)

    def sum(self, value: float) -> float:
        return float(self._comm.allreduce(float(value), op=self._mpi.SUM))

    def gather_all(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        return self._comm.allgather(value)

    def from_root(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        return self._comm.bcast(value, root=0)

    def abort(self, code: int) -> None:
        """End every rank of the job now (after a failure that only this rank saw)."""
        self._comm.Abort(code)


def communicator(distributed: str | None) -> Comm | None:
    """The communicator ``distributed`` asks for: None, or ``"mpi"``'s world."""
    if distributed is None:
        return None
    if distributed != "mpi":
        from ..errors import ConfigError, ConfigIssue

        raise ConfigError([ConfigIssue("distributed", f"expected 'mpi' or None, received "
                                                      f"{distributed!r}")])
    return init_mpi()


def init_mpi() -> Comm:
    """The world communicator; a DistributedError saying how to install mpi4py if it
    cannot be imported."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"--distributed mpi needs mpi4py and an MPI library ({exc}): pip install "
            "'lamina[mpi]' (mpi4py and the mpich wheel, which brings mpiexec), then start "
            "the ranks with mpiexec -n N lamina train ... --distributed mpi") from None
    return Comm(MPI.COMM_WORLD)


def check_shards(config: Any, comm: Comm | None, *, resuming: bool = False) -> None:
    """A ConfigError unless ``config`` (a NetworkConfig) has a shard for every rank."""
    from ..errors import ConfigError, ConfigIssue

    shards = config.training.shards
    if comm is None or shards >= comm.size:
        return
    count = f"{shards} shard{'s' if shards != 1 else ''} per batch"
    fix = (f"this run was trained with {count}: resume it on at most {shards} ranks"
           if resuming else f"start at most {shards} ranks, or set training.shards (--shards) "
           f"to {comm.size} or more")
    raise ConfigError([ConfigIssue("training.shards", (
        f"{count} cannot be split over {comm.size} MPI ranks, which each run at least one: "
        f"{fix}"))], source=config.source)


def on_root(comm: Comm | None, work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0 and give its result to every rank; if it raises, rank 0
    raises it and the others raise PeerFailed (so no rank waits for the others)."""
    if comm is None:
        return work()
    outcome: tuple[str, Any]
    if comm.rank == 0:
        try:
            outcome = ("ok", work())
        except BaseException as exc:
            comm.from_root(("error", str(exc) or type(exc).__name__))
            raise
    else:
        outcome = ("ok", None)
    outcome = comm.from_root(outcome)
    if outcome[0] == "error":
        raise PeerFailed(f"rank 0 failed: {outcome[1]}")
    return outcome[1]


def collective_failure(exc: BaseException) -> bool:
    """True for an error every rank raised together, or one rank 0 reports for all."""
    return isinstance(exc, PeerFailed) or getattr(exc, "reported_by_root", False) \
        or getattr(exc, "collective", False)


@contextmanager
def ending_every_rank_on_failure(comm: Comm | None) -> Iterator[None]:
    """Around work the ranks do in step (training, prediction): an error that only this
    rank may have seen ends every rank with MPI_Abort, after printing it with the rank's
    number, instead of leaving the others waiting in their next collective step. An
    error every rank raises together (a NaN stop, ``collective``) propagates as usual;
    Ctrl-C reaches every rank, and only rank 0 speaks of it."""
    try:
        yield
    except BaseException as exc:
        if comm is None or collective_failure(exc):
            raise
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not interrupted:
            what = str(exc) if isinstance(exc, LaminaError) else f"{type(exc).__name__}: {exc}"
            print(f"error (rank {comm.rank} of {comm.size}): {what}; ending every rank",
                  file=sys.stderr, flush=True)
            # MPI_Abort ends the launcher's output forwarding at once: give it a moment
            # to pass the message on (the other ranks wait for this one anyway).
            time.sleep(0.5)
        comm.abort(130 if interrupted else 2)
        raise


def on_every_rank(comm: Comm | None, work: Callable[[], T]) -> T:
    """Run ``work`` on every rank; if it raises on any, every rank raises (its own
    error, or PeerFailed naming the rank that failed)."""
    if comm is None:
        return work()
    try:
        result, problem = work(), None
    except BaseException as exc:  # every kind: a rank that left would leave the others waiting
        result, problem, error = None, f"{exc}" or type(exc).__name__, exc
    problems = comm.gather_all(problem)
    if problem is not None:
        error.reported_by_root = True  # rank 0 prints it, naming this rank
        raise error
    failed = [(rank, text) for rank, text in enumerate(problems) if text is not None]
    if failed:
        rank, text = failed[0]
        raise PeerFailed(f"rank {rank} of {comm.size}: {text}")
    return result


def root_first(comm: Comm | None, work: Callable[[], T]) -> T:
    """``work()`` on rank 0, then on the others, each rank keeping its own result; a
    failure anywhere stops every rank. For loading a dataset: rank 0 may download it,
    and the others, on the same machine, then find it on disk instead of downloading
    into one folder at once."""
    if comm is None:
        return work()
    held: list[T] = []
    on_root(comm, lambda: held.append(work()))
    on_every_rank(comm, lambda: None if comm.rank == 0 else held.append(work()))
    return held[0]


def same_on_every_rank(comm: Comm | None, call: str, *arguments: Any) -> None:
    """Over MPI, a :class:`lamina.InputError` on every rank unless every rank passed
    ``call`` arguments of the same shapes and settings: ranks that disagree would wait
    for each other forever."""
    from ..inputs import InputError

    if comm is None:
        return
    seen = comm.gather_all(arguments)
    odd = next((rank for rank, theirs in enumerate(seen) if theirs != seen[0]), None)
    if odd is not None:
        raise InputError(f"{call}() was called with other arguments on rank {odd} than on "
                         f"rank 0 ({_brief(seen[odd])} against {_brief(seen[0])}); under "
                         "MPI every rank calls it with the same arrays and settings")


def _brief(arguments: tuple) -> str:
    text = repr(arguments)
    return text if len(text) <= 120 else f"{text[:120]}..."
