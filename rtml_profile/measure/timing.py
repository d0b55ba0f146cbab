"""How one configuration is timed.

Every timed call is `t0 = perf_counter_ns(); call(); synchronize(); t1 = perf_counter_ns()`, so a GPU sample
includes the work itself, its launch and one device synchronize; each sample is one call on one batch. What a
call includes is set by its scope (see vocab.SCOPE_MEANS). This is the only timing loop in the toolkit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from rtml_profile import UserError

MAX_SECONDS = 3600  # the most --min-time / --max-time one configuration may ask for


@dataclass
class Settings:
    """How long to time one configuration: at least min_iters calls and min_s seconds, at most max_s/max_iters."""

    warmup_iters: int = 10
    warmup_s: float = 0.2
    min_iters: int = 1000
    min_s: float = 0.5
    max_s: float = 5.0
    max_iters: int = 20_000
    threads: int | None = None

    def validate(self) -> Settings:
        import psutil

        for attr, option in (("warmup_s", "the warm-up time"), ("min_s", "--min-time"), ("max_s", "--max-time")):
            v = getattr(self, attr)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= MAX_SECONDS):
                raise UserError(f"{option} must be a finite number of seconds from 0 to {MAX_SECONDS}, got {v}")
        if self.max_s <= 0:
            raise UserError(f"--max-time must be positive, got {self.max_s}")
        if not 1 <= self.min_iters <= self.max_iters:
            raise UserError(f"--min-iters must be between 1 and {self.max_iters}, got {self.min_iters}")
        cpus = psutil.cpu_count() or 1
        if self.threads is not None and not 1 <= self.threads <= cpus:
            raise UserError(f"--threads must be between 1 and this machine's {cpus} logical CPUs, got {self.threads}")
        self.max_s = max(self.max_s, self.min_s)
        return self


@dataclass(frozen=True)
class Timing:
    """The samples of one timed run (ns, one per timed call) and how many calls it made in all."""

    ns: np.ndarray
    warmup_calls: int

    @property
    def calls(self) -> int:
        """Every call made: the warm-up's and the timed ones (what a meter around the whole run saw)."""
        return self.warmup_calls + len(self.ns)


def time_calls(call, sync, s: Settings) -> Timing:
    """Latency samples of `call(); sync()` after a warm-up; see Settings for the stopping rule."""
    clock = time.perf_counter_ns
    t_warm = clock()
    i = 0
    while i < s.warmup_iters or (clock() - t_warm < s.warmup_s * 1e9 and clock() - t_warm < 2e9):
        call()
        sync()
        i += 1
    samples = []
    start = clock()
    while True:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        samples.append(t1 - t0)
        n, elapsed = len(samples), t1 - start
        if n >= s.max_iters or elapsed >= s.max_s * 1e9 or (n >= s.min_iters and elapsed >= s.min_s * 1e9):
            return Timing(np.asarray(samples, dtype=np.int64), i)


def time_pair(a, b, s: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Samples (ns) of two calls timed alternately, a then b, after a warm-up of both: a difference of the pair
    (b's work beyond a's) is then measured under one machine state, not two run at different moments."""
    clock = time.perf_counter_ns
    for _ in range(s.warmup_iters):
        a(), b()
    pairs, start = [], clock()
    while len(pairs) < s.max_iters:
        t0 = clock()
        a()
        t1 = clock()
        b()
        t2 = clock()
        pairs.append((t1 - t0, t2 - t1))
        if len(pairs) >= s.min_iters and t2 - start >= s.min_s * 1e9 or t2 - start >= s.max_s * 1e9:
            break
    ns = np.asarray(pairs, dtype=np.int64)
    return ns[:, 0], ns[:, 1]


def clock_gaps(seconds: float, over_ns: float) -> tuple[list[int], float]:
    """(every gap over `over_ns` between two consecutive clock reads of a thread that does nothing else for
    `seconds`, in ns; the window in s): the stalls no measurement on this machine can be told apart from."""
    gaps, t0 = [], time.perf_counter_ns()
    end, last = t0 + int(seconds * 1e9), t0
    while last < end:
        now = time.perf_counter_ns()
        if now - last > over_ns:
            gaps.append(now - last)
        last = now
    return gaps, (last - t0) / 1e9
