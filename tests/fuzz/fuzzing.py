"""What the fuzz tests share: a budget, a guard against hangs, and the one property.

A module of its own rather than a conftest, because the tests import it by name.

Every test here feeds lamina generated input (configs, command lines, IDX files, run
directories) and asserts the property lamina promises for bad input of any kind: a
:class:`LaminaError` (or, from argparse, exit status 2) with a message, never another
exception and never a hang, and no pre-existing file changed. The examples are drawn
deterministically (``derandomize``), so a run is repeatable, and bounded in number so
that the whole folder takes seconds.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

#: examples per fuzz test: CI's bounded budget; LAMINA_FUZZ_EXAMPLES=2000 for a longer hunt
BUDGET = int(os.environ.get("LAMINA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=BUDGET, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])


class Hang(Exception):
    """An input made lamina run for longer than any bad input should take."""


@contextmanager
def no_hang(seconds: int = 20):
    """Fail (rather than wait forever) when the block outlives ``seconds``."""
    def alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
