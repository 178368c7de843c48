"""Learning-rate schedules: the learning rate as a pure function of the epoch index.

The trainer calls :func:`learning_rate` at the start of every epoch (epochs are
numbered from 0) and assigns the result to ``optimizer.lr``. The value depends
only on the schedule config, the base learning rate (the optimizer's ``lr``),
the epoch index and the total number of epochs, so a schedule has no state of
its own: a resumed run recomputes exactly the same learning rate from the epoch
it resumes at, and checkpoints need not store anything for it.

Schedules (``type`` selects one):

- ``constant``: lr(e) = base_lr
- ``step``:     lr(e) = base_lr * gamma ** floor(e / step_size)
- ``cosine``:   linear warm-up over the first W epochs, lr(e) = base_lr * (e + 1) / W,
  then cosine decay from base_lr towards min_lr over the remaining T - W epochs:
  lr(e) = min_lr + (base_lr - min_lr) * (1 + cos(pi * (e - W) / (T - W))) / 2
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import ConfigError, ConfigIssue


class _ScheduleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConstantSchedule(_ScheduleBase):
    """The base learning rate for every epoch."""

    type: Literal["constant"] = "constant"


class StepSchedule(_ScheduleBase):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    type: Literal["step"] = "step"
    step_size: int = Field(..., ge=1, description="epochs between two decays")
    gamma: float = Field(0.1, gt=0, le=1, description="factor applied at each decay")


class CosineSchedule(_ScheduleBase):
    """Optional linear warm-up, then half a cosine from the base lr down to ``min_lr``."""

    type: Literal["cosine"] = "cosine"
    min_lr: float = Field(0.0, ge=0, description="learning rate the cosine decays towards")
    warmup_epochs: int = Field(
        0, ge=0, description="epochs of linear warm-up from base_lr / warmup_epochs to base_lr"
    )


ScheduleConfig = Annotated[
    ConstantSchedule | StepSchedule | CosineSchedule, Field(discriminator="type")
]
"""Any schedule config; the ``type`` key picks the model."""

SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine")

_adapter: TypeAdapter[Any] = TypeAdapter(ScheduleConfig)


def parse_schedule(
    data: ScheduleConfig | dict[str, Any], *, path: str = "schedule"
) -> ScheduleConfig:
    """Validate ``data`` (a dict with a ``type`` key) into a schedule config.

    Raises :class:`ConfigError` listing every mistake under ``path``.
    """
    if isinstance(data, BaseModel):
        return data
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            where = ".".join(str(part) for part in (path, *err["loc"][1:]))
            message = err["msg"]
            if err["type"] == "union_tag_not_found":
                message = f"a 'type' key is required; known schedules: {', '.join(SCHEDULES)}"
            elif err["type"] not in ("missing", "union_tag_invalid"):
                message += f" (received {err['input']!r})"
            issues.append(ConfigIssue(where, message))
        raise ConfigError(issues) from exc


def learning_rate(
    schedule: ScheduleConfig | dict[str, Any], base_lr: float, epoch: int, total_epochs: int
) -> float:
    """The learning rate for epoch ``epoch`` (0-based) of a run of ``total_epochs`` epochs.

    ``schedule`` is a schedule config (or a dict validated with :func:`parse_schedule`).
    """
    schedule = parse_schedule(schedule)
    if total_epochs < 1 or epoch < 0:
        raise ConfigError([ConfigIssue(
            "schedule",
            f"expected epoch >= 0 and total_epochs >= 1, received epoch={epoch}, "
            f"total_epochs={total_epochs}; epochs are counted from 0",
        )])
    if isinstance(schedule, ConstantSchedule):
        return float(base_lr)
    if isinstance(schedule, StepSchedule):
        return float(base_lr * schedule.gamma ** (epoch // schedule.step_size))
    return _cosine(schedule, float(base_lr), epoch, total_epochs)


def _cosine(schedule: CosineSchedule, base_lr: float, epoch: int, total_epochs: int) -> float:
    warmup, min_lr = schedule.warmup_epochs, schedule.min_lr
    if warmup >= total_epochs or min_lr > base_lr:
        raise ConfigError([ConfigIssue(
            "schedule",
            f"cosine needs warmup_epochs < epochs and min_lr <= lr, received "
            f"warmup_epochs={warmup}, epochs={total_epochs}, min_lr={min_lr}, lr={base_lr}; "
            "lower warmup_epochs or min_lr",
        )])
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    # Past the planned end (a run extended on resume) the rate stays at min_lr.
    progress = min(1.0, (epoch - warmup) / (total_epochs - warmup))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
