"""lamina from Python: build a network, ``fit`` it on arrays, ``evaluate``, ``predict``,
``save`` and ``load`` (docs/python-api.md).

:class:`Model` wraps what ``lamina train`` runs (a :class:`~lamina.training.trainer.Session`:
the network, its loss and optimizer, the run's one generator) and trains it with the
same loop (:func:`lamina.training.trainer.fit`), so a model fitted here and a run
trained on the command line with the same config, data and seed end with the same
weights. What it adds is the care a notebook needs: arrays and arguments are checked
before they reach a layer (:mod:`lamina.inputs`), and under MPI on every rank before
any collective step. ``save`` writes a run directory (JSON and ``.npz``, no pickle), and ``load``
reads one, whichever wrote it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import NetworkConfig
from .errors import ConfigError, ConfigIssue
from .inputs import (
    InputError,
    checked_batch_size,
    checked_callbacks,
    checked_class_names,
    checked_flag,
    checked_labels,
    checked_path,
    checked_samples,
    received,
)
from .registry import Registry, load_registry
from .runtime.distributed import (
    communicator,
    ending_every_rank_on_failure,
    on_every_rank,
    on_root,
)
from .runtime.parallel import probabilities


class Model:
    """A network with its loss and optimizer, trained and used from Python.

    ``config`` is a shipped config's name (``"mnist_cnn"``), a ``.toml``/``.json`` file,
    a dict of the same structure or a :class:`lamina.Sequential` (its document and its
    local plugins); it is checked as ``lamina validate`` checks it.
    ``plugins`` adds plugins defined where you work (classes, modules, module names or
    ``.py`` paths; :mod:`lamina.localplugins`) to the installed ones.
    ``seed`` replaces ``training.seed``: it seeds the initial weights and then the
    shuffles and dropout masks of every ``fit``. The network is built when first
    used, so ``fit(seed=...)`` on a new model seeds its initial weights too.
    ``distributed="mpi"`` makes this process one rank of a data-parallel run started
    with ``mpiexec`` (docs/distributed.md): every rank calls ``fit`` with the same
    arrays and ends with the same weights; rank 0 alone shows progress.
    """

    def __init__(self, config: Any = "mnist_cnn", *,
                 seed: int | None = None, plugins: Sequence[Any] = (),
                 registry: Registry | None = None, distributed: str | None = None):
        from .builder import Sequential
        from .plan import make_plan
        from .runtime.distributed import check_shards

        if isinstance(config, Sequential):  # the network built in code: its document
            config, plugins = config.to_dict(), [*config.plugins, *_as_list(plugins)]
        if not isinstance(config, str | Path | dict):
            raise InputError(f"config must be a shipped config's name (such as 'mnist_cnn'), a "
                             f"path to a .toml or .json file, a dict of the same structure or "
                             f"a lamina.Sequential; received {received(config)}")
        registry = _checked_registry(registry, plugins)
        overrides = {"seed": seed} if seed is not None else None
        comm = communicator(distributed)

        def checked():  # on every rank: one rank's mistake stops them all, none waits
            plan = make_plan(config, registry, training=overrides)
            check_shards(plan.config, comm)
            return plan

        plan = on_every_rank(comm, checked)
        from .training.provenance import check_same_plugins

        check_same_plugins(plan.config, registry, comm)
        self._set_up(registry, plan, None, comm)

    def _set_up(self, registry: Registry, plan, session, comm) -> None:
        """The model's state; the network is built (``session``) on first use."""
        self.registry, self._plan, self._session, self._comm = registry, plan, session, comm
        self._split_key = self._split_index = None  # the validation split, drawn once

    # -- construction -----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, *, weights: str | None = None, plugins: Sequence[Any] = (),
             registry: Registry | None = None) -> Model:
        """A model from a run directory (``lamina train``'s or :meth:`save`'s): its config
        and trained weights, ``weights="last"`` or ``"best"`` (default: the run's choice,
        see :func:`lamina.training.load_trained`); ``model.weights`` says which.
        ``plugins`` are the local plugins the run was trained with, passed again."""
        from .plan import make_plan
        from .training import load_trained

        path = checked_path(path, "a run directory's path")
        registry = _checked_registry(registry, plugins)
        session = load_trained(path, registry, weights=weights)
        model = cls.__new__(cls)
        model._set_up(registry, make_plan(session.config, registry), session, None)
        return model

    @property
    def config(self) -> NetworkConfig:
        """The resolved config (every default filled in)."""
        return self._run.config if self._session is not None else self._plan.config

    @property
    def network(self):
        """The :class:`lamina.Network` (built on first use)."""
        return self._run.network

    @property
    def loss(self):
        """The loss plugin instance (its ``predict_proba`` turns outputs into probabilities)."""
        return self._run.loss

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch trained so far, as in a run's ``metrics.json``."""
        return self._session.history if self._session is not None else []

    @property
    def weights(self) -> str:
        """Which weights the model holds: ``"initial"``, ``"epoch 3 (last)"``, ``"epoch 2 of
        4 (best validation loss 0.0312)"``."""
        if self._session is None or not self._session.epoch:
            return "initial"
        return self._session.weights or f"epoch {self._session.epoch} (last)"

    def summary(self, *, expand: bool = False) -> str:
        """Layers, output shapes and parameter counts, as ``lamina summary`` prints them:
        a block as one row, or with ``expand`` its layers listed under it."""
        return self._plan.architecture.summary(expand=expand)

    @property
    def _run(self):
        if self._session is None:
            from .training.trainer import make_session

            self._session = make_session(self._plan, self.registry, None, comm=self._comm)
        return self._session

    # -- training ---------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int | None = None,
            batch_size: int | None = None,
            validation_data: tuple[np.ndarray, np.ndarray] | None = None,
            validation_split: float | None = None, seed: int | None = None,
            shards: int | None = None, early_stopping_patience: int | None = None,
            restore_best: bool | None = None, progress: bool = True,
            callbacks: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Train on ``x`` (N, *input_shape) and class indices ``y`` (N,); returns the history.

        ``epochs`` more epochs (default: the config's ``training.epochs``), validated on
        ``validation_data`` or on a seeded ``validation_split`` of ``x`` (default: the
        config's split; 0 for none). ``progress`` shows a progress bar and a line per
        epoch. ``callbacks`` are :class:`lamina.training.callbacks.Callback` objects;
        early stopping (``early_stopping_patience``) is one, and
        ``restore_best`` ends with the best validation epoch's weights. Calling ``fit``
        again continues training.
        """
        from .data import split_sizes
        from .training.callbacks import EarlyStopping, EpochLog, silent
        from .training.trainer import Data, fit

        training = {key: value for key, value in (
            ("batch_size", batch_size), ("validation_split", validation_split),
            ("shards", shards), ("early_stopping_patience", early_stopping_patience),
            ("restore_best", restore_best)) if value is not None}

        def checked():
            """Every argument, on every rank, before the model changes at all."""
            plan = self._seeded_plan(seed)
            xs, val = self._inputs(x, "x"), None
            ys = self._labels(y, len(xs), "y")
            more = epochs if epochs is not None else plan.config.training.epochs
            plan.config.with_training(epochs=more)  # the rule a config's epochs obey
            built = self._session
            config = (built.config if built is not None else plan.config).with_training(
                **training, epochs=(built.epoch if built is not None else 0) + more)
            if not len(xs):
                raise InputError("x holds no training samples; pass at least one")
            if validation_data is not None:
                if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                    raise InputError(f"validation_data must be a pair (x_val, y_val), received "
                                     f"{received(validation_data)}")
                vx = self._inputs(validation_data[0], "validation_data[0]")
                val = (vx, self._labels(validation_data[1], len(vx), "validation_data[1]"))
            else:  # the split's sizes, checked without drawing it
                split_sizes(len(xs), config.training.validation_split, "validation_split")
            return plan, config, xs, ys, val, checked_callbacks(callbacks), \
                checked_flag(progress, "progress")

        plan, config, x, y, val, callbacks, progress = on_every_rank(self._comm, checked)
        self._same_on_every_rank("fit", x.shape, y.shape, config.to_dict(),
                                 None if val is None else (val[0].shape, val[1].shape))
        # Checked: from here on the model changes (its network is built on first use).
        self._plan = plan
        run = on_every_rank(self._comm, lambda: self._run)
        data = Data(x, y, *val) if val is not None else self._split(run, config, x, y)
        run.config = config
        self._use_shards(run)
        # Each call counts early stopping's patience afresh (the best epoch is kept).
        run.extra["stale_epochs"] = 0
        root = self._comm is None or self._comm.rank == 0
        progress = progress and root  # over MPI, rank 0 alone shows progress
        log = print if progress else silent
        loop = [EarlyStopping(log=log), *([EpochLog(log)] if progress else []), *callbacks]
        try:
            with ending_every_rank_on_failure(self._comm):
                return fit(run, data, callbacks=loop, quiet=not progress, log=log)
        finally:
            run.step.close()

    def _same_on_every_rank(self, call: str, *arguments: Any) -> None:
        """Over MPI, an InputError on every rank unless every rank passed arguments of the
        same shapes and settings: ranks that disagree would wait for each other forever."""
        if self._comm is None:
            return
        seen = self._comm.gather_all(arguments)
        odd = next((rank for rank, theirs in enumerate(seen) if theirs != seen[0]), None)
        if odd is not None:
            raise InputError(f"{call}() was called with other arguments on rank {odd} than on "
                             f"rank 0 ({_brief(seen[odd])} against {_brief(seen[0])}); under "
                             "MPI every rank calls it with the same arrays and settings")

    def _split(self, run, config: NetworkConfig, x: np.ndarray, y: np.ndarray):
        """The seeded validation split of ``config`` (the one ``fit`` is about to train
        with), drawn once (from the run's generator, right after initialisation, as
        ``lamina train`` draws it) and reused by later ``fit`` calls on as many samples,
        so ``fit(epochs=1)`` twice is ``fit(epochs=2)``. A split that cannot be made
        changes nothing."""
        from .data import split
        from .training.trainer import Data

        fraction = config.training.validation_split
        key = (len(x), fraction)
        if self._split_key != key:
            if fraction == 0:
                index = (np.arange(len(x)), np.arange(0))
            else:
                (train, _), (val, _) = split(np.arange(len(x)), np.arange(len(x)),
                                             fraction=fraction, rng=run.rng,
                                             name="validation_split")
                index = (train, val)
            self._split_key, self._split_index = key, index
        train, val = self._split_index
        return Data(x[train], y[train], x[val], y[val])

    def _seeded_plan(self, seed: Any):
        """The plan ``fit(seed=...)`` trains with (the model's own when ``seed`` is None);
        nothing of the model changes."""
        if seed is None:
            return self._plan
        self._plan.config.with_training(seed=seed)  # the rule a config's seed obeys
        if self._session is None:
            from .plan import make_plan

            return make_plan(self._plan.config, self.registry, training={"seed": seed})
        if seed != self._session.config.training.seed:
            raise ConfigError([ConfigIssue("seed", (
                f"this model's network was already built with seed "
                f"{self._session.config.training.seed}; a seed only takes effect before the "
                f"first fit or predict: pass Model(..., seed={seed}) or fit(seed={seed}) on a "
                "new model"))])
        return self._plan

    def _use_shards(self, run) -> None:
        from .plan import make_plan
        from .runtime.parallel import ShardedStep

        # the shard count is resolved against the network (batch-dependent layers run whole)
        run.config = make_plan(run.config, self.registry).config
        if run.step.shards != run.config.training.shards:
            run.step.close()
            run.step = ShardedStep(run.network, run.loss, run.rng,
                                   shards=run.config.training.shards, comm=self._comm,
                                   loss_who=run.who.get("loss"))

    # -- using a trained model ----------------------------------------------------------
    def predict(self, x: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """Class probabilities (N, classes) for ``x`` (N, *input_shape), in eval mode."""
        def checked():
            checked_batch_size(batch_size)
            return self._run, self._inputs(x, "x")

        run, x = on_every_rank(self._comm, checked)
        self._same_on_every_rank("predict", x.shape, batch_size)
        with run.step, ending_every_rank_on_failure(self._comm):
            parts = [probabilities(run.loss, run.step.predict(x[i:i + batch_size]), run.who["loss"])
                     for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, *run.network.output_shape))

    def predict_classes(self, x: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """The most probable class index of each sample of ``x``."""
        return np.argmax(self.predict(x, batch_size=batch_size), axis=1)

    def evaluate(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 250,
                 class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Loss, accuracy, per-class accuracy and confusion matrix on ``x``, ``y``: the
        report ``lamina evaluate --json`` prints (without the run and dataset names)."""
        from .training.api import classification_report
        from .training.trainer import evaluate_arrays

        def checked():
            run = self._run
            xs = self._inputs(x, "x")
            ys = self._labels(y, len(xs), "y")
            checked_batch_size(batch_size)
            if not len(xs):
                raise InputError("x holds no samples; there is nothing to evaluate")
            return run, xs, ys, checked_class_names(class_names,
                                                     run.network.output_shape[0])

        run, x, y, names = on_every_rank(self._comm, checked)
        self._same_on_every_rank("evaluate", x.shape, y.shape, batch_size)
        with run.step, ending_every_rank_on_failure(self._comm):
            loss, predicted = evaluate_arrays(run, x, y, batch_size)
        return {"weights": self.weights, **classification_report(loss, predicted, y, names)}

    def save(self, path: str | Path) -> Path:
        """Write the model as a run directory at ``path`` (a new or empty folder): its
        config, weights, optimizer state, generator state and history, in the format of
        ``lamina train``'s (JSON and ``.npz``), so ``lamina evaluate`` reads it too."""

        # Checked on every rank first (a collective step), then rank 0 writes (every
        # rank holds the same model); if it fails, every rank raises.
        path = on_every_rank(self._comm, lambda: checked_path(path, "a folder's path"))
        run = self._run
        on_root(self._comm, lambda: self._write(run, path))
        return path

    def _write(self, run, path: Path) -> None:
        from .training import runs
        from .training.provenance import provenance
        from .training.runs import Checkpoint
        from .training.trainer import optimizer_state

        runs.check_new_run_dir(path)
        best = run.extra.get("best_epoch")
        # A model that holds its best epoch's weights (restore_best) is saved as the run
        # it is: the last epoch's weights as the checkpoint, the best ones beside them.
        # Everything is gathered (plugins asked) before the folder is made.
        last = run.last_state if run.last_state is not None else run.network.state_dict()
        ckpt = Checkpoint(epoch=run.epoch, params=last, optimizer=optimizer_state(run),
                          rng_state=run.rng.bit_generator.state, history=run.history,
                          extra=run.extra,
                          best_params=run.best_state if best is not None else None)
        record = provenance(run, self.registry, {})
        runs.create_run_dir(path)
        runs.write_json(path / runs.CONFIG, run.config.to_dict())
        runs.write_json(path / runs.PROVENANCE, record)
        runs.save_checkpoint(path, ckpt)
        runs.write_metrics(path, run.history)

    def export(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the model's inference graph as ONNX to ``path`` (x -> probabilities, as
        :meth:`predict`); needs the ``onnx`` package (``lamina[onnx]``). An existing file
        is replaced only with ``force``; the file is written atomically."""
        from .export import check_target, to_onnx
        from .training.runs import atomic_write

        path = on_every_rank(self._comm, lambda: checked_path(
            path, "a file's path ending in .onnx"))

        def write() -> None:  # over MPI rank 0 writes; if it fails, every rank raises
            check_target(path, force)
            model = to_onnx(self.network, self.loss,
                            description=f"lamina model, {self.weights}")
            atomic_write(path, model.SerializeToString())

        on_root(self._comm, write)
        return path

    # -- checking arrays --------------------------------------------------------------
    def _inputs(self, x: Any, name: str) -> np.ndarray:
        return checked_samples(x, name, tuple(self._plan.config.input_shape), self._dtype())

    def _labels(self, y: Any, n: int, name: str) -> np.ndarray:
        return checked_labels(y, n, name, self._plan.architecture.output_shape[0])

    def _dtype(self) -> np.dtype:
        """The dtype the network computes in (known before it is built)."""
        from .graph import DTYPE

        return self._session.network.dtype if self._session is not None else DTYPE


def _as_list(plugins: Any) -> list[Any]:
    """``plugins`` as a list, to add a Sequential's own (a plugin given both ways counts
    once); anything else is left for lamina.localplugins.as_plugins to refuse."""
    if plugins is None:
        return []
    if isinstance(plugins, Iterable) and not isinstance(plugins, str | bytes | type | dict):
        return list(plugins)
    return [plugins]


def _checked_registry(registry: Any, plugins: Any) -> Registry:
    if registry is None:
        return load_registry(plugins=plugins)
    if plugins is not None and not (isinstance(plugins, list | tuple) and not plugins):
        raise InputError("pass plugins or registry, not both: a registry is built with its "
                         "plugins already (lamina.load_registry(plugins=[...]))")
    if not isinstance(registry, Registry):
        raise InputError(f"registry must be a lamina.registry.Registry (from "
                         f"lamina.load_registry()), received {received(registry)}")
    return registry


def _brief(arguments: tuple) -> str:
    text = repr(arguments)
    return text if len(text) <= 120 else f"{text[:120]}..."
