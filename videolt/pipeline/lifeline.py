"""Worker processes die with the driver that started them, however it dies.

A pool worker started through multiprocessing's forkserver is the forkserver's child, not the
driver's, so the kernel's parent-death signal (PR_SET_PDEATHSIG) would fire only when the
forkserver ends, and the forkserver ends only once every worker has closed its end of a pipe: after
a SIGKILL of the driver, workers blocked on the call queue, the forkserver and multiprocessing's
resource tracker lived on for minutes. `exit_with(pid)`, called in the worker's initializer, makes
the worker watch the driver itself: a thread waits on a pidfd of the driver (Linux 5.3+; elsewhere
it polls once a second) and ends the worker the moment the driver is gone. With the workers gone,
the forkserver and the resource tracker see their pipes close and end too.
"""

from __future__ import annotations

import os
import select
import threading
import time

from videolt.data.locks import pid_alive

__all__ = ["exit_with"]

_POLL_S = 1.0


def exit_with(pid: int) -> None:
    """End this process (exit status 1, no cleanup: its driver is gone) as soon as process `pid` ends."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd here: poll
        fd = None
    threading.Thread(target=_watch, args=(pid, fd), name="videolt-lifeline", daemon=True).start()


def _watch(pid: int, fd: int | None) -> None:
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
    else:
        while pid_alive(pid):
            time.sleep(_POLL_S)
    os._exit(1)
