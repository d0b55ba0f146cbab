"""Latency statistics derived from raw samples (nanoseconds); the samples are the record, the rest is derived."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)
HIGH_CV = 0.3


def min_samples(p: float) -> int:
    """Samples needed before the p-th percentile is printed without a warning.

    Scaled from MLPerf LoadGen's 662 queries for a p99 bound: about 6.62 samples must lie beyond the percentile
    (p99 -> 662, p95 -> 133, p90 -> 67, p50 -> 14).
    """
    return math.ceil(round(6.62 / (1 - p / 100), 6))


def percentile(samples, p: float) -> float:
    """The toolkit's one percentile estimator, nearest rank: the smallest sample with at least p% of the samples at
    or below it (numpy's "inverted_cdf" method computes exactly that). Every p50/p99 printed anywhere is this."""
    return float(np.percentile(np.asarray(samples), p, method="inverted_cdf"))


def p50_us(samples_ns) -> float:
    """The median (nearest rank) of nanosecond samples, in microseconds."""
    return percentile(samples_ns, 50) / 1e3


@dataclass
class LatencyStats:
    samples_ns: np.ndarray
    batch: int = 1

    def __post_init__(self):
        self.samples_ns = np.asarray(self.samples_ns, dtype=np.int64)
        if len(self.samples_ns) == 0:
            raise ValueError("no latency samples")
        self._sorted = np.sort(self.samples_ns)

    @property
    def n(self) -> int:
        return len(self.samples_ns)

    @property
    def mean_us(self) -> float:
        return float(self.samples_ns.mean()) / 1e3

    @property
    def std_us(self) -> float:
        return float(self.samples_ns.std(ddof=1)) / 1e3 if self.n > 1 else 0.0

    @property
    def cv(self) -> float:
        return self.std_us / self.mean_us if self.mean_us else 0.0

    def percentile_us(self, p: float) -> float:
        return percentile(self._sorted, p) / 1e3

    @property
    def throughput(self) -> float:
        """Samples (not batches) per second: batch / mean latency."""
        return self.batch / (self.mean_us / 1e6)

    def warnings(self) -> list[str]:
        out = [
            f"only {self.n} samples for p{p} (needs {min_samples(p)})" for p in PERCENTILES if self.n < min_samples(p)
        ]
        if self.cv > HIGH_CV:
            out.append(f"high variation (cv {self.cv:.2f})")
        return out

    def summary(self) -> dict:
        row = {
            "n": self.n,
            "mean_us": self.mean_us,
            "std_us": self.std_us,
            "cv": self.cv,
            "min_us": float(self._sorted[0]) / 1e3,
            "max_us": float(self._sorted[-1]) / 1e3,
        }
        row.update({f"p{p}_us": self.percentile_us(p) for p in PERCENTILES})
        row.update(self.percentile_intervals())
        row["throughput_sps"] = self.throughput
        row["warnings"] = "; ".join(self.warnings())
        return row

    def percentile_intervals(self, level: float | None = None) -> dict:
        """95% (or `level`) distribution-free intervals of every printed percentile, from the order statistics
        (see percentile_ci); a side the samples cannot bound is infinite."""
        us = self._sorted / 1e3
        out = {}
        for p in PERCENTILES:
            lo, hi = percentile_ci(us, p, level or CONFIDENCE)
            out[f"p{p}_lo_us"], out[f"p{p}_hi_us"] = lo, hi
        return out

    def miss_rate(self, budget_us: float) -> float:
        """Fraction of calls slower than `budget_us` (a missed frame deadline)."""
        return float((self.samples_ns > budget_us * 1e3).mean())


# ---------------------------------------------------------------- comparisons (for the report's claims)

CONFIDENCE = 0.95
FASTER_ALPHA = 0.001  # Mann-Whitney U level for "A is faster than B" (strict, as asv)
FASTER_RATIO = 1.1  # ... and at least this ratio of medians (asv's default factor)


def proportion_ci(k: int, n: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a proportion of k successes in n trials (e.g. correct test images)."""
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def difference_ci(k1: int, n1: int, k2: int, n2: int, level: float = CONFIDENCE) -> tuple[float, float, float]:
    """(p1 - p2, low, high): Newcombe's hybrid score interval for a difference of two proportions.

    It treats the two samples as independent; for two models scored on the same images it is conservative
    (wider than a paired interval), so a difference it calls a tie may still be real, never the reverse.
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = proportion_ci(k1, n1, level)
    l2, u2 = proportion_ci(k2, n2, level)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def is_faster(a, b, alpha: float = FASTER_ALPHA, min_ratio: float = FASTER_RATIO) -> bool:
    """True when samples `a` are faster than samples `b`: the median ratio b/a is at least `min_ratio` and a
    one-sided Mann-Whitney U test rejects "a is not smaller" at level `alpha`."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2 or np.median(b) < min_ratio * np.median(a):
        return False
    return bool(mannwhitneyu(a, b, alternative="less").pvalue < alpha)


# ---------------------------------------------------------------- intervals and claims from raw samples


def percentile_ci(samples, p: float, level: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval for the p-th percentile from order statistics: ranks (l, u) chosen from the
    binomial distribution Binom(n, p/100) so that [x_(l), x_(u)] covers the true percentile with probability
    >= `level` (scipy.stats.quantile_test's interval). A side with too few samples is open: infinite (the bound
    cannot be stated)."""
    from scipy.stats import quantile_test

    x = np.asarray(samples, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    ci = quantile_test(x, q=float(np.median(x)), p=p / 100).confidence_interval(level)
    low, high = float(ci.low), float(ci.high)
    return (-math.inf if math.isnan(low) else low), (math.inf if math.isnan(high) else high)


def percentile_within(n: int, over: int, p: float = 99, level: float = CONFIDENCE) -> bool:
    """LoadGen's early-stopping test: do `n` queries of which `over` exceeded a deadline support "the p-th
    percentile latency is within the deadline" at confidence `level`? True when, were exactly (100 - p)% of
    queries truly late, seeing `over` or fewer late ones would have probability at most 1 - level."""
    from scipy.stats import binom

    if n <= 0:
        return False
    return bool(binom.cdf(over, n, 1 - p / 100) <= 1 - level)


def queries_needed(over: int, p: float = 99, level: float = CONFIDENCE) -> int:
    """The fewest queries with `over` late ones for which `percentile_within` holds (with none late: 299 for
    p99 at 95% confidence, 459 at 99%)."""
    lo, hi = max(1, over + 1), max(64, over + 1)
    while not percentile_within(hi, over, p, level):
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if percentile_within(mid, over, p, level) else (mid + 1, hi)
    return lo


# ---------------------------------------------------------------- paired comparisons (same evaluation rows)

BOOTSTRAP_RESAMPLES = 2000


def mcnemar(correct_a, correct_b) -> tuple[float, int, int]:
    """McNemar's exact test for two classifiers scored on the same rows: (two-sided p, rows only a got right,
    rows only b got right); under 'equally accurate' the discordant rows split 50/50 (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0, 0, 0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue), only_a, only_b


def paired_bootstrap(metric, a, b, y, level: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0):
    """(metric(a, y) - metric(b, y), low, high): a percentile interval of the difference over `resamples` draws
    of the same rows for both (a paired bootstrap); seeded, so the same inputs give the same interval."""
    a, b, y = np.asarray(a), np.asarray(b), np.asarray(y)
    d = float(metric(a, y) - metric(b, y))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (resamples, len(y)))
    many = getattr(metric, "draws", None)  # a metric that scores many resamples at once (r2): same numbers, faster
    draws = []
    for block in np.array_split(idx, max(1, idx.size // 2**20)):  # about a million rows of each array at a time
        if many is not None:
            draws.extend(many(a[block], y[block]) - many(b[block], y[block]))
        else:
            draws.extend(metric(a[i], y[i]) - metric(b[i], y[i]) for i in block)
    lo, hi = np.percentile(draws, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return d, float(lo), float(hi)


def r2(pred, y) -> float:
    """Coefficient of determination over all rows (and outputs)."""
    return float(_r2_draws(np.asarray(pred)[None], np.asarray(y)[None])[0])


def _r2_draws(pred, y) -> np.ndarray:
    """r2 of each resample: pred and y are (draws, rows, ...) arrays; one value per draw."""
    pred = np.asarray(pred, np.float64).reshape(len(pred), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    sst = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst != 0, 1 - ((y - pred) ** 2).sum(axis=1) / sst, math.nan)


r2.draws = _r2_draws
