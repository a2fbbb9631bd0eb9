"""Progress of long work: a tqdm bar on a terminal; in a log (CI, a file, a pipe) a few plain lines instead of
hundreds of carriage-return updates."""
from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """`update(n)`, `write(text)`, `close()`; silent when `quiet` or when there is nothing to do."""

    def __init__(self, total: int, desc: str, unit: str, *, quiet: bool = False, stream=None):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.stream = stream or sys.stderr
        self.off = quiet or total <= 0
        self.bar = None
        self._next = 0.25
        if not self.off and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.off:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        while self.done >= self._next * self.total and self._next <= 1.0:
            print(f"[audit] {self.desc}: {self.done}/{self.total} {self.unit}s", file=self.stream, flush=True)
            self._next += 0.25

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
