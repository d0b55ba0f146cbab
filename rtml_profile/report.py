"""reports/REPORT.md and its figures, rendered from reports/data/ only: this module reads and renders.

Every number comes from a result file (training records, analysis.csv, bench.csv and its samples); the same
files render the same Markdown byte for byte. A section whose data is missing names the command that makes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtml_profile import hw2, zoo
from rtml_profile.files import atomic_write

DEFAULT_BUDGETS_MS = (1.0, 16.7, 33.3)
REGENERATE = [
    "pip install -e '.[dev]'",
    "rtml-profile all --data-dir ../shared/data      # train-and-export -> analyze -> bench -> report",
    "rtml-profile report                             # re-render from reports/data/ only",
]


@dataclass
class Inputs:
    """Everything the report reads, loaded once."""

    data_dir: Path
    records: dict[str, dict] = field(default_factory=dict)
    analysis: object = None  # DataFrame of TOTAL rows
    bench: object = None  # DataFrame of all rows
    extras: dict[str, dict] = field(default_factory=dict)  # train_speed_*.json, gpu_train_*.json

    @property
    def macs(self) -> dict[str, float]:
        """model id -> MACs per sample (analysis TOTAL row at batch 1)."""
        return {} if self.analysis is None else dict(zip(self.analysis["model"], self.analysis["macs"]))


def load_inputs(data_dir: Path) -> Inputs:
    import pandas as pd

    inp = Inputs(Path(data_dir))
    for mid in zoo.MODELS:
        p = inp.data_dir / f"train_{mid}.json"
        if p.is_file():
            inp.records[mid] = json.loads(p.read_text())
    p = inp.data_dir / "analysis.csv"
    if p.is_file():
        a = pd.read_csv(p)
        inp.analysis = a[(a["node"] == "TOTAL") & (a["batch"] == 1) & a["model"].isin(list(zoo.MODELS))]
    p = inp.data_dir / "bench.csv"
    if p.is_file():
        b = pd.read_csv(p, keep_default_na=False, na_values=[""])
        b["batch"] = b["batch"].astype(int)
        inp.bench = b[b["model"].isin(list(zoo.MODELS))].sort_values(
            ["model", "host", "runtime", "precision", "scope", "batch"], kind="stable").reset_index(drop=True)
    for p in sorted(inp.data_dir.glob("train_speed_*.json")) + sorted(inp.data_dir.glob("gpu_train_*.json")):
        inp.extras[p.stem] = json.loads(p.read_text())
    return inp


# ---------------------------------------------------------------- formatting helpers (deterministic)

def fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    ax = abs(x)
    if ax != 0 and (ax >= 1e6 or ax < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:,.0f}" if ax >= 1000 else f"{x:.{digits}g}"


def pct(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def us(x) -> str:
    return "n/a" if x is None or not math.isfinite(x) else (f"{x:,.0f} us" if x >= 100 else f"{x:.1f} us")


def table(rows: list[dict]) -> str:
    if not rows:
        return "_(no rows)_\n"
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(r[k]).replace("|", "\\|") for k in keys) + " |")
    return "\n".join(out) + "\n"


def missing(what: str, command: str) -> str:
    return f"_No {what} in reports/data/: run `{command}` to produce it._\n"


def metric_label(mid: str) -> str:
    return "accuracy" if zoo.get(mid).task == "classification" else "R^2"


def metric_fmt(mid: str, v) -> str:
    return pct(v) if zoo.get(mid).task == "classification" else fmt(v)


# ---------------------------------------------------------------- derived views over the data

def ok_rows(inp: Inputs):
    if inp.bench is None:
        return None
    return inp.bench[inp.bench["status"] == "ok"]


def fastest_batch1(inp: Inputs, mid: str) -> list[dict]:
    """Per host, the batch-1 row with the lowest p50 (any runtime, precision, scope)."""
    ok = ok_rows(inp)
    if ok is None:
        return []
    rows = ok[(ok["model"] == mid) & (ok["batch"] == 1)]
    out = []
    for host, g in rows.groupby("host", sort=True):
        r = g.sort_values(["p50_us", "runtime", "precision", "scope"], kind="stable").iloc[0]
        out.append(r.to_dict())
    return out


def host_kind(host: str) -> str:
    return "GPU host" if " / " in host else "CPU host"


# ---------------------------------------------------------------- figures

def _savefig(fig, path: Path):
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    atomic_write(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "rtml"})
    return plt


def plot_learning_curves(rec: dict, path: Path):
    plt = _plt()
    h = rec["history"]
    m = rec["overfitting"]["metric"]
    ep = [r["epoch"] for r in h]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [r["train_loss"] for r in h], label="train (epoch mean)")
    a1.plot(ep, [r["val_loss"] for r in h], label="validation")
    a2.plot(ep, [r[f"train_{m}"] for r in h], label="train (during epoch)")
    a2.plot(ep, [r[f"val_{m}"] for r in h], label="validation")
    o = rec["overfitting"]
    for ax in (a1, a2):
        ax.axvline(o["min_val_loss_epoch"], color="red", ls="--", lw=1,
                   label=f"min validation loss (epoch {o['min_val_loss_epoch']})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    a2.axvline(o["best_val_epoch"], color="green", ls=":", lw=1)
    a1.set_ylabel("loss (" + ("NLL" if m == "accuracy" else "MSE, scaled price") + ")")
    a2.set_ylabel("accuracy" if m == "accuracy" else "R^2 (de-normalized price)")
    fig.suptitle(f"{rec['model']}: learning curves ({rec['recipe']['epochs']} epochs, {rec['device']})")
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


def plot_latency(ok, mid: str, path: Path):
    plt = _plt()
    rows = ok[ok["model"] == mid]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = list(rows.groupby(["host", "runtime", "precision", "scope"], sort=True))
    colors = plt.get_cmap("tab20")
    for i, ((host, rt, prec, scope), g) in enumerate(groups):
        g = g.sort_values("batch")
        ls = "-" if host_kind(host) == "GPU host" else "--"
        ax.plot(g["batch"], g["p50_us"], ls, marker="o", ms=3, color=colors(i % 20),
                label=f"{rt} {prec} {scope} ({'GPU' if ls == '-' else 'CPU'} host)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per call (us)")
    ax.set_title(f"{mid}: latency vs batch (solid: GPU host, dashed: CPU host)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower cost and higher-or-equal value), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(pts: list[dict], xkey: str, xlabel: str, path: Path, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xy = [(p[xkey], p["value"]) for p in pts]
    front = pareto_front(xy)
    for i, p in enumerate(pts):
        ax.scatter(p[xkey], p["value"], s=20, color="C0" if p["model"] == "2a" else "C1",
                   marker="o" if "GPU" in p["host_kind"] else "s", zorder=3)
    fx = [xy[i] for i in front]
    ax.plot([x for x, _ in fx], [y for _, y in fx], "r-", lw=1, zorder=2)
    ax.scatter([x for x, _ in fx], [y for _, y in fx], s=90, facecolors="none", edgecolors="red", zorder=4,
               label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.scatter([], [], color="C0", label="2a")
    ax.scatter([], [], color="C1", label="2b")
    ax.scatter([], [], color="gray", marker="o", label="GPU host")
    ax.scatter([], [], color="gray", marker="s", label="CPU host")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return front


# ---------------------------------------------------------------- sections

def section_summary(inp: Inputs) -> str:
    out = ["## 1. Summary per model\n\n"]
    if not inp.records:
        return "".join(out) + missing("training records", "rtml-profile train-and-export all")
    macs = inp.macs
    rows = []
    for mid, r in inp.records.items():
        o, t, f = r["overfitting"], r["timings"], r["final"]
        m = o["metric"]
        fast = fastest_batch1(inp, mid)
        rows.append({
            "model": mid,
            "params": fmt(int(r["spec"]["params"])),
            "MACs/sample": fmt(int(macs[mid])) if mid in macs else "run `rtml-profile analyze all`",
            "metric": metric_label(mid),
            "train": metric_fmt(mid, f["train"][m]),
            "validation": metric_fmt(mid, f["val"][m]),
            "gap (train-val)": metric_fmt(mid, f["train"][m] - f["val"][m]),
            "best val (epoch)": f"{metric_fmt(mid, o['best_val_metric'])} ({o['best_val_epoch']})",
            "last - best": metric_fmt(mid, o["final_minus_best"]),
            "train time": f"{t['epoch_s_mean']:.3f} s/epoch, {t['train_s']:.1f} s total ({r['recipe']['epochs']} "
                          f"epochs, {r['device']})",
            "fastest batch-1 path (p50 / p99)": "<br>".join(
                f"{host_kind(x['host'])}: {x['runtime']} {x['precision']} {x['scope']}, {us(x['p50_us'])} / "
                f"{us(x['p99_us'])}" for x in fast) or "run `rtml-profile bench`",
        })
    out.append(table(rows))
    out.append("\nTrain metric: final weights over the whole training set; validation: the held-out split "
               "(housing: seeded 20%; CIFAR-10: the 10,000 test images). Gap and best epoch come from the per-epoch "
               "history. Training time counts the training passes only (device synchronized), not the per-epoch "
               "validation. Regression metrics are on de-normalized prices.\n")
    return "".join(out)


def section_curves(inp: Inputs, fig_dir: Path) -> str:
    out = ["## 2. Learning curves and overfitting\n\n"]
    if not inp.records:
        return "".join(out) + missing("training records", "rtml-profile train-and-export all")
    for mid, r in inp.records.items():
        path = fig_dir / f"curves_{mid}.png"
        plot_learning_curves(r, path)
        o = r["overfitting"]
        out.append(f"\n### {mid}\n\n![{mid} learning curves](figures/{path.name})\n\n"
                   f"Validation loss is lowest at epoch {o['min_val_loss_epoch']} of {len(r['history'])} "
                   f"({fmt(o['min_val_loss'])}, last {fmt(o['final_val_loss'])}); validation {metric_label(mid)} "
                   f"peaks at epoch {o['best_val_epoch']} ({metric_fmt(mid, o['best_val_metric'])}, last "
                   f"{metric_fmt(mid, o['final_val_metric'])}); the largest train-validation gap is "
                   f"{metric_fmt(mid, o['max_gap'])}.\n")
    return "".join(out)


def section_latency(inp: Inputs, fig_dir: Path) -> str:
    out = ["## 3. Latency and throughput\n\n"
           "Each cell: p50 / p99 latency of one call on one batch, and throughput in samples/s (batch / mean "
           "latency). Scopes: `compute` = inputs already on the runtime's device (IO binding / device tensors), "
           "`end-to-end` = host array in, host array out (copies included), `cuda-graph` = compute with the "
           "forward replayed from a CUDA graph. GPU samples are timed with a host clock around the call and a "
           "device synchronize.\n"]
    ok = ok_rows(inp)
    if ok is None or ok.empty:
        return "".join(out) + missing("benchmark results", "rtml-profile bench")
    batches = sorted(ok["batch"].unique())
    for mid in sorted(ok["model"].unique()):
        rows = []
        g = ok[ok["model"] == mid]
        for (host, rt, prec, scope), cfg in g.groupby(["host", "runtime", "precision", "scope"], sort=True):
            row = {"host": host_kind(host), "runtime": rt, "precision": prec, "scope": scope}
            by_b = {int(b): r for b, r in zip(cfg["batch"], cfg.to_dict("records"))}
            for b in batches:
                r = by_b.get(int(b))
                row[f"batch {b}"] = (f"{us(r['p50_us'])} / {us(r['p99_us'])}<br>{fmt(r['throughput_sps'], 3)}/s"
                                     if r else "")
            rows.append(row)
        path = fig_dir / f"latency_{mid}.png"
        plot_latency(ok, mid, path)
        out.append(f"\n### {mid}\n\n{table(rows)}\n![{mid} latency vs batch](figures/{path.name})\n")
    warn = ok[ok["warnings"].fillna("") != ""]
    if len(warn):
        out.append(f"\n{len(warn)} of {len(ok)} rows carry a warning (too few samples for a percentile, or a "
                   f"coefficient of variation above 0.3); they are listed in bench.csv's `warnings` column.\n")
    return "".join(out)


def section_budgets(inp: Inputs, budgets_ms) -> str:
    from rtml_profile.results import load_samples

    out = [f"## 4. Real-time budgets\n\nFrame budgets: {', '.join(f'{b:g} ms' for b in budgets_ms)}, for one call on "
           "one batch. A (model, runtime, batch) meets a budget when its p99 latency fits. Per budget the table gives "
           "the largest benchmarked batch that meets it and, in brackets, the deadline-miss rate at that batch: the "
           "share of its timed calls (raw samples) slower than the budget; where even batch 1 misses, the batch-1 "
           "miss rate. The sustainable rate is 1 / p99 at batch 1 (calls per second with 99% on time).\n\n"]
    ok = ok_rows(inp)
    if ok is None or ok.empty:
        return "".join(out) + missing("benchmark results", "rtml-profile bench")
    rows = []
    for (mid, host, rt, prec, scope), g in ok.groupby(["model", "host", "runtime", "precision", "scope"], sort=True):
        g = g.sort_values("batch")
        b1 = g[g["batch"] == 1]
        row = {"model": mid, "host": host_kind(host), "runtime": rt, "precision": prec, "scope": scope,
               "batch-1 p99": us(float(b1["p99_us"].iloc[0])) if len(b1) else "n/a",
               "rate at p99": f"{1e6 / float(b1['p99_us'].iloc[0]):,.0f}/s" if len(b1) else "n/a"}
        for budget in budgets_ms:
            fits = g[g["p99_us"] <= budget * 1e3]
            r = (fits.iloc[-1] if len(fits) else g.iloc[0])
            s = load_samples(inp.data_dir, r.to_dict())
            miss = "no samples" if s is None else pct(float((s > budget * 1e3).mean()))
            row[f"{budget:g} ms"] = f"{int(r['batch'])} ({miss})" if len(fits) else f"none (batch {int(r['batch'])}: {miss})"
        rows.append(row)
    out.append(table(rows))
    return "".join(out)


def _cost_points(inp: Inputs) -> list[dict]:
    ok = ok_rows(inp)
    if ok is None:
        return []
    pts = []
    rows = ok[(ok["batch"] == 1) & ok["model"].isin(["2a", "2b"]) & ok["metric_value"].notna()]
    macs = inp.macs
    for (host, mid, rt, prec), g in rows.groupby(["host", "model", "runtime", "precision"], sort=True):
        best = g.sort_values(["p99_us", "scope"], kind="stable").iloc[0]
        pts.append({"host": host, "host_kind": host_kind(host), "model": mid, "runtime": rt, "precision": prec,
                    "scope": best["scope"], "p99_us": float(best["p99_us"]), "value": float(best["metric_value"]),
                    "macs": float(macs.get(mid, float("nan")))})
    return pts


def section_pareto(inp: Inputs, fig_dir: Path) -> str:
    out = ["## 5. Accuracy vs cost\n\n"]
    pts = _cost_points(inp)
    if not pts:
        return "".join(out) + missing("benchmark results with accuracy for 2a/2b", "rtml-profile bench")
    front = plot_pareto(pts, "p99_us", "p99 latency at batch 1 (us, best scope)", fig_dir / "pareto_latency.png",
                        "CIFAR-10: validation accuracy vs p99 latency")
    out.append("Each point: one (model, host, runtime, precision) at batch 1 with its fastest scope by p99. "
               "Frontier (no other point is both faster and at least as accurate):\n\n")
    out.append(table([{"model": pts[i]["model"], "host": pts[i]["host_kind"], "runtime": pts[i]["runtime"],
                       "precision": pts[i]["precision"], "scope": pts[i]["scope"], "p99": us(pts[i]["p99_us"]),
                       "accuracy": pct(pts[i]["value"])} for i in front]))
    out.append("\n![accuracy vs p99 latency](figures/pareto_latency.png)\n")
    mpts = [p for p in pts if math.isfinite(p["macs"])]
    if mpts:
        plot_pareto(mpts, "macs", "MACs per sample", fig_dir / "pareto_macs.png",
                    "CIFAR-10: validation accuracy vs MACs")
        out.append("\n![accuracy vs MACs](figures/pareto_macs.png)\n")
    out.append("\n" + _macs_buy(inp))
    return "".join(out)


def _macs_buy(inp: Inputs) -> str:
    if inp.analysis is None or not inp.records:
        return ""
    macs = inp.macs
    lines = []
    for small, big in (("1a", "1b"), ("2a", "2b")):
        if {small, big} <= set(inp.records) and {small, big} <= set(macs):
            m = inp.records[small]["overfitting"]["metric"]
            dv = inp.records[big]["final"]["val"][m] - inp.records[small]["final"]["val"][m]
            dm = (macs[big] - macs[small]) / 1e6
            unit = "accuracy points" if m == "accuracy" else "R^2"
            per = (100 * dv if m == "accuracy" else dv) / dm
            lines.append(f"- {big} spends {dm:.4f} M more MACs per sample than {small} and changes validation "
                         f"{metric_label(small)} by {metric_fmt(small, dv)}: {per:+.3f} {unit} per extra million "
                         f"MACs.\n")
    return "What extra MACs buy:\n\n" + "".join(lines) if lines else ""


def section_runtime_accuracy(inp: Inputs) -> str:
    out = ["## 6. Accuracy per runtime and precision\n\nThe whole evaluation set through each runtime, against the "
           "PyTorch fp32 CPU reference: max |difference| of outputs, and for classifiers the share of identical "
           "predicted classes. A runtime passes when max |diff| <= atol + rtol x max |reference output| and its "
           "class agreement holds: fp32 CPU 1e-4 + 0; fp32 GPU 1e-3 + 1e-3 (ONNX Runtime's CUDA provider uses TF32 "
           "matrix units by default, whose error grows with the outputs' magnitude; PyTorch keeps fp32); fp16 "
           "5e-2 + 2e-3 and 99% agreement; int8 95% class agreement (dynamic quantization moves log-probabilities "
           "by more than any fixed tolerance).\n\n"]
    ok = ok_rows(inp)
    if ok is None or ok.empty or "metric_value" not in ok:
        return "".join(out) + missing("benchmark results", "rtml-profile bench")
    rows = []
    ok = ok[ok["metric_value"].notna()]
    for (mid, host, rt, prec), g in ok.groupby(["model", "host", "runtime", "precision"], sort=True):
        r = g.iloc[0]
        ref = inp.records.get(mid, {}).get("final", {}).get("val", {}).get(zoo.get(mid).metric)
        agree = r.get("parity_class_agreement")
        t = r.get("parity_tolerance")
        tol = "class agreement only" if t is None or t != t or (prec == "int8" and zoo.get(mid).task ==
                                                                 "classification") else fmt(float(t), 2)
        rows.append({"model": mid, "host": host_kind(host), "runtime": rt, "precision": prec,
                     "metric": f"{metric_label(mid)} {metric_fmt(mid, r['metric_value'])}",
                     "change vs PyTorch fp32": "n/a" if ref is None else metric_fmt(mid, r["metric_value"] - ref),
                     "max abs diff (tolerance)": f"{fmt(float(r['parity_max_abs_diff']), 2)} ({tol})",
                     "class agreement": pct(float(agree)) if agree == agree and agree is not None else "",
                     "parity": "ok" if str(r["parity_ok"]) == "True" else "FAIL"})
    out.append(table(rows))
    return "".join(out)


def section_hw2(inp: Inputs) -> str:
    out = ["## 7. HW2's figures beside the measurements\n\n"]
    if not inp.records:
        return "".join(out) + missing("training records", "rtml-profile train-and-export all")
    macs = inp.macs
    rows = []
    for mid, r in inp.records.items():
        rep = hw2.REPORTED[mid]
        m = r["overfitting"]["metric"]
        val = r["final"]["val"]
        rows.append({"model": mid, "quantity": "parameters", "HW2": fmt(rep["params"]),
                     "measured": fmt(int(r["spec"]["params"])),
                     "correction": hw2.MAC_NOTES[mid] if mid == "2b" else "counted from the module and the ONNX graph"})
        rows.append({"model": mid, "quantity": "MACs per sample", "HW2": f"{rep['gmacs']} GMAC",
                     "measured": f"{fmt(int(macs[mid]))} ({macs[mid] / 1e9:.6f} GMAC)" if mid in macs else "n/a",
                     "correction": hw2.MAC_NOTES[mid]})
        rows.append({"model": mid, "quantity": "training loss", "HW2": fmt(rep["train_loss"]),
                     "measured": f"{fmt(r['history'][-1]['train_loss'])} (last epoch's mean)",
                     "correction": "HW2 printed the loss of the last minibatch of the last epoch; an epoch mean "
                                   "over all batches is comparable across runs"})
        if m == "r2":
            rows.append({"model": mid, "quantity": "accuracy", "HW2": rep["accuracy"],
                         "measured": f"ratio metric {fmt(val['hw2_ratio_accuracy'])}; R^2 {fmt(val['r2'])}, MAE "
                                     f"{val['mae']:,.0f}, RMSE {val['rmse']:,.0f}",
                         "correction": "the folded ratio is unbounded below, undefined at a scaled target of 0 "
                                       f"({val['hw2_ratio_undefined_rows']} validation row(s) here) and rewards "
                                       "nothing in particular; R^2/MAE/RMSE on de-normalized prices do"})
        else:
            rows.append({"model": mid, "quantity": "accuracy", "HW2": rep["accuracy"], "measured": pct(val["accuracy"]),
                         "correction": "same metric; now with per-epoch validation so overfitting is measured"})
        t = r["timings"]
        rows.append({"model": mid, "quantity": "training time", "HW2": f"{rep['train_s']} s",
                     "measured": f"{t['train_s']:.1f} s on {r['device']} ({r['recipe']['epochs']} epochs)",
                     "correction": "HW2's problem-2 time was DataLoader-bound (per-image transforms, one worker, "
                                   "782 small batches per epoch); here data is one tensor on the device"
                     if m == "accuracy" else "full-batch; tiny either way"})
    out.append(table(rows))
    g = inp.extras.get("gpu_train_2b")
    if g:
        out.append(f"\nOn the GPU host ({g['environment'].get('gpu', 'GPU')}), the whole HW2 recipe for 2b "
                   f"({g['recipe']['epochs']} epochs) trained in {g['timings']['train_s']:.1f} s with the train step "
                   f"captured in a CUDA graph ({g['timings']['epoch_s_mean']:.3f} s/epoch), validation accuracy "
                   f"{pct(g['final']['val']['accuracy'])}.\n")
    for name, sp in sorted(inp.extras.items()):
        if not name.startswith("train_speed_"):
            continue
        env = sp["environment"]
        where = env.get("gpu") or f"{env.get('physical_cores')}-core {env.get('cpu')}"
        line = (f"\nTraining speed of 2b on {where} ({sp['device']}, `benchmarks/train_speed.py`): the trainer takes "
                f"{np.median(sp['trainer_epoch_s']):.3f} s per epoch against {np.median(sp['bare_epoch_s']):.3f} s "
                f"for a bare PyTorch loop over the same tensors ({sp['ratio_train_pass']:.2f}x)")
        g = sp.get("eager_vs_cuda_graph")
        if g:
            line += (f"; eager {g['eager']['epoch_s_median']:.3f} s vs CUDA-graph {g['cuda_graph']['epoch_s_median']:.3f} "
                     f"s per epoch ({g['speedup']:.1f}x), with validation accuracy differing by at most "
                     f"{100 * g['max_abs_val_accuracy_diff']:.2f} points over {len(g['eager']['val_accuracy'])} epochs")
        out.append(line + ".\n")
    out.append("\nHW2 also read GPU time from a host clock without synchronizing the device, so queued kernels were "
               "not counted; every GPU number here is taken after a device synchronize.\n")
    return "".join(out)


def findings(inp: Inputs) -> list[str]:
    """Sentences computed from the data: different data makes different sentences."""
    out = []
    recs = inp.records
    for mid in ("2a", "2b"):
        r = recs.get(mid)
        if not r:
            continue
        o, h = r["overfitting"], r["history"]
        last = h[-1]
        if o["min_val_loss_epoch"] < len(h):
            out.append(f"{mid} starts to overfit at epoch {o['min_val_loss_epoch']} (lowest validation loss, "
                       f"{fmt(o['min_val_loss'])}); by epoch {len(h)} its validation loss is "
                       f"{fmt(o['final_val_loss'])}, train accuracy reaches {pct(last['train_accuracy'])} while "
                       f"validation accuracy is {pct(last['val_accuracy'])} (peak {pct(o['best_val_metric'])} at "
                       f"epoch {o['best_val_epoch']}).")
        else:
            out.append(f"{mid} does not overfit within {len(h)} epochs: its validation loss is still falling "
                       f"({fmt(o['final_val_loss'])} at the last epoch).")
    if {"2a", "2b"} <= set(recs):
        a, b = recs["2a"]["final"]["val"]["accuracy"], recs["2b"]["final"]["val"]["accuracy"]
        la, lb = recs["2a"]["history"][-1]["train_loss"], recs["2b"]["history"][-1]["train_loss"]
        lat = ""
        fa, fb = fastest_batch1(inp, "2a"), fastest_batch1(inp, "2b")
        if fa and fb:
            pa = {x["host"]: x for x in fa}
            same = [x for x in fb if x["host"] in pa]
            if same:
                x = same[0]
                ratio = x["p50_us"] / pa[x["host"]]["p50_us"]
                lat = f"; its fastest batch-1 path costs {ratio:.2f}x 2a's ({host_kind(x['host'])}, p50)"
        diff = 100 * (b - a)
        out.append(f"2b ends with a {'lower' if lb < la else 'higher'} train loss (last epoch's mean) than 2a ({fmt(lb)} vs {fmt(la)}) "
                   f"and {abs(diff):.2f} points {'less' if diff < 0 else 'more'} validation accuracy "
                   f"({pct(b)} vs {pct(a)}){lat}: the extra layers "
                   f"{'fit the training set harder without generalizing better' if diff <= 0 else 'pay off'}.")
    for mid in ("1a", "1b"):
        r = recs.get(mid)
        if r:
            v = r["final"]["val"]
            verdict = ("explains less variance than predicting the mean price" if v["r2"] < 0 else
                       "explains little of the price variance" if v["r2"] < 0.3 else
                       "explains a useful share of the price variance")
            out.append(f"{mid} reaches R^2 {fmt(v['r2'])} (MAE {v['mae']:,.0f}) on validation: it {verdict}, while "
                       f"HW2's ratio 'accuracy' reads {fmt(v['hw2_ratio_accuracy'])} for the same predictions.")
    ok = ok_rows(inp)
    if ok is not None and not ok.empty:
        for mid in sorted(ok["model"].unique()):
            g = ok[(ok["model"] == mid) & (ok["batch"] == 1)]
            cpu, gpu = g[g["device"] == "cpu"], g[g["device"] == "cuda"]
            if len(cpu) and len(gpu):
                c = cpu.sort_values("p50_us", kind="stable").iloc[0]
                d = gpu.sort_values("p50_us", kind="stable").iloc[0]
                faster = "GPU" if d["p50_us"] < c["p50_us"] else "CPU"
                out.append(f"At batch 1, {mid}'s fastest GPU path ({d['runtime']} {d['precision']} {d['scope']}, "
                           f"{us(d['p50_us'])}) is {max(c['p50_us'], d['p50_us']) / min(c['p50_us'], d['p50_us']):.1f}x "
                           f"{'faster' if faster == 'GPU' else 'slower'} than its fastest CPU path ({c['runtime']} "
                           f"{c['precision']} {c['scope']}, {us(c['p50_us'])}).")
        for mid in sorted(ok["model"].unique()):
            g = ok[(ok["model"] == mid) & (ok["runtime"] == "ort-cpu") & (ok["scope"] == "compute")]
            f32, i8 = g[g["precision"] == "fp32"], g[g["precision"] == "int8"]
            if len(f32) and len(i8) and f32["metric_value"].notna().any() and i8["metric_value"].notna().any():
                bmax = int(min(f32["batch"].max(), i8["batch"].max()))
                s32 = f32[f32["batch"] == bmax].iloc[0]
                s8 = i8[i8["batch"] == bmax].iloc[0]
                speed = s32["p50_us"] / s8["p50_us"]
                how = (f"{speed:.2f}x faster" if speed >= 1 else
                       f"{1 / speed:.2f}x slower (quantizing activations costs more than the int8 matmul saves)")
                out.append(f"int8 (dynamic quantization) changes {mid}'s validation {metric_label(mid)} by "
                           f"{metric_fmt(mid, s8['metric_value'] - s32['metric_value'])} and makes its batch-{bmax} "
                           f"ORT CPU call (compute scope, p50) {how}.")
    return out


def section_findings(inp: Inputs) -> str:
    f = findings(inp)
    if not f:
        return "## Findings\n\n" + missing("training records or benchmark results", "rtml-profile all")
    return "## Findings\n\n" + "".join(f"- {s}\n" for s in f)


def section_environment(inp: Inputs) -> str:
    out = ["## 8. Environment and how to regenerate\n\n"]
    hosts = {}  # host -> its environment: from bench rows, else from a training record
    if inp.bench is not None:
        for r in inp.bench.to_dict("records"):
            hosts.setdefault(r["host"], r)
    for rec in inp.records.values():
        hosts.setdefault(rec["environment"]["host"], rec["environment"])

    def cell(e, *keys):  # first non-empty value; NaN comes from empty CSV cells
        return next((e[k] for k in keys if e.get(k) not in (None, "") and e[k] == e[k]), "")

    rows = [{"host": h, "CPU": cell(e, "cpu"), "cores": cell(e, "physical_cores"), "GPU": cell(e, "gpu") or "none",
             "driver": cell(e, "driver"), "torch": cell(e, "torch"),
             "onnxruntime": cell(e, "onnxruntime-gpu", "onnxruntime"), "onnx": cell(e, "onnx")}
            for h, e in sorted(hosts.items())]
    out.append(table(rows) if rows else
               "_No environment recorded yet._\n")
    trained = sorted({(r["environment"]["host"], r["device"]) for r in inp.records.values()})
    if trained:
        out.append("\nTraining records were made on: " + "; ".join(f"{h} ({d})" for h, d in trained) + ".\n")
    out.append("\nRegenerate (from the project root; data in ../shared/data or $RTML_DATA_DIR):\n\n```\n" +
               "\n".join(REGENERATE) + "\n```\n\nGPU rows come from `benchmarks/gpu_run.sh` on a GPU machine; "
               "their rows are merged into reports/data/bench.csv beside this host's.\n")
    return "".join(out)


def render(data_dir: Path = Path("reports/data"), out: Path = Path("reports/REPORT.md"),
           budgets_ms=DEFAULT_BUDGETS_MS) -> Path:
    """Render the report from `data_dir` into `out` (figures in `out`'s folder /figures). Returns `out`."""
    inp = load_inputs(Path(data_dir))
    fig_dir = Path(out).parent / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    parts = [
        "# rtml-profile report: the HW2 models, their accuracy, overfitting and real-time cost\n\n"
        "Generated by `rtml-profile report` from the files in reports/data/ (training records, analysis.csv, "
        "bench.csv and raw latency samples); nothing here is typed by hand. MACs are multiply-accumulates of "
        "matrix products including bias adds, per sample (FLOPs = 2 x MACs).\n",
        section_findings(inp),
        section_summary(inp),
        section_curves(inp, fig_dir),
        section_latency(inp, fig_dir),
        section_budgets(inp, budgets_ms),
        section_pareto(inp, fig_dir),
        section_runtime_accuracy(inp),
        section_hw2(inp),
        section_environment(inp),
    ]
    text = "\n".join(p.rstrip("\n") + "\n" for p in parts)
    atomic_write(out, text)
    return Path(out)
