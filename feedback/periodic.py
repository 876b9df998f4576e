"""Something to do every so often in a daemon thread (follow the active version, deliver run
reports, forget old Slack event ids); a failure is logged and the next round comes anyway."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def every(seconds: float, task: Callable[[], object], name: str) -> threading.Event:
    """Run `task` every `seconds` until the returned event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            try:
                task()
            except Exception:
                log.exception("%s failed; trying again in %.0f s", name, seconds)

    threading.Thread(target=loop, name=name, daemon=True).start()
    return stop
