"""A progress line in the log every few seconds while a long Spark job runs."""

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

logger = logging.getLogger(__name__)


class ProgressLog:
    """Logs done of total, the rate and the time left every `interval` seconds, then a last line."""

    def __init__(
        self, done: Callable[[], int], total: int, what: str, interval: float = 10.0
    ) -> None:
        self._done = done
        self._total = total
        self._what = what
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True, name="progress")
        self._start = 0.0

    def __enter__(self) -> "ProgressLog":
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._thread.join()
        if error is None:
            elapsed = time.monotonic() - self._start
            logger.info(
                "%s %d in %.0f s (%.1f/s)", self._what, self._total, elapsed, self._total / elapsed
            )

    def _report(self) -> None:
        while not self._stopped.wait(self._interval):
            logger.info(self.line(self._done(), time.monotonic() - self._start))

    def line(self, done: int, elapsed: float) -> str:
        """`what done of total (share), rate/s, about N min left` for the figures given."""
        share = done / self._total if self._total else 1.0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = f"about {(self._total - done) / rate / 60:.1f} min left" if rate else "starting"
        return f"{self._what} {done} of {self._total} ({share:.0%}), {rate:.1f}/s, {left}"
