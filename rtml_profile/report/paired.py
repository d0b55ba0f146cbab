"""Paired comparisons: two rows scored on the same evaluation rows compared row by row (McNemar's exact test for
accuracy, a paired bootstrap for R^2), from the per-row predictions bench stores beside the samples
(`predictions_file`). Rows without stored predictions (older runs) fall back to the unpaired interval, saying so."""

from __future__ import annotations

import numpy as np

from rtml_profile import stats
from rtml_profile.report.fmt import Change, filled
from rtml_profile.report.inputs import Inputs

UNPAIRED = "unpaired: no stored per-row predictions"
ALPHA = 0.05


def predictions(inp: Inputs, row) -> dict | None:
    """{'pred', 'y'} of a bench row (read with every other input, inputs.load_inputs), or None without them."""
    rel = row.get("predictions_file") if hasattr(row, "get") else None
    return inp.predictions[str(rel)] if filled(rel) else None


def compare(a: dict, b: dict, classifier: bool) -> Change | None:
    """a's metric minus b's on the same rows, or None when the rows differ. Accuracy: the difference and McNemar's
    exact p with the discordant rows; R^2: the difference with a paired 95% bootstrap interval."""
    if a["y"].shape != b["y"].shape or not np.array_equal(a["y"], b["y"]):
        return None
    if classifier:
        ca, cb = a["pred"] == a["y"], b["pred"] == b["y"]
        p, only_a, only_b = stats.mcnemar(ca, cb)
        return Change("points", float(ca.mean() - cb.mean()), tie=p >= ALPHA, p=p, only=(only_a, only_b))
    d, lo, hi = stats.paired_bootstrap(stats.r2, a["pred"], b["pred"], a["y"])
    return Change("r2", d, lo, hi, tie=lo <= 0 <= hi)


def paired_change(inp: Inputs, a, b, classifier: bool) -> Change | None:
    """compare() of two bench rows' stored predictions, or None when either has none (computed once per pair of
    files: rows with the same predictions share one file, and several sections ask)."""
    key = ("paired", a.get("predictions_file"), b.get("predictions_file"), classifier)
    if key not in inp.memo:
        pa, pb = predictions(inp, a), predictions(inp, b)
        inp.memo[key] = None if pa is None or pb is None else compare(pa, pb, classifier)
    return inp.memo[key]


def reference_row(inp: Inputs, row) -> dict | None:
    """An fp32 row of the same host, model and weights with stored predictions (CPU rows first), or None."""
    ok = inp.ok
    if ok is None or "predictions_file" not in ok:
        return None
    g = ok[(ok["host"] == row["host"]) & (ok["model"] == row["model"]) & (ok["precision"] == "fp32")
           & ok["predictions_file"].notna()]  # fmt: skip
    if "weights" in g and filled(row.get("weights")):
        g = g[g["weights"] == row["weights"]]
    g = g.sort_values(["device", "runtime", "scope", "batch"], key=lambda c: c != "cpu" if c.name == "device" else c)
    return None if g.empty else g.iloc[0].to_dict()


def any_stored(inp: Inputs) -> bool:
    ok = inp.ok
    return ok is not None and "predictions_file" in ok and bool(ok["predictions_file"].notna().any())


def note(inp: Inputs) -> str:
    """One sentence when the intervals had to be unpaired."""
    if any_stored(inp):
        return "Metric changes are paired (same rows) where both rows stored per-row predictions, else unpaired."
    return (
        "No row stores per-row predictions yet (older runs), so metric intervals are unpaired (Newcombe: "
        "conservative) and R^2 changes carry none."
    )
