"""The hooks a lamina plugin implements: the contract between lamina and its plugins.

A plugin is a module (or any object) with functions marked ``@lamina.hookimpl``
whose names are those below. Built-in plugins are the modules listed in
:data:`lamina.registry.BUILTIN_PLUGINS`; third-party plugins are found through
the ``lamina`` entry-point group::

    [project.entry-points.lamina]
    my_layers = "my_package.layers"

Each hook takes no arguments and returns a list of classes, so it is pure and
easy to call from a test. lamina validates every class it receives and records
which distribution provided it.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "lamina"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: the kinds of plugin class, and the hook that registers each
KINDS = ("layer", "loss", "optimizer", "block")
HOOKS = {
    "layer": "lamina_register_layers",
    "loss": "lamina_register_losses",
    "optimizer": "lamina_register_optimizers",
    "block": "lamina_register_blocks",
}


@hookspec
def lamina_register_layers() -> list[type]:
    """Return the layer classes this plugin provides.

    Each class must have

    - ``name``: a lowercase identifier (``^[a-z][a-z0-9_]*$``), the value of
      ``type`` that selects it in a network config;
    - ``Config``: a pydantic model with ``extra="forbid"``, validating the layer's
      settings (every key of the config's layer table other than ``type``,
      ``name`` and ``inputs``);
    - ``traits``: a :class:`lamina.LayerTraits` with its declarations, and no flag
      set anywhere else;
    - the methods ``compute_output_shape``, ``param_specs``, ``build``, ``forward``,
      ``backward(dy, *, input_grad)``, ``params``, ``grads``, ``state`` and
      ``examples`` of the layer contract (see :mod:`lamina.layer`; subclassing
      :class:`lamina.Layer` provides all but the first, ``forward``, ``backward``
      and ``examples``).

    A name already provided by another plugin is an error naming both providers.
    """


@hookspec
def lamina_register_losses() -> list[type]:
    """Return the loss classes this plugin provides.

    Each class must have ``name``, ``Config`` (as for layers), ``traits`` (a
    :class:`lamina.LossTraits`: the forms of target it accepts) and the methods
    ``forward(logits, targets) -> float``, ``backward() -> dlogits``,
    ``predict_proba(logits)`` and ``examples()`` of the loss contract (see
    :mod:`lamina.loss`; subclassing :class:`lamina.Loss` provides ``forward``, which
    calls the plugin's ``compute(z, y)``).
    """


@hookspec
def lamina_register_optimizers() -> list[type]:
    """Return the optimizer classes this plugin provides.

    Each class must have ``name``, ``Config`` (as for layers, with a learning rate
    ``lr``) and the methods ``step(params, grads)``, ``state_dict()``,
    ``load_state_dict(state)`` and ``examples()`` of the optimizer contract (see
    :mod:`lamina.optimizer`; subclassing :class:`lamina.Optimizer` provides all but
    ``examples``, and calls the plugin's ``update(params, grads)``).
    """


@hookspec
def lamina_register_blocks() -> list[type]:
    """Return the block classes this plugin provides: named sub-networks of existing
    layers, usable as a layer type.

    Each class must have ``name`` (as for layers; layers and blocks share one set of
    names), ``Config`` (its settings, as for layers) and the class methods
    ``layers(config) -> list[dict]`` (the layer tables it stands for, a pure function
    of its settings) and ``examples()`` (see :mod:`lamina.block`; subclass
    :class:`lamina.Block`).
    """
