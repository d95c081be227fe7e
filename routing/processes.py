"""Helper processes that must not outlive the process they work for: when a solve is
cancelled or its worker is killed (``kill -9`` included), its helpers go with it
instead of lingering as orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent_pid: int) -> None:
    """Be killed when the parent process dies (Linux; elsewhere a no-op), and exit
    now if it died already (between the fork and this call)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        sys.exit(1)
