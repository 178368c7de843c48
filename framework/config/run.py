"""Run settings: the ``[training]`` section, checked and resolved once.

:class:`TrainingConfig` validates the section on its own (types, bounds, the
schedule against the number of epochs); :func:`resolve_shards` settles the one
setting that depends on the network (how many shards a batch is cut into), and
:func:`cross_section_issues` the ones that depend on another section (a cosine
schedule's ``min_lr`` against the optimizer's ``lr``). :func:`lamina.plan.make_plan`
calls them all before anything runs, so ``lamina validate`` reports what training
would refuse, and the resolved values are what the run directory records.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..data.specs import DATASETS
from ..errors import ConfigError, ConfigIssue
from ..schedules import ConstantSchedule, CosineSchedule, ScheduleConfig, parse_schedule

#: training.shards: each shard is a replica of the network
MAX_SHARDS = 64
#: shards used when the config does not say: the reference machine's cores. Fixed rather
#: than read from the machine, so that a seed gives the same run everywhere
DEFAULT_SHARDS = 2
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 16

DatasetName = Literal[tuple(DATASETS)]  # type: ignore[valid-type]


class TrainingConfig(BaseModel):
    """How the network is trained; ``lamina train``'s flags and ``Model.fit``'s arguments
    override the most used keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: DatasetName = Field("mnist", description="named dataset: "
                                 + " or ".join(DATASETS))
    epochs: int = Field(15, ge=1, le=MAX_EPOCHS, description="passes over the training set")
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE, description="samples per minibatch")
    seed: int = Field(0, ge=0, lt=2**64, description="seeds initialisation, shuffling and "
                      "dropout")
    validation_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of the training set held out for validation"
    )
    schedule: ScheduleConfig = Field(
        default_factory=ConstantSchedule, description="learning-rate schedule"
    )
    limit: int | None = Field(
        None, ge=1, description="train on the first N training samples only (quick runs)"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, le=MAX_EPOCHS,
        description="stop after this many epochs without a better validation loss",
    )
    restore_best: bool = Field(
        False, description="end training with the weights of the epoch with the best "
        "validation loss (evaluate, predict and export then use them by default)",
    )
    shuffle: bool = Field(
        True, description="draw a new order of the training samples every epoch (false: "
        "batches in the order of the data)",
    )
    shards: int | None = Field(
        None, ge=1, le=MAX_SHARDS,
        description="split each batch into this many slices run on parallel threads "
        "(lamina.runtime.parallel); default 2, or 1 for a network with batch-dependent layers",
    )

    # A field validator rather than a model validator: it runs (epochs is declared
    # first) even when another field is wrong, so every mistake is reported at once.
    @field_validator("schedule")
    @classmethod
    def _schedule_fits_the_epochs(cls, schedule: Any, info: ValidationInfo) -> Any:
        epochs = info.data.get("epochs")
        if isinstance(schedule, CosineSchedule) and epochs is not None \
                and schedule.warmup_epochs >= epochs:
            raise ValueError(
                f"the cosine schedule's warm-up must end before the last epoch: expected "
                f"warmup_epochs < epochs, received warmup_epochs={schedule.warmup_epochs} and "
                f"epochs={epochs}; lower warmup_epochs or train longer"
            )
        return schedule


def schedule_of(training: TrainingConfig | None, section: Any) -> Any:
    """The validated schedule: the training section's, or, when another key of that
    section is wrong, the schedule validated on its own (so its checks still run)."""
    if training is not None:
        return training.schedule
    if not isinstance(section, dict) or "schedule" not in section:
        return ConstantSchedule()
    try:
        return parse_schedule(section["schedule"])
    except ConfigError:
        return None  # reported with the training section


def cross_section_issues(schedule: Any, optimizer: BaseModel) -> list[ConfigIssue]:
    """Mistakes that only show with two sections side by side."""
    lr = getattr(optimizer, "lr", None)
    if isinstance(schedule, CosineSchedule) and lr is not None and schedule.min_lr > lr:
        return [ConfigIssue("training.schedule.min_lr", (
            f"the cosine schedule decays from the optimizer's lr down to min_lr, so "
            f"min_lr <= lr; received min_lr={schedule.min_lr} and lr={lr}"
        ))]
    return []


def unshardable(nodes: Any) -> str | None:
    """Why a network of ``nodes`` (with ``layer.traits`` and parameter ``specs``) must run
    its batch whole, or ``None`` if shards compute exactly what the whole batch does."""
    for node in nodes:
        if node.layer.traits.batch_dependent:
            return (f"{node.name} ({node.config.type}) depends on the whole batch, so a "
                    "shard would change its output")
        state = [key for key, spec in node.specs.items() if not spec.trainable]
        if state:
            return (f"{node.name} ({node.config.type}) keeps non-trainable state "
                    f"({', '.join(state)}) that shards could not merge")
    return None


def resolve_shards(requested: int | None, nodes: Any) -> tuple[int, ConfigIssue | None]:
    """The shard count for a network of ``nodes``: ``requested``, or by default
    :data:`DEFAULT_SHARDS` where sharding is exact and 1 where it is not; with the issue
    when an explicit count above 1 would change the results."""
    reason = unshardable(nodes)
    if requested is None:
        return (1 if reason else DEFAULT_SHARDS), None
    if requested > 1 and reason:
        return 1, ConfigIssue("training.shards", (
            f"{requested} shards, but {reason}; set shards = 1 (or leave it out: lamina then "
            "picks 1 for this network)"
        ))
    return requested, None
