"""What a load command says before and while it runs: how long it will take (one line before the first run) and a
progress bar over the runs with the time left (rich, on stderr; the rows' own lines go to stdout)."""

from __future__ import annotations

import dataclasses
import threading
import time

from rtml_profile.scenarios.loadgen import sut

SETUP_S = 5.0  # per group: the worker starts, loads the model, times its back-to-back calls and the capacity probe


@dataclasses.dataclass(frozen=True)
class Run:
    """One planned run: queries scheduled (0: not known before it starts), the offered rate (0: a closed loop or
    a searched rate), its seconds (at least `seconds` when not `exact`)."""

    queries: int
    rate: float
    seconds: float
    exact: bool


def estimate_line(planned: list[Run], groups: int) -> str:
    """One line: how many runs, queries and at what rate, and about how long (or at least how long), for the
    planned runs of `groups` groups."""
    secs = sum(r.seconds for r in planned) + SETUP_S * groups
    exact = all(r.exact for r in planned)
    queries = sum(r.queries for r in planned)
    rates = sorted({r.rate for r in planned if r.rate > 0})
    at = "" if not rates else f" at {rates[0]:g}/s" if len(rates) == 1 else f" at {rates[0]:g}-{rates[-1]:g}/s"
    what = (
        f"{queries:,} queries{at}"
        if queries and exact
        else (f"{queries:,} queries known before they start" if queries else "queries set by the search")
    )
    cut = any(r.exact and r.seconds >= sut.MAX_DURATION_S for r in planned)
    return (
        f"load: {len(planned)} run{'s' if len(planned) != 1 else ''}, {what}: {'about' if exact else 'at least'} "
        f"{_duration(secs)}" + (f" (LoadGen stops a run after {sut.MAX_DURATION_S:g} s)" if cut else "")
    )


def _duration(secs: float) -> str:
    return f"{secs:,.0f} s" if secs < 120 else f"{secs:,.0f} s ({secs / 60:.0f} min)"


class LoadProgress:
    """A rich progress bar over the planned runs (or nothing), on stderr: runs done, time elapsed and, where the
    runs' lengths are known, the time left (refreshed every half second while a run is going)."""

    def __init__(self, enabled: bool, planned: list[Run], groups: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.planned = planned
        self.setup = SETUP_S * groups
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.bar.add_task("load", total=len(self.planned), left="")
        self.enabled, self.count, self.since = enabled, 0, time.monotonic()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="rtml-load-progress", daemon=True)

    def __enter__(self):
        self.bar.__enter__()
        if self.enabled:
            self.ticker.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.ticker.is_alive():
            self.ticker.join()
        self.bar.__exit__(*exc)

    def left(self) -> str:
        rest = self.planned[self.count :]
        if not rest:
            return ""
        secs = sum(r.seconds for r in rest) + (self.setup if self.count == 0 else 0.0)
        secs -= time.monotonic() - self.since
        word = "about" if all(r.exact for r in rest) else "at least"
        return f"{word} {_duration(max(secs, 0.0))} left"

    def _tick(self):
        while not self.stop.wait(0.5):
            self.bar.update(self.task, left=self.left())

    def done(self, row: dict):
        self.count += 1
        self.since = time.monotonic()
        what = f"{row['model']} {row['runtime']} {row['precision']} {row['scenario']}"
        self.bar.update(self.task, advance=1, description=what, left=self.left())
