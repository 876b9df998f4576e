"""Which process owns a run or an answer in progress, and whether that process is still alive.

An owner is `host:pid:start`, the process's start time in milliseconds, so a reused process id
is not mistaken for the owner. On the owner's own host any process can tell at once that it is
gone; from another host nobody can, and a stale heartbeat decides instead.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

import psutil

HOST = socket.gethostname()


@lru_cache(maxsize=1)
def _this(pid: int) -> str:
    return f"{HOST}:{pid}:{int(psutil.Process(pid).create_time() * 1000)}"


def this_process() -> str:
    return _this(os.getpid())  # keyed by pid: a forked child is its own owner


def owner_alive(owner: str | None) -> bool | None:
    """True or False on the owner's host; None when it cannot be told (another host, no owner)."""
    if not owner:
        return None
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    started = started.split(":")[0]
    if host != HOST or not pid.isdigit() or not started.isdigit():
        return None
    try:
        return abs(psutil.Process(int(pid)).create_time() * 1000 - int(started)) < 1000
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return None
