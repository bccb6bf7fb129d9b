"""Child processes that must not outlive the process that started them.

A promotion step or a load test left running after its driver was killed would race the resumed
driver (two trainings, two Locust runs writing the same files). Servers are the exception: they are
production and are started detached on purpose.
"""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def bound_to_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess: the child is killed when its parent dies (Linux; elsewhere None)."""
    return _die_with_parent if sys.platform == "linux" else None
