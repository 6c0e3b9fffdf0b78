"""Ctrl-C and SIGTERM for the command line: the first asks a running optimization to stop after the
current evaluation so that its image can be kept (as neural-style and style-transfer-pytorch users
expect); the second, or the first when there is nothing to keep yet, quits at once."""

from __future__ import annotations

import signal
import sys
import threading

from .optimize import ProgressEvent, StopOptimization

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Quit now: raised from the signal handler. ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequests:
    """Installs handlers for SIGINT and SIGTERM while in use (main thread only; elsewhere it does nothing).

    It is also a progress callback: once an evaluation has been reported there is an image worth keeping,
    and from then on a first signal only sets ``signum`` and the next report stops the optimization.
    """

    def __init__(self, notice=lambda message: print(message, file=sys.stderr)):
        self.notice = notice
        self.signum: int | None = None
        self.keeping = False  # an image exists that a stop would keep
        self.iteration, self.iterations = 0, 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None or not self.keeping:
            raise Interrupted(signum)
        self.signum = signum
        self.notice(f"stylelab: {signal.Signals(signum).name}: stopping after this iteration to save the image "
                    "(press Ctrl-C again to quit without saving)")

    def __call__(self, event: ProgressEvent) -> None:
        self.keeping = True
        self.iteration, self.iterations = event.iteration, event.iterations
        if self.signum is not None:
            raise StopOptimization

    @property
    def exit_code(self) -> int:
        return 0 if self.signum is None else 128 + self.signum
