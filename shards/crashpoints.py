"""Crash injection at the step boundaries of a write, for the tests that prove a data dir survives a writer
killed at any point (tests/test_crash_recovery.py).

``crash_point(step)`` ends the process at once — no cleanup, no ``finally`` blocks, like ``kill -9`` — when the
environment variable ``FADA_CRASH_AT`` names ``step``; otherwise it does nothing.
"""

from __future__ import annotations

import os

CRASH_ENV = "FADA_CRASH_AT"
CRASH_EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os._exit(CRASH_EXIT_CODE)
