"""The wider menu: compiled, statically quantized and tuned paths beside the defaults, what each costs to prepare,
and where reduced precision breaks (per-node error, nodes kept in fp32). A few lines in REPORT.md; every grid in
the appendix."""

from __future__ import annotations

from rtml_profile import tolerances, zoo
from rtml_profile.report.common import (
    change,
    change_vs_fp32,
    config,
    distinct,
    filled,
    host_label,
    how_much,
    metric_value,
    on_record,
    reference,
    same_weights_fp32,
    speed_verdict,
    tuned_is_default,
    worded,
)
from rtml_profile.report.fmt import duration_s, duration_us, sig, table
from rtml_profile.report.inputs import Inputs, models
from rtml_profile.vocab import CALIBRATED, CALIBRATION_METHODS, base_variant


def _wider(g) -> bool:
    """Rows beyond a runtime's default setting: a variant (compile mode, tuned) or a calibrated precision."""
    return bool((g["variant"].fillna("") != "").any() or g["precision"].isin(CALIBRATED).any())


def menu_groups(inp: Inputs):
    """[(model, host, ok rows)] where the wider menu was measured."""
    ok = inp.ok
    if ok is None or ok.empty:
        return []
    return [
        (mid, host, g)
        for mid in models(inp)
        for host, g in ok[ok["model"] == mid].groupby("host", sort=True)
        if _wider(g)
    ]


def within_fp32(inp: Inputs, row) -> bool | None:
    """Is the row's metric within fp32's (same weights)? Accuracy: the 95% interval of the difference holds 0;
    R^2: within tolerances.REGRESSION_TIE. None when it cannot be told."""
    ref = reference(inp, row["model"]) if on_record(inp, row) else same_weights_fp32(inp, row)
    v = row.get("metric_value")
    if ref is None or not filled(v):
        return None
    if zoo.get(row["model"]).task != "classification":
        return abs(float(v) - ref[0]) <= tolerances.REGRESSION_TIE
    n = int(row["eval_rows"]) if filled(row.get("eval_rows")) else ref[1]
    c = change(row["model"], float(v), n, ref[0], ref[1])
    return None if c is None else c.tie


def _fastest(rows) -> dict | None:
    if not len(rows):  # an empty selection may have no columns at all
        return None
    rows = rows.sort_values(["p50_us", "runtime", "precision", "variant", "scope"], kind="stable")
    return rows.iloc[0].to_dict() if len(rows) else None


def prepare_text(r: dict) -> str:
    """What preparing the row's path cost: compile (cold / cached), calibrate + quantize, tuning search."""
    parts = []
    if filled(r.get("compile_cold_s")):
        parts.append(
            f"compile {duration_s(r['compile_cold_s'])} (empty disk cache), {duration_s(r['compile_cached_s'])} "
            f"cached; the worker's first {duration_s(r.get('compile_first_s'))}"
        )
    elif filled(r.get("prepare_s")):
        what = "calibrate + quantize" if r["precision"] in CALIBRATED else "quantize/convert"
        parts.append(f"{what} {duration_s(r['prepare_s'])}")
    if filled(r.get("tune_s")):
        parts.append(f"tuning search {duration_s(r['tune_s'])} ({int(r['tune_tried'])} settings)")
    return "; ".join(parts) or "none"


def best_rows(inp: Inputs, detail: bool = False) -> list[dict]:
    """Per model and host with the wider menu, at batch 1: the fastest path within fp32's accuracy against the
    fastest default-setting fp32 path, with the ratio and the Mann-Whitney verdict of their raw samples."""
    out = []
    for mid, host, g in menu_groups(inp):
        b1 = distinct(g[g["batch"] == 1])
        best = _fastest(b1[[bool(within_fp32(inp, r)) for r in b1.to_dict("records")]])
        if not best:
            continue
        b1 = b1[b1["scope"] == best["scope"]]  # like with like: the same scope
        base = _fastest(b1[(b1["precision"] == "fp32") & (b1["variant"].fillna("") == "")])
        if not base:
            continue
        r, verdict = speed_verdict(inp, best, base)
        same = config(best) == config(base)
        out.append(
            {
                "model": mid,
                **({"host": host_label(inp, host)} if detail or len({h for _, h, _ in menu_groups(inp)}) > 1 else {}),
                "fastest within fp32's metric": config(best),
                "p50": duration_us(best["p50_us"]),
                "vs fastest default fp32": "it is the fastest default fp32 path"
                if same
                else f"{how_much(r, verdict)} vs {config(base)} {duration_us(base['p50_us'])}",
                "change vs fp32 [95%]": change_vs_fp32(inp, best),
                **({"prepare": prepare_text(best)} if detail else {}),
            }
        )
    return out


def prepare_summary(inp: Inputs) -> list[str]:
    """Per host with the wider menu: medians over its rows of what each kind of preparation took."""
    out = []
    for host in sorted({h for _, h, _ in menu_groups(inp)}):
        g = inp.ok[inp.ok["host"] == host]
        parts = []
        c = g[g["compile_cold_s"].notna()] if "compile_cold_s" in g else g.iloc[0:0]
        if len(c):
            own = c[c["variant"].map(lambda v: base_variant(v) == v)]  # a tuned search compiled these shapes before
            first = c.groupby("model")["compile_first_s"].max()
            parts.append(
                f"torch.compile {duration_s(first.median())} for a fresh process's first compile, "
                f"{duration_s(own['compile_cold_s'].median())} per new batch size, "
                f"{duration_s(c['compile_cached_s'].median())} cached"
            )
        d = g[g["prepare_s"].notna() & ~g.index.isin(c.index)] if "prepare_s" in g else g.iloc[0:0]
        for prec, q in d.groupby("precision", sort=True):
            what = "pre-process + calibrate + quantize" if prec in CALIBRATED else "build"
            parts.append(f"{prec} {what} {duration_s(q['prepare_s'].median())}")
        t = g[g["tune_s"].notna()] if "tune_s" in g else g.iloc[0:0]
        if len(t):
            parts.append(f"tuning search {duration_s(t['tune_s'].median())} per model, precision and batch")
        if parts:
            out.append(
                f"Preparing ({host_label(inp, host)}, medians; never inside a latency sample): {'; '.join(parts)}."
            )
    return out


def _worst_nodes(nodes, k: int = 2) -> str:
    conv = nodes[nodes["converted"] == "yes"].sort_values(["added_error", "order"], ascending=[False, True])
    return ", ".join(f"{n} (+{sig(e)})" for n, e in zip(conv["node"][:k], conv["added_error"][:k]))


def precision_rows(inp: Inputs, detail: bool = False) -> list[dict]:
    """Per model, host and variant: the first node over its tolerance, the worst nodes by added error, and the
    fix keeping the single worst node in fp32 (all fixes when `detail`)."""
    if inp.nodes is None or inp.fixes is None:
        return []
    out = []
    order = {m: i for i, m in enumerate(["", *CALIBRATION_METHODS])}
    first_method = {p: min(set(g["calibration_method"]), key=order.get) for p, g in inp.nodes.groupby("precision")}
    for (mid, host, prec, meth), n in inp.nodes.groupby(["model", "host", "precision", "calibration_method"]):
        if not detail and (zoo.get(mid).task != "classification" or prec == "fp16" or meth != first_method[prec]):
            continue  # the summary: classifiers, int8 and one calibration method
        first = n[n["first_exceeding"] == "yes"]
        f = inp.fixes[(inp.fixes["model"] == mid) & (inp.fixes["host"] == host) & (inp.fixes["precision"] == prec)
                      & (inp.fixes["calibration_method"] == meth)].sort_values("excluded")  # fmt: skip
        for fix in f.to_dict("records") if detail else f[f["excluded"] == 1].to_dict("records")[:1]:
            out.append(_precision_row(inp, mid, host, prec, meth, n, first, fix, detail))
    return out


UNVERIFIED = "not verified"


def kept_check(fix: dict) -> str:
    """'ok', 'not kept: <nodes>' (the output graph was checked), or UNVERIFIED: a dynamic-int8 fix recorded before
    the check (quantize_dynamic renamed the node, so the exclusion may have changed nothing)."""
    c = fix.get("kept_check")
    if filled(c):
        return str(c)
    return UNVERIFIED if fix["precision"] == "int8" and int(fix.get("excluded") or 0) else "ok"


REFUSED_NOTE = (
    "`refused`: the node was not shown to stay fp32 in the output graph (quantize_dynamic renames `/0/Gemm` to "
    "`/0/Gemm_MatMul...`; `rtml-profile precision` now checks the graph)."
)


def _precision_row(inp, mid, host, prec, meth, n, first, fix, detail: bool) -> dict:
    v, ref, rows = fix["metric_value"], fix["fp32_metric_value"], int(fix["eval_rows"])
    check = kept_check({**fix, "precision": prec})
    refused = check != "ok"
    return {
        "model": mid,
        **({"host": host_label(inp, host)} if detail else {}),
        "variant": f"{prec} {meth}".strip(),
        "first node over tolerance": f"{first.iloc[0]['node']} ({sig(first.iloc[0]['rel_error'])})"
        if len(first)
        else f"none (all <= {sig(n['tolerance'].iloc[0])})",
        "variant: worst (added error)": _worst_nodes(n),
        "fix: kept in fp32": (fix["kept_fp32"] if filled(fix["kept_fp32"]) else "(none)")
        + (f" ({check})" if refused and check != UNVERIFIED else ""),
        **({"metric (fp32)": f"{metric_value(mid, v)} ({metric_value(mid, ref)})"} if detail else {}),
        "fix: change [95%]": "refused" if refused else worded(change(mid, v, rows, ref, rows)),
        "fix: p50 b1 (fp32)": "refused"
        if refused
        else f"{duration_us(fix['p50_us'])} ({duration_us(fix['fp32_p50_us'])})",
    }


def training_note(inp: Inputs) -> str:
    """Which weights the precision analysis and the wider-menu rows ran, where they are not the record's."""
    notes = set()
    for df in (inp.fixes, inp.ok):
        if df is not None and "trained_epochs" in df:
            for r in df[df["trained_epochs"].notna()].to_dict("records"):
                if not on_record(inp, r):
                    notes.add((r["model"], int(r["trained_epochs"])))
    if not notes:
        return ""
    which = ", ".join(f"{m} {e} epochs" for m, e in sorted(notes))
    return f"Weights: {which} (not the committed recipe): metric changes are against fp32 on the same weights."


def section_faster(inp: Inputs) -> str:
    rows = best_rows(inp)
    if not rows:
        return ""
    out = [
        f"## Faster paths\n\nAt batch 1 ({', '.join(sorted({host_label(inp, h) for _, h, _ in menu_groups(inp)}))}), "
        "the fastest path (torch.compile, static INT8, tuned settings included) whose metric stays within fp32's "
        "95% interval, against the fastest default-setting fp32 path in the same scope (`compute`, where the "
        "wider menu was measured):\n\n",
        table(rows),
    ]
    prec = precision_rows(inp)
    if prec:
        col = "first node over tolerance"
        none = all(r[col].startswith("none") for r in prec)
        out.append(
            "\nWhere reduced precision breaks (per-node relative error against fp32, all tensors exposed"
            + (", no node over its tolerance" if none else "")
            + "; `variant:` columns describe the reduced-precision variant, `fix:` columns the same variant with "
            "the node adding the most error kept in fp32):\n\n"
            + table([{k: v for k, v in r.items() if not (none and k == col)} for r in prec])
            + ("\n" + REFUSED_NOTE + "\n" if any(r["fix: change [95%]"] == "refused" for r in prec) else "")
        )
    note = training_note(inp).strip()
    out.append(f"\n{note} What preparing each path costs, and the grids: [appendix](APPENDIX.md#faster-paths).\n")
    return "".join(out)


def fp32_grid(inp: Inputs) -> list[dict]:
    """fp32 compute-scope p50 at batch 1 and the largest batch, every runtime and variant, with compile costs."""
    out = []
    for mid, host, g in menu_groups(inp):
        g = g[(g["precision"] == "fp32") & (g["scope"] == "compute")]
        top = int(g["batch"].max()) if len(g) else 1
        for (rt, var), c in g.groupby(["runtime", "variant"], sort=True):
            by_b = {int(b): r for b, r in zip(c["batch"], c.to_dict("records"))}
            cell = {b: duration_us(by_b[b]["p50_us"]) if b in by_b else "" for b in (1, top)}
            out.append({"model": mid, "host": host_label(inp, host), "runtime": f"{rt} {var}".strip(),
                        "p50 batch 1": cell[1], f"p50 batch {top}": cell[top],
                        "prepare (batch 1)": prepare_text(by_b[1]) if 1 in by_b else ""})  # fmt: skip
    return out


def tuned_rows(inp: Inputs) -> list[dict]:
    ok = inp.ok
    if ok is None or "tune_gain" not in ok:
        return []
    t = ok[ok["tune_gain"].notna()]
    return [
        {
            "model": r["model"],
            "host": host_label(inp, r["host"]),
            "configuration": config(r),
            "batch": r["batch"],
            "chosen": r.get("settings", ""),
            "p50 default / tuned": f"{duration_us(r['tune_default_p50_us'])} / {duration_us(r['p50_us'])}",
            "gain": f"{sig(r['tune_gain'])}x"
            + (" (beyond noise)" if str(r.get("tune_beyond_noise")) == "True" else " (within noise)"),
            "read as": "the default measured twice" if tuned_is_default(ok, r) else "its own configuration",
        }
        for r in t.to_dict("records")
    ]


def appendix_faster(inp: Inputs) -> str:
    if not menu_groups(inp) and inp.nodes is None:
        return ""
    out = ["\n## Faster paths\n\nThe summary's picks with what preparing them cost:\n\n", table(best_rows(inp, True))]
    out += [f"\n{line}\n" for line in prepare_summary(inp)]
    out.append("\nfp32, compute scope: every runtime and variant at batch 1 and the largest batch.\n\n")
    out.append(table(fp32_grid(inp)))
    tuned = tuned_rows(inp)
    if tuned:
        out.append(
            "\nTuned settings (`bench --tune`): the best of every knob combination (brief timing; a winner inside "
            "the noise keeps the defaults), then timed in alternating rounds with the default setting in one "
            "worker and compared by the raw samples (Mann-Whitney U at 0.001 and a 1.1x ratio). A tuned row is its own "
            "configuration only with settings other than the default's AND a gain beyond noise; any other record "
            "is read as the default measured twice and never listed as a choice.\n\n" + table(tuned)
        )
    detail = precision_rows(inp, detail=True)
    if detail:
        out.append(
            "\nWhere reduced precision breaks, every variant and fix: accuracy on the whole evaluation set, "
            "end-to-end p50 at batch 1 (ONNX Runtime CPU), fp32 on the same weights in brackets.\n\n" + table(detail)
        )
    return "".join(out)
