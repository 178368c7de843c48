"""lamina from Python: build a network, look into it (``layers``, ``summary``,
weights), ``fit`` it on arrays or take single ``train_step``s, ``evaluate``,
``predict``, ``save`` and ``load`` (docs/python-api.md).

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

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import NetworkConfig
from .errors import StateError
from .inputs import (
    InputError,
    checked_batch_size,
    checked_class_names,
    checked_flag,
    checked_labels,
    checked_path,
    checked_samples,
    checked_targets,
    received,
)
from .registry import Registry, load_registry
from .runtime.distributed import (
    communicator,
    ending_every_rank_on_failure,
    on_every_rank,
    on_root,
    same_on_every_rank,
)
from .runtime.parallel import probabilities
from .summary import LayerInfo, layer_infos
from .training.fitting import Fitting, ValidationSplit, weights_changed


class Model(Fitting):
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
        self._split = ValidationSplit()  # fit's validation split, drawn once

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
        # the split it validated on is not stored: fit says so when it draws another
        model._split.unknown = any(r["val_loss"] is not None for r in session.history)
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
    def optimizer(self):
        """The optimizer plugin instance (``step(params, grads)``; ``lr``, the learning
        rate of its next step)."""
        return self._run.optimizer

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch trained so far, over every ``fit`` call (each call
        returns its own :class:`~lamina.training.history.History`), as in a run's
        ``metrics.json``."""
        return [dict(r) for r in self._session.history] if self._session is not None else []

    @property
    def weights(self) -> str:
        """Which weights the model holds: ``"initial"``, ``"epoch 3 (last)"``, ``"epoch 2 of
        4 (best validation loss 0.0312)"``, ``"set by set_weights() after epoch 3"``,
        ``"epoch 3, then train_step()"``."""
        run = self._session
        if run is None or (run.weights is None and not run.epoch):
            return "initial"
        return run.weights or f"epoch {run.epoch} (last)"

    @property
    def stop_training(self) -> bool:
        """Set to True by a callback (``self.model.stop_training = True``, as in Keras):
        training ends after the current epoch."""
        return self._session is not None and self._session.stop_training

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._run.stop_training = checked_flag(value, "stop_training")

    # -- looking inside ---------------------------------------------------------------
    @property
    def layers(self) -> list[LayerInfo]:
        """Every layer in order (blocks' layers by their dotted names): ``name``,
        ``type``, ``output_shape``, ``params`` (values held) and ``layer``, the plugin's
        layer object itself (built on first use)."""
        return layer_infos(self.network)

    def count_params(self, *, trainable: bool | None = None) -> int:
        """Values in every parameter and non-trainable array (``trainable=True`` or
        ``False``: those alone), known before the network is built."""
        architecture = self._plan.architecture
        if trainable is None:
            return architecture.count(trainable=True) + architecture.count(trainable=False)
        return architecture.count(trainable=checked_flag(trainable, "trainable"))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and non-trainable array, by name (``conv2d_1.W``)."""
        return self.network.state_dict()

    def set_weights(self, weights: Mapping[str, Any]) -> None:
        """Copy ``weights`` (as :meth:`get_weights` returns them: every array, by name)
        into the network. Missing or unknown names, other shapes, dtypes that do not
        cast or non-finite values are all refused at once, and nothing changes then.
        The optimizer's state is kept (``fit`` continues from it); the best epoch so
        far is forgotten, so ``save`` and ``load`` keep these weights."""
        def checked():
            if not isinstance(weights, Mapping) or not all(isinstance(k, str) for k in weights):
                raise InputError(f"weights must be a dict of arrays by name, as get_weights() "
                                 f"returns, received {received(weights)}")
            run = self._run
            try:
                run.network.check_state_dict(
                    weights, "the dict given to set_weights()",
                    hint=". get_weights() returns every name with its shape and dtype")
            except StateError as error:
                raise InputError(str(error)) from None
            return run

        run = on_every_rank(self._comm, checked)
        # copies first: arrays given may be the network's own (a swap through params())
        run.network.load_state_dict({key: np.array(value) for key, value in weights.items()})
        weights_changed(run, f"set by set_weights() after epoch {run.epoch}")

    def summary(self, *, expand: bool = False, print_fn: Callable[[str], Any] | None = print
                ) -> str:
        """Print and return the table of layers, output shapes and parameter counts that
        ``lamina summary`` prints: a block as one row, or with ``expand`` its layers
        listed under it. ``print_fn=None`` only returns it."""
        text = self._plan.architecture.summary(expand=expand)
        if print_fn is None:
            return text
        print_fn(text)
        return Printed(text)

    def __repr__(self) -> str:
        config = self._plan.config
        return (f"<lamina.Model {tuple(config.input_shape)} -> "
                f"{self._plan.architecture.output_shape}, {len(self._plan.architecture.nodes)} "
                f"layers, {self.count_params():,} parameters, {config.loss.type} loss, "
                f"{config.optimizer.type} optimizer, weights: {self.weights}>")

    def _repr_html_(self) -> str:  # a notebook shows the summary's table
        return (f"<pre>{html.escape(repr(self))}\n"
                f"{html.escape(self._plan.architecture.summary())}</pre>")

    @property
    def _run(self):
        if self._session is None:
            from .training.trainer import make_session

            self._session = make_session(self._plan, self.registry, None, comm=self._comm)
        return self._session

    # -- using a trained model ----------------------------------------------------------
    def predict(self, x: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """Class probabilities (N, classes) for ``x`` (N, *input_shape), in eval mode; for
        a value loss its predictions (N, outputs): ``mse`` the outputs themselves,
        ``binary_cross_entropy`` each output's probability (the loss's
        ``predict_proba``)."""
        def checked():
            checked_batch_size(batch_size)
            return self._run, self._inputs(x, "x")

        run, x = on_every_rank(self._comm, checked)
        same_on_every_rank(self._comm, "predict", x.shape, batch_size)
        with run.step, ending_every_rank_on_failure(self._comm):
            parts = [probabilities(run.loss, run.step.predict(x[i:i + batch_size]), run.who["loss"])
                     for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, *run.network.output_shape))

    def predict_classes(self, x: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """The most probable class index of each sample of ``x`` (a classification loss)."""
        if not self._loss_class().traits.classifies:
            raise InputError(
                f"predict_classes() picks the most probable class, and this model's loss, "
                f"{self._plan.config.loss.type}, is a value loss, not a classification loss: "
                "use predict(x), which returns its predictions")
        return np.argmax(self.predict(x, batch_size=batch_size), axis=1)

    def evaluate(self, x: np.ndarray, y: np.ndarray, *, batch_size: int = 250,
                 class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Loss, accuracy, per-class accuracy and confusion matrix on ``x``, ``y``: the
        report ``lamina evaluate --json`` prints (without the run and dataset names).
        For a value loss, ``y`` holds target rows and the report is a regression's:
        ``loss``, ``mse`` and ``mae`` (of :meth:`predict`'s output against ``y``, over
        every entry), ``samples`` and ``weights``."""
        from .training.api import classification_report, regression_report
        from .training.trainer import evaluate_arrays

        classifies = self._loss_class().traits.classifies

        def checked():
            xs = self._inputs(x, "x")
            ys = self._labels(y, len(xs), "y")
            checked_batch_size(batch_size)
            if not len(xs):
                raise InputError("x holds no samples; there is nothing to evaluate")
            run = self._run  # the arrays fit: the network may be built
            if not classifies:
                if class_names is not None:
                    raise InputError(
                        f"class_names names the classes of a classification loss; this "
                        f"model's loss, {self._plan.config.loss.type}, is a value loss, whose "
                        "report (loss, mse, mae) has no classes: leave class_names out")
                return run, xs, ys, None
            return run, xs, ys, checked_class_names(class_names,
                                                    run.network.output_shape[0])

        run, x, y, names = on_every_rank(self._comm, checked)
        same_on_every_rank(self._comm, "evaluate", x.shape, y.shape, batch_size)
        with run.step, ending_every_rank_on_failure(self._comm):
            loss, predicted = evaluate_arrays(run, x, y, batch_size)
        report = classification_report(loss, predicted, y, names) if classifies else \
            regression_report(loss, predicted, y)
        return {"weights": self.weights, **report}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model as a run directory at ``path``: its config, weights, optimizer
        state, generator state and history, in the format of ``lamina train``'s (JSON
        and ``.npz``), so ``Model.load`` and ``lamina evaluate`` read it. ``path`` is a
        new or empty folder, or with ``overwrite=True`` a model saved before (a folder
        holding other files is never replaced). The folder appears whole or not at all
        (lamina.training.saving)."""
        from .training.saving import save_model

        # Checked on every rank first (a collective step), then rank 0 writes (every
        # rank holds the same model); if it fails, every rank raises.
        path = on_every_rank(self._comm, lambda: (checked_path(path, "a folder's path"),
                                                  checked_flag(overwrite, "overwrite"))[0])
        run = self._run
        on_root(self._comm, lambda: save_model(run, self.registry, path, overwrite=overwrite))
        return path

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
        """``y`` checked for the loss: class indices (N,) for a classification loss, target
        rows (N, outputs) in the network's dtype for a value loss."""
        loss, outputs = self._plan.config.loss.type, self._plan.architecture.output_shape[0]
        traits = self._loss_class().traits
        if traits.classifies:
            values = [entry.name for entry in self.registry.losses.values()
                      if not entry.cls.traits.classifies]
            return checked_labels(y, n, name, outputs, loss=loss, value_losses=values)
        return checked_targets(y, n, name, outputs, forms=traits.targets, loss=loss,
                               dtype=self._dtype())

    def _loss_class(self) -> type:
        """The loss plugin's class (its ``traits``), known before the network is built."""
        return self.registry.loss(self._plan.config.loss.type)

    def _dtype(self) -> np.dtype:
        """The dtype the network computes in (known before it is built)."""
        from .graph import DTYPE

        return self._session.network.dtype if self._session is not None else DTYPE


class Printed(str):
    """Text that was printed already: a notebook does not show it again as the cell's value."""

    def _ipython_display_(self) -> None:
        pass


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
