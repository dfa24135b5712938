"""A dependency-free progress bar on stderr for long work (calibration, benchmarks)."""
import sys
import time


class Progress:
    """``enabled=None`` shows the bar only when stderr is a terminal (quiet in CI and pipes)."""

    def __init__(self, *, total: int, desc: str, enabled: bool | None = None, width: int = 30):
        self.total = max(int(total), 1)
        self.desc = desc
        self.done = 0
        self.width = width
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            filled = int(self.width * self.done / self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            sys.stderr.write(f"\r{self.desc} [{bar}] {100 * self.done // self.total:3d}%")
            sys.stderr.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
        return False
