"""Training, skipped runs and environment sections."""

from __future__ import annotations

import statistics

from rtml_profile import zoo
from rtml_profile.report.common import (
    accuracy_ci,
    filled,
    host_label,
    metric_name,
    metric_value,
    reference,
)
from rtml_profile.report.fmt import count, duration_s, missing, sig, table
from rtml_profile.report.inputs import Inputs, models
from rtml_profile.schema import unknown


def section_training(inp: Inputs) -> str:
    out = ["## Models: what they score and what they cost\n\n"]
    if not inp.records:
        return "".join(out) + missing("training records", "rtml-profile train-and-export all")
    rows = []
    for mid in models(inp):
        r = inp.records.get(mid)
        if not r:
            continue
        spec, o, t = zoo.get(mid), r["overfitting"], r["timings"]
        val, n = reference(inp, mid)
        rows.append(
            {
                "model": mid,
                "data": f"{spec.dataset} ({spec.task})",
                "params": count(r["spec"]["params"]),
                "MACs/sample": count(inp.macs[mid]) if mid in inp.macs else "n/a",
                "validation [95%]": accuracy_ci(val, n)
                if spec.task == "classification"
                else f"R^2 {sig(val)}, MAE {sig(r['final']['val'].get('mae'))}",
                "train": metric_value(mid, r["final"]["train"][o["metric"]]),
                "lowest val loss": f"epoch {o['min_val_loss_epoch']} of {len(r['history'])}",
                "training": f"{duration_s(t['train_s'])} ({duration_s(t['epoch_s_mean'])}/epoch, {r['device']})",
            }
        )
    out.append(table(rows))
    figs = " ".join(f"[{mid}](figures/curves_{mid}.png)" for mid in models(inp) if mid in inp.records)
    out.append(
        f"\nValidation: CIFAR-10's 10,000 test images, or a seeded 20% of the housing rows; intervals are 95% "
        f"Wilson intervals. Prices de-normalized. Training time: training passes only. Curves: {figs}. "
        f"{MACS_EQUAL_PARAMS if macs_equal_params(inp) else ''}\n"
    )
    if speed_notes(inp):
        out.append("\nTraining speed benchmarks: [appendix](APPENDIX.md#training-speed).\n")
    return "".join(out)


def appendix_speed(inp: Inputs) -> str:
    notes = speed_notes(inp)
    return "\n## Training speed\n\n" + "".join(f"{s}\n\n" for s in notes) if notes else ""


MACS_EQUAL_PARAMS = (
    "MACs equal parameters for these MLPs: at batch 1 every weight is used in exactly one multiply-accumulate "
    "per sample and each bias add is counted as one MAC, so MACs = weights + biases = parameters."
)


def macs_equal_params(inp: Inputs) -> bool:
    return bool(inp.records) and all(
        mid in inp.macs and int(inp.macs[mid]) == int(r["spec"]["params"]) for mid, r in inp.records.items()
    )


def _speed_model(sp: dict) -> str | None:
    return sp.get("model") or next(
        (w for w in str(sp.get("what", "")).replace(",", " ").split() if w in zoo.MODELS), None
    )


def speed_notes(inp: Inputs) -> list[str]:
    """One sentence per training-speed benchmark, set beside the training run of the same model and host."""
    out = []
    for name, sp in sorted(inp.extras.items()):
        if "trainer_epoch_s" not in sp:
            continue
        mid, host = _speed_model(sp), sp["environment"]["host"]
        bench = statistics.median(sp["trainer_epoch_s"])
        line = (
            f"Training speed of {mid} on the {host_label(inp, host)} ({sp['device']}, {name}.json): "
            f"{duration_s(bench)}/epoch (median of {len(sp['trainer_epoch_s'])} epochs, "
            f"{sig(sp['ratio_train_pass'])}x a bare PyTorch loop)"
        )
        rec = inp.records.get(mid)
        if rec and rec["environment"]["host"] == host and rec["device"] == sp["device"]:
            et = sorted(e.get("epoch_time_s", 0) for e in rec["history"])
            line += (
                f"; the training run that made the committed weights averaged "
                f"{duration_s(rec['timings']['epoch_s_mean'])}"
                f"/epoch over {len(et)} epochs (range {duration_s(et[0])} to {duration_s(et[-1])})"
            )
            if et[-1] > 1.1 * max(sp["trainer_epoch_s"]):
                line += (
                    ": its slower epochs show other work shared the machine during the run, so the benchmark is "
                    "the speed figure"
                )
        g = sp.get("eager_vs_cuda_graph")
        if g:
            line += (
                f"; eager {duration_s(g['eager']['epoch_s_median'])} vs CUDA graph "
                f"{duration_s(g['cuda_graph']['epoch_s_median'])} per epoch ({sig(g['speedup'])}x), validation "
                f"accuracy differing by at most {sig(100 * g['max_abs_val_accuracy_diff'])} points"
            )
        out.append(line + ".")
    for name, g in sorted(inp.extras.items()):
        if "history" in g:
            out.append(
                f"{name}.json: {g['model']} trained with its full recipe ({g['recipe']['epochs']} epochs) on "
                f"the {host_label(inp, g['environment']['host'])} in {duration_s(g['timings']['train_s'])} "
                f"({duration_s(g['timings']['epoch_s_mean'])}/epoch{', CUDA graph' if g.get('cuda_graph') else ''}"
                f"), validation {metric_name(g['model'])} "
                f"{metric_value(g['model'], g['final']['val'][g['overfitting']['metric']])}."
            )
    return out


def section_skipped(inp: Inputs) -> str:
    """What was not measured where, and why (one row per host, runtime and reason)."""
    b = inp.bench
    if b is None:
        return ""
    skipped = b[b["status"] != "ok"]
    if skipped.empty:
        return ""
    rows = [
        {
            "host": host_label(inp, h),
            "runtime": rt,
            "status": st,
            "precisions": ", ".join(sorted(set(g["precision"]))),
            "rows": len(g),
            "why": str(reason) if filled(reason) else "(no reason recorded)",
        }
        for (h, rt, st, reason), g in skipped.fillna({"reason": ""}).groupby(
            ["host", "runtime", "status", "reason"], sort=True
        )
    ]
    return f"## Not measured\n\n{len(skipped)} of {len(b)} rows measured nothing:\n\n" + table(rows)


def summary_skipped(inp: Inputs) -> str:
    """REPORT.md's line on what was not measured (the table is in the appendix)."""
    b = inp.bench
    if b is None or (b["status"] == "ok").all():
        return ""
    skipped = b[b["status"] != "ok"]
    rts = ", ".join(sorted(set(skipped["runtime"])))
    return (
        f"## Not measured\n\n{len(skipped)} of {len(b)} rows measured nothing ({rts} where absent); every "
        f"runtime's reason: [appendix](APPENDIX.md#not-measured).\n"
    )


def ort_distributions(inp: Inputs, host: str) -> list[str]:
    """Every ONNX Runtime distribution recorded for `host` ('onnxruntime 1.30.0'), from the
    `onnxruntime_distributions` column when present, else from the per-package version columns."""
    envs = [] if inp.bench is None else inp.bench[inp.bench["host"] == host].to_dict("records")
    envs += [
        r["environment"] for r in [*inp.records.values(), *inp.extras.values()] if r["environment"]["host"] == host
    ]
    listed = {
        d.strip()
        for e in envs
        if filled(e.get("onnxruntime_distributions"))
        for d in str(e["onnxruntime_distributions"]).split(",")
        if d.strip()
    }
    if listed:
        return sorted(listed)
    return sorted(
        {
            f"{k} {e[k]}"
            for e in envs
            for k in e
            if k.startswith("onnxruntime") and k != "onnxruntime_distributions" and filled(e[k])
        }
    )


def _results(inp: Inputs, h: str) -> str:
    """'192 bench (3 of 192 busy §), 168 load, limits, nodes': what machine `h` measured."""
    load = None if inp.load is None else inp.load[inp.load["status"] == "ok"]
    counts = [_busy_count(t[t["host"] == h], name) for name, t in (("bench", inp.ok), ("load", load)) if t is not None]
    return ", ".join([c for c in counts if c] + [k for k, recs in inp.profiles.items() if h in recs]) or "records"


def _hosts_in_order(inp: Inputs) -> list[str]:

    return sorted(inp.machines, key=lambda h: (unknown(h), host_label(inp, h)))


def section_machines(inp: Inputs) -> str:
    """REPORT.md: which machine measured what (the fingerprints are in the appendix)."""
    if not inp.machines:
        return ""
    lines = [f"- {host_label(inp, h)}{'' if unknown(h) else f' (`{h}`)'}: {_results(inp, h)}"
             for h in _hosts_in_order(inp)]  # fmt: skip
    out = (
        "## Machines\n\nRows are keyed by machine fingerprint ([appendix](APPENDIX.md#machines)): machines sharing a "
        "name are never compared; limits apply to their own machine's rows.\n\n" + "\n".join(lines) + "\n"
    )
    if any(unknown(h) for h in inp.machines):
        out += "\nUnknown machines: results from before fingerprints, kept apart.\n"
    return out


def appendix_machines(inp: Inputs) -> str:
    """APPENDIX.md: every machine's fingerprint and what it measured."""
    rows = []
    for h in _hosts_in_order(inp):
        m = inp.machines[h]
        gpu = ""
        if filled(m.get("gpu")):
            gpu = (f"{m.get('gpu_count') or 1}x {m['gpu']} (cc {m.get('gpu_cc') or '?'}, "
                   f"{m.get('gpu_memory_gib', '?')} GiB, driver {m.get('driver', '?')}, "
                   f"CUDA {m.get('cuda', '?')})")  # fmt: skip
        cpu = ""
        if "cpu_family" in m:
            cpu = f"{m.get('cpu_vendor', '')} family {m['cpu_family']} model {m.get('cpu_model_number', '')} " \
                  f"stepping {m.get('cpu_stepping', '')}"  # fmt: skip
        rows.append({
            "machine": host_label(inp, h), "id": f"`{h}`", "CPU": cpu, "ISA": m.get("cpu_isa", ""),
            "cores": f"{m['physical_cores']} / {m['logical_cores']}" if "logical_cores" in m else "",
            "L1d / L2 / L3": " / ".join(_kib(m.get(k)) for k in ("l1d_bytes", "l2_bytes", "l3_bytes"))
            if "l2_bytes" in m else "",
            "memory": f"{m['memory_gib']} GiB" if "memory_gib" in m else "",
            "GPU": gpu or ("none" if cpu else ""), "results": _results(inp, h),
        })  # fmt: skip
    if not rows:
        return ""
    return (
        "\n## Machines\n\nEach machine's fingerprint (its id is a digest of these facts; cores: physical / logical). "
        "Empty cells: the facts were not recorded (results written before fingerprints).\n\n" + table(rows)
    )


def _busy_count(rows, name: str) -> str:
    """'12 bench (3 of 12 busy §)'; '' for no rows."""
    if not len(rows):
        return ""
    judged = rows["busy"].astype(str).isin(["yes", "no"]) if "busy" in rows else None
    if judged is None or not judged.any():
        return f"{len(rows)} {name}"
    return f"{len(rows)} {name} ({int((rows['busy'].astype(str) == 'yes').sum())} of {int(judged.sum())} busy §)"


def _kib(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "?"
    return f"{v / 2**20:g} MiB" if v >= 2**20 else f"{v / 2**10:g} KiB"


def section_environment(inp: Inputs) -> str:
    hosts = sorted(
        set([] if inp.bench is None else inp.bench["host"])
        | {r["environment"]["host"] for r in [*inp.records.values(), *inp.extras.values()]}
    )
    rows, warns = [], []
    for h in hosts:
        e = _env(inp, h)
        dists = ort_distributions(inp, h)
        rows.append(
            {
                "host": host_label(inp, h),
                "CPU (cores)": f"{e.get('cpu', '')} ({e.get('physical_cores', '')})",
                "GPU (driver, CUDA)": f"{e['gpu']} ({e.get('driver', '')}, {e.get('cuda', '')})"
                if e.get("gpu")
                else "none",
                "python": e.get("python", ""),
                "torch": e.get("torch", ""),
                "onnx": e.get("onnx", ""),
                "ONNX Runtime distributions": ", ".join(dists) or "none recorded",
            }
        )
        if len(dists) > 1:
            warns.append(
                f"Warning: the {host_label(inp, h)} had {len(dists)} ONNX Runtime distributions installed "
                f"({', '.join(dists)}). They share one module, `onnxruntime`, so which build a run imported "
                f"depends on the search path; its ORT rows record runtime version "
                f"{', '.join(_versions(inp, h)) or 'n/a'} (the build that ran)."
            )
        warns += [str(w) for w in {e.get("environment_warning")} if filled(w)]
    out = "## Environment\n\n" + (table(rows) if rows else "_No environment recorded._\n")
    return out + "".join(f"\n{w}\n" for w in warns)


def _env(inp: Inputs, host: str) -> dict:
    """The host's environment: the first filled value of each field over its bench rows and records."""
    envs = [] if inp.bench is None else inp.bench[inp.bench["host"] == host].to_dict("records")
    envs += [
        r["environment"] for r in [*inp.records.values(), *inp.extras.values()] if r["environment"]["host"] == host
    ]
    out = {}
    for e in envs:
        for k, v in e.items():
            if k not in out and filled(v):
                out[k] = v
    return out


def _versions(inp: Inputs, host: str) -> list[str]:
    b = inp.ok
    if b is None or "runtime_version" not in b:
        return []
    g = b[(b["host"] == host) & b["runtime"].str.startswith("ort")]
    return sorted({str(v) for v in g["runtime_version"] if filled(v)})
