"""How far to trust this run: the harness beside the field's reference on the machine that made the rows (the
fidelity record `rtml-profile all` writes through measure/fidelity.py)."""

from __future__ import annotations

from rtml_profile.report.common import host_label
from rtml_profile.report.fmt import duration_us, ratio, sig
from rtml_profile.report.inputs import Inputs

TITLE = "## How far to trust this run\n\n"


def single_sentence(inp: Inputs, host: str, e: dict) -> str:
    s = e["single_call"]
    if s.get("status") != "ok":
        return f"Single calls on the {host_label(inp, host)}: not measured ({s.get('reason', 'no reason recorded')})."
    return (
        f"Single calls on the {host_label(inp, host)}: the harness's batch-1 p50 of {s['model']} ({s['runtime']} "
        f"{s['precision']}, {s['scope']}) was {duration_us(s['harness_p50_us'])} against "
        f"{duration_us(s['bare_p50_us'])} for a bare loop (a clock read before and after each call) over the same "
        f"ONNX Runtime session: "
        f"ratio {ratio(s['ratio'])} (median of {s['rounds']} alternating rounds of {s['iters']:,} calls, load "
        f"average {sig(e.get('load_average_1min'))}, {e['timestamp'][:10]})."
    )


def load_sentence(e: dict) -> str:
    ld = e["load"]
    if ld.get("status") != "ok":
        why = ld.get("reason", "")
        return f"Load: the load engine's p99 against MLPerf LoadGen with an inline query was {ld['status']} ({why})."
    if "pairs" in ld:  # interleaved pairs, each run long enough for its p99
        n = len(ld["pairs"])
        return (
            f"Load: at {sig(ld['rate_qps'])}/s the load engine's p99 against MLPerf LoadGen alone with an inline "
            f"query, over {n} interleaved pairs of at least {min(p['queries'] for p in ld['pairs']):,} queries each: "
            f"median ratio {ratio(ld['ratio'])} (range {ratio(ld['ratio_lo'])} to {ratio(ld['ratio_hi'])}; the "
            f"median pair {duration_us(ld['engine_p99_us'])} against {duration_us(ld['loadgen_p99_us'])})."
        )
    return (
        f"Load: at {sig(ld['rate_qps'])}/s the load engine's p99 was {duration_us(ld['engine_p99_us'])} against "
        f"{duration_us(ld['loadgen_p99_us'])} under MLPerf LoadGen with an inline query: ratio {ratio(ld['ratio'])}."
    )


def section_trust(inp: Inputs) -> str:
    recs = inp.profiles.get("fidelity", {})
    if not recs:
        return (
            TITLE + "No fidelity record in the data folder: `rtml-profile all` measures one on the machine that makes "
            "the rows (the harness's batch-1 p50 against a bare loop over the same session; the load engine's p99 "
            "against MLPerf LoadGen).\n"
        )
    out = [TITLE]
    for host, rec in sorted(recs.items()):
        e = rec["entries"][-1]
        out.append(f"{single_sentence(inp, host, e)} {load_sentence(e)}\n")
    return "".join(out)
