"""One live progress display for a sweep: done / running / failed / left, elapsed time and an estimate."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live


def run_line(result) -> str:
    """The line of one finished run (a ``sweeps.driver.RunResult``): status, label, the worker count when several
    data-parallel workers trained it, run id, and the first line of its error."""
    on = f" on {result.workers} workers" if result.workers > 1 else ""
    msg = f"{result.status:>6}  {result.label}{on}  ({result.run_id})"
    return msg + (f": {result.error.splitlines()[0]}" if result.error else "")


class SweepDisplay:
    def __init__(self, console: Console | None = None, slots: int = 1):
        self.console = console or Console(highlight=False)
        self.slots = slots  # how many runs can execute at once; the rest of the submitted ones are queued
        self.live: Live | None = None
        self.total = self.done = self.failed = self.running = 0
        self.t0 = time.perf_counter()
        self.durations: list[float] = []

    def note(self, text: str) -> None:
        self.console.print(text)

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        if self.console.is_terminal:
            self.live = Live(self.line(), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()
        else:
            self.console.print(self.line(), soft_wrap=True)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        left = self.total - self.done - self.failed - self.running
        eta = ""
        if self.durations and (left or self.running):
            per = sum(self.durations) / len(self.durations)
            eta = f", about {per * (left + self.running) / max(self.slots, 1):.0f} s left"
        return (f"runs: {self.done} done, {self.running} running, {self.failed} failed, {left} left "
                f"of {self.total} - {elapsed:.0f} s elapsed{eta}")

    def finished(self, result) -> None:
        self.running = max(0, self.running - 1)
        if result.status in ("done", "cached"):
            self.done += 1
        else:
            self.failed += 1
        if result.status == "done":
            self.durations.append(result.wall_s)
        msg = run_line(result)
        if self.live:
            self.live.console.print(msg, soft_wrap=True)
        else:
            self.console.print(msg, soft_wrap=True)
            self.console.print(self.line(), soft_wrap=True)

    def tick(self, pending: int) -> None:
        self.running = min(pending, self.slots)
        if self.live:
            self.live.update(self.line())

    def stop(self) -> None:
        if self.live:
            self.live.update(self.line())
            self.live.stop()
            self.live = None
