"""Learning-rate schedules: hand-computed values, validation and purity."""

import math

import pytest

from lamina import ConfigError
from lamina.schedules import (
    ConstantSchedule,
    CosineSchedule,
    StepSchedule,
    learning_rate,
    parse_schedule,
)


def test_constant():
    assert [learning_rate({"type": "constant"}, 0.01, e, 5) for e in range(5)] == [0.01] * 5


def test_step_decays_every_step_size_epochs():
    schedule = StepSchedule(step_size=2, gamma=0.5)
    lrs = [learning_rate(schedule, 0.8, e, 6) for e in range(6)]
    assert lrs == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2], rel=1e-15)


def test_cosine_hand_values():
    # T = 4: cos(0), cos(pi/4), cos(pi/2), cos(3pi/4) mapped onto [min_lr, lr] = [0.1, 1.1]
    schedule = CosineSchedule(min_lr=0.1)
    lrs = [learning_rate(schedule, 1.1, e, 4) for e in range(4)]
    half = math.sqrt(0.5) / 2
    assert lrs == pytest.approx([1.1, 0.1 + 0.5 + half, 0.6, 0.1 + 0.5 - half], rel=1e-14)
    # past the planned end the rate stays at min_lr
    assert learning_rate(schedule, 1.1, 4, 4) == pytest.approx(0.1, rel=1e-14)
    assert learning_rate(schedule, 1.1, 9, 4) == pytest.approx(0.1, rel=1e-14)


def test_cosine_with_warmup():
    # warm-up 0.25, 0.5, 0.75, 1.0 of lr; then cosine over the 2 remaining epochs: 1, 0.5
    schedule = CosineSchedule(warmup_epochs=4)
    lrs = [learning_rate(schedule, 2.0, e, 6) for e in range(6)]
    assert lrs == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 1.0], rel=1e-14)


def test_pure_function_of_the_epoch():
    schedule = parse_schedule({"type": "cosine", "warmup_epochs": 1})
    forward = [learning_rate(schedule, 1e-3, e, 7) for e in range(7)]
    backward = [learning_rate(schedule, 1e-3, e, 7) for e in reversed(range(7))]
    assert forward == backward[::-1]


def test_parse_selects_by_type_and_configs_are_frozen():
    assert isinstance(parse_schedule({"type": "constant"}), ConstantSchedule)
    assert parse_schedule({"type": "step", "step_size": 3}) == StepSchedule(step_size=3, gamma=0.1)
    schedule = parse_schedule({"type": "cosine", "min_lr": 1e-5})
    with pytest.raises(ValueError):
        schedule.min_lr = 0.0
    assert parse_schedule(schedule) is schedule


@pytest.mark.parametrize("data, where", [
    ({"type": "cosin"}, "schedule: Input tag 'cosin'"),
    ({}, "known schedules: constant, step, cosine"),
    ({"type": "step"}, "schedule.step_size: Field required"),
    ({"type": "step", "step_size": 0}, "schedule.step_size"),
    ({"type": "step", "step_size": 2, "gamma": 1.5}, "schedule.gamma"),
    ({"type": "cosine", "decay": 0.5}, "schedule.decay: Extra inputs are not permitted"),
])
def test_invalid_configs_name_the_place(data, where):
    with pytest.raises(ConfigError) as info:
        parse_schedule(data)
    assert where in str(info.value)


def test_impossible_cosine_settings_and_epochs_are_config_errors():
    with pytest.raises(ConfigError, match="warmup_epochs=5, epochs=5"):
        learning_rate({"type": "cosine", "warmup_epochs": 5}, 0.1, 0, 5)
    with pytest.raises(ConfigError, match="min_lr=0.5"):
        learning_rate({"type": "cosine", "min_lr": 0.5}, 0.1, 0, 5)
    with pytest.raises(ConfigError, match="epoch=-1"):
        learning_rate({"type": "constant"}, 0.1, -1, 5)
