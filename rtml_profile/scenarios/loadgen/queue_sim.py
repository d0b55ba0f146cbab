"""A model of the queue: a discrete-event simulation of arrivals, dynamic batching and N replicas behind one
FIFO queue, driven by measured single-call latencies (one distribution per batch size; load.py times them back to
back with bench's timing rule in the worker, just before its trials, and keeps them with each run's samples).

It predicts what LoadGen measures (load.py), from the run's own arrivals (LoadGen's schedule, read from its
trace) and the same batching rule, so the two can be set side by side; where they agree it answers what this
machine cannot run (more replicas, a fleet's arrival rate). What it leaves out, and so where it can disagree:
LoadGen's issue delay and the SUT's Python work per query and per batch (not in the call times), a service time
that depends on what ran before it (cold caches or a sleeping thread pool after an idle gap; the call times are
back to back), and slow spells that hit several calls in a row (the simulation draws each service time
independently).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass
class ServiceModel:
    """Service time (seconds) of one call on a batch of b queries, drawn from measured samples.

    A batch size that was not measured is drawn by quantile interpolation between the nearest measured sizes
    below and above it (one uniform draw u: the u-quantiles of both, interpolated linearly in b); beyond the
    largest measured size, latency is scaled in proportion to b.
    """

    samples_s: dict[int, np.ndarray]  # batch -> sorted service times in seconds

    @classmethod
    def from_us(cls, samples_us: dict[int, np.ndarray]) -> ServiceModel:
        if not samples_us:
            raise ValueError("no measured service times")
        return cls({int(b): np.sort(np.asarray(s, np.float64)) / 1e6 for b, s in samples_us.items()})

    def _q(self, b: int, u: float) -> float:
        s = self.samples_s[b]
        return float(s[min(len(s) - 1, int(u * len(s)))])

    def draw(self, b: int, rng: np.random.Generator) -> float:
        sizes = sorted(self.samples_s)
        u = rng.random()
        if b in self.samples_s:
            return self._q(b, u)
        lower = [s for s in sizes if s < b]
        upper = [s for s in sizes if s > b]
        if not upper:
            return self._q(lower[-1], u) * b / lower[-1]
        if not lower:
            return self._q(upper[0], u)
        lo, hi = lower[-1], upper[0]
        q_lo, q_hi = self._q(lo, u), self._q(hi, u)
        return q_lo + (q_hi - q_lo) * (b - lo) / (hi - lo)


def simulate(
    arrivals_s: np.ndarray,
    service: ServiceModel,
    replicas: int = 1,
    max_batch: int = 1,
    max_wait_s: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(latency in seconds per query, batch size per query) for queries arriving at `arrivals_s` (sorted).

    Batching rule (the batcher's, scenarios/loadgen/sut.py): a free replica takes the oldest waiting query and
    dispatches it
    with the queries behind it once `max_batch` have arrived or `max_wait_s` has passed since the oldest arrived,
    whichever is first, and at once when the queue already holds `max_batch` when the replica frees up.
    Latency is completion minus arrival, so queueing delay is included.
    """
    a = np.asarray(arrivals_s, np.float64)
    n = len(a)
    rng = np.random.default_rng(seed)
    done = np.empty(n)
    size = np.empty(n, np.int32)
    free = [0.0] * max(1, replicas)
    heapq.heapify(free)
    i = 0
    while i < n:
        f = heapq.heappop(free)
        start = max(f, a[i])
        full_at = a[i + max_batch - 1] if i + max_batch - 1 < n else np.inf
        dispatch = max(start, min(a[i] + max_wait_s, full_at)) if max_batch > 1 else start
        j = min(n, i + max_batch, int(np.searchsorted(a, dispatch, side="right")))
        j = max(j, i + 1)
        end = dispatch + service.draw(j - i, rng)
        done[i:j], size[i:j] = end, j - i
        heapq.heappush(free, end)
        i = j
    return done - a, size
