"""Progress of a run where people look: a live line on a terminal, a plain
line now and then in a CI log.

On a terminal (stderr is a tty) one line is redrawn in place every second
once the run has lasted ``delay_s``: a bar, cases done of all, the time
elapsed and an estimate of the time left. Elsewhere a plain line with the
same facts is printed every ``interval_s`` seconds (``$GDN_PROGRESS_INTERVAL``,
default 60; 0 turns it off), so a CI log shows a long run is alive. A
ticker thread does the drawing, so the line moves even while one slow case
runs; per-case output goes through :meth:`Progress.write`, which keeps the
bar from tearing the lines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

INTERVAL_ENV = "GDN_PROGRESS_INTERVAL"
WIDTH = 24


def clock_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:09``."""
    s = int(seconds)
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def default_interval() -> float:
    return float(os.environ.get(INTERVAL_ENV, "60"))


class Progress:
    """Cases done of ``total``, elapsed and time left, on ``stream`` (stderr)."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        out: TextIO | None = None,
        delay_s: float = 2.0,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.total, self.delay_s, self.clock = total, delay_s, clock
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.interval_s = default_interval() if interval_s is None else interval_s
        if tty is None:
            tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.tty = tty
        self.start = self.last_line = clock()
        self.done = 0
        self.label = ""
        self.shown = False  # the terminal line is on screen
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the run calls

    def __enter__(self) -> Progress:
        period = 1.0 if self.tty else min(1.0, self.interval_s)
        if self.tty or self.interval_s > 0:
            self._thread = threading.Thread(target=self._tick_loop, args=(period,), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._clear()

    def advance(self, label: str = "") -> None:
        """One more case is done; ``label`` names it."""
        with self._lock:
            self.done += 1
            self.label = label

    def write(self, text: str) -> None:
        """Print a line of the run's own output without tearing the progress line."""
        with self._lock:
            self._clear()
            print(text, file=self.out, flush=True)
            if self.tty and self._due_on_terminal():
                self._draw()

    # -- what the ticker does

    def status(self) -> str:
        """``12/40 cases, 0:42 elapsed, about 1:10 left``."""
        elapsed = self.clock() - self.start
        text = f"{self.done}/{self.total} cases, {clock_text(elapsed)} elapsed"
        if self.done and self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", about {clock_text(left)} left"
        return text

    def tick(self) -> None:
        """Redraw the terminal line, or print a plain line when one is due."""
        with self._lock:
            if self.tty:
                if self._due_on_terminal():
                    self._draw()
            elif self.interval_s > 0 and self.clock() - self.last_line >= self.interval_s:
                self.last_line = self.clock()
                print(f"progress: {self.status()}", file=self.stream, flush=True)

    def _tick_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            self.tick()

    def _due_on_terminal(self) -> bool:
        return self.clock() - self.start >= self.delay_s

    def _draw(self) -> None:
        filled = WIDTH * self.done // max(1, self.total)
        bar = ("=" * filled + ">").ljust(WIDTH)[:WIDTH]
        line = f"[{bar}] {self.status()}  {self.label}"
        self.stream.write("\r" + line[:118].ljust(118))
        self.stream.flush()
        self.shown = True

    def _clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
            self.shown = False
