"""Ctrl-C during training: the first one stops after the current iteration, a second one aborts, but never in the
middle of a checkpoint set."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

INTERRUPTED_EXIT_CODE = 130  # the shell's status for a process stopped by SIGINT


class GracefulStop:
    """While active (main thread only), the first SIGINT asks the loop to stop after the current iteration; a
    second one raises KeyboardInterrupt at once, or, inside :meth:`deferred` (a checkpoint being written), as soon as
    that block is done, so that an abort never cuts a checkpoint set in two."""

    def __init__(self):
        self.requested = False
        self.aborted = False
        self._deferring = 0
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            if self._deferring:
                self.aborted = True
                print("\ninterrupt: aborting as soon as the checkpoint being written is complete", flush=True)
                return
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: stopping after this iteration and saving 'latest' (Ctrl-C again: abort without saving "
              "more; a checkpoint being written is finished first)", flush=True)

    @contextmanager
    def deferred(self):
        """A block that a second SIGINT does not interrupt; KeyboardInterrupt is raised when it ends instead."""
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.aborted and not self._deferring:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
