"""reports/models/<slug>.md: one appendix per profiled model (rtml-profile profile), and the index README.md.

Rendered from the data folder only: the model's record (data/models/<slug>.json), its analysis.csv, bench.csv and
checks.csv rows (filed under its key, never a zoo id).
"""

from __future__ import annotations

from pathlib import Path

from rtml_profile import UserError, paths, schema, tolerances
from rtml_profile.files import atomic_write
from rtml_profile.report import figures as fg
from rtml_profile.report.fmt import count, duration_us, filled, pct, rate, sig, table

INDEX = "README.md"


def records(data_dir: Path) -> list[dict]:
    """Every profiled model's record, by name."""
    folder = Path(data_dir) / paths.MODEL_RECORDS
    return sorted((schema.read_model_record(p) for p in folder.glob("*.json")), key=lambda r: (r["name"], r["key"]))


def _tables(data_dir: Path) -> dict:
    """bench, analysis and checks tables of `data_dir`, each read (and validated) once per render."""
    return {
        kind: schema.read_table(Path(data_dir) / schema.FILES[kind], kind) for kind in ("bench", "analysis", "checks")
    }


def _rows(tables: dict, kind: str, key: str):
    t = tables[kind]
    return t[t["model"] == key]


def _source(rec: dict) -> str:
    info = rec["info"]
    if rec["origin"] == "torchvision":
        pub = info.get("published") or {}
        return (
            f"torchvision `{info.get('name')}` at {info.get('image_size')}x{info.get('image_size')}, weights "
            f"{info.get('weights')}; exported here (opset {rec['opset']}, dynamic batch axis) and checked against "
            f"PyTorch on {info.get('export_check_rows')} seeded images: max abs difference "
            f"{sig(info.get('export_max_abs_diff'))} (bound {sig(info.get('export_bound'))}). "
            + (f"torchvision publishes {sig(pub['gmacs'])} GMACs for it. " if pub.get("gmacs") else "")
        )
    return f"ONNX file `{info.get('file')}` (opset {rec['opset']}), read where it is. "


def _cost(rec: dict, a) -> str:
    tot = a[a["node"] == "TOTAL"]
    if tot.empty:
        return "_No analysis row: run `rtml-profile profile` again._\n"
    t = tot.iloc[0]
    nodes = a[a["node"] != "TOTAL"]
    by_op = (
        nodes.assign(macs=nodes["macs"].astype(float))
        .groupby("op")["macs"]
        .agg(["sum", "size"])
        .sort_values("sum", ascending=False)
    )
    out = [
        f"{count(t['macs'])} MACs per sample ({sig(t['macs'] / 1e9)} G), {count(t['params'])} parameters; "
        f"elementwise and activation ops {count(float(t.get('elementwise_ops', 0)))} per sample (own column, not MACs)."
    ]
    pub = (rec["info"].get("published") or {}).get("gmacs")
    if pub:
        diff = t["macs"] / 1e9 / pub - 1
        out.append(
            f" Against torchvision's published {sig(pub)} GMACs: {'+' if diff >= 0 else '-'}{sig(abs(100 * diff))}%."
        )
    if rec["unknown_ops"]:
        out.append(f" Not counted (unknown to onnx-tool; cost unknown, not zero): {', '.join(rec['unknown_ops'])}.")
    ops = [{"op": op, "nodes": int(r["size"]), "MACs/sample": count(r["sum"]) if r["sum"] == r["sum"] else "unknown"}
           for op, r in by_op.iterrows() if r["sum"] != 0]  # fmt: skip
    return "".join(out) + "\n\n" + table(ops[:8])


def _latency(b) -> str:
    ok = b[b["status"] == "ok"]
    rows = []
    for (rt, prec, scope), g in ok.groupby(["runtime", "precision", "scope"], sort=True):
        row = {"runtime": rt, "precision": prec, "scope": scope}
        for _, r in g.sort_values("batch").iterrows():
            row[f"batch {r['batch']}"] = (
                f"{duration_us(r['p50_us'])} / {duration_us(r['p99_us'])}<br>{rate(r['throughput_sps'])}"
            )
        rows.append(row)
    batches = sorted({int(r["batch"]) for _, r in ok.iterrows()})
    cfg = ("runtime", "precision", "scope")
    rows = [{**{k: r[k] for k in cfg}, **{f"batch {b}": r.get(f"batch {b}", "") for b in batches}} for r in rows]
    skipped = sorted(
        {f"{r['runtime']} {r['precision']}: {r['status']}: {r['reason']}" for _, r in b[b["status"] != "ok"].iterrows()}
    )
    return table(rows) + "".join(f"\n- {s}" for s in skipped) + ("\n" if skipped else "")


def _checks(c) -> str:
    rows = []
    for _, r in c.sort_values(["runtime", "precision", "output"]).iterrows():
        agree = f"{pct(r.get('top1'))} / {pct(r.get('top5'))}" if filled(r.get("top1")) else ""
        if agree and filled(r.get("decisive_rows")):
            agree += f" ({int(r['decisive_rows'])} decisive)"
        rows.append({
            "runtime": r["runtime"], "precision": r["precision"], "output": r["output"],
            "verdict": "ok" if str(r["ok"]) == "True" else "FAIL",
            "max / mean / p99 abs": f"{sig(r.get('max_abs'))} / {sig(r.get('mean_abs'))} / {sig(r.get('p99_abs'))}",
            "max rel": sig(r.get("max_rel")), "NaN/Inf": f"{int(r.get('nan', 0) or 0)}/{int(r.get('inf', 0) or 0)}",
            "top-1 / top-5": agree, "rule": f"{r.get('stat')} <= {sig(r.get('bound'))}",
        })  # fmt: skip
    fails = []
    for _, r in c.iterrows():
        if str(r["ok"]) != "True":
            where = f". First diverging node: {r['located']}" if isinstance(r.get("located"), str) else ""
            fails.append(f"- {r['runtime']} {r['precision']} `{r['output']}`: {r['problem']}{where}")
    return table(rows) + ("\n" + "\n".join(fails) + "\n" if fails else "")


def render_text(tables: dict, rec: dict) -> tuple[str, dict]:
    """(the appendix Markdown, {figure name: PNG bytes}) for one record."""

    key, slug = rec["key"], rec["slug"]
    b, c = _rows(tables, "bench", key), _rows(tables, "checks", key)
    a = _rows(tables, "analysis", key)
    io = [
        {
            "": "input",
            "name": i["name"],
            "type": i["type"],
            "one sample": "x".join(map(str, i["row"])) or "scalar",
            "generated from": f"[{sig(i['range'][0])}, {sig(i['range'][1])})" if i.get("range") else "",
        }
        for i in rec["inputs"]
    ]
    blank = {"one sample": "", "generated from": ""}
    io += [{"": "output", "name": o["name"], "type": o["type"], **blank} for o in rec["outputs"]]
    figs = {}
    ok = b[b["status"] == "ok"]
    if len(ok):
        figs[f"{slug}_latency.png"] = fg.latency(ok, f"{rec['name']}: p50 latency vs batch", lambda h: h)
    out = [
        f"# {rec['name']}: static cost, latency on every runtime, output checks\n\n",
        f"Generated by `rtml-profile profile` (re-rendered by `rtml-profile report`) from reports/data/ rows under "
        f"the key `{key}` (sha256 of the file and its external weights: {rec['sha256'][:16]}...). {_source(rec)}"
        f"Measured on {rec.get('host_label') or rec['host']} (machine `{rec['host']}`).\n\n",
        table(io),
        "\n## Static cost (onnx-tool, per sample)\n\n",
        _cost(rec, a),
        "\n## Latency per call (p50 / p99, then throughput)\n\n",
        _latency(b) if len(b) else "_No bench rows._\n",
        f"\n![latency](figures/{slug}_latency.png)\n" if figs else "",
        f"\n## Output checks against the fp32 ONNX Runtime CPU reference\n\nInputs: {rec['checked_on']}. "
        f"{tolerances.OUTPUT_CHECK_RULE}\n\n",
        _checks(c) if len(c) else "_No output checks (no runtime could load the model)._\n",
    ]
    return "".join(out), figs


def render_model(data_dir: Path, slug: str, out_dir: Path = paths.MODEL_REPORTS) -> Path:
    """Write out_dir/<slug>.md (and its figure) and the index; returns the appendix's path."""

    recs = {r["slug"]: r for r in records(data_dir)}
    if slug not in recs:
        raise UserError(f"{Path(data_dir) / paths.MODEL_RECORDS}: no record {slug}.json")
    tables = _tables(data_dir)
    text, figs = render_text(tables, recs[slug])
    for name, png in figs.items():
        atomic_write(Path(out_dir) / "figures" / name, png)
    path = Path(out_dir) / f"{slug}.md"
    atomic_write(path, text)
    atomic_write(Path(out_dir) / INDEX, index_text(tables, list(recs.values())))
    return path


def index_text(tables: dict, recs: list[dict]) -> str:
    lines = ["# Profiled models\n\nOne appendix per model profiled with `rtml-profile profile` (its own ONNX file "
             "or a torchvision model), rendered from reports/data/.\n\n"]  # fmt: skip
    rows = []
    for r in recs:
        c = _rows(tables, "checks", r["key"])
        a = _rows(tables, "analysis", r["key"])
        tot = a[a["node"] == "TOTAL"]
        passed = int((c["ok"].astype(str) == "True").sum())
        rows.append({"model": f"[{r['name']}]({r['slug']}.md)", "key": f"`{r['key']}`",
                     "MACs/sample": count(tot.iloc[0]["macs"]) if len(tot) else "n/a",
                     "output checks passed": f"{passed} of {len(c)}"})  # fmt: skip
    return "".join(lines) + table(rows)


def render_all(data_dir: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """{file name: Markdown} and figures for every profiled model (for `rtml-profile report`)."""
    recs = records(data_dir)
    texts, figs = {}, {}
    tables = _tables(data_dir) if recs else {}
    for r in recs:
        texts[f"{r['slug']}.md"], f = render_text(tables, r)
        figs.update(f)
    if recs:
        texts[INDEX] = index_text(tables, recs)
    return texts, figs
