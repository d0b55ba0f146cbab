"""The report's figures, rendered to PNG bytes (written by `render` only once every section has succeeded)."""

from __future__ import annotations

import io

from rtml_profile import stats
from rtml_profile.report.fmt import sig


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9})
    return plt


def plain_log(ax, axis: str, ticks=None):
    """A log axis labelled with plain numbers (no 10^n or 2^n), as the report writes them."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    if ticks is not None:
        a.set_ticks(list(ticks))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if ticks is not None else sig(v)))
    # minor ticks: label 2x and 5x a power of ten only, so that labels never crowd
    a.set_minor_formatter(
        NullFormatter() if ticks is not None else FuncFormatter(lambda v, _: sig(v) if f"{v:.0e}"[0] in "25" else "")
    )


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


def learning_curves(rec: dict) -> bytes:
    plt = pyplot()
    h, o = rec["history"], rec["overfitting"]
    m = o["metric"]
    ep = [r["epoch"] for r in h]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(ep, [r["train_loss"] for r in h], label="train (epoch mean)")
    a1.plot(ep, [r["val_loss"] for r in h], label="validation")
    if all(f"train_{m}" in r for r in h):
        a2.plot(ep, [r[f"train_{m}"] for r in h], label="train (during epoch)")
    a2.plot(ep, [r[f"val_{m}"] for r in h], label="validation")
    for ax in (a1, a2):
        ax.axvline(
            o["min_val_loss_epoch"],
            color="red",
            ls="--",
            lw=1,
            label=f"min validation loss (epoch {o['min_val_loss_epoch']})",
        )
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a1.set_ylabel("loss (" + ("NLL" if m == "accuracy" else "MSE, scaled price") + ")")
    a2.set_ylabel("accuracy" if m == "accuracy" else "R^2 (de-normalized price)")
    fig.suptitle(f"{rec['model']}: learning curves ({rec['recipe']['epochs']} epochs, {rec['device']})")
    fig.tight_layout()
    return png(fig)


def latency(rows, title: str, label) -> bytes:
    """p50 latency vs batch: one panel per (host, runtime), colour = precision, line style = scope."""
    plt = pyplot()
    panels = list(rows.groupby(["host", "runtime"], sort=True))
    cols = 2
    nrows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(10, 3.2 * nrows), squeeze=False)
    precs = sorted(rows["precision"].unique())
    styles = dict(zip(sorted(rows["scope"].unique()), ["-", "--", ":", "-."] * 4))
    for ax, ((host, rt), g) in zip(axes.flat, panels):
        for (prec, var, scope), line in g.groupby(["precision", "variant", "scope"], sort=True):
            line = line.sort_values("batch")
            ax.plot(
                line["batch"],
                line["p50_us"],
                styles[scope],
                marker="o",
                ms=3,
                color=f"C{precs.index(prec)}",
                label=f"{prec} {var} {scope}".replace("  ", " "),
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="batch size",
            ylabel="p50 per call (us)",
            title=f"{rt} on the {label(host)}",
        )
        ax.set_xscale("log", base=2)
        plain_log(ax, "x", sorted(set(g["batch"])))
        plain_log(ax, "y")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return png(fig)


def accuracy_vs_latency(points: list[dict], label) -> bytes:
    """Per host, validation accuracy (with its 95% interval) against p99 at batch 1; the accuracy axis spans at
    least 10 points so that one-image differences do not look like gaps."""
    plt = pyplot()
    hosts = sorted({p["host"] for p in points})
    fig, axes = plt.subplots(1, len(hosts), figsize=(5 * len(hosts), 4), squeeze=False, sharey=True)
    models = sorted({p["model"] for p in points})
    for ax, host in zip(axes.flat, hosts):
        for p in (p for p in points if p["host"] == host):
            lo, hi = stats.proportion_ci(round(p["value"] * p["n"]), p["n"])
            ax.errorbar(
                p["p99_us"],
                100 * p["value"],
                yerr=[[100 * (p["value"] - lo)], [100 * (hi - p["value"])]],
                fmt="o",
                ms=4,
                capsize=2,
                color=f"C{models.index(p['model'])}",
            )
        ax.set(xscale="log", xlabel="p99 at batch 1 (us), best scope", title=f"{label(host)}")
        plain_log(ax, "x")
        ax.grid(alpha=0.3, which="both")
    vals = [100 * p["value"] for p in points]
    lo, hi = min(vals) - 2, max(vals) + 2
    pad = max(0.0, 10 - (hi - lo)) / 2
    axes.flat[0].set_ylim(lo - pad, hi + pad)
    axes.flat[0].set_ylabel("validation accuracy (%), 95% interval")
    for i, m in enumerate(models):
        axes.flat[0].plot([], [], "o", color=f"C{i}", label=m)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return png(fig)


def load_curves(peaks: list[dict], label) -> bytes:
    """The hockey stick: per model (columns), p99 per query (top) and the share of late queries (bottom)
    against offered load; one colour per configuration, measured solid, the queue model dashed, the deadline
    dotted."""
    plt = pyplot()
    models = sorted({p["key"]["model"] for p in peaks})
    fig, axes = plt.subplots(2, len(models), figsize=(3.6 * len(models), 6), squeeze=False)
    for col, mid in enumerate(models):
        top, bottom = axes[0][col], axes[1][col]
        mine = [p for p in peaks if p["key"]["model"] == mid]
        for i, p in enumerate(mine):
            k, rows = p["key"], p["rows"]
            x = [r["offered_qps"] for r in rows]
            name = f"{k['runtime']} {k['precision']}" + ("" if int(k["max_batch"]) == 1 else f" b<={k['max_batch']}")
            top.plot(x, [r["p99_us"] for r in rows], "-o", ms=3, color=f"C{i}", label=name)
            pred = [r.get("pred_p99_us") for r in rows]
            if all(v == v and v is not None for v in pred):
                top.plot(x, pred, "--", color=f"C{i}", lw=1)
            bottom.plot(x, [100 * r["miss_rate"] for r in rows], "-o", ms=3, color=f"C{i}")
            top.axhline(k["deadline_us"], color="grey", ls=":", lw=1)
        top.set(yscale="log", ylabel="p99 per query (us)", title=f"{mid} on the {label(mine[0]['key']['host'])}")
        plain_log(top, "y")
        bottom.set(xlabel="offered load (queries/s)", ylabel="late queries (%)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3, which="both")
        top.legend(fontsize=7, title="dashed: queue model", title_fontsize=7)
    fig.tight_layout()
    return png(fig)
