"""A one-line progress bar on stderr, shown only once a run lasts a few seconds."""

from __future__ import annotations

import sys
import time


class Progress:
    """``[=====>    ] 12/40 file.yaml::case``; silent for short runs and non-terminals."""

    def __init__(self, total: int, delay_s: float = 2.0, stream=None):
        self.total, self.delay_s = total, delay_s
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.done = 0
        self.shown = False
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, label: str) -> None:
        self.done += 1
        if not self.enabled or time.monotonic() - self.start < self.delay_s:
            return
        width = 30
        filled = int(width * self.done / max(1, self.total))
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        self.stream.write(f"\r[{bar[:width]}] {self.done}/{self.total} {label[:60]:<60}")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 110 + "\r")
            self.stream.flush()
            self.shown = False
