"""One number style for the report: 3 significant digits, units by magnitude, never scientific notation."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


def _finite(x) -> bool:
    """A real, finite number (Python or numpy scalar); not None, NaN, a string or a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def sig(x, digits: int = 3) -> str:
    """`x` to `digits` significant digits, thousands separated, in positional notation ('0.0215', '1,340')."""
    if not _finite(x):
        return "n/a"
    if x == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    x = round(x, decimals)
    if x != 0 and digits - 1 - math.floor(math.log10(abs(x))) < decimals:  # rounding carried to a new digit
        decimals -= 1
    return f"{x:,.{max(decimals, 0)}f}"


def count(n) -> str:
    """An exact count (parameters, MACs, rows): every digit, thousands separated."""
    return f"{int(n):,}"


def duration_us(x) -> str:
    """Microseconds as us / ms / s by magnitude, 3 significant digits."""
    if not _finite(x):
        return "n/a"
    for scale, unit in ((1e6, "s"), (1e3, "ms")):
        if abs(x) >= scale * 0.9995:
            return f"{sig(x / scale)} {unit}"
    return f"{sig(x)} us"


def duration_s(x) -> str:
    return duration_us(x * 1e6) if _finite(x) else "n/a"


def rate(x) -> str:
    """Samples per second with k / M suffixes ('434k/s', '6.73M/s')."""
    if not _finite(x):
        return "n/a"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale * 0.9995:
            return f"{sig(x / scale)}{unit}/s"
    return f"{sig(x)}/s"


def pct(x) -> str:
    """A proportion as a percentage, 3 significant digits ('46.1%')."""
    return "n/a" if not _finite(x) else f"{sig(100 * x)}%"


def points(x) -> str:
    """A difference of two proportions in percentage points, signed ('+0.0100 points')."""
    return "n/a" if not _finite(x) else f"{'+' if x >= 0 else '-'}{sig(abs(100 * x))} points"


def signed(x) -> str:
    return "n/a" if not _finite(x) else f"{'+' if x >= 0 else '-'}{sig(abs(x))}"


FLOAT_NOISE = 1e-6  # a metric change smaller than this is float32 rounding (about 1e-7 relative), not a change


def delta(x) -> str:
    """A signed metric change, float noise (|x| < FLOAT_NOISE) printed as zero: '-0.0000000199' -> '0'."""
    if _finite(x) and abs(x) < FLOAT_NOISE:
        return "0"
    return signed(x)


def ratio(x) -> str:
    return "n/a" if not _finite(x) else f"{sig(x)}x"


def table(rows: list[dict]) -> str:
    """A Markdown table of `rows` (the first row's keys are the header)."""
    if not rows:
        return "_(no rows)_\n"
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    out += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |" for r in rows]
    return "\n".join(out) + "\n"


def missing(what: str, command: str) -> str:
    return f"_No {what} in the data folder: run `{command}` to produce it._\n"


def filled(v) -> bool:
    """Not None, not NaN (an empty CSV cell), not blank."""
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip() != ""


@dataclass(frozen=True)
class Change:
    """A metric change against a reference, as numbers; worded only by text(). kind: 'points' (accuracy, a
    difference of proportions), 'r2' (R^2) or 'plain' (a change with no interval: `metric` names it). lo/hi: the
    95% interval (None without one); p and only: McNemar's exact p and the rows right by one only (paired
    accuracy); tie: the interval holds 0 (or p >= 0.05), None when it cannot be told."""

    kind: str
    d: float
    lo: float | None = None
    hi: float | None = None
    tie: bool | None = None
    p: float | None = None
    only: tuple[int, int] | None = None
    metric: str = ""

    def text(self) -> str:
        tie = ", tie" if self.tie else ""
        if self.kind == "points" and self.p is not None:
            ptxt = "< 0.001" if self.p < 0.001 else sig(self.p)
            a, b = self.only
            return f"{points(self.d)}, paired: McNemar p {ptxt} ({a} vs {b} rows right by one only){tie}"
        if self.kind == "points":
            return f"{points(self.d)} [{signed(100 * self.lo)}, {signed(100 * self.hi)}]{tie}"
        if self.kind == "r2":
            return f"{delta(self.d)} R^2 [{signed(self.lo)}, {signed(self.hi)}] paired{tie}"
        return f"{delta(self.d)} {self.metric}"
